"""Fake services on 127.0.0.1 that speak real protocols, for the built-in tools' tests.

    with MediaWikiServer({"Paris": "Paris is the capital of France."}) as wiki:
        wikipedia.wikipedia.API_URL = wiki.url

Each server runs in a thread and can misbehave on demand (see ``FakeServer``): answer slowly,
fail with 500s, send an oversized body, or redirect elsewhere. ``ScriptPerSession`` is a fake
generating model for the tools that ask the model itself (QA, MT).
"""

from .base import FakeServer
from .libretranslate import LibreTranslateServer
from .mediawiki import MediaWikiServer
from .models import ScriptPerSession
from .wolfram import WolframServer

__all__ = [
    "FakeServer",
    "LibreTranslateServer",
    "MediaWikiServer",
    "ScriptPerSession",
    "WolframServer",
]
