"""WolframAlpha: answers from the Wolfram|Alpha v2 query API, with the ``wolframalpha`` package.

    [WolframAlpha(distance from Earth to the Moon) → 384400 km]

The app id comes from ``app_id=`` or the environment (``WOLFRAM_APP_ID``, or the package's own
``WOLFRAMALPHA_API_KEY``); without one, registering the tool raises ToolConfigError, so a
generation never starts with a tool that cannot work.

The package's client fetches with a plain ``httpx.AsyncClient`` (no size cap, no retries, any
host). ``_GuardedClient`` keeps the package's request parameters and its result model
(``Result``, ``Pod``, parsed by ``xmltodict`` with the package's own ``Document.make``) and only
swaps the fetch for the tools' guarded one.

Environment of the entry-point tool ``wolframalpha``:

    WOLFRAM_APP_ID           the app id (required)
    TOOLRUN_WOLFRAM_URL      the query endpoint (default: https://api.wolframalpha.com/v2/query)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import toolrun

from ._http import HttpSettings, allowed_hosts_for, fetch

__all__ = ["APP_ID_ENV", "DEFAULT_URL", "URL_ENV", "make_wolframalpha", "wolframalpha"]

APP_ID_ENV = "WOLFRAM_APP_ID"
_PACKAGE_APP_ID_ENV = "WOLFRAMALPHA_API_KEY"
URL_ENV = "TOOLRUN_WOLFRAM_URL"
DEFAULT_URL = "https://api.wolframalpha.com/v2/query"
_DESCRIPTION = "Ask Wolfram|Alpha: math, science, units, facts about places and things."
_INPUT_TITLES = ("Input", "Input interpretation")


def _client_class() -> Any:
    try:
        import wolframalpha
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise toolrun.ToolConfigError(
            "WolframAlpha needs the wolframalpha package: pip install 'toolrun[wolfram]'"
        ) from exc

    class _GuardedClient(wolframalpha.Client):
        """``wolframalpha.Client`` with the fetch made under the HTTP guards."""

        def query(self, input: str, params: Any = (), **kwargs: Any) -> Any:
            import multidict
            import xmltodict

            query = multidict.MultiDict(params, appid=self.app_id, input=input, **kwargs)
            response = fetch(
                "GET",
                self.url,
                allowed_hosts=self.allowed_hosts,
                settings=self.settings,
                params=list(query.items()),
            )
            try:
                doc = xmltodict.parse(response.content, postprocessor=wolframalpha.Document.make)
            except ValueError as exc:  # the package raises ValueError for an <error> element
                raise toolrun.ToolError(f"Wolfram|Alpha: {exc}") from exc
            except Exception as exc:  # xml.parsers.expat.ExpatError and the like
                raise toolrun.ToolError("Wolfram|Alpha sent an answer that is not XML") from exc
            if "error" in doc:
                raise toolrun.ToolError(f"Wolfram|Alpha: {doc['error']}")
            if "queryresult" not in doc:
                raise toolrun.ToolError("Wolfram|Alpha sent no queryresult")
            return doc["queryresult"]

    return _GuardedClient


def answer_text(result: Any) -> str:
    """The plain text of the primary (or 'Result') pod, else of the first non-input pod."""
    pods = list(result.pods)
    chosen = next((p for p in pods if p.primary or p.title == "Result"), None)
    chosen = chosen or next((p for p in pods if p.title not in _INPUT_TITLES), None)
    texts = [t for t in (chosen.texts if chosen is not None else []) if t]
    return "; ".join(" ".join(str(t).split()) for t in texts)


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    'The boiling point of water at the top of Mount Everest is [WolframAlpha("boiling point '
    'of water at 8849 m altitude") → 70.5 °C] about 70 °C.',
    'The distance from the Earth to the Moon is [WolframAlpha("distance Earth Moon") → '
    "384400 km] 384,400 km on average.",
)


def make_wolframalpha(
    app_id: str | None = None,
    *,
    url: str = DEFAULT_URL,
    allowed_hosts: Iterable[str] | None = None,
    http: HttpSettings | None = None,
    timeout: float | None = None,
) -> Callable[[str], str]:
    """A WolframAlpha tool. ``app_id`` defaults to $WOLFRAM_APP_ID; raises ToolConfigError when
    there is none. ``allowed_hosts`` defaults to the host of ``url``.
    """
    app_id = app_id or _app_id_from_env()
    if not app_id:
        raise toolrun.ToolConfigError(_missing_id())
    settings = http or HttpSettings(read_timeout=25.0)  # the API itself may take ~20 s
    client = _client_class()(
        app_id, url=url, allowed_hosts=allowed_hosts_for(url, allowed_hosts), settings=settings
    )
    default_timeout = (settings.connect_timeout + settings.read_timeout) * (settings.retries + 1)

    @toolrun.tool(
        examples=EXAMPLES,
        name="WolframAlpha",
        description=_DESCRIPTION,
        timeout=timeout or default_timeout,
    )
    def wolframalpha(query: str) -> str:
        query = " ".join(query.split())
        if not query:
            raise toolrun.ToolError("empty query")
        result = client.query(query, format="plaintext")
        text = answer_text(result) if result.get("@success", True) else ""
        if not text:
            raise toolrun.ToolError(f"Wolfram|Alpha has no answer for {query[:60]!r}")
        return text

    return wolframalpha


def _app_id_from_env() -> str | None:
    return os.environ.get(APP_ID_ENV) or os.environ.get(_PACKAGE_APP_ID_ENV) or None


def _missing_id() -> str:
    return (
        f"WolframAlpha needs an app id: set {APP_ID_ENV} (from developer.wolframalpha.com) "
        "or pass app_id= to tools.wolframalpha.make_wolframalpha"
    )


_from_env: tuple[tuple[str | None, ...], Callable[[str], str]] | None = None
_env_lock = threading.Lock()


def _env_tool() -> Callable[[str], str]:
    global _from_env
    settings = (_app_id_from_env(), os.environ.get(URL_ENV) or None)
    with _env_lock:
        if _from_env is None or _from_env[0] != settings:
            app_id, url = settings
            _from_env = (settings, make_wolframalpha(app_id, url=url or DEFAULT_URL))
        return _from_env[1]


def _check_env() -> None:
    _env_tool()


@toolrun.tool(
    examples=EXAMPLES,
    name="WolframAlpha",
    description=_DESCRIPTION,
    timeout=100.0,
    check=_check_env,
)
def wolframalpha(query: str) -> str:
    """Ask Wolfram|Alpha (app id from $WOLFRAM_APP_ID).

    Args:
        query: a question or computation, e.g. distance from Earth to the Moon
    """
    return _env_tool()(query)
