"""Teach SmolLM2-135M a tool of your own, end to end on a CPU: texts, annotation, finetuning and
a held-out check, each step timed.

    python examples/teach_a_tool/teach.py                   # the measured run (README.md)
    python examples/teach_a_tool/teach.py --texts 40 --heldout 10 --epochs 1   # a quick look

Interrupted? Run it again: the annotation and the finetuning resume where they stopped.
Writes ``<work>/report.json``: the timings, the machine's load, and the held-out figures for
the untrained and the finetuned model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check import check
from make_texts import make_texts
from units import convert

import toolrun
from toolrun import annotate, finetune

# The annotator: the paper's settings for a tool it did not have (p(" [") >= tau_s 0.05, m 5
# calls sampled a position), but one position a text (k 1: each text holds one conversion; the
# paper's 5 would also sample before the amount, where no result helps) and tau_f 0.5 (as for the
# default model: a 135M model gains little from a result it was never taught to read; 1.0 keeps
# a third as many calls, see README.md).
ANNOTATE = {"tau_s": 0.05, "k": 1, "m": 5, "tau_f": 0.5, "max_call_tokens": 12}
# LoRA as for the default model, on the texts that kept a call; lr 1e-3 and 3 epochs, since a
# hundred short texts make few steps.
FINETUNE = {"epochs": 3.0, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 8, "lora_alpha": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="build/teach_a_tool", help="folder for every output")
    parser.add_argument("--model", default=toolrun.BASE_MODEL, help="the model to teach")
    parser.add_argument("--texts", type=int, default=200, help="training texts to generate")
    parser.add_argument("--heldout", type=int, default=40, help="held-out prompts to check")
    parser.add_argument("--epochs", type=float, default=FINETUNE["epochs"])
    parser.add_argument("--tau-f", type=float, default=ANNOTATE["tau_f"], help="min gain kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps({k: v for k, v in report.items() if k != "outputs"}, indent=2))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    load = {"start": os.getloadavg()[0]}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 1)
        clock = now

    train = make_texts(args.texts, seed=0)
    held_out = make_texts(args.heldout, seed=1, held_out=True)
    (work / "texts.jsonl").write_text("".join(json.dumps(asdict(s)) + "\n" for s in train))
    model = toolrun.load_model(args.model, device="cpu")
    lap("texts and model")

    annotated = annotate(
        [{"id": s.id, "text": s.text} for s in train],
        tools=[convert],
        model=model,
        output=work / "annotated.jsonl",
        progress=not args.quiet,
        **{**ANNOTATE, "tau_f": args.tau_f},
    )
    lap("annotate")

    untrained = check(model, held_out)
    lap("check untrained")

    summary = finetune(
        annotated,
        model=model,
        output=work / "adapter",
        only_with_calls=True,
        progress=not args.quiet,
        **{**FINETUNE, "epochs": args.epochs},
    )
    lap("finetune")

    trained = check(
        toolrun.load_model(args.model, adapter=work / "adapter", device="cpu"), held_out
    )
    lap("check finetuned")

    load["end"] = os.getloadavg()[0]
    report = {
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        "load_average": load,
        "threads": args.threads,
        "annotation": {k: v for k, v in annotated.stats.items() if k != "config"},
        "annotator_vs_generator": _against_gold(annotated.lines, train),
        "training": {k: v for k, v in summary.items() if k != "config"},
        "untrained": untrained,
        "finetuned": trained,
    }
    (work / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _against_gold(lines: list[dict[str, Any]], samples: list[Any]) -> dict[str, float]:
    """The kept calls against what the generator knows: a call is right when it sits just
    before the conversion and returns it."""
    gold = {s.id: s for s in samples}
    kept = [(line["id"], call) for line in lines for call in line["calls"]]
    right = sum(
        call["position"] == gold[i].cut and call["result"] == gold[i].result for i, call in kept
    )
    return {
        "kept": len(kept),
        "precision": round(right / len(kept), 3) if kept else 0.0,
        "recall": round(right / len(samples), 3),
    }


if __name__ == "__main__":
    main()
