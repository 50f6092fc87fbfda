"""Quiet by default: what dependencies print while a model loads is hidden unless asked for.

Loading the default model would print a transformers progress bar, a bitsandbytes warning about
an optional CPU kernel (peft imports bitsandbytes even for an fp32 model) and deprecation
warnings raised inside transformers and peft. None of it is something a toolrun user can act
on, and the bar would interleave with toolrun's own. ``quiet()`` hides all of it for a block;
``set_verbose(True)`` (the CLI's ``--verbose``, or ``TOOLRUN_VERBOSE=1``) shows it again.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet", "set_verbose", "verbose"]

_DEPENDENCY_LOGGERS = ("transformers", "peft", "accelerate", "bitsandbytes", "huggingface_hub")
_verbose = os.environ.get("TOOLRUN_VERBOSE", "").strip() not in ("", "0")


def verbose() -> bool:
    return _verbose


def set_verbose(on: bool) -> None:
    """Show (True) or hide (False) dependencies' warnings, logs and progress bars."""
    global _verbose
    _verbose = on


@contextmanager
def quiet() -> Iterator[None]:
    """Hide dependencies' deprecation warnings, log messages below ERROR and progress bars."""
    if _verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _DEPENDENCY_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = _progress_bars(False)
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        _progress_bars(bars)


def _progress_bars(enabled: bool) -> bool:
    """Turn transformers' progress bars on or off; returns whether they were on."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    was = bool(hf_logging.is_progress_bar_enabled())
    if enabled:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    return was
