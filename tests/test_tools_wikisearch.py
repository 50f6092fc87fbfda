"""WikiSearch: BM25 over a corpus written here, and the real `wikipedia` package against a fake
MediaWiki API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wikipedia
from servers import MediaWikiServer

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools import HttpSettings, _bm25
from toolrun.tools.wikisearch import (
    API_URL_ENV,
    BACKEND_ENV,
    CORPUS_ENV,
    format_passages,
    make_wikisearch,
    wikisearch,
)

DOCUMENTS = {
    "Eiffel_Tower.txt": "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. "
    "It was designed by the company of Gustave Eiffel and completed in 1889.\n\n"
    "The tower is 330 metres tall and was the tallest man-made structure until 1930.",
    "Mount_Everest.md": "Mount Everest is Earth's highest mountain above sea level, in the "
    "Mahalangur Himal of the Himalayas. Its height is 8,849 metres.",
    "Brown_Act.txt": "The Ralph M. Brown Act is an act of the California State Legislature that "
    "guarantees the public's right to attend meetings of local legislative bodies.",
}
RECORDS = [
    {
        "title": "Penguin",
        "text": "Penguins are flightless birds living in the Southern Hemisphere.",
    },
    {"id": "Sahara", "contents": "The Sahara is the largest hot desert in the world."},
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOOLRUN_CACHE", str(tmp_path / "cache"))
    for name in (CORPUS_ENV, BACKEND_ENV, API_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    _bm25._loaded.clear()
    yield
    _bm25._loaded.clear()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "more").mkdir(parents=True)
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    lines = "\n".join(json.dumps(r) for r in RECORDS) + "\n"
    (folder / "more" / "extra.jsonl").write_text(lines, encoding="utf-8")
    (folder / "ignored.csv").write_text("Penguin,Penguin,Penguin", encoding="utf-8")
    return folder


# Offline: BM25


def test_bm25_finds_the_expected_passage(corpus: Path) -> None:
    search = make_wikisearch(corpus, results=1)
    assert search("highest mountain").startswith("Mount Everest is Earth's highest mountain")
    assert search("Brown Act").startswith("Brown Act: The Ralph M. Brown Act is an act")
    assert "330 metres tall" in search("how tall is the Eiffel Tower")  # paragraphs kept together
    assert search("penguins").startswith("Penguins are flightless birds")  # JSONL, "title"
    assert search("largest desert").startswith("Sahara: The Sahara")  # "id" and "contents"


def test_results_are_ranked_trimmed_and_joined(corpus: Path) -> None:
    search = make_wikisearch(corpus, results=3, passage_chars=60)
    passages = search("Eiffel tower, the highest mountain").split(" | ")
    assert len(passages) == 2
    assert {p.split(":")[0].split(" is ")[0] for p in passages} == {"Eiffel Tower", "Mount Everest"}
    assert all(len(p) <= 60 and p.endswith("…") for p in passages)


def test_plural_and_singular_meet(corpus: Path) -> None:
    assert make_wikisearch(corpus, results=1)("mountains").startswith("Mount Everest")


def test_no_match_is_a_clear_error(corpus: Path) -> None:
    search = make_wikisearch(corpus)
    with pytest.raises(toolrun.ToolError, match="no results for 'xylophone quartz'"):
        search("xylophone quartz")
    with pytest.raises(toolrun.ToolError, match="no results"):
        search("the of and")  # stopwords only


def test_index_is_built_once_and_reloaded_from_disk(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _bm25.load_index(corpus)
    assert first.folder.parent == tmp_path / "cache" / "wikisearch"  # under cache_dir()
    assert (first.folder / "passages.jsonl").is_file()
    _bm25._loaded.clear()  # a new process: only the disk cache remains

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(_bm25, "_build", no_rebuild)
    again = _bm25.load_index(corpus)  # no_rebuild above proves the cached index was used
    assert again.folder == first.folder and again.passages == first.passages
    assert again.search("Everest", 1)[0].title == "Mount Everest"


def test_edited_corpus_is_reindexed(corpus: Path) -> None:
    before = _bm25.load_index(corpus)
    (corpus / "Brown_Act.txt").write_text("The Brown Act was replaced by zebras.", encoding="utf-8")
    after = _bm25.load_index(corpus)
    assert after.folder != before.folder
    assert after.search("zebras", 1)[0].title == "Brown Act"


def test_damaged_cache_is_rebuilt(corpus: Path) -> None:
    folder = _bm25.load_index(corpus).folder
    _bm25._loaded.clear()
    (folder / "passages.jsonl").write_text("{not json", encoding="utf-8")
    assert _bm25.load_index(corpus).search("Everest", 1)[0].title == "Mount Everest"


def test_long_documents_are_cut_into_passages(tmp_path: Path) -> None:
    text = " ".join(f"w{i}" for i in range(250)) + "\n\nshort tail"
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    passages = _bm25.read_passages(tmp_path, passage_words=100)
    assert [len(p.text.split()) for p in passages] == [100, 100, 52]


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json}\n", r"bad.jsonl:1: not valid JSON"), ('{"title": "x"}\n', "need an object")],
)
def test_bad_jsonl_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(toolrun.ToolConfigError, match=message):
        toolrun.ToolRegistry([make_wikisearch(bad)])  # the index is built at registration


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(toolrun.ToolConfigError, match="does not exist"):
        make_wikisearch(tmp_path / "missing")
    with pytest.raises(toolrun.ToolConfigError, match="needs a corpus"):
        make_wikisearch(backend="offline")
    with pytest.raises(toolrun.ToolConfigError, match="'offline' or 'online'"):
        make_wikisearch(backend="google")
    (tmp_path / "empty").mkdir()
    with pytest.raises(toolrun.ToolConfigError, match="no text to index"):
        toolrun.ToolRegistry([make_wikisearch(tmp_path / "empty")])


def test_entry_point_reads_the_corpus_from_the_environment(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CORPUS_ENV, str(corpus / "missing"))
    with pytest.raises(toolrun.ToolConfigError, match="does not exist"):
        toolrun.ToolRegistry(["wikisearch"])
    monkeypatch.setenv(CORPUS_ENV, str(corpus))
    toolrun.ToolRegistry(["WikiSearch"])  # builds the index now
    assert wikisearch("Everest").startswith("Mount Everest")


def test_offline_end_to_end_through_generate(corpus: Path) -> None:
    model = ScriptedModel(["Everest is [WikiSearch(highest mountain) →", " tall."])
    out = toolrun.generate("Q:", model=model, tools=[make_wikisearch(corpus, results=1)])
    assert out.calls[0].error is None
    assert out.calls[0].result is not None and "8,849 metres" in out.calls[0].result
    assert out.text.startswith("Everest is [WikiSearch(highest mountain) → Mount Everest is")
    assert out.text.endswith("] tall.")


def test_format_passages() -> None:
    passages = [_bm25.Passage("Paris", "Paris is a city."), _bm25.Passage("", "no title")]
    assert format_passages(passages) == "Paris is a city. | no title"


# Online: the real wikipedia package against a fake MediaWiki API

PAGES = {
    "Brown Act": "The Brown Act is an act of the California State Legislature. "
    "It guarantees the public's right to attend meetings. It was passed in 1953.",
    "Eiffel Tower": "The Eiffel Tower is a lattice tower in Paris. It is 330 metres tall.",
    "Paris": "Paris is the capital of France. It has 2.1 million residents.",
}
FAST = HttpSettings(connect_timeout=0.5, read_timeout=0.3, max_bytes=20_000, backoff_s=0.01)


@pytest.fixture(scope="module")
def running_wiki() -> Iterator[MediaWikiServer]:
    with MediaWikiServer(PAGES) as server:
        yield server


@pytest.fixture
def wiki(running_wiki: MediaWikiServer, monkeypatch: pytest.MonkeyPatch) -> MediaWikiServer:
    running_wiki.reset()
    monkeypatch.setattr(wikipedia.wikipedia, "API_URL", running_wiki.url)
    wikipedia.search.clear_cache()  # the package memoises searches across API_URLs
    return running_wiki


def _online(results: int = 3, sentences: int = 2) -> Callable[[str], str]:
    return make_wikisearch(
        backend="online",
        allowed_hosts=["127.0.0.1"],
        http=FAST,
        results=results,
        sentences=sentences,
    )


def test_online_search_returns_snippets_of_the_top_pages(wiki: MediaWikiServer) -> None:
    result = _online(results=2, sentences=2)("Brown Act")
    assert result == (
        "Brown Act: The Brown Act is an act of the California State Legislature. "
        "It guarantees the public's right to attend meetings."
    )
    searched = [h for h in wiki.hits if h.param("list") == "search"]
    assert searched[0].param("srsearch") == "Brown Act"


def test_online_several_pages(wiki: MediaWikiServer) -> None:
    result = _online(results=3, sentences=1)("Paris tower")
    assert result.split(" | ") == [
        "Eiffel Tower: The Eiffel Tower is a lattice tower in Paris.",
        "Paris is the capital of France.",
    ]


def test_online_empty_results(wiki: MediaWikiServer) -> None:
    with pytest.raises(toolrun.ToolError, match="no results for 'quantum chromodynamics'"):
        _online()("quantum chromodynamics")


def test_online_slow_server_times_out(wiki: MediaWikiServer) -> None:
    wiki.delay = 3.0  # far past the 0.3 s timeout: the bound below holds on a loaded machine
    started = time.perf_counter()
    with pytest.raises(toolrun.ToolError, match=r"did not answer within 0\.3 s"):
        _online()("Paris")
    assert time.perf_counter() - started < 2.5


def test_online_500_is_retried_then_reported(wiki: MediaWikiServer) -> None:
    wiki.fail_first = 1
    assert _online(results=1)("Paris").startswith("Paris is the capital")
    wiki.status = 500
    with pytest.raises(toolrun.ToolError, match=r"HTTP 500 from 127\.0\.0\.1 after 3 tries"):
        _online()("Eiffel")


def test_online_oversized_answer_is_refused(wiki: MediaWikiServer) -> None:
    wiki.oversize = 100_000
    with pytest.raises(toolrun.ToolError, match="larger than 20,000 bytes"):
        _online()("Paris")


def test_online_default_allowlist_refuses_other_hosts(wiki: MediaWikiServer) -> None:
    search = make_wikisearch(backend="online", http=FAST)  # *.wikipedia.org only
    with pytest.raises(toolrun.ToolError, match=r"host 127.0.0.1 is not allowed"):
        search("Paris")
    assert wiki.hits == []


def test_online_api_url_overrides_the_package_setting(
    running_wiki: MediaWikiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_wiki.reset()
    wikipedia.search.clear_cache()
    monkeypatch.setattr(wikipedia.wikipedia, "API_URL", "http://unused.invalid/w/api.php")
    monkeypatch.setenv(API_URL_ENV, running_wiki.url)
    assert wikisearch("Paris").startswith("Paris is the capital")  # the entry point, online


def test_guard_leaves_other_users_of_the_package_alone(wiki: MediaWikiServer) -> None:
    _online(results=1)("Paris")  # installs the guard
    wikipedia.search.clear_cache()
    # Outside a WikiSearch call the package uses plain requests, allowlist or not.
    assert wikipedia.search("Eiffel", results=1) == ["Eiffel Tower"]


def test_online_end_to_end_through_generate(wiki: MediaWikiServer) -> None:
    model = ScriptedModel(["It is [WikiSearch(Eiffel Tower) →", " tall."])
    out = toolrun.generate("Q:", model=model, tools=[_online(results=1, sentences=2)])
    assert out.text == (
        "It is [WikiSearch(Eiffel Tower) → Eiffel Tower: The Eiffel Tower is a lattice tower in "
        "Paris. It is 330 metres tall.] tall."
    )
