"""Shared fixtures: the default model's tokenizer, a tiny random Llama, the llama.cpp model.

A failure never becomes a skip. Tests skip only when an optional package is truly absent, and
``TOOLRUN_TEST_REQUIRE`` (comma-separated module names; ``make test`` sets it to the extras it
installs) turns even that into a failure of the whole run, so a broken install shows in CI
instead of as a row of quiet skips.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    required = [name for name in os.environ.get("TOOLRUN_TEST_REQUIRE", "").split(",") if name]
    missing = [name for name in required if importlib.util.find_spec(name) is None]
    if missing:
        raise pytest.UsageError(
            f"TOOLRUN_TEST_REQUIRE names modules that are not installed: {', '.join(missing)} "
            "(did `make setup` fail to install an extra? its tests would only have been skipped)"
        )


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


@pytest.fixture(scope="module")
def llamacpp_model():
    """The default model on llama.cpp. Skips only when llama-cpp-python is not installed at all:
    a package that is there but broken, or a model that will not load, is an error."""
    try:
        import llama_cpp  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "llama_cpp":
            raise  # installed, but something it needs is missing: a broken install
        pytest.skip("llama-cpp-python is not installed (pip install 'toolrun[llama]')")
    from toolrun.backends.llamacpp import load_llamacpp

    return load_llamacpp()
