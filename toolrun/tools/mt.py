"""MT: translates text into English, with a language model or a LibreTranslate-style API.

    [MT(tortue) → turtle]

Two backends:

- ``lm`` (the default): the generating model (``ctx.model``) or one you name, asked with a short
  translate-only prompt, tools disabled, stopping at the end of the line.
- ``http``: ``POST {"q", "source", "target", "format", "api_key"}`` to the address you set, as
  LibreTranslate answers (``{"translatedText": ...}``), through the tools' HTTP guards: timeouts,
  a size cap, retries on 5xx and failed connections, and only the hosts allowed (by default the
  host of the address itself, so redirects cannot lead elsewhere).

``make_mt(url=..., allowed_hosts=...)`` or ``make_mt(model=...)`` builds a configured tool. The
entry-point tool ``mt`` reads:

    TOOLRUN_MT_URL            the translation endpoint, e.g. http://localhost:5000/translate
                              (unset: the lm backend)
    TOOLRUN_MT_API_KEY        sent as "api_key" when set
    TOOLRUN_MT_ALLOWED_HOSTS  comma-separated hosts the requests may reach (default: the URL's)
    TOOLRUN_MT_MODEL          a model for toolrun.load_model (lm backend; default: the
                              generating model)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import toolrun

from ._http import HttpSettings, allowed_hosts_for, fetch
from ._lm import NO_CONTEXT, ModelChoice, ask, lazy_model, prepare_tool

__all__ = ["API_KEY_ENV", "HOSTS_ENV", "MODEL_ENV", "PROMPT", "URL_ENV", "make_mt", "mt"]

URL_ENV = "TOOLRUN_MT_URL"
API_KEY_ENV = "TOOLRUN_MT_API_KEY"
HOSTS_ENV = "TOOLRUN_MT_ALLOWED_HOSTS"
MODEL_ENV = "TOOLRUN_MT_MODEL"
PROMPT = "Translate into {language}.\nText: {text}\n{language}:"
MAX_INPUT_CHARS = 1000
_DESCRIPTION = "Translate text in any language into English."
_LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "zh": "Chinese", "ja": "Japanese",
    "ar": "Arabic", "hi": "Hindi",
}  # fmt: skip


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    "He has published one book: O homem suprimido "
    '[MT("O homem suprimido") → The Suppressed Man] ("The Suppressed Man")',
    "In Morris de Jonge's Jeschuah, der klassische jüdische Mann "
    '[MT("der klassische jüdische Mann") → the classic Jewish man], there is a description '
    "of a Jewish writer",
)


def make_mt(
    url: str | None = None,
    *,
    model: ModelChoice = None,
    source: str = "auto",
    target: str = "en",
    api_key: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    http: HttpSettings | None = None,
    max_new_tokens: int = 64,
    timeout: float | None = None,
) -> Callable[..., str]:
    """An MT tool: the ``http`` backend when ``url`` is given, else the ``lm`` backend (``model``:
    None for the generating model, a ``toolrun.Model`` or a source for ``toolrun.load_model``).
    ``allowed_hosts`` defaults to the host of ``url``. Raises ToolConfigError for a bad address.
    """
    translate: Callable[[str, toolrun.ToolContext], str]
    if url is not None:
        hosts = allowed_hosts_for(url, allowed_hosts)
        settings = http or HttpSettings()
        translate = _http_backend(url, hosts, settings, source, target, api_key)
        default_timeout = (settings.connect_timeout + settings.read_timeout) * (
            settings.retries + 1
        )
    else:
        translate = _lm_backend(lazy_model(model), target, max_new_tokens)
        default_timeout = 60.0

    @toolrun.tool(
        examples=EXAMPLES, name="MT", description=_DESCRIPTION, timeout=timeout or default_timeout
    )
    def mt(text: str, ctx: toolrun.ToolContext = NO_CONTEXT) -> str:
        text = " ".join(text.split())
        if not text:
            raise toolrun.ToolError("nothing to translate")
        if len(text) > MAX_INPUT_CHARS:
            raise toolrun.ToolError(f"text longer than {MAX_INPUT_CHARS} characters")
        return translate(text, ctx)

    return mt


def _http_backend(
    url: str,
    hosts: frozenset[str],
    settings: HttpSettings,
    source: str,
    target: str,
    api_key: str | None,
) -> Callable[[str, toolrun.ToolContext], str]:
    def translate(text: str, ctx: toolrun.ToolContext) -> str:
        body: dict[str, Any] = {"q": text, "source": source, "target": target, "format": "text"}
        if api_key:
            body["api_key"] = api_key
        answer = fetch("POST", url, allowed_hosts=hosts, settings=settings, json_body=body).json()
        translated = answer.get("translatedText") if isinstance(answer, dict) else None
        if isinstance(translated, list):  # a list when "q" is a list; take the one we sent
            translated = translated[0] if translated else None
        if not isinstance(translated, str):
            raise toolrun.ToolError("the translation service sent no translatedText")
        if not translated.strip():
            raise toolrun.ToolError("the translation service returned nothing")
        return translated.strip()

    return translate


def _lm_backend(
    own_model: Any, target: str, max_new_tokens: int
) -> Callable[[str, toolrun.ToolContext], str]:
    language = _LANGUAGES.get(target.lower(), target)

    def translate(text: str, ctx: toolrun.ToolContext) -> str:
        prompt = PROMPT.format(language=language, text=text)
        answer = ask(prompt, own_model=own_model, ctx=ctx, max_new_tokens=max_new_tokens)
        if not answer:
            raise toolrun.ToolError("the model gave no translation")
        return answer

    return translate


_from_env: tuple[tuple[str | None, ...], Callable[..., str]] | None = None
_env_lock = threading.Lock()


def _env_tool() -> Callable[..., str]:
    global _from_env
    names = (URL_ENV, API_KEY_ENV, HOSTS_ENV, MODEL_ENV)
    settings = tuple(os.environ.get(name) or None for name in names)
    with _env_lock:
        if _from_env is None or _from_env[0] != settings:
            url, api_key, hosts, model = settings
            allowed = [h for h in (hosts or "").split(",") if h.strip()] or None
            _from_env = (
                settings,
                make_mt(url, model=model, api_key=api_key, allowed_hosts=allowed),
            )
        return _from_env[1]


def _check_env() -> None:
    prepare_tool(_env_tool())


@toolrun.tool(
    examples=EXAMPLES, name="MT", description=_DESCRIPTION, timeout=60.0, check=_check_env
)
def mt(text: str, ctx: toolrun.ToolContext = NO_CONTEXT) -> str:
    """Translate text into English: $TOOLRUN_MT_URL when set, else the generating model.

    Args:
        text: the text to translate, e.g. tortue
    """
    return _env_tool()(text, ctx)
