"""What a server allows: where it listens, who may call it, and how much one request may ask.

Every limit is a setting, so an app that embeds the server (``create_app(settings=...)``) and
``toolrun serve`` (one flag per field) configure the same things. The defaults are safe for a
laptop: loopback only, bounded bodies, bounded queues.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import GenerationOptionsError
from ..options import DecodingOptions

__all__ = ["API_KEY_VARIABLE", "ServerSettings"]

API_KEY_VARIABLE = "TOOLRUN_API_KEY"


def _api_key_from_environment() -> str | None:
    return os.environ.get(API_KEY_VARIABLE) or None


@dataclass
class ServerSettings:
    """The server's configuration. Unset fields have safe defaults.

    ``api_key`` defaults to ``$TOOLRUN_API_KEY``; when set, every endpoint but ``/health`` needs
    ``Authorization: Bearer <key>``. ``approve(name, arguments) -> bool`` is the approval policy
    for tools marked ``requires_approval``: without one they never run on the server.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default_factory=_api_key_from_environment)
    model_id: str | None = None
    """The name clients send as ``model``; the loaded model's name when None."""
    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    """The most tokens one request may ask the model to write."""
    default_max_tokens: int = 512
    """Used when a request names no ``max_tokens`` (capped by what the context has left)."""
    default_temperature: float = 0.0
    """Used when a request names no ``temperature``: greedy, so answers are reproducible."""
    max_batch: int = 64
    """Requests decoding together; more wait for a free row."""
    max_queue: int = 256
    """Requests waiting for a row; beyond that a request is refused with 503 at once."""
    prefix_cache_bytes: int = 256 << 20
    """Memory for the caches of finished sequences, reused by requests that extend them (a
    client-side tool loop, a multi-turn chat); 0 turns prefix reuse off."""
    context_length: int | None = None
    """Prompt plus completion tokens one request may use; the model's own window when None."""
    approve: Callable[[str, dict[str, Any]], bool] | None = None
    call_format: str | None = None
    """How the model writes calls (toolformer, hermes, llama3, mistral); detected when None."""
    chat_template: str | None = None
    """A Jinja chat template to use instead of the model's own."""
    decoding: dict[str, Any] = field(default_factory=dict)
    """Options every request gets beneath its own (``toolrun.generate()``'s names), e.g.
    ``{"api_start_top_k": 10}`` or ``{"max_calls": 4}``."""

    def __post_init__(self) -> None:
        positive = {
            "port": self.port,
            "max_body_bytes": self.max_body_bytes,
            "max_tokens": self.max_tokens,
            "default_max_tokens": self.default_max_tokens,
            "max_batch": self.max_batch,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise GenerationOptionsError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.prefix_cache_bytes, int) or self.prefix_cache_bytes < 0:
            raise GenerationOptionsError("prefix_cache_bytes must be an integer >= 0")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise GenerationOptionsError(f"max_queue must be an integer >= 0, got {self.max_queue}")
        if self.context_length is not None and self.context_length < 2:
            raise GenerationOptionsError(f"context_length must be >= 2, got {self.context_length}")
        if self.default_temperature < 0:
            raise GenerationOptionsError("default_temperature must be >= 0")
        DecodingOptions.build(**self.decoding)  # unknown names fail at start, not per request
