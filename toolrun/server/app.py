"""``create_app()``: the OpenAI-compatible HTTP API over toolrun's continuous-batching runtime.

    app = create_app(model, tools=["calculator"], settings=ServerSettings(api_key="..."))
    uvicorn.run(app)                      # or: toolrun serve --model ... --tools calculator

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health`` (never needs a key) and ``GET /metrics`` (Prometheus text). Every request is a row
of one ``Runtime`` on the server's event loop; errors are OpenAI error objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import pydantic
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import tracing
from ..backends.base import Model
from ..errors import GenerationOptionsError
from ..registry import ToolRegistry
from .auth import check_bearer
from .chat import chat_chunks, chat_completion, chat_state
from .completions import complete, completion_chunks, completion_state
from .engine import Engine
from .errors import APIError, error_body, param_from_location
from .limits import BodyLimit
from .metrics import Metrics
from .protocol import ChatCompletionRequest, CompletionRequest
from .settings import ServerSettings
from .sse import event_stream

__all__ = ["create_app"]

logger = logging.getLogger("toolrun.server")
Body = TypeVar("Body", bound=pydantic.BaseModel)
CLIENT_CLOSED = 499  # nginx's status for "the client went away first", for the metrics only
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


def create_app(
    model: Model | None = None,
    tools: Iterable[Any] | ToolRegistry = (),
    *,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The server as an ASGI app. ``tools`` run on the server, mid-generation.

    ``model``: from ``toolrun.load_model()`` (the default model when None). ``tools``: names,
    functions, Tools or a ToolRegistry, as ``toolrun.generate()`` takes them.
    """
    if model is None:
        from ..models import default_model

        model = default_model()
    settings = settings or ServerSettings()
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    metrics = Metrics()
    engine = Engine(model, registry, settings, metrics)

    app = FastAPI(title="toolrun", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    _add_error_handlers(app)

    def authorised(request: Request) -> None:
        check_bearer(request, settings.api_key)

    api = APIRouter(dependencies=[Depends(authorised)])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.model_id}

    @api.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(engine)]}

    @api.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str) -> dict[str, Any]:
        _check_model(engine, model_id)
        return _model_card(engine)

    @api.get("/metrics")
    async def metrics_text() -> Response:
        return PlainTextResponse(
            metrics.render(engine.gauges()), media_type="text/plain; version=0.0.4"
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        body = await _read(request, ChatCompletionRequest)
        _check_model(engine, body.model)
        state = chat_state(engine, body)  # bad requests fail here, before any stream
        release = engine.admit()
        if body.stream:
            return event_stream(chat_chunks(engine, state, body, started), release)
        try:
            result = await _unless_disconnected(
                request, chat_completion(engine, state, body, started)
            )
        finally:
            release()
        return JSONResponse(result) if result is not None else Response(status_code=CLIENT_CLOSED)

    @api.post("/v1/completions")
    async def completions(request: Request) -> Response:
        started = time.perf_counter()
        body = await _read(request, CompletionRequest)
        _check_model(engine, body.model)
        state = completion_state(engine, body)  # bad requests fail here, before any stream
        release = engine.admit()
        if body.stream:
            return event_stream(completion_chunks(engine, state, body, started), release)
        try:
            result = await _unless_disconnected(request, complete(engine, state, started))
        finally:
            release()
        return JSONResponse(result) if result is not None else Response(status_code=CLIENT_CLOSED)

    app.include_router(api)
    app.add_middleware(_Counted, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


async def _read(request: Request, schema: type[Body]) -> Body:
    """The JSON body validated against ``schema``, or a 400 naming the first bad field."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        param = param_from_location(first["loc"])
        if first["type"] == "missing":
            raise APIError(
                400,
                f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            ) from None
        kind = "invalid_type" if first["type"].endswith("_type") else "invalid_value"
        message = first["msg"].removeprefix("Value error, ")
        where = f" for '{param}'" if param else ""
        raise APIError(400, f"Invalid value{where}: {message}", param=param, code=kind) from None


def _check_model(engine: Engine, name: str) -> None:
    if name != engine.model_id:
        raise APIError(
            404,
            f"The model '{name}' does not exist; this server serves '{engine.model_id}'.",
            param="model",
            code="model_not_found",
        )


def _model_card(engine: Engine) -> dict[str, Any]:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "toolrun"}


T = TypeVar("T")


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Await ``work``, but cancel it (freeing its row) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        return None
    return task.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def options_error(request: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(str(exc), "invalid_request_error"), status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), kind, None, code),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("request failed", exc_info=exc)
        message = f"the server failed: {type(exc).__name__}: {exc}"
        return JSONResponse(error_body(message, "server_error"), status_code=500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(GenerationOptionsError, options_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class _Counted:
    """ASGI middleware: count every answered request by endpoint and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = CLIENT_CLOSED

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with tracing.request_span(scope.get("method", "GET"), endpoint):
                await self.app(scope, receive, sending)
        finally:
            self.metrics.request(endpoint, status)
