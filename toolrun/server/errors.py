"""Errors on the wire: the OpenAI API's own error object, for every way a request can fail.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens",
               "code": "integer_above_max_value"}}

Handlers raise ``APIError``; the app turns it, FastAPI's validation errors, unknown routes and
unexpected exceptions into that shape, so the openai SDK raises its matching exception class
(400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 503 InternalServerError ...).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ToolrunError

__all__ = ["APIError", "error_body", "param_from_location"]

logger = logging.getLogger("toolrun.server")


class APIError(ToolrunError):
    """A request the server refuses, with the HTTP status and the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "is-instance"}


def param_from_location(location: tuple[Any, ...] | list[Any]) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``"messages[0].content"``, as OpenAI names it."""
    parts = list(location)
    if parts and parts[0] == "body":
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap"):
            continue
        elif isinstance(part, str) and ("[" in part or part in _TYPE_TAGS):
            continue  # pydantic's union-member tags ("str", "list[str]", "literal['auto']")
        else:
            text += f".{part}" if text else str(part)
    return text or None
