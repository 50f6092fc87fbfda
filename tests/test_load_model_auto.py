"""load_model(backend="auto"): the fast engine by default, transformers where it is needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import toolrun
from toolrun import models
from toolrun.models import choose_backend

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_a_cpu_with_llama_cpp_runs_gguf_models_on_it(no_cuda: None, tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.touch()
    for source in (toolrun.BASE_MODEL, str(gguf)):
        backend, why = choose_backend(source, quantize=None, device=None, dtype=None)
        assert backend == "llama.cpp" and why.startswith("auto:")


def test_what_only_transformers_does_goes_to_transformers(
    no_cuda: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def choose(source: str = toolrun.BASE_MODEL, **kwargs: object) -> str:
        options = {"quantize": None, "device": None, "dtype": None, **kwargs}
        return choose_backend(source, **options)[0]  # type: ignore[arg-type]

    assert choose(quantize="nf4") == "transformers"
    assert choose(device="cpu") == "transformers"
    assert choose(dtype="bfloat16") == "transformers"
    (tmp_path / "config.json").write_text("{}")
    assert choose(str(tmp_path)) == "transformers"  # a Hugging Face folder
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose() == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name)
    )
    assert choose() == "transformers"


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_the_base_model_loads_on_llama_cpp_by_default_and_says_why(no_cuda: None) -> None:
    model = toolrun.load_model(toolrun.BASE_MODEL)
    assert model.backend == "llama.cpp"
    assert model.name == toolrun.BASE_MODEL
    assert repr(model) == (
        "<LlamaCppModel 'smollm2-135m-instruct' backend=llama.cpp (auto: CPU and a GGUF model)>"
    )
    explicit = toolrun.load_model(toolrun.BASE_MODEL, backend="llama.cpp")
    assert "auto" not in repr(explicit)


def test_an_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(toolrun.ModelLoadError, match="auto"):
        toolrun.load_model(toolrun.BASE_MODEL, backend="vllm")


def test_the_default_names_live_in_a_leaf_module() -> None:
    from toolrun import defaults

    assert models.BASE_MODEL is defaults.BASE_MODEL
    assert models.cache_dir is defaults.cache_dir
    assert "models" not in _imports(defaults.__file__)  # imports nothing that imports it back


def _imports(path: str) -> str:
    return "\n".join(
        line for line in Path(path).read_text().splitlines() if line.startswith(("import", "from"))
    )
