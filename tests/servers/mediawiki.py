"""The parts of the MediaWiki action API that the ``wikipedia`` package uses for search."""

from __future__ import annotations

import re
from urllib.parse import quote

from .base import Answer, FakeServer, Hit, json_answer

_WORD = re.compile(r"\w+")


class MediaWikiServer(FakeServer):
    """``/w/api.php``: list=search, prop=info|pageprops (page lookup) and prop=extracts."""

    path = "/w/api.php"

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = dict(pages)
        super().__init__()

    def respond(self, hit: Hit) -> Answer:
        if hit.path != self.path or hit.param("format") != "json":
            return json_answer({"error": {"code": "badrequest", "info": "bad request"}}, 400)
        if hit.param("list") == "search":
            return json_answer(self._search(hit))
        title = hit.param("titles") or ""
        prop = hit.param("prop") or ""
        if title not in self.pages:
            missing = {"ns": 0, "title": title, "missing": ""}
            return json_answer({"query": {"pages": {"-1": missing}}})
        pageid = str(list(self.pages).index(title) + 1)
        page = {"pageid": int(pageid), "ns": 0, "title": title}
        if prop == "info|pageprops":
            page["fullurl"] = f"https://en.wikipedia.org/wiki/{quote(title.replace(' ', '_'))}"
        elif prop == "extracts":
            page["extract"] = _sentences(self.pages[title], int(hit.param("exsentences") or 0))
        else:
            return json_answer({"error": {"code": "badvalue", "info": f"prop {prop!r}"}}, 400)
        return json_answer({"batchcomplete": "", "query": {"pages": {pageid: page}}})

    def _search(self, hit: Hit) -> dict[str, object]:
        words = {w.lower() for w in _WORD.findall(hit.param("srsearch") or "")}
        scored = []
        for title, text in self.pages.items():
            in_title = {w.lower() for w in _WORD.findall(title)}
            in_text = {w.lower() for w in _WORD.findall(text)}
            score = 10 * len(words & in_title) + len(words & in_text)  # titles first, as MediaWiki
            if score:
                scored.append((-score, title))
        limit = int(hit.param("srlimit") or 10)
        results = [{"ns": 0, "title": t} for _, t in sorted(scored)[:limit]]
        query: dict[str, object] = {"search": results}
        if hit.param("srinfo") == "suggestion":
            query["searchinfo"] = {"totalhits": len(scored)}
        return {"batchcomplete": "", "query": query}


def _sentences(text: str, count: int) -> str:
    sentences = re.split(r"(?<=\.)\s+", text.strip())
    return " ".join(sentences[:count] if count else sentences)
