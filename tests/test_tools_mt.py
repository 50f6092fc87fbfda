"""MT: a LibreTranslate-style API on 127.0.0.1 through httpx, and the model as a translator."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from servers import LibreTranslateServer, ScriptPerSession

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools import HttpSettings
from toolrun.tools.mt import API_KEY_ENV, HOSTS_ENV, MODEL_ENV, URL_ENV, make_mt

DICTIONARY = {"tortue": "turtle", "Wie spät ist es?": "What time is it?", "vide": ""}
FAST = HttpSettings(connect_timeout=0.5, read_timeout=0.3, max_bytes=10_000, backoff_s=0.01)


@pytest.fixture(scope="module")
def running() -> Iterator[LibreTranslateServer]:
    with LibreTranslateServer(DICTIONARY, api_key="secret") as server:
        yield server


@pytest.fixture
def server(running: LibreTranslateServer, monkeypatch: pytest.MonkeyPatch) -> LibreTranslateServer:
    running.reset()
    for name in (URL_ENV, API_KEY_ENV, HOSTS_ENV, MODEL_ENV):
        monkeypatch.delenv(name, raising=False)
    return running


def test_http_translation(server: LibreTranslateServer) -> None:
    translate = make_mt(server.url, api_key="secret", http=FAST)
    assert translate("tortue") == "turtle"
    assert translate("Wie   spät ist es?") == "What time is it?"
    assert server.hits[0].json() == {
        "q": "tortue", "source": "auto", "target": "en", "format": "text", "api_key": "secret"
    }  # fmt: skip


def test_http_error_message_comes_from_the_api(server: LibreTranslateServer) -> None:
    translate = make_mt(server.url, api_key="wrong", http=FAST)
    with pytest.raises(toolrun.ToolError, match=r"^HTTP 403 from 127\.0\.0\.1: Invalid API key$"):
        translate("tortue")


def test_http_empty_translation(server: LibreTranslateServer) -> None:
    with pytest.raises(toolrun.ToolError, match="returned nothing"):
        make_mt(server.url, api_key="secret", http=FAST)("vide")


def test_http_slow_server_times_out(server: LibreTranslateServer) -> None:
    server.delay = 3.0  # far past the 0.3 s timeout: the bound below holds on a loaded machine
    started = time.perf_counter()
    with pytest.raises(toolrun.ToolError, match=r"did not answer within 0\.3 s"):
        make_mt(server.url, api_key="secret", http=FAST)("tortue")
    assert time.perf_counter() - started < 2.5


def test_http_500_is_retried_then_reported(server: LibreTranslateServer) -> None:
    translate = make_mt(server.url, api_key="secret", http=FAST)
    server.fail_first = 1
    assert translate("tortue") == "turtle"
    assert len(server.hits) == 2
    server.status = 500
    with pytest.raises(toolrun.ToolError, match="after 3 tries"):
        translate("tortue")


def test_http_oversized_answer(server: LibreTranslateServer) -> None:
    server.oversize = 20_000
    with pytest.raises(toolrun.ToolError, match="larger than 10,000 bytes"):
        make_mt(server.url, api_key="secret", http=FAST)("tortue")


def test_http_host_outside_the_allowlist_is_refused_at_configuration(
    server: LibreTranslateServer,
) -> None:
    with pytest.raises(toolrun.ToolConfigError, match=r"host 127\.0\.0\.1, which allowed_hosts"):
        make_mt(server.url, allowed_hosts=["translate.example.org"], http=FAST)
    assert server.hits == []


def test_http_redirect_elsewhere_is_refused(server: LibreTranslateServer) -> None:
    server.redirect_to = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(toolrun.ToolError, match=r"host 169\.254\.169\.254 is not allowed"):
        make_mt(server.url, api_key="secret", http=FAST)("tortue")


def test_bad_address_is_a_config_error() -> None:
    with pytest.raises(toolrun.ToolConfigError, match="need http:// or https://"):
        make_mt("localhost:5000/translate")


def test_text_limits() -> None:
    translate = make_mt(model=ScriptedModel(["x"]))
    with pytest.raises(toolrun.ToolError, match="nothing to translate"):
        translate("  ")
    with pytest.raises(toolrun.ToolError, match="longer than 1000 characters"):
        translate("a" * 1001)


def test_entry_point_http_from_the_environment(
    server: LibreTranslateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, "ftp://nowhere")
    with pytest.raises(toolrun.ToolConfigError, match="invalid URL"):
        toolrun.ToolRegistry(["mt"])
    monkeypatch.setenv(URL_ENV, server.url)
    monkeypatch.setenv(API_KEY_ENV, "secret")
    model = ScriptedModel(["A [MT(tortue) →", " swims."])
    out = toolrun.generate("Q:", model=model, tools=["MT"])
    assert out.text == "A [MT(tortue) → turtle] swims."
    monkeypatch.setenv(HOSTS_ENV, "translate.example.org")
    with pytest.raises(toolrun.ToolConfigError, match="allowed_hosts does not allow"):
        toolrun.ToolRegistry(["mt"])
    assert len(server.hits) == 1


def test_model_backend_uses_the_generating_model() -> None:
    model = ScriptPerSession(["The [MT(tortue) →", " swims."], ["turtle\nextra"])
    out = toolrun.generate("Q:", model=model, tools=["mt"])
    assert out.text == "The [MT(tortue) → turtle] swims."
    assert model.prompt(1) == "Translate into English.\nText: tortue\nEnglish:"


def test_model_backend_with_a_named_model_and_target() -> None:
    translator = ScriptPerSession(["tortue\n"])
    assert make_mt(model=translator, target="fr")("turtle") == "tortue"
    assert translator.prompt(0) == "Translate into French.\nText: turtle\nFrench:"


def test_model_backend_empty_translation() -> None:
    with pytest.raises(toolrun.ToolError, match="no translation"):
        make_mt(model=ScriptedModel(["\n"]))("tortue")
