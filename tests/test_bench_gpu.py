"""`make bench-gpu` in its CPU mode (a tiny random Llama), so the GPU script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("bitsandbytes", reason="the nf4 arm needs bitsandbytes")
pytest.importorskip("peft", reason="the QLoRA step needs peft")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gpu.py"


def test_the_gpu_benchmark_runs_end_to_end_on_a_tiny_model(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    report = bench.main(["--tiny", "--out", str(out), "--latency", "0.005"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["skipped"] == []
    for arm in ("float32", "nf4"):
        row = report[arm]
        assert row["decode"]["same_tokens"]  # toolrun and model.generate() agree
        assert row["decode"]["toolrun_tok_s"] > 0
        for context in (256, 1024):
            assert row[f"resume_{context}"]["ratio"] > 0
        for rows in (16, 64):
            batch = row[f"batch_{rows}"]
            assert batch["calls"] >= rows and batch["calls_ok"] == batch["calls"]
            assert batch["over_batch_1"] > 0
    assert math.isfinite(report["qlora"]["loss"])
    assert report["qlora"]["trainable_parameters"] > 0
