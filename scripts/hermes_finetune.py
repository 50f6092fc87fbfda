"""LoRA-finetune on rendered chat texts: ``toolrun finetune``'s recipe, one sequence per forward.

    python scripts/hermes_finetune.py build/hermes/chat.jsonl -o build/hermes/adapter \\
        --epochs 1.5 --batch-size 8 --lr 5e-4 --lora-r 8 --lora-alpha 16 --threads 1

Why not ``toolrun finetune`` itself: a Hermes text is about 580 tokens (the tool block alone is
about 290), and ``finetune()`` runs a whole batch in one padded forward: at batch 8 that held
21 GB and was killed on the shared 24 GB machine. Here each optimizer step accumulates the
gradients of its sequences one at a time (no padding, about 3 GB), the loss weighted by tokens
as in one padded forward.

The tokens every text starts with (the system turn with the tool block, then ``<|im_start|>user
\nQuestion:``) are the same in every text: once per step they run through the current model
without gradients (and without dropout) into a KV cache, and each sequence trains on top of a
copy of it. The forward is exact (checked against a full forward at the start); what is left out
is the loss on that fixed block and the gradient through its keys and values, which halves the
cost of a step. Everything else is ``finetune()``'s: LoRA on the same projections, the same
shuffling by seed, warm-up then cosine, gradient clipping at 1, the end of sequence
(``<|im_end|>`` here) appended to every text. It writes ``adapter_model.safetensors``,
``adapter_config.json`` and ``training.json`` as ``finetune()`` does.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from toolrun import load_model
from toolrun.models import BASE_MODEL
from toolrun.toolformer.finetune import FinetuneConfig, load_texts, with_lora


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", help="JSONL with a 'text' field (scripts/hermes_data.py)")
    parser.add_argument("-o", "--output", required=True, help="adapter folder to write")
    parser.add_argument("--model", default=BASE_MODEL)
    parser.add_argument("--epochs", type=float, default=1.5)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="stop early (timing runs)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        seed=args.seed,
    )
    texts = load_texts(args.texts)
    base = load_model(args.model, device="cpu")
    summary = train(base, texts, Path(args.output), config, max_steps=args.max_steps)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


def train(
    base: object,
    texts: Sequence[str],
    output: Path,
    config: FinetuneConfig,
    *,
    max_steps: int | None = None,
) -> dict[str, object]:
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    hf = base.model  # type: ignore[attr-defined]
    hf.train()
    hf = with_lora(hf, config)
    eos = sorted(base.eos_token_ids)[:1]  # type: ignore[attr-defined]
    examples = [list(base.encode(t))[: config.max_length - 1] + eos for t in texts]  # type: ignore[attr-defined]
    truncated = sum(len(base.encode(t)) >= config.max_length for t in texts)  # type: ignore[attr-defined]
    shared = _common_prefix(examples)
    _check_cached_forward(hf, examples[0], shared)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    trainable = [p for p in hf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay (as finetune())
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order: list[int] = []
    losses: list[float] = []
    step_seconds: list[float] = []
    started = time.perf_counter()
    steps = total if max_steps is None else min(total, max_steps)
    bar = tqdm(total=steps, desc="finetune", unit="step", file=sys.stderr, dynamic_ncols=True)
    for _step in range(steps):
        began = time.perf_counter()
        if len(order) < config.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[: config.batch_size]]
        del order[: config.batch_size]
        # The batch's loss is the mean over all its predicted tokens, as one padded forward's.
        targets = sum(len(row) - shared for row in batch)
        batch_loss = 0.0
        cache = _prefix_cache(hf, examples[0][: shared - 1])
        for row in batch:
            ids = torch.tensor([row[shared - 1 :]])
            out = hf(input_ids=ids, cache=copy.deepcopy(cache), use_cache=True)
            logits = out.logits[0, :-1].float()
            loss = F.cross_entropy(logits, ids[0, 1:], reduction="sum") / targets
            loss.backward()
            batch_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(batch_loss)
        step_seconds.append(time.perf_counter() - began)
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    bar.close()
    hf.eval()
    output.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(output, safe_serialization=True)
    ordered = sorted(step_seconds)
    summary: dict[str, object] = {
        "texts": len(texts),
        "truncated_texts": truncated,
        "tokens": sum(len(e) for e in examples),
        "shared_prefix_tokens": shared,
        "trained_tokens": sum(len(e) - shared for e in examples),
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_step_median": round(ordered[len(ordered) // 2], 1),
        "micro_batch": 1,
        "config": asdict(config),
    }
    (output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares (at least one token is left to train on)."""
    size = min(len(r) for r in rows) - 1
    first = rows[0]
    for row in rows[1:]:
        size = next((i for i in range(size) if row[i] != first[i]), size)
    return max(1, size)


def _prefix_cache(hf: torch.nn.Module, prefix: Sequence[int]) -> object:
    """The KV cache of ``prefix`` under the current weights, without gradients or dropout."""
    if not prefix:
        return None
    hf.eval()
    with torch.no_grad():
        cache = hf(input_ids=torch.tensor([list(prefix)]), use_cache=True).cache
    hf.train()
    return cache


def _check_cached_forward(hf: torch.nn.Module, row: Sequence[int], shared: int) -> None:
    """Logits on top of the prefix cache equal a full forward's (eval mode), else stop."""
    hf.eval()
    with torch.no_grad():
        full = hf(input_ids=torch.tensor([list(row)])).logits[0, shared - 1 :]
        cache = _prefix_cache(hf, row[: shared - 1])
        hf.eval()
        split = hf(input_ids=torch.tensor([list(row[shared - 1 :])]), cache=cache).logits[0]
    hf.train()
    difference = float((full - split).abs().max())
    if difference > 1e-3:
        raise SystemExit(f"cached prefix forward differs from a full forward by {difference}")


if __name__ == "__main__":
    sys.exit(main())
