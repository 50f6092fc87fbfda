"""WolframAlpha: the wolframalpha package's client and result model against a fake v2 API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from servers import WolframServer

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools import HttpSettings
from toolrun.tools.wolframalpha import APP_ID_ENV, URL_ENV, make_wolframalpha, wolframalpha

APP_ID = "TEST-1234"
ANSWERS = {
    "distance from Earth to the Moon": [
        ("Input interpretation", "distance | from | Earth | to | Moon", False),
        ("Result", "384400 km (kilometers)", True),
    ],
    "integrate x^2": [
        ("Indefinite integral", "∫x^2 dx = x^3/3 + constant", True),
    ],
    "population of France": [  # no primary pod: the first pod that is not the input
        ("Input interpretation", "France | population", False),
        ("Population history", "68 million people (2023)", False),
    ],
}
FAST = HttpSettings(connect_timeout=0.5, read_timeout=0.3, max_bytes=20_000, backoff_s=0.01)


@pytest.fixture(scope="module")
def running() -> Iterator[WolframServer]:
    with WolframServer(APP_ID, ANSWERS) as server:
        yield server


@pytest.fixture
def server(running: WolframServer, monkeypatch: pytest.MonkeyPatch) -> WolframServer:
    running.reset()
    for name in (APP_ID_ENV, "WOLFRAMALPHA_API_KEY", URL_ENV):
        monkeypatch.delenv(name, raising=False)
    return running


def test_primary_pod_is_the_answer(server: WolframServer) -> None:
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    assert ask("distance from Earth to the Moon") == "384400 km (kilometers)"
    assert ask("integrate x^2") == "∫x^2 dx = x^3/3 + constant"
    assert ask("population of France") == "68 million people (2023)"
    hit = server.hits[0]
    assert hit.param("appid") == APP_ID and hit.param("format") == "plaintext"
    assert hit.param("input") == "distance from Earth to the Moon"


def test_no_answer(server: WolframServer) -> None:
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    with pytest.raises(toolrun.ToolError, match="has no answer for 'meaning of life'"):
        ask("meaning of life")


def test_invalid_app_id_is_reported(server: WolframServer) -> None:
    ask = make_wolframalpha("WRONG", url=server.url, http=FAST)
    with pytest.raises(toolrun.ToolError, match="Invalid appid"):
        ask("integrate x^2")


def test_slow_server_times_out(server: WolframServer) -> None:
    server.delay = 3.0  # far past the 0.3 s timeout: the bound below holds on a loaded machine
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    started = time.perf_counter()
    with pytest.raises(toolrun.ToolError, match=r"did not answer within 0\.3 s"):
        ask("integrate x^2")
    assert time.perf_counter() - started < 2.5


def test_500_is_retried_then_reported(server: WolframServer) -> None:
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    server.fail_first = 2
    assert ask("integrate x^2").startswith("∫x^2")
    server.status = 502
    with pytest.raises(toolrun.ToolError, match=r"HTTP 502 from 127\.0\.0\.1 after 3 tries"):
        ask("integrate x^2")


def test_oversized_answer_is_refused(server: WolframServer) -> None:
    server.oversize = 50_000
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    with pytest.raises(toolrun.ToolError, match="larger than 20,000 bytes"):
        ask("integrate x^2")


def test_answer_that_is_not_xml(server: WolframServer) -> None:
    server.status = 200
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    with pytest.raises(toolrun.ToolError, match="not XML"):
        ask("integrate x^2")


def test_host_outside_the_allowlist_is_refused_at_configuration(server: WolframServer) -> None:
    with pytest.raises(toolrun.ToolConfigError, match=r"host 127\.0\.0\.1, which allowed_hosts"):
        make_wolframalpha(APP_ID, url=server.url, allowed_hosts=["api.wolframalpha.com"])
    assert server.hits == []


def test_missing_app_id_fails_at_registration_not_mid_generation(server: WolframServer) -> None:
    with pytest.raises(toolrun.ToolConfigError, match="WOLFRAM_APP_ID"):
        make_wolframalpha()
    with pytest.raises(toolrun.ToolConfigError, match="needs an app id"):
        toolrun.ToolRegistry(["wolframalpha"])
    with pytest.raises(toolrun.ToolConfigError):
        toolrun.generate("Q:", model=ScriptedModel("x"), tools=["WolframAlpha"])


def test_entry_point_reads_the_environment(
    server: WolframServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(APP_ID_ENV, APP_ID)
    monkeypatch.setenv(URL_ENV, server.url)
    toolrun.ToolRegistry(["wolframalpha"])
    assert wolframalpha("distance from Earth to the Moon") == "384400 km (kilometers)"
    monkeypatch.delenv(APP_ID_ENV)
    monkeypatch.setenv("WOLFRAMALPHA_API_KEY", APP_ID)  # the package's own variable
    assert wolframalpha("integrate x^2").startswith("∫")


def test_end_to_end_through_generate(server: WolframServer) -> None:
    ask = make_wolframalpha(APP_ID, url=server.url, http=FAST)
    model = ScriptedModel(["It is [WolframAlpha(distance from Earth to the Moon) →", " away."])
    out = toolrun.generate("Q:", model=model, tools=[ask])
    assert out.text == (
        "It is [WolframAlpha(distance from Earth to the Moon) → 384400 km (kilometers)] away."
    )
    assert out.calls[0].name == "WolframAlpha"
