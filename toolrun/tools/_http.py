"""Guarded HTTP for the networked tools: timeouts, a size cap, bounded retries, a host allowlist.

The model chooses what a networked tool asks, never where it asks: every request (and every
redirect) must go to an allowed host, must connect and answer within the timeouts, and may not
return more than ``max_bytes``. Connection failures and 5xx answers are retried a few times with
exponential backoff; a slow answer is not. The whole request, retries and redirects included,
has one deadline (``deadline_s``, or the calling tool's own deadline when that comes first):
per-read timeouts alone cannot stop a server that drips a byte at a time, so the connection is
cut when the deadline passes. Every failure is an ``HttpError``, a ToolError whose short message
the model reads after the arrow.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from toolrun import ToolConfigError, ToolError
from toolrun.registry import time_left

__all__ = ["HttpError", "HttpResponse", "HttpSettings", "allowed_hosts_for", "fetch", "host_of"]

_REDIRECTS = (301, 302, 303, 307, 308)
_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


class HttpError(ToolError):
    """A request failed; the message is short enough for the model to read."""


@dataclass(frozen=True)
class HttpSettings:
    """Limits for every request a tool makes. Defaults suit public APIs; tests shrink them."""

    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_bytes: int = 1_000_000
    retries: int = 2
    backoff_s: float = 0.25
    max_redirects: int = 3
    deadline_s: float = 20.0
    """The most one ``fetch`` may take, start to last byte, retries and redirects included."""

    def __post_init__(self) -> None:
        if not (self.connect_timeout > 0 and self.read_timeout > 0 and self.deadline_s > 0):
            raise ToolConfigError("HTTP timeouts must be positive")
        if self.max_bytes < 1 or self.retries < 0 or self.backoff_s < 0 or self.max_redirects < 0:
            raise ToolConfigError(f"invalid HTTP settings: {self}")


@dataclass(frozen=True)
class HttpResponse:
    """A complete answer, read within the size cap."""

    status: int
    url: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise HttpError(f"{host_of(self.url)} did not answer with JSON") from exc


def host_of(url: str) -> str:
    """The lower-case host name of ``url`` ('' when there is none)."""
    try:
        return (httpx.URL(url).host or "").lower()
    except httpx.InvalidURL:
        return ""


def allowed_hosts_for(url: str, allowed_hosts: Iterable[str] | None) -> frozenset[str]:
    """The allowlist to use: the hosts given, else only the host of the configured ``url``.

    Raises ToolConfigError for an address that is not http(s) with a host, or whose host the
    hosts given do not allow: a configuration every call would fail on is refused up front.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolConfigError(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ToolConfigError(f"invalid URL {url!r}: need http:// or https:// and a host")
    hosts = frozenset(h.strip().lower() for h in (allowed_hosts or ()) if h.strip())
    if hosts and not host_allowed(parsed.host, hosts):
        raise ToolConfigError(
            f"{url!r} is on host {parsed.host}, which allowed_hosts does not allow "
            f"({', '.join(sorted(hosts))}): every call would be refused"
        )
    return hosts or frozenset({parsed.host.lower()})


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Exact names, or ``*.example.org`` for any subdomain of example.org."""
    host = host.lower()
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def fetch(
    method: str,
    url: str,
    *,
    allowed_hosts: Iterable[str],
    settings: HttpSettings | None = None,
    params: Any = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """Send one request under the guards and return the answer; raise HttpError on any failure.

    A 4xx answer raises at once, a 5xx or a connection failure after the retries are used up.
    """
    settings = settings or HttpSettings()
    allowed = frozenset(allowed_hosts)
    client = _client(settings)
    host = host_of(url)
    left = time_left()  # inside a tool call: its deadline bounds the request too
    seconds = settings.deadline_s if left is None else max(min(settings.deadline_s, left), 0.0)
    deadline = _Deadline(seconds)
    try:
        for attempt in range(settings.retries + 1):
            last_try = attempt == settings.retries
            tries = f" after {attempt + 1} tries" if attempt else ""
            try:
                response = _send(
                    client, method, url, allowed, settings, params, json_body, headers, deadline
                )
            except httpx.HTTPError as exc:
                if deadline.expired or deadline.left() <= 0:
                    raise HttpError(deadline.timeout_message(host, settings)) from exc
                if isinstance(exc, _RETRIED):
                    if last_try:
                        raise HttpError(f"cannot reach {host}{tries} ({_reason(exc)})") from exc
                elif isinstance(exc, httpx.TimeoutException):
                    raise HttpError(deadline.timeout_message(host, settings)) from exc
                else:
                    raise HttpError(f"request to {host} failed ({_reason(exc)})") from exc
            else:
                if response.status < 400:
                    return response
                if response.status < 500 or last_try:
                    detail = _detail(response)
                    raise HttpError(
                        f"HTTP {response.status} from {host}{tries}"
                        + (f": {detail}" if detail else "")
                    )
            pause = settings.backoff_s * 2**attempt
            if pause >= deadline.left():
                raise HttpError(
                    f"gave up on {host} after {attempt + 1} tries: "
                    f"its {deadline.seconds:g} s were used up"
                )
            time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        deadline.cancel()


class _Deadline:
    """One request's deadline: at the time, the connection in use is shut down.

    httpx's timeouts apply to each read, so a server sending a byte every 0.1 s never trips
    them; shutting the socket down wakes the blocked read at once. The socket is learnt from
    httpcore's trace hook as each connection opens (the client keeps no idle connections, so
    every request opens one).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.at - time.monotonic()

    def timeouts(self, settings: HttpSettings) -> httpx.Timeout:
        """The per-phase timeouts, none longer than the time left."""
        left = max(self.left(), 0.001)
        read = min(settings.read_timeout, left)
        return httpx.Timeout(
            connect=min(settings.connect_timeout, left), read=read, write=read, pool=left
        )

    def timeout_message(self, host: str, settings: HttpSettings) -> str:
        if self.expired or self.left() <= 0:
            return f"{host} did not finish answering within {self.seconds:g} s"
        return f"{host} did not answer within {settings.read_timeout:g} s"

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember the socket of each connection as it opens."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            found = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._socket = found
                cut = self.expired
            if cut:
                _shutdown(found)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            found = self._socket
        _shutdown(found)

    def check(self) -> None:
        if self.expired or self.left() <= 0:
            raise httpx.ReadTimeout("deadline passed")

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


