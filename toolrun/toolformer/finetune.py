"""Finetune on annotated texts: LoRA (or QLoRA, or full finetuning) on transformers' Trainer.

The paper's details are kept: the loss is on the whole text, calls and results included (texts
carry their calls inline exactly as the runtime writes them, ``[Calculator(48 / 2) → 24]``, so the
model learns to open a call, write the arguments and the arrow, then read the spliced result),
averaged over every token of an optimizer step's batch however it is split into micro-batches.

The Trainer brings what a hand-written loop lacked: gradient accumulation (``micro_batch_size``),
gradient checkpointing, bf16 autocast on CUDA, checkpoints and resuming (``output/checkpoints``,
every ``save_steps``; an interrupted run picks up at its last checkpoint with its optimizer,
schedule, data position and random state), and a progress bar with rate and ETA. QLoRA: a base
loaded in 4 bit (``toolrun.load_model(..., quantize="nf4")``) is prepared the way peft documents
(``prepare_model_for_kbit_training``) and trained through LoRA.

On the CPU defaults the steps are those of the hand-written loop this replaced, to the bit: the
same batches in the same order (``batch_plan``), AdamW, linear warm-up then cosine, gradients
clipped at 1, the same dropout draws (``tests/test_teach_finetune.py`` checks it).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import ADAPTER_CHAT_TEMPLATE
from .data import PipelineError, read_jsonl

__all__ = ["FinetuneConfig", "batch_plan", "finetune", "load_texts", "with_lora"]

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_STATE = "toolrun_run.json"  # in the checkpoints folder: what the checkpoints were made from


@dataclass
class FinetuneConfig:
    """``batch_size`` is the effective batch (texts per optimizer step); ``micro_batch_size``
    texts go through the model at once (None: all of them), the rest is gradient accumulation.
    ``bf16`` None: bf16 autocast on CUDA where supported, float32 on the CPU. ``save_steps``: a
    checkpoint every so many steps (0: none)."""

    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 3e-4
    max_length: int = 320
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    full: bool = False
    seed: int = 0
    warmup_steps: int = 5
    only_with_calls: bool = False
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False
    bf16: bool | None = None
    save_steps: int = 25

    def check(self) -> None:
        """Raise PipelineError for options out of range (before any model loads)."""
        problems = []
        if self.epochs <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            problems.append("epochs, learning rate and batch size must be positive")
        micro = self.micro_batch_size
        if micro is not None and (micro < 1 or self.batch_size % micro):
            problems.append(
                f"micro_batch_size ({micro}) must divide batch_size ({self.batch_size})"
            )
        if self.max_length < 2 or self.lora_r < 1 or self.save_steps < 0:
            problems.append("max_length >= 2, lora_r >= 1 and save_steps >= 0 are needed")
        if problems:
            raise PipelineError("bad finetuning options: " + "; ".join(problems))

    @property
    def accumulation(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)


def load_texts(
    path: str | Path | Sequence[str | Path],
    *,
    only_with_calls: bool = False,
    criterion: str | None = None,
    tau_f: float | None = None,
    tools: Sequence[str] | None = None,
    repeated_calls: bool = False,
) -> list[str]:
    """Training texts from annotation files (``text``) or any JSONL with a ``text`` field.

    Several annotation files (one run per tool, say) are merged by text id, their calls
    together. With ``criterion`` and ``tau_f`` the calls are re-selected from the losses the
    annotation stored, so one annotation run serves any threshold; with ``tools`` only those
    tools' calls stay in the text; a re-selected call that repeats an earlier one in the same text
    is dropped unless ``repeated_calls``. Raises PipelineError for a missing, malformed or empty
    file."""
    from .annotate import insert_calls, kept_calls, load_annotations, merge_annotations

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise PipelineError("no annotation files given")
    if len(paths) > 1:
        rows = merge_annotations(paths)
    elif Path(paths[0]).is_dir():
        rows = load_annotations(paths[0])  # the shards of a run on Ray
    else:
        rows = [row for _, row in read_jsonl(Path(paths[0]))]
    texts = []
    for row in rows:
        if not isinstance(row.get("text"), str):
            raise PipelineError(f'{paths[0]}: a line without "text": keys {sorted(row)}')
        calls = row.get("calls")
        text = row["text"]
        if "scored" in row and (tools is not None or criterion is not None):
            if criterion is not None and tau_f is not None:
                calls = kept_calls(row["scored"], criterion, tau_f, repeats=repeated_calls)
            if tools is not None:
                allowed = {t.lower() for t in tools}
                calls = [c for c in calls or [] if c["tool"].lower() in allowed]
            text = insert_calls(row["original"], calls or [])
        if only_with_calls and not calls:
            continue
        texts.append(text)
    if not texts:
        where = ", ".join(str(p) for p in paths)
        raise PipelineError(
            f"no training texts in {where}"
            + (" with a kept call" if only_with_calls and rows else "")
        )
    return texts


def with_lora(hf: Any, config: FinetuneConfig) -> Any:
    """``hf`` (a transformers model) wrapped in the LoRA adapter ``config`` describes; its
    initial weights come from torch's generator, which the caller seeds."""
    from .._quiet import quiet

    # Importing peft loads bitsandbytes, which warns about an optional CPU kernel, and
    # get_peft_model reads a property transformers deprecated: nothing a user can act on.
    with quiet():
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.targets,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(hf, lora)


