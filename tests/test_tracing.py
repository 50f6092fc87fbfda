"""Tracing: the span tree and metrics of a generation with two tool calls, driven the way the
decoding core drives ``GenerationTrace``, read back from the OpenTelemetry SDK's in-memory
exporter and reader."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from toolrun import tracing
from toolrun.registry import CallOutcome

SECRET = "Alice's account 4242"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self) -> dict[str, object]:
        return {span.name: span for span in self.spans.get_finished_spans()}

    def points(self, metric_name: str) -> list[object]:
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == metric_name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry():
    recorded = Telemetry()
    tracing.configure(
        tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider
    )
    yield recorded
    tracing.configure()


def _generation(calls: int = 2) -> SimpleNamespace:
    """What ``finished()`` reads from a ``toolrun.Generation``."""
    return SimpleNamespace(
        text="The sum is [Calculator(2 + 3) → 5] 5.",
        calls=[object()] * calls,
        finish_reason="eos",
        prompt_tokens=7,
        generated_tokens=21,
        spliced_tokens=4,
    )


def _drive(request_tracer, record_content_args=SECRET):
    """The core's pattern: a generation inside a server request span, two calls, one failing."""
    with request_tracer.start_as_current_span("POST /v1/completions"):
        trace = tracing.start_generation(
            model="smollm2", backend="transformers", call_format="toolformer", prompt_tokens=7
        )
    trace.first_token()
    with trace.tool_call("Calculator", "call_0", {"expression": record_content_args}) as span:
        span.record(CallOutcome("5", None, {"expression": record_content_args}, 0.01))
    with trace.tool_call("Lookup", "call_1", record_content_args) as span:
        span.record(
            CallOutcome(None, f"KeyError: {record_content_args}", {"q": record_content_args}, 0.02)
        )
    trace.finished(_generation())
    return trace


def test_span_tree_for_a_generation_with_two_calls_one_failing(telemetry):
    trace = _drive(telemetry.tracer_provider.get_tracer("server"))
    assert trace.recording is False  # ended
    spans = telemetry.finished()
    assert set(spans) == {
        "POST /v1/completions",
        "text_completion smollm2",
        "execute_tool Calculator",
        "execute_tool Lookup",
    }
    request = spans["POST /v1/completions"]
    generation = spans["text_completion smollm2"]
    ok, failing = spans["execute_tool Calculator"], spans["execute_tool Lookup"]

    # The request span parents the generation, which parents both calls: one trace.
    assert generation.parent.span_id == request.context.span_id
    assert ok.parent.span_id == generation.context.span_id
    assert failing.parent.span_id == generation.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert generation.kind == otel_trace.SpanKind.INTERNAL

    attributes = dict(generation.attributes)
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.request.model"] == "smollm2"
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 21
    assert attributes["gen_ai.response.finish_reasons"] == ("eos",)
    assert attributes["toolrun.usage.spliced_tokens"] == 4
    assert attributes["toolrun.backend"] == "transformers"
    assert attributes["toolrun.call_format"] == "toolformer"
    assert attributes["toolrun.time_to_first_token_s"] >= 0

    assert dict(ok.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "Calculator",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_0",
        "toolrun.tool.latency_s": 0.01,
    }
    assert ok.status.status_code == StatusCode.UNSET
    assert failing.status.status_code == StatusCode.ERROR
    assert failing.attributes["error.type"] == "KeyError"
    assert failing.attributes["gen_ai.tool.call.id"] == "call_1"


def test_nothing_about_arguments_or_results_by_default(telemetry, monkeypatch):
    monkeypatch.delenv(tracing.RECORD_CONTENT_ENV, raising=False)
    _drive(telemetry.tracer_provider.get_tracer("server"))
    for span in telemetry.spans.get_finished_spans():
        text = json.dumps(
            [
                dict(span.attributes),
                span.status.description,
                [dict(e.attributes) for e in span.events],
            ],
            default=str,
        )
        assert "4242" not in text, span.name
        assert "gen_ai.tool.call.arguments" not in span.attributes
        assert "gen_ai.tool.call.result" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes


