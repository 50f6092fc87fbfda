"""A small threaded HTTP server whose behaviour a test can change between requests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Hit:
    """One request the server received."""

    method: str
    path: str
    params: dict[str, list[str]]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """Serves ``respond()`` on 127.0.0.1:<free port>; subclasses implement a protocol.

    Misbehaviour, checked in this order for every request:
    ``delay`` seconds of silence before answering; ``redirect_to`` answers 302 to that URL;
    ``fail_first`` answers 500 to that many requests (then behaves); ``status`` answers that
    status with a JSON error body; ``oversize`` answers that many bytes (with a Content-Length
    unless ``declare_length`` is False, when the body is sent until the connection closes).
    """

    path = "/"

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def reset(self) -> None:
        self.hits.clear()
        self.delay = 0.0
        self.redirect_to: str | None = None
        self.fail_first = 0
        self.status: int | None = None
        self.oversize = 0
        self.declare_length = True

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(self, hit: Hit) -> Answer:
        """The protocol's answer; the base server echoes the request as JSON."""
        return json_answer({"method": hit.method, "path": hit.path, "params": hit.params})

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        params = parse_qs(parts.query, keep_blank_values=True)
        if handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qs(body.decode(), keep_blank_values=True))
        hit = Hit(handler.command, parts.path, params, body)
        self.hits.append(hit)
        answer = self._misbehave(hit)
        if self.delay:
            time.sleep(self.delay)
        status, headers, content = answer or self.respond(hit)
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if "Content-Length" not in headers and (self.declare_length or not self.oversize):
                handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout or a size cap): that is the point

    def _misbehave(self, hit: Hit) -> Answer | None:
        if self.redirect_to:
            return 302, {"Location": self.redirect_to}, b""
        if self.fail_first > 0:
            self.fail_first -= 1
            return json_answer({"error": "temporary failure"}, status=500)
        if self.status is not None:
            return json_answer({"error": f"forced status {self.status}"}, status=self.status)
        if self.oversize:
            return 200, {"Content-Type": "application/json"}, b" " * self.oversize
        return None


def json_answer(value: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()
