"""Server-sent events as the OpenAI API streams them: ``data: {json}`` frames, then ``[DONE]``.

The chunks are produced by a task apart from the response, so the response can send a comment
line while the model is busy (a long tool call, a full queue): proxies keep the connection, and a
client that left is noticed. When the response ends early, for whatever reason, the producer is
cancelled, which cancels its row in the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .errors import APIError, error_body

__all__ = ["KEEPALIVE_S", "EventStream", "event_stream"]

KEEPALIVE_S = 10.0
logger = logging.getLogger("toolrun.server")


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that calls ``on_close`` however it ends.

    (A generator's ``finally`` is not enough: a client gone before the first byte means the
    body is never iterated, so the generator never starts and its cleanup never runs.)
    """

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def event_stream(
    chunks: AsyncGenerator[dict[str, Any], None], on_close: Callable[[], None]
) -> EventStream:
    """``chunks`` as server-sent events, each one JSON frame, then ``[DONE]``."""
    return EventStream(_frames(chunks), on_close)


def frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


async def _frames(chunks: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    queue.put_nowait(frame(chunk))
        except APIError as exc:  # a failure after the headers went out: an error frame
            queue.put_nowait(frame(exc.body()))
        except Exception as exc:
            logger.exception("a streamed request failed")
            body = error_body(f"{type(exc).__name__}: {exc}", "server_error")
            queue.put_nowait(frame(body))
        finally:
            queue.put_nowait(None)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is None:
                break
            yield item
        yield b"data: [DONE]\n\n"
    finally:
        producer.cancel()  # the client left (or the response failed): free the row
