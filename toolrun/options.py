"""Decoding options: what shapes one generation besides the prompt, the model and the tools.

``DecodingOptions.build(**options)`` validates the keyword options ``generate()`` and its siblings
take (transformers' spellings accepted) and raises GenerationOptionsError for anything it cannot
honour: an unknown name, a value of the wrong type ("10" for a number), a value out of range,
``inf`` or ``nan``. Like transformers, it warns when a sampling option is set without
``do_sample=True``. ``logits_processors`` turns the options into transformers' own processors;
``check_prompt`` refuses what is not a prompt before any model loads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pydantic
import torch

from .errors import GenerationOptionsError

__all__ = ["DecodingOptions", "check_prompt", "logits_processors"]


@dataclass
class DecodingOptions:
    """Everything that shapes one generation besides the prompt, the model and the tools."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    """End-of-sequence is banned until the model has written this many tokens of its own."""
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    allow_calls: bool = True
    api_start_top_k: int = 0
    max_calls: int | None = None
    approve: Callable[[str, dict[str, Any]], bool] | None = None
    logits_processor: Sequence[Callable[..., torch.Tensor]] = ()

    @classmethod
    def build(cls, **options: Any) -> DecodingOptions:
        """Validate keyword options (transformers' spellings accepted) into DecodingOptions."""
        config = options.pop("generation_config", None)
        if config is not None:
            for name in _CONFIG_FIELDS:
                value = getattr(config, name, None)
                if value is not None:
                    options.setdefault(name, value)
        if "stop_strings" in options:
            options.setdefault("stop", options.pop("stop_strings"))
        if "stop" in options:
            options["stop"] = _stop_strings(options["stop"])
        if "logits_processor" in options:
            options["logits_processor"] = _processors(options["logits_processor"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise GenerationOptionsError(
                f"unsupported generation option(s): {', '.join(unknown)}; "
                f"supported: {', '.join(sorted(known | {'generation_config', 'stop_strings'}))}"
            )
        values = {name: _plain(value) for name, value in options.items()}
        try:
            checked = _Checked.model_validate(values)
        except pydantic.ValidationError as exc:
            raise GenerationOptionsError(_describe(exc)) from None
        built = cls(**{name: getattr(checked, name) for name in values})
        built.check()
        _warn_unused_sampling(built, set(values))
        return built

    def check(self) -> None:
        """The checks that relate options to each other (each value is checked in ``build``)."""
        if self.min_new_tokens > self.max_new_tokens:
            raise GenerationOptionsError(
                f"min_new_tokens ({self.min_new_tokens}) is more than max_new_tokens "
                f"({self.max_new_tokens})"
            )
        if any(not s for s in self.stop):
            raise GenerationOptionsError("stop strings must not be empty")
        if self.do_sample and not self.temperature > 0:
            raise GenerationOptionsError(
                f"temperature must be > 0 when sampling, got {self.temperature} "
                "(temperature 0 means greedy: do_sample=False)"
            )


# transformers' GenerationConfig fields that are read when a config is given.
_CONFIG_FIELDS = (
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
)
_STRICT = pydantic.ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


class _Checked(pydantic.BaseModel):
    """Each option's type and range; strict, so "10" is not a number and True not a count."""

    model_config = _STRICT

    max_new_tokens: int = pydantic.Field(128, ge=1)
    min_new_tokens: int = pydantic.Field(0, ge=0)
    do_sample: bool = False
    temperature: float = pydantic.Field(1.0, ge=0)
    top_k: int | None = pydantic.Field(None, ge=0)
    top_p: float | None = pydantic.Field(None, gt=0, le=1)
    min_p: float | None = pydantic.Field(None, ge=0, le=1)
    typical_p: float | None = pydantic.Field(None, gt=0, le=1)
    repetition_penalty: float | None = pydantic.Field(None, gt=0)
    no_repeat_ngram_size: int | None = pydantic.Field(None, ge=0)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    allow_calls: bool = True
    api_start_top_k: int = pydantic.Field(0, ge=0)
    max_calls: int | None = pydantic.Field(None, ge=0)
    approve: Callable[[str, dict[str, Any]], bool] | None = None
    logits_processor: tuple[Callable[..., Any], ...] = ()


def _plain(value: Any) -> Any:
    """A numpy or torch scalar as the Python number it holds."""
    if isinstance(value, (torch.Tensor,)) and value.numel() == 1:
        return value.item()
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def _stop_strings(stop: Any) -> Any:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, Sequence):
        return tuple(stop)
    return stop  # refused by the type check, with its name


def _processors(processors: Any) -> Any:
    if processors is None:
        return ()
    if isinstance(processors, Sequence):  # transformers' LogitsProcessorList is a list
        return tuple(processors)
    return processors


_EXPECTED = {
    "stop": "should be a string or a list of strings",
    "logits_processor": "should be a list of logits processors (callables)",
    "approve": "should be a function (name, arguments) -> bool",
}


def _describe(exc: pydantic.ValidationError) -> str:
    """One line per wrong option: its name, what it must be, what it got."""
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "options"
        message = _EXPECTED.get(name) or error["msg"]
        message = message[0].lower() + message[1:] if message else "invalid"
        parts.append(f"{name}: {message}, got {_short(error.get('input'))}")
    return "invalid generation option(s): " + "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


# Options that only matter when sampling, and the value that means "not set" for each.
_SAMPLING_ONLY = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "typical_p": 1.0}


def _warn_unused_sampling(options: DecodingOptions, given: set[str]) -> None:
    """transformers' warning: a sampling option was set but decoding is greedy."""
    if options.do_sample:
        return
    for name, neutral in _SAMPLING_ONLY.items():
        value = getattr(options, name)
        if name == "temperature" and value == 0:
            continue  # temperature 0 means greedy, which is what runs
        if name in given and value is not None and value != neutral:
            warnings.warn(
                f"`do_sample` is set to `False`. However, `{name}` is set to `{value}` -- this "
                "flag is only used in sample-based generation modes. You should set "
                f"`do_sample=True` or unset `{name}`.",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside toolrun, so the warning names the app's line."""
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def check_prompt(prompt: Any) -> None:
    """Raise GenerationOptionsError unless ``prompt`` is text, token ids or chat messages.

    Run before any model loads, so a wrong prompt fails in a millisecond. Chat messages are a
    list of dicts with a ``role`` (what ``toolrun.chat()`` takes); one message on its own, a
    list mixing messages with other things, bytes, or ids that are not non-negative integers
    are refused with what to pass instead.
    """
    if isinstance(prompt, str):
        return
    if isinstance(prompt, Mapping):
        raise GenerationOptionsError(
            "the prompt is a single message: pass a list of messages, [{'role': 'user', "
            "'content': ...}] (see toolrun.chat())"
        )
    if isinstance(prompt, (bytes, bytearray)):
        raise GenerationOptionsError("the prompt is bytes: decode it to text first")
    if isinstance(prompt, torch.Tensor):
        prompt = prompt.tolist() if prompt.dim() == 1 else prompt
    if not isinstance(prompt, Sequence):
        raise GenerationOptionsError(
            "the prompt must be text, a list of token ids or a list of chat messages, "
            f"got {type(prompt).__name__}"
        )
    messages = [item for item in prompt if isinstance(item, Mapping)]
    if messages:
        if len(messages) != len(prompt):
            raise GenerationOptionsError(
                "the prompt mixes chat messages with other items: pass only message dicts "
                "(see toolrun.chat())"
            )
        for number, message in enumerate(messages):
            if not isinstance(message.get("role"), str):
                raise GenerationOptionsError(
                    f"chat message {number} has no 'role': messages look like "
                    "{'role': 'user', 'content': ...} (see toolrun.chat())"
                )
        return
    for item in prompt:
        if isinstance(item, bool) or not isinstance(_plain(item), int) or _plain(item) < 0:
            raise GenerationOptionsError(
                "the prompt must be text, a list of token ids or a list of chat messages; "
                f"it holds {item!r} ({type(item).__name__})"
            )


def logits_processors(options: DecodingOptions) -> list[Callable[..., torch.Tensor]]:
    """transformers' own logits processors for the options given, then the app's.

    transformers is imported only when one of its processors is needed: greedy decoding on the
    llama.cpp backend never pays for the import (about 2 s in a fresh process).
    """
    processors: list[Callable[..., torch.Tensor]] = []
    if options.repetition_penalty not in (None, 1.0):
        from transformers import RepetitionPenaltyLogitsProcessor

        processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
    if options.no_repeat_ngram_size:
        from transformers import NoRepeatNGramLogitsProcessor

        processors.append(NoRepeatNGramLogitsProcessor(options.no_repeat_ngram_size))
    processors.extend(options.logits_processor)
    if not options.do_sample:
        return processors
    from transformers import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    if options.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(options.temperature))
    if options.top_k:
        processors.append(TopKLogitsWarper(options.top_k))
    if options.top_p is not None and options.top_p < 1.0:
        processors.append(TopPLogitsWarper(options.top_p))
    if options.min_p:
        processors.append(MinPLogitsWarper(options.min_p))
    if options.typical_p is not None and options.typical_p < 1.0:
        processors.append(TypicalLogitsWarper(options.typical_p))
    return processors
