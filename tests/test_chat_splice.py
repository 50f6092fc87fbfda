"""Chat formats on a real (tiny, random) Llama: the splice is the template's own text, fed on the
cache, and the logits after it equal a full re-encode of the rendered conversation."""

import asyncio
import copy
import json
from pathlib import Path

import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.templates import HERMES_CHATML
from toolrun.testing import ForceText, tiny_llama

TEMPLATE_DIR = Path(__file__).parent / "templates"
LLAMA3 = (TEMPLATE_DIR / "llama3.jinja").read_text()

MISTRAL = (TEMPLATE_DIR / "mistral.jinja").read_text()

SPECIALS = {
    "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"],
    "mistral": [
        "[INST]",
        "[/INST]",
        "[TOOL_CALLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
    ],
}

USER = [{"role": "user", "content": "Please add 2 and 3."}]


@toolrun.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def build(tokenizer, fmt):
    """The tiny Llama with the format's special tokens, its template and its end of turn."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS.get(fmt, [])})
    hf = tiny_llama(tok, seed=1)
    model = TransformersModel(hf, tok, name=f"tiny-{fmt}")
    end = {"hermes": "<|im_end|>", "llama3": "<|eot_id|>", "mistral": tok.eos_token}[fmt]
    model._eos = frozenset({tok.convert_tokens_to_ids(end)})
    return model, end


CALLS = {
    "hermes": '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
    "llama3": '{"name": "add", "parameters": {"a": 2, "b": 3}}',
    "mistral": '[TOOL_CALLS][{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "abc123XYZ"}]',
}
TEMPLATES = {"hermes": HERMES_CHATML, "llama3": LLAMA3, "mistral": MISTRAL}


@pytest.mark.parametrize("fmt", ["hermes", "llama3", "mistral"])
def test_the_splice_is_the_templates_text_and_matches_a_full_reencode(tokenizer, fmt):
    model, end = build(tokenizer, fmt)
    template = TEMPLATES[fmt]
    schema = [add.__toolrun_tool__.json_schema()]
    prompt = toolrun.templates.render(model, template, USER, tools=schema)
    prompt_ids = model.encode(prompt)
    forcer = ForceText(model, len(prompt_ids), CALLS[fmt] + end)
    fed = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["input_ids"][0].tolist()), with_kwargs=True
    )
    try:
        out = toolrun.chat(
            USER,
            model=model,
            tools=[add],
            call_format=fmt,
            chat_template=template,
            max_new_tokens=len(forcer.ids) + 6,
            logits_processor=[forcer],
        )
    finally:
        hook.remove()
    (call,) = out.calls
    assert (call.name, call.result) == ("add", "5")
    assert out.call_format == fmt
    if fmt == "mistral":
        assert call.id == "abc123XYZ"  # the model's own id is kept

    # The splice is what the template renders for the tool message and the next assistant turn.
    assistant, tool_message = out.messages[:2]
    rendered = toolrun.templates.render(
        model, template, [*USER, assistant, tool_message], tools=schema
    )
    spliced = next(ids for ids in fed[1:] if len(ids) > 1)
    assert spliced[0] == model.encode(end)[0]  # the end of turn the model wrote, then the splice
    splice_text = model.decode(spliced[1:])
    assert rendered.endswith(splice_text)
    assert "5" in splice_text
    # One pass for the prompt, one per token, one for the splice: nothing is fed twice.
    assert sum(len(ids) for ids in fed) == len(prompt_ids) + len(out.token_ids) - (
        out.finish_reason == "length"
    )

    # Every step's logits equal a full re-encode of the same tokens, after the splice too.
    after = [(ids, s) for ids, s in forcer.seen if ids.shape[1] > len(prompt_ids) + len(forcer.ids)]
    assert after, "no step after the splice"
    with torch.no_grad():
        for ids, scores in after:
            full = model.model(input_ids=ids).logits[0, -1]
            assert torch.allclose(scores[0], full, atol=1e-4), float((scores[0] - full).abs().max())


@pytest.mark.parametrize("fmt", ["hermes", "llama3"])
def test_batched_chat_rows_equal_chat_alone(tokenizer, fmt):
    model, end = build(tokenizer, fmt)
    template = TEMPLATES[fmt]
    conversations = [
        USER,
        [{"role": "user", "content": "A longer question, so the rows have other lengths: 2+3?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    ]
    outs_alone = []
    for conversation in conversations:
        prompt_len = len(
            model.encode(
                toolrun.templates.render(
                    model, template, conversation, tools=[add.__toolrun_tool__.json_schema()]
                )
            )
        )
        forcer = ForceText(model, prompt_len, CALLS[fmt] + end)
        options = dict(
            model=model,
            tools=[add],
            call_format=fmt,
            chat_template=template,
            max_new_tokens=len(forcer.ids) + 8,
            logits_processor=[forcer],
        )
        outs_alone.append((toolrun.chat(conversation, **options), options))

    # One forcer per row (each knows its prompt's length); agenerate puts the rows in one batch.
    async def run():
        return await asyncio.gather(
            *(
                toolrun.agenerate(c, **options)
                for c, (_, options) in zip(conversations, outs_alone, strict=True)
            )
        )

    batched = asyncio.run(run())
    for (alone, _), out in zip(outs_alone, batched, strict=True):
        assert out.token_ids == alone.token_ids
        assert out.text == alone.text
        assert [c.result for c in out.calls] == ["5"]
        assert json.loads(out.messages[0]["tool_calls"][0]["function"]["arguments"]) == {
            "a": 2,
            "b": 3,
        }
