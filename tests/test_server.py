"""The HTTP server with the real openai client: completions, streaming, tools, auth, limits, errors.

Every test talks to a real uvicorn on 127.0.0.1 (a free port, the server in a thread); the
scripted model makes each one fast.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import openai
import pytest

import toolrun
from toolrun.server import ServerSettings, create_app
from toolrun.server.command import approval_policy
from toolrun.server.testing import LiveServer
from toolrun.testing import ScriptedModel

SCRIPT = ["The sum is [Calculator(2 + 3) →", " so 5."]
TEXT = "The sum is [Calculator(2 + 3) → 5] so 5."


@toolrun.tool(name="Calculator")
def calc(expression: str) -> str:
    """Sums integers."""
    return str(sum(int(p) for p in expression.split("+")))


class Gate:
    """A tool that waits until the test opens the gate (or its own timeout)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.cancelled = threading.Event()

        async def Wait(expression: str) -> str:
            """Waits."""
            self.entered.set()
            try:
                while not self.opened.is_set():
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return "7"

        self.tool = toolrun.tool(Wait, name="Wait", timeout=30)


def client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(ScriptedModel(SCRIPT), [calc])) as live:
        yield live


def test_models_lists_the_served_model(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["scripted"]
    assert client(server).models.retrieve("scripted").id == "scripted"


def test_completion_runs_the_server_tool_mid_generation(server):
    out = client(server).completions.create(model="scripted", prompt="Q:", max_tokens=50)
    choice = out.choices[0]
    assert choice.text == TEXT
    assert choice.finish_reason == "stop"
    (call,) = choice.server_tool_calls  # the extension field
    assert call["function"] == {"name": "Calculator", "arguments": '{"expression": "2 + 3"}'}
    assert call["result"] == "5" and call["error"] is None
    start, end = call["span"]
    assert choice.text[start:end] == "[Calculator(2 + 3) → 5]"
    assert out.usage.prompt_tokens == 2 and out.usage.completion_tokens > 0
    assert out.usage.total_tokens == (
        out.usage.prompt_tokens + out.usage.completion_tokens + out.usage.spliced_tokens
    )


def test_completion_length_limit(server):
    out = client(server).completions.create(model="scripted", prompt="Q:", max_tokens=4)
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 4


def test_streamed_completion_joins_to_the_same_text(server):
    chunks = list(
        client(server).completions.create(
            model="scripted",
            prompt="Q:",
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    calls = [getattr(c.choices[0], "server_tool_calls", None) for c in chunks if c.choices]
    (call,) = [found for found in calls if found]
    assert call[0]["result"] == "5"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 2
    assert len({c.id for c in chunks}) == 1


def test_async_client_requests_share_the_batch(server):
    async def main():
        api = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        outs = await asyncio.gather(
            *(
                api.completions.create(model="scripted", prompt=f"Q{i}:", max_tokens=50)
                for i in range(8)
            )
        )
        await api.close()
        return outs

    outs = asyncio.run(main())
    assert [o.choices[0].text for o in outs] == [TEXT] * 8
    assert len({o.id for o in outs}) == 8


def test_health_and_metrics(server):
    client(server).completions.create(model="scripted", prompt="Q:", max_tokens=50)
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "model": "scripted"}
    text = httpx.get(server.url + "/metrics").text
    assert 'toolrun_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'toolrun_tool_calls_total{tool="Calculator",outcome="ok"}' in text
    assert "toolrun_time_to_first_token_seconds_count" in text
    for gauge in ("toolrun_queue_depth", "toolrun_batch_occupancy", "toolrun_batch_rows"):
        assert f"\n{gauge} " in text
    generated = [line for line in text.splitlines() if 'kind="generated"' in line]
    assert int(generated[0].split()[-1]) > 0


# bad input: every case gets an OpenAI error object


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    "body, param, code",
    [
        ({"model": "scripted", "prompt": "x", "max_tokens": "5"}, "max_tokens", "invalid_type"),
        ({"model": "scripted", "prompt": "x", "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": "scripted", "prompt": "x", "stop": [1]}, "stop", "invalid_type"),
        ({"model": "scripted", "prompt": "x", "n": 2}, "n", "invalid_value"),
        ({"model": "scripted", "prompt": "x", "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "scripted", "prompt": "x", "top_p": 1.5}, "top_p", "invalid_value"),
        ({"prompt": "x"}, "model", "missing_required_parameter"),
        ({"model": "scripted"}, "prompt", "missing_required_parameter"),
    ],
)
def test_wrong_fields_are_400_naming_the_field(server, body, param, code):
    response = httpx.post(server.url + "/v1/completions", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_invalid_json_and_non_objects_are_400(server):
    for content in (b"{nope", b"[1, 2]", b"\xff\xfe"):
        response = httpx.post(
            server.url + "/v1/completions",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_json"


def test_unknown_fields_are_ignored(server):
    out = client(server).completions.create(
        model="scripted", prompt="Q:", max_tokens=50, user="u1", extra_body={"whatever": [1]}
    )
    assert out.choices[0].text == TEXT


def test_unknown_model_is_404_with_the_sdk_error(server):
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).completions.create(model="gpt-4o", prompt="Q:")
    assert caught.value.code == "model_not_found"


def test_unknown_route_is_an_error_object(server):
    response = httpx.get(server.url + "/v1/nothing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_limits_body_size_max_tokens_and_context():
    settings = ServerSettings(max_body_bytes=2000, max_tokens=64, context_length=30)
    with LiveServer(create_app(ScriptedModel(SCRIPT), [calc], settings=settings)) as live:
        api = client(live)
        response = httpx.post(
            live.url + "/v1/completions", json={"model": "scripted", "prompt": "x" * 5000}
        )
        assert response.status_code == 413
        assert error_of(response)["code"] == "request_too_large"

        def chunked():  # no Content-Length: counted as it arrives
            yield b'{"model": "scripted", "prompt": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        response = httpx.post(live.url + "/v1/completions", content=chunked())
        assert response.status_code == 413

        with pytest.raises(openai.BadRequestError) as caught:
            api.completions.create(model="scripted", prompt="Q:", max_tokens=65)
        assert caught.value.code == "integer_above_max_value"
        with pytest.raises(openai.BadRequestError) as caught:
            api.completions.create(model="scripted", prompt="Q:", max_tokens=29)
        assert caught.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as caught:
            api.completions.create(model="scripted", prompt="y" * 60)
        assert caught.value.code == "context_length_exceeded"
        # without max_tokens the default is capped by what the context has left
        out = api.completions.create(model="scripted", prompt="Q:")
        assert out.choices[0].finish_reason == "length"
        assert out.usage.completion_tokens == 30 - 2


def test_auth_refused_and_accepted():
    settings = ServerSettings(api_key="sesame")
    with LiveServer(create_app(ScriptedModel(SCRIPT), [calc], settings=settings)) as live:
        with pytest.raises(openai.AuthenticationError):
            client(live, "wrong").models.list()
        response = httpx.get(live.url + "/v1/models")
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
        assert httpx.get(live.url + "/metrics").status_code == 401
        assert httpx.get(live.url + "/health").status_code == 200  # for load balancers
        out = client(live, "sesame").completions.create(model="scripted", prompt="Q:")
        assert out.choices[0].text == TEXT


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TOOLRUN_API_KEY", "from-env")
    assert ServerSettings().api_key == "from-env"
    assert ServerSettings().host == "127.0.0.1"


def test_full_rows_and_queue_answer_503_at_once():
    gate = Gate()
    model = ScriptedModel(["Wait [Wait(1) →", " done."])
    settings = ServerSettings(max_batch=1, max_queue=1)
    with LiveServer(create_app(model, [gate.tool], settings=settings)) as live:
        engine = live.app.state.engine

        async def main():
            api = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
            first = asyncio.ensure_future(api.completions.create(model="scripted", prompt="a"))
            second = asyncio.ensure_future(api.completions.create(model="scripted", prompt="b"))
            while engine.in_flight < 2 or not gate.entered.is_set():
                await asyncio.sleep(0.01)
            tick = time.perf_counter()
            with pytest.raises(openai.InternalServerError) as caught:
                await api.completions.create(model="scripted", prompt="c")
            refused_in = time.perf_counter() - tick
            gate.opened.set()
            outs = await asyncio.gather(first, second)
            await api.close()
            return caught.value, refused_in, outs

        error, refused_in, outs = asyncio.run(main())
    assert error.status_code == 503 and error.code == "server_overloaded"
    assert error.response.headers["retry-after"] == "1"
    assert refused_in < 5  # refused, not queued behind the gate
    assert [o.choices[0].text for o in outs] == ["Wait [Wait(1) → 7] done."] * 2


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_the_row(stream):
    gate = Gate()
    model = ScriptedModel(["Wait [Wait(1) →", " done."])
    with LiveServer(create_app(model, [gate.tool])) as live:
        engine = live.app.state.engine
        body = {"model": "scripted", "prompt": "Q:", "stream": stream}
        with httpx.Client(timeout=30) as http:
            if stream:
                with http.stream("POST", live.url + "/v1/completions", json=body) as response:
                    assert response.status_code == 200
                    assert gate.entered.wait(10)
            else:  # a raw socket: send the request, then hang up while it runs
                payload = json.dumps(body).encode()
                with socket.create_connection(("127.0.0.1", live.port)) as raw:
                    raw.sendall(
                        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\n"
                        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    assert gate.entered.wait(10)
        assert gate.cancelled.wait(10), "the tool kept running after the client left"
        assert wait_until(lambda: engine.in_flight == 0 and engine.active_rows == 0)
        # the server is still healthy
        out = client(live).completions.create(model="scripted", prompt="Q:", max_tokens=3)
        assert out.choices[0].finish_reason == "length"


def test_tools_needing_approval_run_only_with_a_policy():
    def Delete(path: str) -> str:
        """Deletes a file."""
        return f"deleted {path}"

    sensitive = toolrun.tool(Delete, requires_approval=True)
    model = ScriptedModel(["Cleaning [Delete(/tmp/x) →", " ok."])
    with LiveServer(create_app(model, [sensitive])) as live:
        out = client(live).completions.create(model="scripted", prompt="Q:")
    (call,) = out.choices[0].server_tool_calls
    assert call["result"] is None and "needs approval" in call["error"]

    settings = ServerSettings(approve=approval_policy("delete"))
    with LiveServer(create_app(model, [sensitive], settings=settings)) as live:
        out = client(live).completions.create(model="scripted", prompt="Q:")
    (call,) = out.choices[0].server_tool_calls
    assert call["result"] == "deleted /tmp/x"


def test_approval_policy_from_the_command_line():
    assert approval_policy("") is None
    assert approval_policy("all")("Anything", {}) is True
    policy = approval_policy("Delete, send_mail")
    assert policy("delete", {}) and policy("SEND_MAIL", {}) and not policy("other", {})


def test_serve_command_is_registered():
    from toolrun.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "9001", "--tools", "calculator"])
    assert (args.host, args.port, args.tools) == ("127.0.0.1", 9001, "calculator")


def test_serve_command_builds_the_app_and_runs_uvicorn(monkeypatch, capsys, tmp_path):
    import uvicorn

    from toolrun.cli import main

    ran = {}
    monkeypatch.setattr(toolrun, "load_model", lambda *a, **k: ScriptedModel(SCRIPT))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    monkeypatch.delenv("TOOLRUN_API_KEY", raising=False)
    argv = ["serve", "--tools", "calculator", "--port", "9001", "--max-batch", "4"]
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages[0].content }}")
    options = ["--approve", "all", "--top-k-start", "10", "--call-format", "hermes"]
    assert main([*argv, *options, "--chat-template", str(template), "--temperature", "0.7"]) == 0
    engine = ran["app"].state.engine
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 9001)
    assert engine.settings.max_batch == 4 and engine.settings.api_key is None
    assert engine.settings.decoding == {"api_start_top_k": 10}
    assert engine.settings.approve("anything", {}) is True
    assert engine.settings.call_format == "hermes" and engine.settings.default_temperature == 0.7
    assert engine.chat_template == "{{ messages[0].content }}"
    assert engine.registry.names == ["Calculator"]
    assert "warning" not in capsys.readouterr().err

    assert main(["serve", "--host", "0.0.0.0", "--tools", ""]) == 0
    assert "without an API key" in capsys.readouterr().err
    assert main(["serve", "--chat-template", str(tmp_path / "missing.jinja")]) == 1
    assert "cannot read the chat template" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "k"]) == 0
    assert ran["app"].state.engine.settings.api_key == "k"
    assert "warning" not in capsys.readouterr().err


def test_settings_refuse_nonsense():
    with pytest.raises(toolrun.ToolrunError):
        ServerSettings(max_batch=0)
    with pytest.raises(toolrun.ToolrunError):
        ServerSettings(max_queue=-1)


def test_error_frames_are_json(server):
    """A raw SSE stream: data frames of JSON, then [DONE]."""
    body = {"model": "scripted", "prompt": "Q:", "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    for line in frames[:-1]:
        json.loads(line.removeprefix("data: "))
