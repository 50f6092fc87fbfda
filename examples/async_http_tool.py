"""An async tool that calls a web API with httpx: timeouts set, errors become text.

    python examples/async_http_tool.py          # the default model, the real API
    python examples/async_http_tool.py --fake   # a scripted model and a mock transport, offline

An ``async def`` tool runs on toolrun's event loop (or yours, with ``acall``); the tool's own
``timeout`` bounds the whole call, httpx's bounds each connect and read.
"""

import sys

import httpx

import toolrun
from toolrun.testing import ScriptedModel

API = "https://api.frankfurter.app/latest"
TRANSPORT: httpx.AsyncBaseTransport | None = None  # --fake swaps in a MockTransport


@toolrun.tool(name="ExchangeRate", timeout=10.0)
async def exchange_rate(base: str, target: str) -> float:
    """Today's exchange rate between two currencies, by ISO code (EUR, USD, JPY...)."""
    timeout = httpx.Timeout(5.0, connect=3.0)
    async with httpx.AsyncClient(timeout=timeout, transport=TRANSPORT) as client:
        response = await client.get(API, params={"from": base, "to": target})
    if response.status_code != 200:
        raise toolrun.ToolError(f"rate service answered {response.status_code}")
    return float(response.json()["rates"][target])


def fake_api(request: httpx.Request) -> httpx.Response:
    rates = {"USD": 1.08, "JPY": 161.2}
    target = request.url.params["to"]
    if target not in rates:
        return httpx.Response(404, json={"message": "not found"})
    return httpx.Response(200, json={"base": "EUR", "rates": {target: rates[target]}})


def main(fake: bool) -> None:
    global TRANSPORT
    model = None
    if fake:
        TRANSPORT = httpx.MockTransport(fake_api)
        model = ScriptedModel([" 100 EUR is [ExchangeRate(EUR, USD) →", " times 100 USD. And in XYZ"
                               " [ExchangeRate(EUR, XYZ) →", " unknown."])  # fmt: skip
    prompt = "Q: How many US dollars is 100 euros?\nA:"
    out = toolrun.generate(prompt, model=model, tools=[exchange_rate], max_new_tokens=120)
    print(out.text)
    for call in out.calls:
        outcome = call.result if call.error is None else f"error: {call.error}"
        print(f"  {call.name}({call.arguments_text}) -> {outcome} in {call.latency_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main("--fake" in sys.argv)
