"""Annotation on a local Ray: the same kept calls as the single-process run on the same texts and
seed, shards written whole, a rerun resumes (finished shards are skipped)."""

from __future__ import annotations

import json
import os

import pytest

import toolrun
from toolrun.cli import main
from toolrun.toolformer.annotate import AnnotateConfig, annotate, load_annotations
from toolrun.toolformer.data import PipelineError, Record
from toolrun.toolformer.ray_annotate import _write_shard, read_shards, tool_reference

TEXTS = [
    "Q: add.\nA: 1 + 3 = 4, and she said so to 9 friends.",
    "Q: add.\nA: 2 + 5 = 7, and the sign read open.",
    "Q: add.\nA: 3 + 3 = 6 apples.",
    "Q: add.\nA: 4 + 4 = 8, said 2 people.",
    "Q: add.\nA: 5 + 1 = 6 and 6 * 2 = 12.",
]
CONFIG = dict(tau_s=0.0, k=4, m=2, tau_f=-100.0, max_call_tokens=4)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from toolrun.toolformer.ray_annotate import start_local_ray

    start_local_ray(os.cpu_count() or 2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tiny_llama, tokenizer, tmp_path_factory):
    from test_teach_pipeline import TOOL_FILE, closing_llama

    folder = tmp_path_factory.mktemp("ray")
    model_dir = folder / "model"
    closing_llama(tiny_llama, tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tool_file = folder / "mytools.py"
    tool_file.write_text(TOOL_FILE)
    records = [Record(id=f"r{i}", text=t, start=11) for i, t in enumerate(TEXTS)]
    return model_dir, ["calculator", f"{tool_file}:echo"], records


def test_ray_gives_the_single_process_calls_and_resumes(local_ray, setup, tmp_path):
    import torch

    from toolrun.toolformer.ray_annotate import annotate_on_ray

    model_dir, tools, records = setup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor runs
    try:
        model = toolrun.load_model(str(model_dir), device="cpu")
        registry = toolrun.ToolRegistry(tools)
        config = AnnotateConfig(tools=registry.names, **CONFIG)
        annotate(model, registry, records, config, tmp_path / "single.jsonl", progress=False)
    finally:
        torch.set_num_threads(threads)
    single = load_annotations(tmp_path / "single.jsonl")

    out = tmp_path / "ray"
    run = dict(tools=tools, model=str(model_dir), device="cpu", workers=2, shard_size=2)
    stats = annotate_on_ray(records, out, config=AnnotateConfig(**CONFIG), progress=False, **run)
    on_ray = load_annotations(out)
    assert sorted(p.name for p in out.glob("shard-*.jsonl")) == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    assert [line["id"] for line in on_ray] == [r.id for r in records]
    assert [line["calls"] for line in on_ray] == [line["calls"] for line in single]
    assert [line["text"] for line in on_ray] == [line["text"] for line in single]
    assert any(line["calls"] for line in single)
    assert stats["texts"] == 5 and stats["kept"] == sum(len(x["calls"]) for x in single)
    assert json.loads((out / "stats.json").read_text())["kept_per_tool"] == stats["kept_per_tool"]

    # An interrupted run: shard 1 never finished. The rerun (from the command line) does it alone.
    (out / "shard-00001.jsonl").unlink()
    (out / "shard-00001.stats.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[02].*")}
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    argv = ["annotate", str(corpus), "-o", str(out), "--model", str(model_dir), "--device", "cpu"]
    argv += ["--tools", ",".join(tools), "--ray", "--workers", "1", "--shard-size", "2"]
    argv += ["--tau-s", "0", "--k", "4", "--m", "2", "--tau-f", "-100", "--max-call-tokens", "4"]
    assert main([*argv, "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[02].*")} == before
    assert load_annotations(out) == on_ray
    assert json.loads((out / "stats.json").read_text())["kept"] == stats["kept"]
    # Shards of other settings are never mixed in.
    other = AnnotateConfig(**{**CONFIG, "tau_f": 0.0})
    with pytest.raises(PipelineError, match="holds shards of another run"):
        annotate_on_ray(records, out, config=other, progress=False, **run)


def test_parquet_shards_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    lines = [
        {
            "id": "a",
            "text": "x [Calculator(1 + 1) → 2] 2",
            "original": "x 2",
            "start": 0,
            "gold": [],
            "calls": [{"tool": "Calculator", "position": 1, "arguments": "1 + 1", "result": "2"}],
            "counts": {"kept": 1},
            "scored": [{"tool": "Calculator", "candidates": [["1 + 1", "2", 0.5, 1.5]]}],
        }
    ]
    _write_shard(tmp_path, 3, lines, {"texts": 1}, "parquet")
    assert (tmp_path / "shard-00003.parquet").is_file()
    assert not list(tmp_path.glob(".*partial"))
    assert read_shards(tmp_path) == lines


def test_tools_travel_as_references(tmp_path):
    from toolrun.tools.calculator import calculator

    assert tool_reference("calculator") == "calculator"
    assert tool_reference(calculator) == "toolrun.tools.calculator:calculator"
    assert tool_reference("tools.py:echo") == f"{os.path.abspath('tools.py')}:echo"
