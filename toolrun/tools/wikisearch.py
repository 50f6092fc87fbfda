"""WikiSearch: the top few passages for a query, from Wikipedia online or your documents offline.

    [WikiSearch(Brown Act) → Ralph M. Brown Act: The Ralph M. Brown Act is an act of ...]

Two backends behind one tool:

- ``online``: the ``wikipedia`` package (search, then the opening sentences of the top pages),
  its requests made under the tools' HTTP guards (see ``tools._mediawiki``). Hosts allowed by
  default: ``*.wikipedia.org`` (plus the host of ``api_url`` when you set one).
- ``offline``: BM25 over a local folder or JSONL file (see ``tools._bm25``), indexed once and
  cached under ``toolrun.models.cache_dir()``.

``make_wikisearch(corpus=..., backend=...)`` builds a configured tool. The entry-point tool
``wikisearch`` reads the environment:

    TOOLRUN_WIKI_CORPUS    a folder or .jsonl/.txt file: use the offline backend
    TOOLRUN_WIKI_BACKEND   "offline" or "online" (default: offline when a corpus is set)
    TOOLRUN_WIKI_API_URL   the MediaWiki API address for the online backend (default:
                           wikipedia.wikipedia.API_URL, i.e. en.wikipedia.org)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import toolrun

from ._bm25 import Passage, SearchIndex, load_index
from ._http import HttpSettings, allowed_hosts_for
from ._mediawiki import DEFAULT_WIKI_HOSTS, search_online

__all__ = [
    "API_URL_ENV",
    "BACKEND_ENV",
    "CORPUS_ENV",
    "format_passages",
    "make_wikisearch",
    "wikisearch",
]

CORPUS_ENV = "TOOLRUN_WIKI_CORPUS"
BACKEND_ENV = "TOOLRUN_WIKI_BACKEND"
API_URL_ENV = "TOOLRUN_WIKI_API_URL"
_DESCRIPTION = "Search Wikipedia (or your own documents) and return the top passages."
_MAX_RESULT_CHARS = 640


def format_passages(passages: Iterable[Passage], chars: int = 200) -> str:
    """'Title: text' per passage, each cut at a word boundary, joined by ' | '."""
    parts = []
    for passage in passages:
        text = " ".join(passage.text.split())
        if passage.title and not text.lower().startswith(passage.title.lower()):
            text = f"{passage.title}: {text}"
        if len(text) > chars:
            text = text[: chars - 1].rsplit(" ", 1)[0] + "…"
        parts.append(text)
    return " | ".join(parts)


@dataclass
class _Searcher:
    """One configured backend; the offline index is loaded on first use, then kept."""

    backend: str
    corpus: Path | None
    results: int
    sentences: int
    allowed_hosts: frozenset[str]
    http: HttpSettings
    api_url: str | None
    _index: SearchIndex | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def prepare(self) -> None:
        """Build or load the offline index now (at registration), not during a generation."""
        if self.backend == "offline":
            self.index()

    def index(self) -> SearchIndex:
        with self._lock:
            if self._index is None:
                assert self.corpus is not None
                self._index = load_index(self.corpus)
            return self._index

    def __call__(self, query: str) -> list[Passage]:
        query = query.strip().strip("\"'")
        if not query:
            raise toolrun.ToolError("empty query")
        if self.backend == "offline":
            return self.index().search(query, self.results)
        return search_online(
            query,
            results=self.results,
            sentences=self.sentences,
            allowed_hosts=self.allowed_hosts,
            settings=self.http,
            api_url=self.api_url,
        )


def _searcher(
    corpus: str | os.PathLike[str] | None,
    backend: str | None,
    results: int,
    sentences: int,
    allowed_hosts: Iterable[str] | None,
    http: HttpSettings | None,
    api_url: str | None,
) -> _Searcher:
    """Validate a configuration, raising ToolConfigError for anything wrong."""
    chosen = (backend or ("offline" if corpus else "online")).strip().lower()
    if chosen not in ("offline", "online"):
        raise toolrun.ToolConfigError(
            f"WikiSearch backend must be 'offline' or 'online', not {backend!r}"
        )
    if results < 1 or sentences < 1:
        raise toolrun.ToolConfigError("WikiSearch needs results >= 1 and sentences >= 1")
    path = None
    if chosen == "offline":
        if not corpus:
            raise toolrun.ToolConfigError(
                f"WikiSearch offline needs a corpus: pass corpus=... or set {CORPUS_ENV}"
            )
        path = Path(corpus).expanduser()
        if not path.exists():
            raise toolrun.ToolConfigError(f"WikiSearch corpus {path} does not exist")
    hosts = set(h.lower() for h in allowed_hosts) if allowed_hosts else set(DEFAULT_WIKI_HOSTS)
    if api_url:  # refused now, not at the first call: http(s), and a host the allowlist allows
        hosts |= allowed_hosts_for(api_url, allowed_hosts or None)
    return _Searcher(
        chosen, path, results, sentences, frozenset(hosts), http or HttpSettings(), api_url
    )


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    "The colors on the flag of Ghana have the following meanings: red is for "
    '[WikiSearch("Ghana flag red meaning") → Red symbolises the blood of those who died in '
    "the country's struggle for independence.] the blood of martyrs, green for forests, and "
    "gold for mineral wealth.",
    "But what are the risks during production of nanomaterials? "
    '[WikiSearch("nanomaterial production risks") → Some nanomaterials may give rise to '
    "various kinds of lung damage.] Some nanomaterials may give rise to various kinds of lung "
    "damage.",
    'Metformin is the first-line drug for [WikiSearch("Metformin first-line drug") → '
    "Metformin is the first-line medication for the treatment of type 2 diabetes.] patients "
    "with type 2 diabetes and obesity.",
)


def make_wikisearch(
    corpus: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    results: int = 3,
    sentences: int = 2,
    passage_chars: int = 200,
    allowed_hosts: Iterable[str] | None = None,
    api_url: str | None = None,
    http: HttpSettings | None = None,
    timeout: float = 30.0,
) -> Callable[[str], str]:
    """A WikiSearch tool. ``backend``: "offline" (BM25 over ``corpus``) or "online" (Wikipedia);
    by default offline when a corpus is given. ``results`` passages of at most ``passage_chars``
    characters each (online: the first ``sentences`` sentences of each page). The offline index
    is built or loaded when the tool is registered for a generation.
    """
    searcher = _searcher(corpus, backend, results, sentences, allowed_hosts, http, api_url)
    return _tool(searcher, passage_chars, timeout)


def _tool(searcher: _Searcher, passage_chars: int, timeout: float) -> Callable[[str], str]:
    @toolrun.tool(
        examples=EXAMPLES,
        name="WikiSearch",
        description=_DESCRIPTION,
        timeout=timeout,
        max_result_chars=_MAX_RESULT_CHARS,
        check=searcher.prepare,
    )
    def wikisearch(query: str) -> str:
        passages = searcher(query)
        if not passages:
            raise toolrun.ToolError(f"no results for {query.strip()[:60]!r}")
        return format_passages(passages, passage_chars)

    return wikisearch


_from_env: tuple[tuple[str | None, ...], _Searcher, Callable[[str], str]] | None = None
_env_lock = threading.Lock()


def _env_tool() -> tuple[_Searcher, Callable[[str], str]]:
    """The tool the environment describes, rebuilt only when the environment changes."""
    global _from_env
    settings = tuple(
        os.environ.get(name) or None for name in (CORPUS_ENV, BACKEND_ENV, API_URL_ENV)
    )
    with _env_lock:
        if _from_env is None or _from_env[0] != settings:
            corpus, backend, api_url = settings
            searcher = _searcher(corpus, backend, 3, 2, None, None, api_url)
            _from_env = (settings, searcher, _tool(searcher, 200, 30.0))
        return _from_env[1], _from_env[2]


def _check_env() -> None:
    _env_tool()[0].prepare()


@toolrun.tool(
    examples=EXAMPLES,
    name="WikiSearch",
    description=_DESCRIPTION,
    timeout=30.0,
    max_result_chars=_MAX_RESULT_CHARS,
    check=_check_env,
)
def wikisearch(query: str) -> str:
    """Search Wikipedia, or the documents in $TOOLRUN_WIKI_CORPUS, for the top passages.

    Args:
        query: what to look for, e.g. Brown Act
    """
    return _env_tool()[1](query)