_clients: dict[HttpSettings, httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(settings: HttpSettings) -> httpx.Client:
    """One pooled client per settings: building one loads TLS certificates (~100 ms)."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            timeout = httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            )
            client = _clients[settings] = httpx.Client(
                timeout=timeout,
                follow_redirects=False,
                # No idle connections: each request opens its own, so its deadline can cut it.
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return client


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    allowed: frozenset[str],
    settings: HttpSettings,
    params: Any,
    json_body: Any,
    headers: Mapping[str, str] | None,
    deadline: _Deadline,
) -> HttpResponse:
    """One attempt: follow redirects by hand so that every hop meets the allowlist."""
    for _ in range(settings.max_redirects + 1):
        deadline.check()
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https"):
            raise HttpError(f"refusing {parsed.scheme or 'a relative'} URL")
        if not host_allowed(parsed.host, allowed):
            raise HttpError(
                f"host {parsed.host or '?'} is not allowed (allowed: {', '.join(sorted(allowed))})"
            )
        request = client.build_request(
            method,
            url,
            params=params,
            json=json_body,
            headers=dict(headers or {}),
            timeout=deadline.timeouts(settings),
            extensions={"trace": deadline.trace},
        )
        response = client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                url = str(response.url.join(response.headers["location"]))
                if response.status_code == 303:
                    method, json_body = "GET", None
                params = None  # the new location carries its own query
                continue
            content = _read_capped(response, settings.max_bytes, deadline)
            return HttpResponse(response.status_code, str(response.url), response.headers, content)
        finally:
            response.close()
    raise HttpError(f"more than {settings.max_redirects} redirects from {host_of(url)}")


def _read_capped(response: httpx.Response, max_bytes: int, deadline: _Deadline) -> bytes:
    """The body, decoded from its content-encoding, refused as soon as it passes the cap."""
    host = response.url.host
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HttpError(f"answer from {host} is larger than {max_bytes:,} bytes")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        deadline.check()
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(f"answer from {host} is larger than {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _detail(response: HttpResponse) -> str:
    """The error message an API put in its body, if short and findable."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return _clip(body[key])
    return ""


def _reason(exc: BaseException) -> str:
    return _clip(str(exc)) or type(exc).__name__


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
