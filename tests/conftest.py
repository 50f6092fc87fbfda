"""Shared fixtures: the default model's tokenizer and a tiny random Llama built from a config."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def default_folder():
    """The default model converted to a plain folder (made once, then cached on disk)."""
    from toolrun.models import _resolve_folder

    return _resolve_folder(None)


@pytest.fixture(scope="session")
def tokenizer(default_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_folder)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    """A randomly initialised 2-layer Llama with the default model's vocabulary."""
    from toolrun.testing import tiny_llama as build

    return build(tokenizer)
