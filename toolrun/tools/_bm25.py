"""Offline search: BM25 (``bm25s``) over the user's own documents, indexed once, cached on disk.

A corpus is a folder (every ``.txt``, ``.md`` and ``.jsonl`` file inside, recursively), a single
``.txt``/``.md`` file, or a JSONL file of ``{"title": ..., "text": ...}`` objects ("contents" or
"body" are accepted for the text, "id" for the title). Documents are cut into passages of about
``PASSAGE_WORDS`` words at paragraph boundaries, the way the paper searched a Wikipedia dump.

The index lives in ``cache_dir()/wikisearch/<key>``; the key hashes the corpus path, every file's
size and modification time and the passage settings, so an edited corpus is re-indexed and an
unchanged one is loaded (milliseconds) instead of rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolrun import ToolConfigError
from toolrun.models import cache_dir

__all__ = ["PASSAGE_WORDS", "Passage", "SearchIndex", "load_index", "read_passages"]

PASSAGE_WORDS = 100
_INDEX_VERSION = "1"
_TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


class SearchIndex:
    """A loaded BM25 index and its passages."""

    def __init__(self, retriever: Any, passages: list[Passage], folder: Path) -> None:
        self.retriever = retriever
        self.passages = passages
        self.folder = folder

    def search(self, query: str, k: int) -> list[Passage]:
        """The best ``k`` passages that share at least one word with ``query``."""
        import bm25s

        tokens = bm25s.tokenize(
            [query], stopwords="en", stemmer=_stem, return_ids=False, show_progress=False
        )
        if not tokens or not tokens[0]:
            return []
        k = min(k, len(self.passages))
        found, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(i)] for i, s in zip(found[0], scores[0], strict=True) if s > 0]


_loaded: dict[str, SearchIndex] = {}
_lock = threading.Lock()


def load_index(corpus: str | os.PathLike[str], passage_words: int = PASSAGE_WORDS) -> SearchIndex:
    """The index of ``corpus``: from memory, else from the disk cache, else built and cached."""
    path = Path(corpus).expanduser().resolve()
    key = _cache_key(path, passage_words)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        folder = cache_dir() / "wikisearch" / key
        index = _load(folder) if (folder / "passages.jsonl").is_file() else None
        if index is None:
            index = _build(path, passage_words, folder)
        _loaded[key] = index
        return index


def read_passages(corpus: Path, passage_words: int = PASSAGE_WORDS) -> list[Passage]:
    """Every passage of every document in ``corpus``."""
    passages: list[Passage] = []
    for title, text in _documents(corpus):
        passages += _split(title, text, passage_words)
    return passages


def _build(corpus: Path, passage_words: int, folder: Path) -> SearchIndex:
    import bm25s

    passages = read_passages(corpus, passage_words)
    if not passages:
        raise ToolConfigError(f"no text to index in {corpus}")
    tokens = bm25s.tokenize(
        [f"{p.title}\n{p.text}" for p in passages],
        stopwords="en",
        stemmer=_stem,
        show_progress=False,
    )
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    # Build beside the final folder and rename: a reader never sees half an index.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        retriever.save(str(staging), show_progress=False)
        with open(staging / "passages.jsonl", "w", encoding="utf-8") as out:
            for p in passages:
                out.write(json.dumps({"title": p.title, "text": p.text}, ensure_ascii=False) + "\n")
        # An OSError here means another process finished first; its index is the same.
        with contextlib.suppress(OSError):
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SearchIndex(retriever, passages, folder)


def _load(folder: Path) -> SearchIndex | None:
    import bm25s

    try:
        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        with open(folder / "passages.jsonl", encoding="utf-8") as lines:
            passages = [Passage(**json.loads(line)) for line in lines]
    except (OSError, ValueError, TypeError):
        shutil.rmtree(folder, ignore_errors=True)  # a damaged cache is rebuilt
        return None
    return SearchIndex(retriever, passages, folder)


def _corpus_files(corpus: Path) -> list[Path]:
    if corpus.is_dir():
        return sorted(
            p for p in corpus.rglob("*")
            if p.is_file() and p.suffix.lower() in (*_TEXT_SUFFIXES, ".jsonl")
            and not p.name.startswith(".")
        )  # fmt: skip
    if corpus.is_file():
        return [corpus]
    raise ToolConfigError(f"WikiSearch corpus {corpus} does not exist")


def _cache_key(corpus: Path, passage_words: int) -> str:
    digest = hashlib.sha256(f"{_INDEX_VERSION}\0{corpus}\0{passage_words}".encode())
    for file in _corpus_files(corpus):
        stat = file.stat()
        digest.update(
            f"\0{file.relative_to(corpus.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        )
    return digest.hexdigest()[:24]


def _documents(corpus: Path) -> Iterator[tuple[str, str]]:
    for file in _corpus_files(corpus):
        suffix = file.suffix.lower()
        try:
            if suffix == ".jsonl":
                yield from _jsonl_documents(file)
            elif suffix in _TEXT_SUFFIXES:
                yield (
                    file.stem.replace("_", " "),
                    file.read_text(encoding="utf-8", errors="replace"),
                )
            else:
                raise ToolConfigError(f"{file}: use a folder, a .txt/.md file or a .jsonl file")
        except OSError as exc:
            raise ToolConfigError(f"cannot read {file}: {exc}") from exc


def _jsonl_documents(file: Path) -> Iterator[tuple[str, str]]:
    with open(file, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ToolConfigError(f"{file}:{number}: not valid JSON") from exc
            text = (
                record.get("text") or record.get("contents") or record.get("body")
                if isinstance(record, dict) else None
            )  # fmt: skip
            if not isinstance(text, str):
                raise ToolConfigError(f'{file}:{number}: need an object with a "text" string')
            yield str(record.get("title") or record.get("id") or ""), text


def _split(title: str, text: str, words: int) -> list[Passage]:
    """Whole paragraphs gathered up to ``words`` words; a longer paragraph is cut into pieces."""
    passages: list[Passage] = []
    current: list[str] = []
    for paragraph in text.split("\n\n"):
        tokens = paragraph.split()
        while len(tokens) > words:
            if current:
                passages.append(Passage(title, " ".join(current)))
                current = []
            passages.append(Passage(title, " ".join(tokens[:words])))
            tokens = tokens[words:]
        if current and len(current) + len(tokens) > words:
            passages.append(Passage(title, " ".join(current)))
            current = []
        current += tokens
    if current:
        passages.append(Passage(title, " ".join(current)))
    return passages


def _stem(words: list[str]) -> list[str]:
    """Harman's S-stemmer: plural forms meet their singular ("mountains" finds "mountain")."""
    out = []
    for word in words:
        if len(word) > 4 and word.endswith("ies") and not word.endswith(("eies", "aies")):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("us", "ss")):
            word = word[:-1]  # Harman's "es" -> "e" and "s" -> "" rules are both this
        out.append(word)
    return out
