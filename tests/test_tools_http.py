"""The networked tools' HTTP guards, against a real server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from servers import FakeServer

from toolrun import ToolConfigError, ToolError
from toolrun.tools._http import HttpError, HttpSettings, allowed_hosts_for, fetch, host_allowed

FAST = HttpSettings(connect_timeout=0.5, read_timeout=0.3, max_bytes=10_000, backoff_s=0.01)
LOCAL = ["127.0.0.1"]


@pytest.fixture(scope="module")
def running() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def server(running: FakeServer) -> FakeServer:
    running.reset()
    return running


def test_success_returns_body_and_sends_parameters(server: FakeServer) -> None:
    response = fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST, params={"q": "a b"})
    assert response.status == 200
    assert response.json()["params"] == {"q": ["a b"]}
    assert len(server.hits) == 1


def test_post_sends_json(server: FakeServer) -> None:
    fetch("POST", server.url, allowed_hosts=LOCAL, settings=FAST, json_body={"q": "été"})
    assert server.hits[0].method == "POST"
    assert server.hits[0].json() == {"q": "été"}


def test_5xx_is_retried_with_backoff_then_succeeds(server: FakeServer) -> None:
    server.fail_first = 2
    settings = HttpSettings(read_timeout=1.0, retries=2, backoff_s=0.05)
    started = time.perf_counter()
    response = fetch("GET", server.url, allowed_hosts=LOCAL, settings=settings)
    assert response.status == 200
    assert len(server.hits) == 3
    assert time.perf_counter() - started >= 0.05 + 0.10  # backoff doubles


def test_5xx_gives_up_after_the_retries(server: FakeServer) -> None:
    server.status = 503
    with pytest.raises(HttpError, match=r"HTTP 503 from 127.0.0.1 after 3 tries: forced status"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)
    assert len(server.hits) == 3


def test_4xx_is_not_retried_and_carries_the_api_message(server: FakeServer) -> None:
    server.status = 403
    with pytest.raises(HttpError, match=r"^HTTP 403 from 127.0.0.1: forced status 403$"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)
    assert len(server.hits) == 1


def test_slow_answer_times_out_without_retrying(server: FakeServer) -> None:
    server.delay = 3.0  # far past the 0.3 s timeout: the bound below holds on a loaded machine
    started = time.perf_counter()
    with pytest.raises(HttpError, match=r"did not answer within 0.3 s"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)
    assert time.perf_counter() - started < 2.5
    assert len(server.hits) == 1


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_body_is_refused(server: FakeServer, declare_length: bool) -> None:
    server.oversize = 50_000
    server.declare_length = declare_length
    with pytest.raises(HttpError, match=r"larger than 10,000 bytes"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)


def test_body_at_the_cap_is_accepted(server: FakeServer) -> None:
    server.oversize = 10_000
    assert len(fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST).content) == 10_000


def test_host_outside_the_allowlist_is_never_contacted(server: FakeServer) -> None:
    with pytest.raises(HttpError, match=r"host 127.0.0.1 is not allowed \(allowed: example.org\)"):
        fetch("GET", server.url, allowed_hosts=["example.org"], settings=FAST)
    assert server.hits == []


def test_redirect_to_a_host_outside_the_allowlist_is_refused(server: FakeServer) -> None:
    server.redirect_to = f"http://localhost:{server.port}/elsewhere"
    with pytest.raises(HttpError, match=r"host localhost is not allowed"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)
    assert len(server.hits) == 1


def test_redirect_within_the_allowlist_is_followed(server: FakeServer) -> None:
    server.redirect_to = f"{server.origin}/moved"
    with pytest.raises(HttpError, match=r"more than 3 redirects"):
        fetch("GET", server.url, allowed_hosts=LOCAL, settings=FAST)  # it redirects forever
    assert [h.path for h in server.hits] == ["/", "/moved", "/moved", "/moved"]


def test_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HttpError, match=r"cannot reach 127.0.0.1 after 3 tries"):
        fetch("GET", f"http://127.0.0.1:{port}/", allowed_hosts=LOCAL, settings=FAST)


def test_errors_are_tool_errors_for_the_model() -> None:
    assert issubclass(HttpError, ToolError)


def test_non_http_schemes_are_refused() -> None:
    with pytest.raises(HttpError, match="refusing file URL"):
        fetch("GET", "file:///etc/passwd", allowed_hosts=LOCAL, settings=FAST)


def test_allowlist_patterns() -> None:
    assert host_allowed("en.wikipedia.org", ["*.wikipedia.org"])
    assert host_allowed("EN.Wikipedia.org", ["*.wikipedia.org"])
    assert not host_allowed("wikipedia.org.evil.com", ["*.wikipedia.org"])
    assert not host_allowed("evilwikipedia.org", ["*.wikipedia.org"])
    assert host_allowed("127.0.0.1", ["127.0.0.1"])
    assert not host_allowed("127.0.0.2", ["127.0.0.1"])


def test_default_allowlist_is_the_configured_host() -> None:
    assert allowed_hosts_for("http://mt.example.org:5000/translate", None) == {"mt.example.org"}
    assert allowed_hosts_for("http://b.org/", ["B.org", " "]) == {"b.org"}
    assert allowed_hosts_for("http://x.b.org/", ["*.b.org"]) == {"*.b.org"}
    with pytest.raises(ToolConfigError, match="allowed_hosts does not allow"):
        allowed_hosts_for("http://a.org/", ["b.org"])
    for bad in ("ftp://a.org/x", "not a url", "http:///path"):
        with pytest.raises(ToolConfigError):
            allowed_hosts_for(bad, None)


def test_settings_are_validated() -> None:
    with pytest.raises(ToolConfigError):
        HttpSettings(read_timeout=0)
    with pytest.raises(ToolConfigError):
        HttpSettings(retries=-1)
