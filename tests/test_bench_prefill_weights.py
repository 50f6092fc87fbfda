"""benchmarks/bench_prefill_weights.py rewrites a GGUF in another number format: the rewritten
model must be the same model (else its timings would describe something else)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="the benchmark runs on llama.cpp")
gguf = pytest.importorskip("gguf", reason="the rewrite uses the gguf package")

from toolrun.backends.llamacpp import load_llamacpp  # noqa: E402
from toolrun.defaults import default_model_gguf  # noqa: E402
from toolrun.errors import ModelLoadError  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_prefill_weights.py"


def test_a_rewritten_gguf_holds_the_same_model_in_the_new_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        source = default_model_gguf()
    except ModelLoadError as exc:
        pytest.skip(f"the default GGUF is not installed: {exc}")
    spec = importlib.util.spec_from_file_location("bench_prefill_weights", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "WORK", tmp_path)

    rewritten = bench.rewrite(source, "F16")
    assert rewritten.parent == tmp_path
    before = {t.name: t for t in gguf.GGUFReader(source).tensors}
    after = {t.name: t for t in gguf.GGUFReader(rewritten).tensors}
    assert after.keys() == before.keys()
    for name, tensor in after.items():
        expected = "F16" if len(tensor.shape) == 2 else "F32"
        assert tensor.tensor_type.name == expected, name
        assert list(tensor.shape) == list(before[name].shape), name
    assert bench.rewrite(source, "F16").stat().st_mtime == rewritten.stat().st_mtime  # once

    original, copy = load_llamacpp(source, n_threads=1), load_llamacpp(rewritten, n_threads=1)
    ids = original.encode("Question: Tom has 3 apples and buys 4 more. How many now?\nAnswer:")
    one, two = original.new_session(), copy.new_session()
    try:
        a, b = one.feed(ids).float().numpy(), two.feed(ids).float().numpy()
    finally:
        one.close()
        two.close()
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert int(a.argmax()) == int(b.argmax())
