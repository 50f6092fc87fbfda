"""Many streaming clients at once: each gets its own text, its own calls and its own ids.

64 chat requests stream at the same time from the async openai client. A tiny random Llama,
with a plan that makes every conversation call the server's Calculator on its own numbers, so a
mixed-up row would show up as another request's numbers in a response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.server import ServerSettings, create_app
from toolrun.server.testing import LiveServer
from toolrun.templates import render
from toolrun.testing import PlannedCalls

CLIENTS = 64


@toolrun.tool(name="Calculator")
async def calc(expression: str) -> str:
    """Sums integers, slowly, as a networked tool would."""
    await asyncio.sleep(0.05)
    return str(sum(int(p) for p in expression.split("+")))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {i}: add the numbers."}]


def test_64_concurrent_streams_keep_their_own_rows(tiny_llama, tokenizer):
    model = TransformersModel(tiny_llama, tokenizer)
    template = tokenizer.chat_template
    plans = {
        render(model, template, question(i)): [(1 + i % 3, f" [Calculator({1000 * i} + {i}) →")]
        for i in range(CLIENTS)
    }
    settings = ServerSettings(
        chat_template=template, decoding={"logits_processor": [PlannedCalls(model, plans)]}
    )
    app = create_app(model, [calc], settings=settings)
    with LiveServer(app) as live:

        async def one(api: openai.AsyncOpenAI, i: int) -> dict[str, Any]:
            stream = await api.chat.completions.create(
                model=model.name, messages=question(i), max_tokens=32, stream=True
            )
            out: dict[str, Any] = {"text": "", "ids": set(), "calls": [], "finish": None}
            async for chunk in stream:
                out["ids"].add(chunk.id)
                delta = chunk.choices[0].delta
                out["text"] += delta.content or ""
                out["calls"] += getattr(delta, "server_tool_calls", None) or []
                out["finish"] = chunk.choices[0].finish_reason or out["finish"]
            return out

        async def main() -> list[dict[str, Any]]:
            api = openai.AsyncOpenAI(
                base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=120
            )
            try:
                return await asyncio.gather(*(one(api, i) for i in range(CLIENTS)))
            finally:
                await api.close()

        results = asyncio.run(main())
        engine = app.state.engine
        assert engine.in_flight == 0 and engine.active_rows == 0

    assert all(len(r["ids"]) == 1 for r in results)
    assert len(set().union(*(r["ids"] for r in results))) == CLIENTS  # every stream its own id
    assert all(r["finish"] in ("stop", "length") for r in results)
    for i, r in enumerate(results):
        assert f"[Calculator({1000 * i} + {i}) → {1001 * i}]" in r["text"], (i, r["text"])
        (call,) = r["calls"]
        assert call["result"] == str(1001 * i) and call["function"]["name"] == "Calculator"
    assert len({c["id"] for r in results for c in r["calls"]}) == CLIENTS
    assert engine.runtime.steps < CLIENTS * 32  # the rows shared forward passes
