"""Bearer-token authentication: with an API key set, requests must carry it."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from .errors import APIError

__all__ = ["check_bearer"]


def check_bearer(request: Request, api_key: str | None) -> None:
    """Raise 401 unless ``Authorization: Bearer <api_key>`` (or no key is configured)."""
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refused("no API key given: send 'Authorization: Bearer <key>'")
    # compare_digest: the time taken does not tell an attacker how much of the key matched
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise _refused("incorrect API key")


def _refused(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
