"""Tracing wired into the decoding core: real generations (sync, streamed, batched, chat) make the
span tree the GenAI conventions describe, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import toolrun
from toolrun import tracing
from toolrun.templates import HERMES_CHATML
from toolrun.testing import ScriptedModel


@toolrun.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@toolrun.tool
def boom(x: int) -> int:
    """Always fails."""
    raise RuntimeError("sensor offline")


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(tracer_provider=provider)
    yield exporter, provider
    tracing.configure()


def test_a_generation_with_two_calls_one_failing(spans):
    exporter, provider = spans
    model = ScriptedModel(["A [add(2, 3) →", " and [boom(1) →", " done."])
    with provider.get_tracer("app").start_as_current_span("request"):
        out = toolrun.generate("Q:", model=model, tools=[add, boom])
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    generation = by_name["text_completion scripted"]
    assert generation.parent.span_id == by_name["request"].context.span_id
    add_span, boom_span = by_name["execute_tool add"], by_name["execute_tool boom"]
    for span, call in zip((add_span, boom_span), out.calls, strict=True):
        assert span.parent.span_id == generation.context.span_id
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.name"] == call.name
        assert span.attributes["gen_ai.tool.call.id"] == call.id
    assert boom_span.status.status_code == StatusCode.ERROR
    assert add_span.status.status_code != StatusCode.ERROR
    assert generation.attributes["gen_ai.usage.output_tokens"] == out.generated_tokens
    assert generation.attributes["gen_ai.response.finish_reasons"] == ("eos",)
    # Nothing about arguments or results unless the app opts in.
    recorded = json.dumps([dict(s.attributes) for s in exporter.get_finished_spans()])
    assert "sensor offline" not in recorded and "The answer" not in recorded
    assert '"a": 2' not in recorded and "2, 3" not in recorded


def test_chat_batches_and_abandoned_streams_are_traced(spans):
    exporter, _ = spans
    turn = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call><|im_end|>'

    def model():
        return ScriptedModel([turn, "3"], chat_template=HERMES_CHATML)

    messages = [{"role": "user", "content": "1+2?"}]

    async def both():
        return await asyncio.gather(
            *(
                toolrun.agenerate(messages, model=model(), tools=[add], max_new_tokens=200)
                for _ in range(2)
            )
        )

    asyncio.run(both())
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("chat scripted") == 2 and names.count("execute_tool add") == 2

    exporter.clear()
    events = toolrun.stream("Q:", model=ScriptedModel("a long answer"), max_new_tokens=10)
    next(events)
    events.close()  # the app stopped reading: the generation span ends as an error
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR


def test_the_servers_request_span_parents_the_generation_and_its_calls(spans):
    pytest.importorskip("fastapi")
    import openai

    from toolrun.server import create_app
    from toolrun.server.testing import LiveServer

    exporter, _ = spans
    model = ScriptedModel(["So [add(2, 3) →", " five."])
    with LiveServer(create_app(model, [add])) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        done = client.completions.create(model="scripted", prompt="Q:", max_tokens=40)
    assert done.choices[0].text == "So [add(2, 3) → 5] five."
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    request = by_name["POST /v1/completions"]
    generation = by_name["text_completion scripted"]
    assert generation.parent.span_id == request.context.span_id
    assert by_name["execute_tool add"].parent.span_id == generation.context.span_id
