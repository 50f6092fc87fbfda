"""OpenTelemetry traces and metrics of every generation and every tool call in it.

A span per generation (``text_completion {model}`` or ``chat {model}``: the model, token counts,
finish reason, time to first token) with a child span per tool call (``execute_tool {name}``:
the tool, the call id, latency, outcome), named and attributed as the OpenTelemetry GenAI
semantic conventions spell them, so Jaeger, Phoenix, Langfuse or Logfire show them as they show
any agent's. The generation span's parent is whatever span is current when it starts (the
server's request span). Arguments and results are recorded only when opted in, since they can
hold private data: ``configure(record_content=True)`` or the conventions' variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Metrics: ``toolrun.tool.calls`` and ``toolrun.tool.failures`` (by tool), the conventions'
``gen_ai.execute_tool.duration`` (by tool), ``toolrun.tokens.generated``,
``toolrun.tokens.spliced``, ``gen_ai.client.token.usage`` and
``gen_ai.server.time_to_first_token``.

It uses only the OpenTelemetry API (``pip install 'toolrun[otel]'``) and costs next to nothing
when that is not installed, not imported or has no provider configured: ``start_generation``
then returns a shared no-op trace. This module never imports OpenTelemetry itself until a
provider could exist (someone imported ``opentelemetry.trace``), so ``import toolrun`` stays
free of it. ``setup_from_cli()`` configures the SDK for the CLI's ``--otel`` flag.

How the decoding core uses it:

    trace = tracing.start_generation(model=..., backend=..., call_format=..., prompt_tokens=n)
    try:
        ...                                   # at the first token: trace.first_token()
        with trace.tool_call(name, call_id, arguments) as span:
            outcome = registry.call(...)      # also for calls refused before running
            span.record(outcome)
        trace.finished(generation)
    except BaseException as exc:
        trace.failed(exc)
        raise
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from .registry import CallOutcome
    from .results import Generation

__all__ = [
    "OTEL_FLAG_HELP",
    "RECORD_CONTENT_ENV",
    "GenerationTrace",
    "ToolSpan",
    "add_cli_argument",
    "configure",
    "request_span",
    "setup_from_cli",
    "start_generation",
    "tool_call",
]

RECORD_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The GenAI instrumentations' opt-in for recording content (arguments, results, output)."""

_INSTRUMENTATION = "toolrun"
_TOOL_TYPE = "function"
# Refusals and other failures the registry reports as text, mapped to a low-cardinality
# error.type; an exception's text starts with its type name ("ZeroDivisionError: ...").
_ERROR_PREFIXES = (
    ("timed out", "timeout"),
    ("invalid arguments", "invalid_arguments"),
    ("unknown tool", "unknown_tool"),
    ("call limit reached", "refused"),
    ("approval failed", "refused"),
)
_NON_PROVIDERS = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"}
)


class ToolSpan:
    """One tool call's span. ``record(outcome)`` gives it the call's outcome."""

    __slots__ = ()

    def record(self, outcome: CallOutcome) -> None:
        """Note the outcome (error or result, latency); the span ends when the block exits."""


class _NoToolCall:
    """The context manager a no-op trace hands out for every call: stateless, so shared."""

    __slots__ = ()

    def __enter__(self) -> ToolSpan:
        return _NO_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


class GenerationTrace:
    """One generation's trace. This base class records nothing: it is what tracing costs when
    it is off. ``start_generation`` returns a recording one when a provider is configured."""

    __slots__ = ()

    @property
    def recording(self) -> bool:
        return False

    def first_token(self) -> None:
        """The model chose its first token (time to first token); later calls are ignored."""

    def tool_call(self, name: str, call_id: str, arguments: object) -> _NoToolCall | _ToolCall:
        """A context manager around one tool execution, yielding its ToolSpan.

        Enter it in the task or thread that runs the call (a tool's own spans nest under it
        when it runs there) and exit it in the same one."""
        return _NO_TOOL_CALL

    def finished(self, generation: Generation) -> None:
        """The generation ended: token counts and finish reason; ends the span."""

    def failed(self, exc: BaseException) -> None:
        """The generation raised (or was cancelled): ends the span as an error."""


_NO_SPAN = ToolSpan()
_NO_TOOL_CALL = _NoToolCall()
_NO_TRACE = GenerationTrace()


def start_generation(
    *,
    model: str,
    backend: str,
    call_format: str,
    prompt_tokens: int,
    operation: str = "text_completion",
) -> GenerationTrace:
    """Start one generation's trace; the OpenTelemetry context current now is its parent.

    ``operation`` is the conventions' ``gen_ai.operation.name``: "text_completion" for a
    prompt, "chat" for messages.
    """
    if "opentelemetry.trace" not in sys.modules and _config.tracer_provider is None:
        return _NO_TRACE  # nobody can have configured a provider: the common, free case
    telemetry = _telemetry()
    if telemetry is None:
        return _NO_TRACE
    return _LiveGenerationTrace(
        telemetry,
        model=model,
        backend=backend,
        call_format=call_format,
        prompt_tokens=prompt_tokens,
        operation=operation,
    )


