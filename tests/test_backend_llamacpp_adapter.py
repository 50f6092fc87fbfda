"""LoRA adapters on the llama.cpp backend: merged into a GGUF that matches the transformers side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install 'toolrun[llama]')"
)
pytest.importorskip("peft", reason="adapters need peft (pip install 'toolrun[train]')")

import gguf
from peft import LoraConfig, get_peft_model

import toolrun
from toolrun.backends.gguf_merge import merged_gguf
from toolrun.backends.llamacpp import load_llamacpp
from toolrun.models import default_model_gguf

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "Question: What is 12 times 4?\nAnswer:"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LoRA that changes nothing (B = 0) and one with small random weights on every layer."""
    root = tmp_path_factory.mktemp("adapters")
    base = toolrun.load_model(device="cpu", dtype="float32")
    lora = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))  # type: ignore[attr-defined]
    lora.save_pretrained(root / "zero")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    lora.save_pretrained(root / "random")
    return {"zero": root / "zero", "random": root / "random"}


@pytest.mark.slow
def test_an_adapter_that_changes_nothing_reproduces_every_base_tensor(
    adapters: dict[str, Path], tmp_path: Path
) -> None:
    base = default_model_gguf()
    merged = gguf.GGUFReader(merged_gguf(base, adapters["zero"], cache=tmp_path))
    original = gguf.GGUFReader(base)
    assert [t.name for t in merged.tensors] == [t.name for t in original.tensors]
    for ours, theirs in zip(merged.tensors, original.tensors, strict=True):
        assert ours.tensor_type == theirs.tensor_type, ours.name
        assert np.array_equal(ours.data, theirs.data), ours.name
    assert merged.fields["tokenizer.ggml.merges"].contents() == (
        original.fields["tokenizer.ggml.merges"].contents()
    )


@pytest.mark.slow
def test_a_merged_adapter_gives_the_transformers_logits(
    adapters: dict[str, Path], tmp_path: Path
) -> None:
    path = merged_gguf(default_model_gguf(), adapters["random"], cache=tmp_path)
    assert merged_gguf(default_model_gguf(), adapters["random"], cache=tmp_path) == path  # cached
    ours = load_llamacpp(path, n_ctx=256)
    theirs = toolrun.load_model(adapter=adapters["random"], device="cpu", dtype="float32")
    plain = load_llamacpp(n_ctx=256)
    ids = ours.encode(PROMPT)
    assert ids == theirs.encode(PROMPT)
    hf_base = toolrun.load_model(device="cpu", dtype="float32")
    a, b, base, hf = (m.new_session().feed(ids) for m in (ours, theirs, plain, hf_base))
    # Both backends see the same shift from the adapter: it is several times the gap between the
    # backends (Q4_1/Q8_0 kernels against fp32, about 0.7 at most on the base model).
    shift_ours, shift_theirs = a - base, b - hf
    assert shift_theirs.abs().max() > 2.0
    assert torch.corrcoef(torch.stack([shift_ours, shift_theirs]))[0, 1] > 0.9
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99
