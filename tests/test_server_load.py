"""Many streaming clients at once: each gets its own text, its own calls and its own ids.

A tiny random Llama, with a plan that makes every prompt call the Calculator on its own numbers,
so a mixed-up row would show up as another prompt's numbers in a response.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.server import ServerSettings, create_app
from toolrun.server.testing import LiveServer
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


def prompt_of(i: int) -> str:
    return f"Request {i}: add the numbers."


def test_concurrent_streams_keep_their_own_rows(tiny_llama, tokenizer):
    model = TransformersModel(tiny_llama, tokenizer)
    plans = {
        prompt_of(i): [(1 + i % 3, f" [Calculator({1000 * i} + {i}) →")] for i in range(CLIENTS)
    }
    settings = ServerSettings(
        max_batch=CLIENTS, decoding={"logits_processor": [PlannedCalls(model, plans)]}
    )
    app = create_app(model, [calc], settings=settings)
    with LiveServer(app) as live:

        async def one(api: openai.AsyncOpenAI, i: int) -> tuple[str, set[str], list[dict]]:
            stream = await api.completions.create(
                model=model.name, prompt=prompt_of(i), max_tokens=32, stream=True
            )
            text, ids, calls = "", set(), []
            async for chunk in stream:
                ids.add(chunk.id)
                choice = chunk.choices[0]
                text += choice.text
                calls += getattr(choice, "server_tool_calls", None) or []
            return text, ids, calls

        async def main() -> list[tuple[str, set[str], list[dict]]]:
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

    stream_ids = [ids for _, ids, _ in results]
    assert all(len(ids) == 1 for ids in stream_ids)
    assert len(set().union(*stream_ids)) == CLIENTS  # every stream has its own id
    for i, (text, _, calls) in enumerate(results):
        expression = f"{1000 * i} + {i}"
        assert f"[Calculator({expression}) → {1001 * i}]" in text, (i, text)
        (call,) = calls
        assert call["result"] == str(1001 * i) and call["function"]["name"] == "Calculator"
    assert engine.runtime.steps < CLIENTS * 32  # rows shared forward passes