def request_span(method: str, route: str) -> contextlib.AbstractContextManager[object]:
    """A server span around one HTTP request, current while it is handled and answered, so the
    generations it starts are its children. A no-op when tracing is off."""
    if "opentelemetry.trace" not in sys.modules and _config.tracer_provider is None:
        return contextlib.nullcontext()
    telemetry = _telemetry()
    if telemetry is None:
        return contextlib.nullcontext()
    from opentelemetry import trace

    span: contextlib.AbstractContextManager[object] = telemetry.tracer.start_as_current_span(
        f"{method} {route}",
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route},
    )
    return span


def tool_call(name: str, call_id: str, arguments: object) -> _NoToolCall | _ToolCall:
    """A tool span outside any generation (``toolrun mcp-serve`` runs calls for clients); its
    parent is the current span."""
    if "opentelemetry.trace" not in sys.modules and _config.tracer_provider is None:
        return _NO_TOOL_CALL
    telemetry = _telemetry()
    if telemetry is None:
        return _NO_TOOL_CALL
    from opentelemetry import context

    return _ToolCall(telemetry, context.get_current(), name, call_id, arguments)


@dataclass
class _Config:
    record_content: bool | None = None  # None: read the environment variable
    tracer_provider: Any = None
    meter_provider: Any = None


_config = _Config()


def configure(
    *,
    record_content: bool | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    """Set what is recorded and where.

    ``record_content``: record tool arguments and results, and the generated text (off by
    default; None leaves it to ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
    ``tracer_provider`` / ``meter_provider``: use these instead of the global ones (tests,
    apps that keep several); None means the global providers.
    """
    _config.record_content = record_content
    _config.tracer_provider = tracer_provider
    _config.meter_provider = meter_provider


def _record_content() -> bool:
    if _config.record_content is not None:
        return _config.record_content
    value = os.environ.get(RECORD_CONTENT_ENV, "").strip().lower()
    return value in ("1", "true", "yes", "span_only", "span_and_event")


@dataclass
class _Telemetry:
    """The tracer and the metric instruments of one (tracer provider, meter provider) pair."""

    tracer: Any
    tool_calls: Any
    tool_failures: Any
    tool_duration: Any
    tokens_generated: Any
    tokens_spliced: Any
    token_usage: Any
    time_to_first_token: Any
    record_content: bool


_cache: tuple[Any, Any, _Telemetry | None] | None = None
_api: tuple[Any, Any] | None = None  # the opentelemetry.trace and .metrics modules, once imported


def _telemetry() -> _Telemetry | None:
    """The instruments for the providers in force now, or None when none is configured."""
    global _cache, _api
    if _api is None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            return None
        _api = (trace, metrics)
    trace, metrics = _api
    tracer_provider = _config.tracer_provider or trace.get_tracer_provider()
    meter_provider = _config.meter_provider or metrics.get_meter_provider()
    cached = _cache
    if cached is not None and cached[0] is tracer_provider and cached[1] is meter_provider:
        telemetry = cached[2]
    else:
        telemetry = None
        if (
            type(tracer_provider).__name__ not in _NON_PROVIDERS
            or type(meter_provider).__name__ not in _NON_PROVIDERS
        ):
            telemetry = _build_telemetry(tracer_provider, meter_provider)
        _cache = (tracer_provider, meter_provider, telemetry)
    if telemetry is not None:
        telemetry.record_content = _record_content()
    return telemetry


def _build_telemetry(tracer_provider: Any, meter_provider: Any) -> _Telemetry:
    from . import __version__

    tracer = tracer_provider.get_tracer(_INSTRUMENTATION, __version__)
    meter = meter_provider.get_meter(_INSTRUMENTATION, __version__)
    return _Telemetry(
        tracer=tracer,
        tool_calls=meter.create_counter(
            "toolrun.tool.calls", unit="{call}", description="Tool calls made during generation"
        ),
        tool_failures=meter.create_counter(
            "toolrun.tool.failures",
            unit="{call}",
            description="Tool calls that ended in an error (the model read error text)",
        ),
        tool_duration=meter.create_histogram(
            "gen_ai.execute_tool.duration", unit="s", description="Tool execution time"
        ),
        tokens_generated=meter.create_counter(
            "toolrun.tokens.generated", unit="{token}", description="Tokens the model chose"
        ),
        tokens_spliced=meter.create_counter(
            "toolrun.tokens.spliced",
            unit="{token}",
            description="Result tokens the runtime fed into the cache",
        ),
        token_usage=meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per generation"
        ),
        time_to_first_token=meter.create_histogram(
            "gen_ai.server.time_to_first_token", unit="s", description="Time to first token"
        ),
        record_content=False,
    )


