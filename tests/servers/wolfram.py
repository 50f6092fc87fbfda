"""The Wolfram|Alpha v2 query API: ``/v2/query?appid=...&input=...`` answering XML."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .base import Answer, FakeServer, Hit

_XML = {"Content-Type": "text/xml;charset=utf-8"}


class WolframServer(FakeServer):
    """Answers each known input with its pods: ``{input: [(title, plaintext, primary), ...]}``."""

    path = "/v2/query"

    def __init__(self, app_id: str, answers: dict[str, list[tuple[str, str, bool]]]) -> None:
        self.app_id = app_id
        self.answers = {k.lower(): v for k, v in answers.items()}
        super().__init__()

    def respond(self, hit: Hit) -> Answer:
        if hit.param("appid") != self.app_id:
            return (
                200,
                _XML,
                _result(
                    "success='false' error='true' numpods='0'",
                    "<error><code>1</code><msg>Invalid appid</msg></error>",
                ),
            )
        pods = self.answers.get((hit.param("input") or "").lower())
        if not pods:
            return (
                200,
                _XML,
                _result(
                    "success='false' error='false' numpods='0'",
                    "<didyoumeans count='0'></didyoumeans>",
                ),
            )
        body = "".join(
            f"<pod title={quoteattr(title)} scanner='Data' id='P{i}' position='{100 * (i + 1)}'"
            f" error='false' numsubpods='1'{' primary=' + repr('true') if primary else ''}>"
            f"<subpod title=''><plaintext>{escape(text)}</plaintext></subpod></pod>"
            for i, (title, text, primary) in enumerate(pods)
        )
        return 200, _XML, _result(f"success='true' error='false' numpods='{len(pods)}'", body)


def _result(attributes: str, body: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n<queryresult {attributes} version='2.6'>"
        f"{body}</queryresult>"
    ).encode()