def batch_plan(count: int, batch_size: int, steps: int, seed: int) -> list[int]:
    """The text index of every example of every step, in order: the texts shuffled, dealt out
    in batches, reshuffled when fewer than a batch remain (the leftovers go first)."""
    rng = random.Random(seed)
    order: list[int] = []
    plan: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(count))
            rng.shuffle(fresh)
            order += fresh
        plan += order[:batch_size]
        del order[:batch_size]
    return plan


def finetune(
    base: Any,
    texts: Sequence[str],
    output: str | Path,
    config: FinetuneConfig,
    *,
    merge: bool = False,
    progress: bool = True,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
    chat_template: str | None = None,
) -> dict[str, Any]:
    """Train ``base`` (a TransformersModel) on ``texts``; save the adapter (or the full model) to
    ``output``; with ``merge`` also the merged model to ``output/merged``. Checkpoints go to
    ``output/checkpoints``; with ``resume`` a run whose checkpoints are there (same texts, same
    settings) continues from the last one. ``chat_template``: a Jinja template saved beside the
    weights (``chat_template.jinja``) that replaces the base's when they are loaded: chats are
    then rendered the way the texts read. Returns a summary (steps, losses, seconds)."""
    import torch

    from .._quiet import quiet

    with quiet():  # the Trainer's imports load bitsandbytes, which warns about a CPU kernel
        from transformers import PrinterCallback, ProgressCallback, TrainingArguments

    config.check()
    if not texts:
        raise PipelineError("no texts to finetune on")
    hf, tokenizer = base.model, base.tokenizer
    quantized = bool(getattr(hf, "is_loaded_in_4bit", False) or getattr(hf, "is_loaded_in_8bit", 0))
    if quantized and (config.full or merge):
        raise PipelineError("a 4/8-bit base trains through LoRA only, and cannot be merged into")
    output = Path(output)
    checkpoints = output / "checkpoints"
    fingerprint = _fingerprint(texts, config)
    start_from = _checkpoint_to_resume(checkpoints, fingerprint) if resume else None
    if start_from is None and checkpoints.exists():
        shutil.rmtree(checkpoints)

    torch.manual_seed(config.seed)
    if quantized:
        from peft import prepare_model_for_kbit_training

        hf = prepare_model_for_kbit_training(
            hf,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if not config.full:
        hf = with_lora(hf, config)
    # The dropout draws continue from here, as in a plain loop; the Trainer reseeds on start.
    rng_after_init = torch.get_rng_state()

    eos = sorted(base.eos_token_ids)[:1]
    examples = [list(base.encode(t))[: config.max_length - 1] + eos for t in texts]
    total = max(1, round(math.ceil(len(examples) / config.batch_size) * config.epochs))
    plan = batch_plan(len(examples), config.batch_size, total, config.seed)
    trainable = [p for p in hf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    device = next(hf.parameters()).device
    cuda = device.type == "cuda"
    bf16 = config.bf16 if config.bf16 is not None else cuda and torch.cuda.is_bf16_supported()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    args = TrainingArguments(
        output_dir=str(checkpoints),
        max_steps=total,
        per_device_train_batch_size=config.micro_batch_size or config.batch_size,
        gradient_accumulation_steps=config.accumulation,
        max_grad_norm=1.0,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=bf16,
        use_cpu=not cuda,
        seed=config.seed,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 1,
        save_total_limit=2,
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
    )
    losses: list[float] = []
    if start_from is not None:
        losses = json.loads((Path(start_from) / "toolrun_losses.json").read_text())
    trainer = _trainer_class()(
        model=hf,
        args=args,
        train_dataset=_Planned(examples, plan),
        data_collator=lambda rows: _collate(rows, pad),
        optimizers=(optimizer, scheduler),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_bookkeeping(trainer, losses, rng_after_init, progress))
    for callback in callbacks:
        trainer.add_callback(callback)
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / _STATE).write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=start_from)
    hf.eval()
    output.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(output, safe_serialization=True)
    if config.full:
        tokenizer.save_pretrained(output)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run finished: nothing to resume
    summary = {
        "texts": len(texts),
        "steps": total,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.perf_counter() - started, 1),
        "resumed_at_step": int(Path(start_from).name.split("-")[-1]) if start_from else None,
        "calls_per_tool": _calls_per_tool(texts),
        "config": asdict(config),
    }
    (output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    saved = [output]
    if merge and not config.full:  # a full model is its own merge
        merged = hf.merge_and_unload()
        merged.save_pretrained(output / "merged", safe_serialization=True)
        tokenizer.save_pretrained(output / "merged")
        saved.append(output / "merged")
    if chat_template is not None:
        # Written last: a saved tokenizer writes the base's template under the same name.
        for folder in saved:
            (folder / ADAPTER_CHAT_TEMPLATE).write_text(chat_template, encoding="utf-8")
    return summary


class _Planned:
    """The examples of every step in the planned order (the Trainer reads it sequentially)."""

    def __init__(self, examples: list[list[int]], plan: list[int]) -> None:
        self.examples = examples
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> list[int]:
        return self.examples[self.plan[index]]


def _collate(rows: list[list[int]], pad: int) -> dict[str, Any]:
    """Right-padded ids; labels are the ids (the loss covers the whole text), -100 on padding."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _trainer_class() -> type:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class PlannedTrainer(Trainer):
        """Reads the dataset in order (the batch plan is the shuffle) and keeps each optimizer
        step's loss unrounded."""

        step_loss = 0.0

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return SequentialSampler(train_dataset or self.train_dataset)  # type: ignore[arg-type]

        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            loss = super().training_step(model, inputs, num_items_in_batch)
            self.step_loss += float(loss)
            return loss

    return PlannedTrainer


def _bookkeeping(trainer: Any, losses: list[float], rng_state: Any, progress: bool) -> Any:
    """A callback: restores the random state for the first step, records each step's loss,
    stores the losses with every checkpoint, and draws the progress bar."""
    import torch
    from transformers import TrainerCallback

    class Bookkeeping(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    desc="finetune",
                    unit="step",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 0 and not losses:
                torch.set_rng_state(rng_state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            losses.append(trainer.step_loss)
            trainer.step_loss = 0.0
            if self.bar is not None:
                self.bar.update(1)
                recent = losses[-10:]
                self.bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / "toolrun_losses.json").write_text(json.dumps(losses))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return Bookkeeping()


def _fingerprint(texts: Sequence[str], config: FinetuneConfig) -> str:
    """What a checkpoint must match to be resumed: the texts and every setting."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def _checkpoint_to_resume(checkpoints: Path, fingerprint: str) -> str | None:
    """The last checkpoint of an interrupted run with the same texts and settings, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    state = checkpoints / _STATE
    if not state.is_file() or json.loads(state.read_text()).get("fingerprint") != fingerprint:
        return None
    last = get_last_checkpoint(str(checkpoints))
    if last is None or not (Path(last) / "toolrun_losses.json").is_file():
        return None
    return str(last)


def _calls_per_tool(texts: Sequence[str]) -> dict[str, int]:
    from ..syntax import iter_calls

    counts: dict[str, int] = {}
    for text in texts:
        for call in iter_calls(text):
            counts[call.name] = counts.get(call.name, 0) + 1
    return counts
