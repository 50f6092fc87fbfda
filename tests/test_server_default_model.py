"""``toolrun serve`` end to end on the real default model: the finetuned model calls the server's
Calculator by itself mid-answer, through the openai client, plain and streamed."""

from __future__ import annotations

import openai
import pytest
import torch

import toolrun
from toolrun.server import create_app
from toolrun.server.testing import LiveServer

pytestmark = pytest.mark.slow

QUESTION = "A box holds 24 pens. How many pens are in 17 boxes?"


def test_the_default_model_calls_the_server_calculator_by_itself():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = toolrun.load_model()
        with LiveServer(create_app(model, ["calculator"])) as live:
            api = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
            (card,) = api.models.list().data
            messages = [{"role": "user", "content": QUESTION}]
            out = api.chat.completions.create(model=card.id, messages=messages, max_tokens=60)
            chunks = list(
                api.chat.completions.create(
                    model=card.id, messages=messages, max_tokens=60, stream=True
                )
            )
    finally:
        torch.set_num_threads(before)

    message = out.choices[0].message
    calls = message.server_tool_calls
    assert calls, message.content
    assert calls[0]["function"]["name"] == "Calculator" and calls[0]["error"] is None
    # the bracket format keeps the call and its result in the text, as generate() does
    assert f"→ {calls[0]['result']}]" in message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == message.content  # greedy: the same answer, streamed