class _LiveGenerationTrace(GenerationTrace):
    __slots__ = (
        "_attributes",
        "_context",
        "_ended",
        "_first_token",
        "_span",
        "_started",
        "_telemetry",
    )

    def __init__(
        self,
        telemetry: _Telemetry,
        *,
        model: str,
        backend: str,
        call_format: str,
        prompt_tokens: int,
        operation: str,
    ) -> None:
        from opentelemetry import context, trace

        self._telemetry = telemetry
        self._started = time.perf_counter()
        self._first_token: float | None = None
        self._ended = False
        self._attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": _INSTRUMENTATION,
            "gen_ai.request.model": model,
        }
        parent = context.get_current()
        # INTERNAL: the conventions' kind for a model that runs in this process.
        self._span = telemetry.tracer.start_span(
            f"{operation} {model}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes={
                **self._attributes,
                "gen_ai.usage.input_tokens": prompt_tokens,
                "toolrun.backend": backend,
                "toolrun.call_format": call_format,
            },
        )
        self._context = trace.set_span_in_context(self._span, parent)

    @property
    def recording(self) -> bool:
        return bool(self._span.is_recording())

    def first_token(self) -> None:
        if self._first_token is not None:
            return
        self._first_token = elapsed = time.perf_counter() - self._started
        self._span.set_attribute("toolrun.time_to_first_token_s", elapsed)
        self._telemetry.time_to_first_token.record(elapsed, self._attributes)

    def tool_call(self, name: str, call_id: str, arguments: object) -> _ToolCall:
        return _ToolCall(self._telemetry, self._context, name, call_id, arguments)

    def finished(self, generation: Generation) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        telemetry = self._telemetry
        prompt = int(getattr(generation, "prompt_tokens", 0))
        generated = int(getattr(generation, "generated_tokens", 0))
        spliced = int(getattr(generation, "spliced_tokens", 0))
        finish = str(getattr(generation, "finish_reason", ""))
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": prompt,
                "gen_ai.usage.output_tokens": generated,
                "gen_ai.response.finish_reasons": [finish],
                "toolrun.usage.spliced_tokens": spliced,
                "toolrun.tool_calls": len(getattr(generation, "calls", ())),
            }
        )
        if telemetry.record_content:
            message = {
                "role": "assistant",
                "parts": [{"type": "text", "content": getattr(generation, "text", "")}],
                "finish_reason": finish,
            }
            span.set_attribute("gen_ai.output.messages", json.dumps([message], ensure_ascii=False))
        span.end()
        attributes = self._attributes
        telemetry.tokens_generated.add(generated, attributes)
        telemetry.tokens_spliced.add(spliced, attributes)
        telemetry.token_usage.record(prompt, {**attributes, "gen_ai.token.type": "input"})
        telemetry.token_usage.record(generated, {**attributes, "gen_ai.token.type": "output"})

    def failed(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        _mark_error(self._span, type(exc).__qualname__, exc)
        self._span.end()


class _ToolCall:
    """The context manager around one call: starts ``execute_tool {name}``, makes it current
    while the block runs, and ends it with the recorded outcome."""

    __slots__ = (
        "_arguments",
        "_call_id",
        "_entered",
        "_name",
        "_parent",
        "_recorded",
        "_span",
        "_telemetry",
        "_token",
    )

    def __init__(
        self, telemetry: _Telemetry, parent: Any, name: str, call_id: str, arguments: object
    ) -> None:
        self._telemetry = telemetry
        self._parent = parent
        self._name = name
        self._call_id = call_id
        self._arguments = arguments
        self._span: Any = None
        self._token: Any = None
        self._entered = 0.0
        self._recorded = False

    def __enter__(self) -> _LiveToolSpan:
        from opentelemetry import context, trace

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self._name,
            "gen_ai.tool.type": _TOOL_TYPE,
        }
        if self._call_id:
            attributes["gen_ai.tool.call.id"] = self._call_id
        if self._telemetry.record_content and self._arguments is not None:
            attributes["gen_ai.tool.call.arguments"] = _as_json(self._arguments)
        self._span = self._telemetry.tracer.start_span(
            f"execute_tool {self._name}",
            context=self._parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
        )
        self._token = context.attach(trace.set_span_in_context(self._span, self._parent))
        self._entered = time.perf_counter()
        return _LiveToolSpan(self)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        from opentelemetry import context

        span = self._span
        if exc is not None:
            _mark_error(span, type(exc).__qualname__, exc)
            self._count(error_type=type(exc).__qualname__, latency=None)
        elif not self._recorded:  # no outcome given: count the call, timed by the block
            self._count(error_type=None, latency=time.perf_counter() - self._entered)
        span.end()
        with contextlib.suppress(Exception):  # exited in another context: the span is ended
            context.detach(self._token)

    def _record(self, outcome: CallOutcome) -> None:
        if self._recorded:
            return
        self._recorded = True
        span = self._span
        error = outcome.error
        latency = float(outcome.latency_s or 0.0)
        span.set_attribute("toolrun.tool.latency_s", latency)
        if error is not None:
            error_type = getattr(outcome, "error_type", None) or _error_type(error)
            span.set_attribute("error.type", error_type)
            from opentelemetry.trace import Status, StatusCode

            # The message can quote the arguments, so it is content too.
            description = error if self._telemetry.record_content else None
            span.set_status(Status(StatusCode.ERROR, description))
        else:
            error_type = None
            if self._telemetry.record_content and outcome.result is not None:
                span.set_attribute("gen_ai.tool.call.result", outcome.result)
        self._count(error_type=error_type, latency=latency)

    def _count(self, *, error_type: str | None, latency: float | None) -> None:
        telemetry = self._telemetry
        attributes: dict[str, str] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self._name,
        }
        if error_type is not None:
            attributes["error.type"] = error_type
            telemetry.tool_failures.add(1, attributes)
        telemetry.tool_calls.add(1, {"gen_ai.tool.name": self._name})
        if latency is not None:
            telemetry.tool_duration.record(latency, attributes)


