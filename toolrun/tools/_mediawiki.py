"""Online search with the ``wikipedia`` package, its requests made under the tools' HTTP guards.

The package sends every request through ``requests.get(API_URL, params=..., headers=...)``
with no timeout and no size limit, and offers no hook to change that. So the module-level
``requests`` it uses is replaced, once, by a proxy: while a WikiSearch call is running on the
current thread, ``get`` goes through ``tools._http.fetch`` (timeouts, size cap, retries, host
allowlist); at any other time it is the real ``requests.get``, so other users of the package
see no change.

``wikipedia.wikipedia.API_URL`` says where the API is (``wikipedia.set_lang`` changes it);
``api_url=`` overrides it for one tool.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from toolrun import ToolError

from ._bm25 import Passage
from ._http import HttpResponse, HttpSettings, fetch, host_of

__all__ = ["DEFAULT_WIKI_HOSTS", "search_online"]

DEFAULT_WIKI_HOSTS = frozenset({"*.wikipedia.org"})


@dataclass(frozen=True)
class _Guard:
    allowed_hosts: frozenset[str]
    settings: HttpSettings
    api_url: str | None


_active = threading.local()  # the guard of the WikiSearch call running on this thread


class _ShimResponse:
    """What ``wikipedia`` reads from a response: ``json()``, and a few fields for good measure."""

    def __init__(self, response: HttpResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.url = response.url
        self.content = response.content
        self.text = response.text

    def json(self) -> Any:
        return self._response.json()


class _GuardedRequests:
    """Stands in for the ``requests`` module inside ``wikipedia.wikipedia``."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        guard: _Guard | None = getattr(_active, "guard", None)
        if guard is None:
            return self._real.get(url, params=params, headers=headers, **kwargs)
        response = fetch(
            "GET",
            guard.api_url or url,
            allowed_hosts=guard.allowed_hosts,
            settings=guard.settings,
            params=params,
            headers=headers,
        )
        return _ShimResponse(response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_install_lock = threading.Lock()


def _wikipedia() -> Any:
    """The ``wikipedia`` package with its requests guarded (installed once)."""
    try:
        import wikipedia
        import wikipedia.wikipedia as module
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise ToolError(
            "WikiSearch online needs the wikipedia package: pip install wikipedia"
        ) from exc
    with _install_lock:
        if not isinstance(module.requests, _GuardedRequests):
            module.requests = _GuardedRequests(module.requests)
    return wikipedia


@contextmanager
def _guarded(guard: _Guard) -> Iterator[None]:
    previous = getattr(_active, "guard", None)
    _active.guard = guard
    try:
        yield
    finally:
        _active.guard = previous


def search_online(
    query: str,
    *,
    results: int,
    sentences: int,
    allowed_hosts: Iterable[str],
    settings: HttpSettings,
    api_url: str | None = None,
) -> list[Passage]:
    """Search, then the first ``sentences`` sentences of each of the top ``results`` pages."""
    wikipedia = _wikipedia()
    exceptions = wikipedia.exceptions
    guard = _Guard(frozenset(allowed_hosts), settings, api_url)
    host = host_of(api_url or wikipedia.wikipedia.API_URL)
    passages = []
    with _guarded(guard):
        try:
            titles = wikipedia.search(query, results=results)
            for title in titles[:results]:
                try:
                    text = wikipedia.summary(title, sentences=sentences, auto_suggest=False)
                except (exceptions.DisambiguationError, exceptions.PageError):
                    continue  # an ambiguous or vanished page: the next one may do
                if text and text.strip():
                    passages.append(Passage(str(title), text))
        except ToolError:
            raise
        except exceptions.WikipediaException as exc:
            raise ToolError(f"Wikipedia search failed: {str(exc).strip()[:80]}") from exc
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ToolError(f"unexpected answer from {host}") from exc
    return passages
