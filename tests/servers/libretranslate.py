"""A LibreTranslate-style API: ``POST /translate {"q", "source", "target", "api_key"}``."""

from __future__ import annotations

from .base import Answer, FakeServer, Hit, json_answer


class LibreTranslateServer(FakeServer):
    """Translates by dictionary into English; ``api_key`` (when set) must match."""

    path = "/translate"

    def __init__(self, dictionary: dict[str, str], api_key: str | None = None) -> None:
        self.dictionary = {k.lower(): v for k, v in dictionary.items()}
        self.api_key = api_key
        super().__init__()

    def respond(self, hit: Hit) -> Answer:
        if hit.method != "POST" or hit.path != self.path:
            return json_answer({"error": "Not Found"}, 404)
        try:
            request = hit.json()
        except ValueError:
            return json_answer({"error": "Invalid request: body is not JSON"}, 400)
        if self.api_key is not None and request.get("api_key") != self.api_key:
            return json_answer({"error": "Invalid API key"}, 403)
        text = request.get("q")
        if not isinstance(text, str) or not text:
            return json_answer({"error": "Invalid request: missing q parameter"}, 400)
        if request.get("target") != "en":
            return json_answer({"error": f"{request.get('target')} is not supported"}, 400)
        translated = self.dictionary.get(text.lower(), "")
        return json_answer(
            {"translatedText": translated, "detectedLanguage": {"confidence": 90, "language": "fr"}}
        )
