"""Finetune on annotated texts: LoRA through peft (or full finetuning), loss on the whole text.

Texts carry their calls inline exactly as the runtime writes them (``[Calculator(48 / 2) → 24]``),
so the finetuned model learns to open a call, write the arguments and the arrow, and then read the
result that the runtime splices in.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FinetuneConfig", "finetune", "load_texts"]

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneConfig:
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


def load_texts(
    path: str | Path,
    *,
    only_with_calls: bool = False,
    criterion: str | None = None,
    tau_f: float | None = None,
    tools: Sequence[str] | None = None,
) -> list[str]:
    """Training texts from an annotation file (``text``) or any JSONL with a ``text`` field.

    With ``criterion`` and ``tau_f`` the calls are re-selected from the losses the annotation
    stored, so one annotation run serves any threshold; with ``tools`` only those tools' calls
    stay in the text."""
    from .annotate import insert_calls, kept_calls

    texts = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a half-written last line
            calls = row.get("calls")
            text = str(row["text"])
            if "scored" in row and (tools is not None or criterion is not None):
                if criterion is not None and tau_f is not None:
                    calls = kept_calls(row["scored"], criterion, tau_f)
                if tools is not None:
                    allowed = {t.lower() for t in tools}
                    calls = [c for c in calls if c["tool"].lower() in allowed]
                text = insert_calls(row["original"], calls)
            if only_with_calls and not calls:
                continue
            texts.append(text)
    return texts


def finetune(
    base: Any,
    texts: Sequence[str],
    output: str | Path,
    config: FinetuneConfig,
    *,
    merge: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``base`` (a TransformersModel) on ``texts``; save the adapter (or full model) to
    ``output``; with ``merge`` also save the merged model to ``output/merged``. Returns a
    summary (steps, losses, seconds)."""
    import torch

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    hf, tokenizer = base.model, base.tokenizer
    hf.train()
    if not config.full:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.targets,
            task_type="CAUSAL_LM",
        )
        hf = get_peft_model(hf, lora)
    eos = sorted(base.eos_token_ids)[:1]
    examples = [list(base.encode(t))[: config.max_length - 1] + eos for t in texts]
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    trainable = [p for p in hf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order: list[int] = []
    losses: list[float] = []
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="finetune", unit="step", file=sys.stderr, dynamic_ncols=True)
    device = next(hf.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    for _step in range(total):
        if len(order) < config.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[: config.batch_size]]
        del order[: config.batch_size]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        out = hf(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    if bar is not None:
        bar.close()
    hf.eval()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(output, safe_serialization=True)
    if config.full:
        tokenizer.save_pretrained(output)
    summary = {
        "texts": len(texts),
        "steps": total,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    (output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    if merge and not config.full:
        merged = hf.merge_and_unload()
        merged.save_pretrained(output / "merged", safe_serialization=True)
        tokenizer.save_pretrained(output / "merged")
    return summary
