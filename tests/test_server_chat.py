"""Chat completions with the real openai client: server tools mid-generation, client tools round
trip, tool_choice, streaming deltas, and every bad-input case for messages and tools.

``ChatScript`` is a scripted chat model whose reply depends on the conversation: it answers the
first turn with one text, and after a tool response with another. It writes Hermes-style calls
(``<tool_call>{json}</tool_call>``), rendered by toolrun's Hermes ChatML template.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence

import httpx
import openai
import pytest
import torch

import toolrun
from toolrun.server import ServerSettings, create_app
from toolrun.server.testing import LiveServer
from toolrun.templates import HERMES_CHATML
from toolrun.testing import ScriptedModel, ScriptedSession

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


def hermes_call(name: str, **arguments: object) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class ChatScript(ScriptedModel):
    """A fake chat model: ``replies`` maps a trigger (text in the context) to the reply written
    after it; the reply of the latest trigger found wins, ``""`` matches any context."""

    def __init__(self, replies: dict[str, str]) -> None:
        super().__init__(list(replies.values()), extra_tokens=["<tool_call>", "</tool_call>"])
        self.replies = replies

    @property
    def chat_template(self) -> str:
        return HERMES_CHATML

    def new_session(self) -> ChatSession:
        session = ChatSession(self)
        self.sessions.append(session)
        return session


class ChatSession(ScriptedSession):
    def __init__(self, model: ChatScript) -> None:
        super().__init__(model)
        self.chat = model
        self.context = ""
        self.reply: list[int] = []
        self.at = 0

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        self.feeds.append(list(ids))
        self.tokens_fed += len(ids)
        if len(ids) == 1 and self.at < len(self.reply) and ids[0] == self.reply[self.at]:
            self.at += 1  # its own token, fed back
        else:  # a prompt or a splice: choose the reply for the context so far
            self.context += self.chat.decode(list(ids))
            found = [(self.context.rfind(t) if t else 0, r) for t, r in self.chat.replies.items()]
            self.reply = self.chat.encode(max(found, key=lambda item: item[0])[1])
            self.at = 0
        logits = torch.zeros(self.chat.vocab_size)
        eos = self.chat.ids["<eos>"]
        logits[self.reply[self.at] if self.at < len(self.reply) else eos] = 10.0
        return logits


@toolrun.tool(name="Calculator")
def calc(expression: str) -> str:
    """Sums integers."""
    return str(sum(int(p) for p in expression.split("+")))


def client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def weather_server():
    """The model calls get_weather (a client tool), then answers from the tool's result."""
    model = ChatScript(
        {
            "": "Let me check." + hermes_call("get_weather", city="Paris"),
            "<tool_response>": "It is sunny in Paris.",
        }
    )
    with LiveServer(create_app(model, [calc])) as live:
        yield live


@pytest.fixture(scope="module")
def calc_server():
    """The model calls the server's Calculator, then answers from its result."""
    model = ChatScript(
        {
            "": hermes_call("Calculator", expression="2 + 3"),
            "<tool_response>\n5\n": "The sum is 5.",
        }
    )
    with LiveServer(create_app(model, [calc])) as live:
        yield live


def test_server_tool_runs_mid_generation_and_is_listed(calc_server):
    out = client(calc_server).chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "2 + 3?"}]
    )
    choice = out.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "The sum is 5."  # the markup and the tool turn stay out
    assert choice.message.tool_calls is None
    (call,) = choice.message.server_tool_calls
    assert call["function"] == {"name": "Calculator", "arguments": '{"expression": "2 + 3"}'}
    assert call["result"] == "5" and call["id"].startswith("call_")
    assert out.usage.spliced_tokens > 0