class _LiveToolSpan(ToolSpan):
    __slots__ = ("_call",)

    def __init__(self, call: _ToolCall) -> None:
        self._call = call

    def record(self, outcome: CallOutcome) -> None:
        self._call._record(outcome)


def _mark_error(span: Any, error_type: str, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}" if str(exc) else error_type))


def _error_type(error: str) -> str:
    """A low-cardinality class for a call's error text (never the text itself)."""
    lowered = error.lower()
    for prefix, kind in _ERROR_PREFIXES:
        if lowered.startswith(prefix):
            return kind
    if "needs approval" in lowered or "was not approved" in lowered:
        return "refused"
    head, colon, _ = error.partition(":")
    if (colon or head == error) and head.replace(".", "").isidentifier() and head[:1].isupper():
        return head  # "ZeroDivisionError: division by zero" -> ZeroDivisionError
    return "tool_error"  # a ToolError's own message


def _as_json(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        value = dict(value)
    return json.dumps(value, ensure_ascii=False, default=str)


# The CLI's --otel flag.

OTEL_FLAG_HELP = (
    "send OpenTelemetry traces and metrics: to the OTLP endpoint in OTEL_EXPORTER_OTLP_ENDPOINT "
    "when opentelemetry-exporter-otlp is installed, else spans to standard error"
)


def add_cli_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--otel`` to a command; call ``setup_from_cli()`` when it is given."""
    parser.add_argument("--otel", action="store_true", help=OTEL_FLAG_HELP)


def setup_from_cli(service_name: str = "toolrun") -> str:
    """Configure the OpenTelemetry SDK for a CLI command; returns where the data goes.

    With ``opentelemetry-exporter-otlp`` installed, spans and metrics go to the OTLP collector
    the standard ``OTEL_EXPORTER_OTLP_*`` variables name (http/protobuf to localhost:4318 by
    default, gRPC when ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``); without it, spans are printed to
    standard error. A provider someone already set (``opentelemetry-instrument``) is kept.
    Raises ToolConfigError when the SDK is not installed.
    """
    from .errors import ToolConfigError

    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ToolConfigError(
            "--otel needs the OpenTelemetry SDK: pip install 'toolrun[otel]' opentelemetry-sdk "
            "(and opentelemetry-exporter-otlp to send to a collector)"
        ) from None
    if type(trace.get_tracer_provider()).__name__ not in _NON_PROVIDERS:
        return "the tracer provider already configured"
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    exporters = _otlp_exporters()
    tracer_provider = TracerProvider(resource=resource)
    if exporters is None:
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        trace.set_tracer_provider(tracer_provider)
        return "standard error (install opentelemetry-exporter-otlp to send to a collector)"
    span_exporter, metric_exporter, protocol = exporters
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    if type(metrics.get_meter_provider()).__name__ in _NON_PROVIDERS:
        reader = PeriodicExportingMetricReader(metric_exporter)
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    return f"the OTLP collector ({protocol})"


def _otlp_exporters() -> tuple[Any, Any, str] | None:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            protocol = "http/protobuf"
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
    except ImportError:
        return None
    return OTLPSpanExporter(), OTLPMetricExporter(), protocol