@pytest.mark.parametrize("how", ["configure", "environment"])
def test_content_is_recorded_when_opted_in(telemetry, monkeypatch, how):
    if how == "configure":
        tracing.configure(
            record_content=True,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
    else:
        monkeypatch.setenv(tracing.RECORD_CONTENT_ENV, "true")
    _drive(telemetry.tracer_provider.get_tracer("server"))
    spans = telemetry.finished()
    ok, failing = spans["execute_tool Calculator"], spans["execute_tool Lookup"]
    assert json.loads(ok.attributes["gen_ai.tool.call.arguments"]) == {"expression": SECRET}
    assert ok.attributes["gen_ai.tool.call.result"] == "5"
    assert failing.attributes["gen_ai.tool.call.arguments"] == SECRET  # bracket text as is
    assert failing.status.description == f"KeyError: {SECRET}"
    (message,) = json.loads(spans["text_completion smollm2"].attributes["gen_ai.output.messages"])
    assert message["parts"][0]["content"].startswith("The sum is")


def test_metrics_count_calls_failures_latency_and_tokens(telemetry):
    tracer = telemetry.tracer_provider.get_tracer("server")
    _drive(tracer)
    _drive(tracer)
    calls = {
        p.attributes["gen_ai.tool.name"]: p.value for p in telemetry.points("toolrun.tool.calls")
    }
    assert calls == {"Calculator": 2, "Lookup": 2}
    (failures,) = telemetry.points("toolrun.tool.failures")
    assert failures.value == 2
    assert failures.attributes["gen_ai.tool.name"] == "Lookup"
    assert failures.attributes["error.type"] == "KeyError"
    durations = {
        p.attributes["gen_ai.tool.name"]: (p.count, p.sum)
        for p in telemetry.points("gen_ai.execute_tool.duration")
    }
    assert durations["Calculator"] == (2, pytest.approx(0.02))
    assert durations["Lookup"] == (2, pytest.approx(0.04))
    assert [p.value for p in telemetry.points("toolrun.tokens.generated")] == [42]
    assert [p.value for p in telemetry.points("toolrun.tokens.spliced")] == [8]
    usage = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert usage == {"input": 14, "output": 42}
    (first_token,) = telemetry.points("gen_ai.server.time_to_first_token")
    assert first_token.count == 2


def test_refusals_and_timeouts_get_their_own_error_types(telemetry):
    trace = tracing.start_generation(model="m", backend="b", call_format="f", prompt_tokens=1)
    errors = {
        "c0": "timed out after 10 s",
        "c1": "invalid arguments: a: field required",
        "c2": "call limit reached (1 per generation)",
        "c3": "unknown tool 'Nope' (available: Calculator)",
        "c4": "the page is empty",  # a ToolError's own words
        "c5": "ZeroDivisionError",
    }
    for call_id, error in errors.items():
        with trace.tool_call("T", call_id, None) as span:
            span.record(CallOutcome(None, error, None, 0.0))
    trace.finished(_generation(0))
    kinds = {
        s.attributes["gen_ai.tool.call.id"]: s.attributes["error.type"]
        for s in telemetry.spans.get_finished_spans()
        if s.name == "execute_tool T"
    }
    assert kinds == {
        "c0": "timeout",
        "c1": "invalid_arguments",
        "c2": "refused",
        "c3": "unknown_tool",
        "c4": "tool_error",
        "c5": "ZeroDivisionError",
    }


def test_a_failed_generation_and_an_exception_inside_a_call(telemetry):
    trace = tracing.start_generation(model="m", backend="b", call_format="f", prompt_tokens=1)
    with pytest.raises(RuntimeError), trace.tool_call("T", "c0", None):
        raise RuntimeError("tool runner broke")
    trace.failed(ValueError("bad option"))
    trace.finished(_generation())  # ignored: the span already ended
    spans = telemetry.finished()
    generation, call = spans["text_completion m"], spans["execute_tool T"]
    assert generation.status.status_code == StatusCode.ERROR
    assert generation.attributes["error.type"] == "ValueError"
    assert "gen_ai.usage.output_tokens" not in generation.attributes
    assert [e.name for e in generation.events] == ["exception"]
    assert call.attributes["error.type"] == "RuntimeError"
    assert call.parent.span_id == generation.context.span_id


def test_a_tools_own_spans_nest_under_its_call_and_concurrent_calls_stay_apart(telemetry):
    inner_tracer = telemetry.tracer_provider.get_tracer("a tool's library")
    trace = tracing.start_generation(
        model="m", backend="b", call_format="f", prompt_tokens=1, operation="chat"
    )

    async def run(call_id: str) -> None:
        with trace.tool_call("Fetch", call_id, None) as span:
            await asyncio.sleep(0.01)  # the other call starts meanwhile
            with inner_tracer.start_as_current_span(f"GET {call_id}"):
                pass
            span.record(CallOutcome("ok", None, None, 0.01))

    async def main() -> None:
        await asyncio.gather(run("a"), run("b"))

    asyncio.run(main())
    trace.finished(_generation(0))
    spans = telemetry.spans.get_finished_spans()
    calls = {
        s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name == "execute_tool Fetch"
    }
    inner = {s.name: s for s in spans if s.name.startswith("GET")}
    assert inner["GET a"].parent.span_id == calls["a"].context.span_id
    assert inner["GET b"].parent.span_id == calls["b"].context.span_id
    (generation,) = [s for s in spans if s.name == "chat m"]
    assert generation.attributes["gen_ai.operation.name"] == "chat"


def test_a_tool_span_outside_a_generation_parents_to_the_current_span(telemetry):
    tracer = telemetry.tracer_provider.get_tracer("mcp server")
    with tracer.start_as_current_span("tools/call"), tracing.tool_call("T", "", {}) as span:
        span.record(CallOutcome("ok", None, {}, 0.0))
    spans = telemetry.finished()
    assert spans["execute_tool T"].parent.span_id == spans["tools/call"].context.span_id
    assert "gen_ai.tool.call.id" not in spans["execute_tool T"].attributes


def test_without_a_provider_it_is_the_shared_no_op():
    tracing.configure()
    assert type(otel_trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    trace = tracing.start_generation(model="m", backend="b", call_format="f", prompt_tokens=1)
    assert type(trace) is tracing.GenerationTrace
    assert not trace.recording
    with trace.tool_call("T", "c", {"x": 1}) as span:
        span.record(CallOutcome("ok", None, {}, 0.0))
    assert trace.tool_call("U", "d", None) is trace.tool_call("T", "c", None)
    trace.finished(_generation())
    trace.failed(RuntimeError())


def test_importing_toolrun_imports_neither_opentelemetry_nor_mcp():
    code = (
        "import sys, toolrun, toolrun.tracing as t\n"
        "g = t.start_generation(model='m', backend='b', call_format='f', prompt_tokens=1)\n"
        "with g.tool_call('T', 'c', None) as s: pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'mcp'))\n"
        "print(type(g).__name__, bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert out.stdout.strip() == "GenerationTrace []"


def test_setup_from_cli_prints_spans_when_no_otlp_exporter_is_installed():
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from toolrun import tracing\n"
        "print(tracing.setup_from_cli())\n"
        "g = tracing.start_generation(model='m', backend='b', call_format='f', prompt_tokens=1)\n"
        "g.finished(type('G', (), {'generated_tokens': 3, 'finish_reason': 'eos'})())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert out.stdout.startswith("standard error"), out.stderr
    assert '"name": "text_completion m"' in out.stderr, out.stderr
    assert '"service.name": "toolrun"' in out.stderr
