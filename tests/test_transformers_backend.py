"""The loop on a real transformers model: parity with generate(), and splices on the cache."""

import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.testing import ForceText


@toolrun.tool(name="Calculator")
def calc(expression: str) -> str:
    """A tiny calculator for the test: sums integers."""
    return str(sum(int(p) for p in expression.split("+")))


def test_no_call_equals_hf_generate(tiny_llama, tokenizer):
    model = TransformersModel(tiny_llama, tokenizer)
    prompt = "The quick brown fox jumps over the lazy dog. Then"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    reference = tiny_llama.generate(ids, do_sample=False, max_new_tokens=40, min_new_tokens=40)
    expected = reference[0, ids.shape[1] :].tolist()
    out = toolrun.generate(prompt, model=model, max_new_tokens=40)
    assert out.calls == []
    assert out.token_ids == expected[: len(out.token_ids)]
    assert len(out.token_ids) == 40 or out.finish_reason == "eos"
    assert out.text == tokenizer.decode(out.token_ids)


def test_splice_feeds_only_new_tokens_and_matches_a_full_reencode(tiny_llama, tokenizer):
    model = TransformersModel(tiny_llama, tokenizer)
    prompt = "Compute: "
    prompt_ids = model.encode(prompt)
    forcer = ForceText(model, len(prompt_ids), " [Calculator(2+3) →")
    fed_lengths = []
    hook = tiny_llama.register_forward_pre_hook(
        lambda module, args, kwargs: fed_lengths.append(kwargs["input_ids"].shape[1]),
        with_kwargs=True,
    )
    try:
        out = toolrun.generate(
            prompt_ids, model=model, tools=[calc], max_new_tokens=24, logits_processor=[forcer]
        )
    finally:
        hook.remove()
    (call,) = out.calls
    assert call.result == "5"
    assert out.text.startswith(" [Calculator(2+3) → 5]")
    # Forward passes: the prompt, one token at a time, and one pass holding the arrow token plus
    # " 5]" -- never the whole context again.
    splice_ids = model.encode(" 5]")
    assert fed_lengths[0] == len(prompt_ids)
    assert sorted(set(fed_lengths[1:])) == [1, 1 + len(splice_ids)]
    assert fed_lengths.count(1 + len(splice_ids)) == 1
    assert sum(fed_lengths) == len(prompt_ids) + len(out.token_ids) - (
        out.finish_reason == "length"
    )

    # Every step's logits equal a full re-encode of the same tokens, the step after the splice too.
    after_splice = [(ids, s) for ids, s in forcer.seen if ids.shape[1] > len(prompt_ids) + 10]
    assert after_splice
    with torch.inference_mode():
        for ids, scores in forcer.seen:
            full = tiny_llama(input_ids=ids).logits[0, -1]
            torch.testing.assert_close(scores[0], full, atol=1e-4, rtol=1e-4)


def test_generation_options_pass_through(tiny_llama, tokenizer):
    from transformers import GenerationConfig

    model = TransformersModel(tiny_llama, tokenizer)
    config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=12)
    first = toolrun.generate("Hello", model=model, generation_config=config, seed=3)
    second = toolrun.generate("Hello", model=model, generation_config=config, seed=3)
    assert first.text == second.text
    assert first.generated_tokens <= 12
    penalised = toolrun.generate("Hello", model=model, repetition_penalty=1.3, max_new_tokens=12)
    assert penalised.generated_tokens >= 1


@pytest.mark.parametrize("text", ["[", " [", "=["])
def test_every_opening_token_is_banned(tiny_llama, tokenizer, text):
    model = TransformersModel(tiny_llama, tokenizer)
    (token,) = tokenizer.encode(text, add_special_tokens=False)
    assert token in model.call_opening_tokens


def test_the_model_offers_its_own_batch(tiny_llama, tokenizer):
    from toolrun.backends.transformers_batch import TransformersBatch
    from toolrun.batch import open_batch

    model = TransformersModel(tiny_llama, tokenizer)
    batch = model.new_batch()
    assert isinstance(batch, TransformersBatch)
    assert isinstance(open_batch(model), TransformersBatch)
    ids = model.encode("Hello there")
    logits = batch.step({"a": ids, "b": ids[:1]})
    torch.testing.assert_close(logits["a"], model.new_session().feed(ids), atol=1e-4, rtol=1e-4)
