"""LoRA adapters on the llama.cpp backend: merged into a GGUF that matches the transformers side."""

from __future__ import annotations

import shutil
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
from toolrun.backends.gguf_merge import _fingerprint, _permute, merged_gguf
from toolrun.backends.llamacpp import load_llamacpp
from toolrun.models import BASE_MODEL, default_model_gguf

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "Question: What is 12 times 4?\nAnswer:"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LoRA that changes nothing (B = 0) and one with small random weights on every layer."""
    root = tmp_path_factory.mktemp("adapters")
    base = toolrun.load_model(BASE_MODEL, backend="transformers", dtype="float32")
    torch.manual_seed(0)  # lora_A's initialisation
    lora = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))  # type: ignore[attr-defined]
    lora.save_pretrained(root / "zero")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    lora.save_pretrained(root / "random")
    # The same random adapter on both backends is compared in logit space; a large one makes the
    # network chaotic, where float noise alone decorrelates the logits, so it is kept moderate.
    return {"zero": root / "zero", "random": root / "random"}


def test_the_merged_file_is_named_by_content(adapters: dict[str, Path], tmp_path: Path) -> None:
    base = default_model_gguf()
    copy = shutil.copytree(adapters["zero"], tmp_path / "copy")
    assert _fingerprint(base, copy) == _fingerprint(base, adapters["zero"])
    assert _fingerprint(base, adapters["random"]) != _fingerprint(base, adapters["zero"])
    (copy / "README.md").write_text("a card changes nothing")
    assert _fingerprint(base, copy) == _fingerprint(base, adapters["zero"])
    weights = copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    assert _fingerprint(base, copy) != _fingerprint(base, adapters["zero"])


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
    # another copy of the same adapter (a new checkout, a reinstalled wheel) finds that file
    copy = shutil.copytree(adapters["random"], tmp_path / "elsewhere" / adapters["random"].name)
    assert merged_gguf(default_model_gguf(), copy, cache=tmp_path) == path
    ours = load_llamacpp(path, n_ctx=256)
    theirs = toolrun.load_model(adapter=adapters["random"], backend="transformers", dtype="float32")
    plain = load_llamacpp(n_ctx=256)
    ids = ours.encode(PROMPT)
    assert ids == theirs.encode(PROMPT)
    # Every merged weight, read back from the GGUF, is transformers' merged weight within Q8_0.
    reader = gguf.GGUFReader(path)
    q = next(t for t in reader.tensors if t.name == "blk.3.attn_q.weight")
    assert q.tensor_type == gguf.GGMLQuantizationType.Q8_0
    written = gguf.quants.dequantize(q.data, q.tensor_type)
    merged = theirs.model.model.layers[3].self_attn.q_proj.weight.detach().numpy()  # type: ignore[attr-defined]
    expected = _permute(merged, 9, 9)
    assert np.abs(written - expected).max() < 0.01 * np.abs(expected).max()
    hf_base = toolrun.load_model(BASE_MODEL, backend="transformers", dtype="float32")
    a, b, base, hf = (m.new_session().feed(ids) for m in (ours, theirs, plain, hf_base))
    # The adapter moves the logits on both backends, and the two merged models agree closely
    # (base against base they agree to 0.999: test_the_base_model_computes_the_same_function).
    assert (b - hf).abs().max() > 1.5
    assert (a - base).abs().max() > 1.0
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99


@pytest.mark.slow
def test_the_base_model_computes_the_same_function_on_both_backends() -> None:
    """transformers runs the GGUF dequantised to fp32, llama.cpp runs it in Q4_1 with its
    activations rounded to 8 bits: on the same ids the logits correlate to 0.999 (max |diff|
    0.63; converted to F32, the file gives a max |diff| of 0.007, its f16 KV cache)."""
    llama = load_llamacpp(n_ctx=256)
    hf = toolrun.load_model(BASE_MODEL, backend="transformers", dtype="float32")
    for prompt in (PROMPT, "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>"):
        ids = llama.encode(prompt)
        assert ids == hf.encode(prompt)
        a, b = llama.new_session().feed(ids), hf.new_session().feed(ids)
        assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.998
        assert int(a.argmax()) == int(b.argmax())
