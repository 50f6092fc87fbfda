"""Annotation throughput on Ray Data with 1 and 2 workers, same texts, same run, interleaved.

The default model's own annotation (``make model``): GSM8K worked solutions, Calculator calls,
inline placement, the gain criterion. One local Ray with the machine's cores is started once;
each repeat annotates the same ``--texts`` into a fresh folder with 1, then 2 actors (each its
own model, one torch thread), and the order alternates between repeats.

    python benchmarks/bench_annotate.py                 # 16 texts, 2 repeats of each
    python benchmarks/bench_annotate.py --texts 8 --repeats 1

Two rates per run: the wall rate (texts / seconds of the whole call, actors' start and model
loads included) and the worker rate (texts / seconds the actors spent annotating, summed over
shards): the figure a cluster multiplies by its workers. Writes
benchmarks/results/annotate.json and prints a projection for a corpus of ``--corpus`` texts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import toolrun
from toolrun.toolformer.annotate import AnnotateConfig
from toolrun.toolformer.data import load_corpus
from toolrun.toolformer.ray_annotate import annotate_on_ray, start_local_ray

RESULTS = Path(__file__).parent / "results" / "annotate.json"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--corpus", type=int, default=1_000_000, help="texts, for the projection")
    args = parser.parse_args()

    import ray

    records = load_corpus(args.data, limit=args.texts)
    start_local_ray(os.cpu_count() or 2)
    runs = []
    try:
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                with tempfile.TemporaryDirectory() as folder:
                    load = os.getloadavg()[0]
                    started = time.perf_counter()
                    stats = annotate_on_ray(
                        records,
                        Path(folder) / "out",
                        tools=["calculator"],
                        config=AnnotateConfig(tau_f=1.0),
                        model=toolrun.BASE_MODEL,
                        device="cpu",
                        workers=workers,
                        shard_size=args.shard_size,
                        progress=False,
                    )
                    wall = time.perf_counter() - started
                busy = sum(stats["shard_seconds_this_run"].values())
                runs.append(
                    {
                        "workers": workers,
                        "texts": stats["texts"],
                        "kept": stats["kept"],
                        "wall_s": round(wall, 1),
                        "wall_texts_per_s": round(stats["texts"] / wall, 3),
                        "worker_texts_per_s": round(stats["texts"] / busy, 3),
                        "load_average_at_start": round(load, 2),
                    }
                )
                print(json.dumps(runs[-1]))
    finally:
        ray.shutdown()

    summary = {}
    for workers in (1, 2):
        mine = [r for r in runs if r["workers"] == workers]
        summary[workers] = {
            key: {
                "median": round(statistics.median(r[key] for r in mine), 3),
                "range": [min(r[key] for r in mine), max(r[key] for r in mine)],
            }
            for key in ("wall_texts_per_s", "worker_texts_per_s")
        }
    ones = [r for r in runs if r["workers"] == 1]
    twos = [r for r in runs if r["workers"] == 2]
    ratio = [b["wall_texts_per_s"] / a["wall_texts_per_s"] for a, b in zip(ones, twos, strict=True)]
    per_worker = summary[1]["worker_texts_per_s"]["median"]
    worker_hours = args.corpus / per_worker / 3600
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), load in each run",
        "model": toolrun.BASE_MODEL,
        "workload": f"{args.texts} GSM8K texts, Calculator, inline, gain; shards of "
        f"{args.shard_size}",
        "runs": runs,
        "summary": summary,
        "two_over_one_wall": [round(x, 2) for x in ratio],
        "projection": {
            "corpus_texts": args.corpus,
            "texts_per_worker_second": per_worker,
            "worker_hours": round(worker_hours, 1),
            "hours_on_64_workers": round(worker_hours / 64, 1),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("summary", "two_over_one_wall", "projection")}))


if __name__ == "__main__":
    main()
