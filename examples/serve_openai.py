"""Talk to ``toolrun serve`` with the openai SDK: server tools mid-generation, client tools, SSE.

    toolrun serve --tools calculator &                         # then:
    python examples/serve_openai.py --url http://127.0.0.1:8000/v1

    python examples/serve_openai.py                            # or: a server in this process

The server's Calculator runs while the model writes (listed in ``server_tool_calls``); a tool only
this program has (``get_weather``) comes back as standard ``tool_calls``, and the loop below runs
it and sends the conversation back, as with any OpenAI-compatible server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator

import openai

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name"}},
            "required": ["city"],
        },
    },
}


def get_weather(city: str) -> str:
    return {"Paris": "sunny, 21 °C"}.get(city, "no data")


def answer(client: openai.OpenAI, model: str, question: str) -> str:
    """The agent loop: run the client's tools until the model answers."""
    messages: list[dict] = [{"role": "user", "content": question}]
    while True:
        out = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER], max_tokens=96
        )
        message = out.choices[0].message
        for call in message.server_tool_calls or []:  # toolrun's extension: ran on the server
            print(
                f"  server ran {call['function']['name']}{call['function']['arguments']}"
                f" -> {call['result'] or call['error']}"
            )
        if out.choices[0].finish_reason != "tool_calls":
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True, exclude={"server_tool_calls"}))
        for call in message.tool_calls or []:
            result = get_weather(**json.loads(call.function.arguments))
            print(f"  client ran {call.function.name}{call.function.arguments} -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """The default model served on 127.0.0.1 in a background thread."""
    import toolrun
    from toolrun.server import create_app
    from toolrun.server.testing import LiveServer

    with LiveServer(create_app(toolrun.load_model(), ["calculator"])) as server:
        yield server.url + "/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running server's /v1 URL")
    parser.add_argument("--api-key", default="unused", help="the server's --api-key, if any")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_server())
        client = openai.OpenAI(base_url=url, api_key=args.api_key)
        model = client.models.list().data[0].id

        question = "A box holds 24 pens. How many pens are in 17 boxes?"
        print(f"Q: {question}\nA: {answer(client, model, question)}\n")

        print("Streamed: ", end="", flush=True)
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Sara had 250 dollars and spent 73. How much?"}],
            max_tokens=48,
            stream=True,
        )
        for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()


if __name__ == "__main__":
    main()