def test_server_tool_streamed(calc_server):
    chunks = list(
        client(calc_server).chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "2 + 3?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "The sum is 5."
    (served,) = [d.server_tool_calls for d in deltas if getattr(d, "server_tool_calls", None)]
    assert served[0]["result"] == "5"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_client_tool_round_trip(weather_server):
    api = client(weather_server)
    first = api.chat.completions.create(model="scripted", messages=ASK_WEATHER, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert choice.message.server_tool_calls == []

    messages = [
        *ASK_WEATHER,
        choice.message.model_dump(exclude_none=True, exclude={"server_tool_calls"}),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
    ]
    second = api.chat.completions.create(model="scripted", messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is sunny in Paris."


def test_server_calls_before_a_client_call_are_in_the_next_requests_conversation():
    """The client sends back only its own calls; the server puts its own calls and results back,
    so the model reads on the next request what it wrote on this one."""
    model = ChatScript(
        {
            "": hermes_call("Calculator", expression="2 + 3"),
            "<tool_response>\n5\n": "Now the weather." + hermes_call("get_weather", city="Paris"),
            "sunny": "Done.",
        }
    )
    with LiveServer(create_app(model, [calc])) as live:
        api = client(live)
        first = api.chat.completions.create(model="scripted", messages=ASK_WEATHER, tools=[WEATHER])
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert [c["result"] for c in choice.message.server_tool_calls] == ["5"]
        (call,) = choice.message.tool_calls
        messages = [
            *ASK_WEATHER,
            choice.message.model_dump(exclude_none=True, exclude={"server_tool_calls"}),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
        ]
        second = api.chat.completions.create(model="scripted", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "Done."
    prompt = model.decode(model.sessions[-1].feeds[0])
    conversation = prompt[prompt.index("Weather in Paris?") :]  # after the tools' listing
    # the server's call, its result, the client's call and the client's result, in that order
    marks = ['"name": "Calculator"', "<tool_response>\n5\n", '"name": "get_weather"', "sunny, 24 C"]
    places = [conversation.find(mark) for mark in marks]
    assert -1 not in places and places == sorted(places), places


def test_client_tool_streamed_as_the_sdk_assembles_it(weather_server):
    stream = client(weather_server).chat.completions.create(
        model="scripted", messages=ASK_WEATHER, tools=[WEATHER], stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    opening = pieces[0][0]
    assert (opening.index, opening.type, opening.function.name) == (0, "function", "get_weather")
    assert opening.id.startswith("call_") and opening.function.arguments == ""
    fragments = [p[0].function.arguments for p in pieces[1:]]
    assert all(p[0].id is None and p[0].index == 0 for p in pieces[1:])
    assert json.loads("".join(fragments)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # the SDK's own accumulator builds the same message as the non-streamed answer
    with client(weather_server).chat.completions.stream(
        model="scripted", messages=ASK_WEATHER, tools=[WEATHER]
    ) as streamed:
        final = streamed.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_async_client_round_trip(weather_server):
    async def main():
        api = openai.AsyncOpenAI(base_url=weather_server.url + "/v1", api_key="x", max_retries=0)
        firsts = await asyncio.gather(
            *(
                api.chat.completions.create(model="scripted", messages=ASK_WEATHER, tools=[WEATHER])
                for _ in range(4)
            )
        )
        calls = [f.choices[0].message.tool_calls[0] for f in firsts]
        seconds = await asyncio.gather(
            *(
                api.chat.completions.create(
                    model="scripted",
                    tools=[WEATHER],
                    messages=[
                        *ASK_WEATHER,
                        {"role": "assistant", "tool_calls": [call.model_dump()]},
                        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
                    ],
                )
                for call in calls
            )
        )
        await api.close()
        return calls, seconds

    calls, seconds = asyncio.run(main())
    assert len({c.id for c in calls}) == 4  # every call has its own id
    assert [s.choices[0].message.content for s in seconds] == ["It is sunny in Paris."] * 4


def test_tool_choice_none_bans_calls(weather_server):
    out = client(weather_server).chat.completions.create(
        model="scripted", messages=ASK_WEATHER, tools=[WEATHER], tool_choice="none"
    )
    choice = out.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert "<tool_call>" not in (choice.message.content or "")
    assert choice.message.content.startswith("Let me check.")


def test_a_client_tool_is_only_a_client_tool_when_the_request_names_it(weather_server):
    """Without ``tools`` in the request, get_weather is unknown: an error the model reads."""
    out = client(weather_server).chat.completions.create(model="scripted", messages=ASK_WEATHER)
    choice = out.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    (call,) = choice.message.server_tool_calls
    assert "unknown tool 'get_weather'" in call["error"]


def test_parallel_tool_calls_false_returns_one_call():
    twice = hermes_call("get_weather", city="Paris") + hermes_call("get_weather", city="Rome")
    with LiveServer(create_app(ChatScript({"": twice, "<tool_response>": "ok"}))) as live:
        api = client(live)
        both = api.chat.completions.create(model="scripted", messages=ASK_WEATHER, tools=[WEATHER])
        one = api.chat.completions.create(
            model="scripted", messages=ASK_WEATHER, tools=[WEATHER], parallel_tool_calls=False
        )
    cities = [json.loads(c.function.arguments)["city"] for c in both.choices[0].message.tool_calls]
    assert cities == ["Paris", "Rome"]
    assert len(one.choices[0].message.tool_calls) == 1


def test_approval_tools_go_to_the_client_or_are_refused():
    def Delete(path: str) -> str:
        """Deletes a file."""
        return "deleted"

    sensitive = toolrun.tool(Delete, requires_approval=True)
    model = ChatScript({"": hermes_call("Delete", path="/tmp/x"), "<tool_response>": "Done."})
    listed = {"type": "function", "function": {"name": "Delete", "parameters": {"type": "object"}}}
    with LiveServer(create_app(model, [sensitive])) as live:
        api = client(live)
        refused = api.chat.completions.create(model="scripted", messages=ASK_WEATHER)
        handed = api.chat.completions.create(model="scripted", messages=ASK_WEATHER, tools=[listed])
    (call,) = refused.choices[0].message.server_tool_calls
    assert "needs approval" in call["error"]
    assert handed.choices[0].finish_reason == "tool_calls"
    assert handed.choices[0].message.tool_calls[0].function.name == "Delete"

    settings = ServerSettings(approve=lambda name, arguments: True)
    with LiveServer(create_app(model, [sensitive], settings=settings)) as live:
        approved = client(live).chat.completions.create(
            model="scripted", messages=ASK_WEATHER, tools=[listed]
        )
    assert approved.choices[0].message.server_tool_calls[0]["result"] == "deleted"


def test_tool_choice_required_and_named_reach_the_client():
    """The forced opening is the format's own: the scripted call written after it still parses."""
    model = ChatScript({"": hermes_call("get_weather", city="Paris"), "<tool_response>": "ok"})
    with LiveServer(create_app(model)) as live:
        api = client(live)
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            out = api.chat.completions.create(
                model="scripted", messages=ASK_WEATHER, tools=[WEATHER], tool_choice=choice
            )
            assert out.choices[0].finish_reason == "tool_calls"
            assert out.choices[0].message.tool_calls[0].function.name == "get_weather"


# bad input


def post(server: LiveServer, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body)


def base(**fields: object) -> dict:
    return {"model": "scripted", "messages": ASK_WEATHER, **fields}


@pytest.mark.parametrize(
    "body, param",
    [
        (base(messages=[]), "messages"),
        (base(messages=[{"role": "wizard", "content": "hi"}]), "messages[0]"),
        (base(messages=[{"role": "user", "content": 5}]), "messages[0].user.content"),
        (base(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool.tool_call_id"),
        (base(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools[0]"),
        (
            base(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
            "tools[0].function.parameters",
        ),
        (
            base(
                tools=[
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            ),
            "tools[0].function.parameters",
        ),
        (
            base(
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"a": 3}},
                        },
                    }
                ]
            ),
            "tools[0].function.parameters",
        ),
        (base(tools=[{"type": "retrieval"}]), "tools[0].type"),
        (base(tool_choice="sometimes"), "tool_choice"),
        (base(tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
        (base(max_completion_tokens="ten"), "max_completion_tokens"),
        (base(logprobs=True), "logprobs"),
        (base(response_format={"type": "json_schema"}), "response_format.type"),
        (base(stream="yes"), "stream"),
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(weather_server, body, param):
    response = post(weather_server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error


def test_chat_errors_through_the_sdk(weather_server):
    api = client(weather_server)
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="gpt-4o", messages=ASK_WEATHER)
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="scripted", messages=ASK_WEATHER, n=2)
    assert caught.value.param == "n"


def test_stop_and_max_completion_tokens(weather_server):
    api = client(weather_server)
    messages = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    out = api.chat.completions.create(
        model="scripted", messages=messages, tools=[WEATHER], stop=["sunny"]
    )
    assert (out.choices[0].message.content, out.choices[0].finish_reason) == ("It is ", "stop")
    out = api.chat.completions.create(
        model="scripted", messages=messages, tools=[WEATHER], max_completion_tokens=3
    )
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3


def test_a_chat_stream_cut_by_the_client_cancels_its_tool():
    entered, cancelled = threading.Event(), threading.Event()

    @toolrun.tool(name="Wait", timeout=30)
    async def wait(seconds: int) -> str:
        """Waits."""
        entered.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "waited"

    model = ChatScript({"": hermes_call("Wait", seconds=20), "<tool_response>": "ok"})
    with LiveServer(create_app(model, [wait])) as live:
        stream = client(live).chat.completions.create(
            model="scripted", messages=ASK_WEATHER, stream=True
        )
        assert next(iter(stream)).choices[0].delta.role == "assistant"
        assert entered.wait(10)
        stream.close()
        assert cancelled.wait(10)
        engine = live.app.state.engine
        for _ in range(1000):
            if engine.in_flight == 0 and engine.active_rows == 0:
                break
            time.sleep(0.01)
        assert engine.in_flight == 0 and engine.active_rows == 0
