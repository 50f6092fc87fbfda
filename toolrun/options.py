"""Decoding options: what shapes one generation besides the prompt, the model and the tools.

``DecodingOptions.build(**options)`` validates the keyword options ``generate()`` and its siblings
take (transformers' spellings accepted) and raises GenerationOptionsError for anything it cannot
honour; ``logits_processors`` turns them into transformers' own processors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import GenerationOptionsError

__all__ = ["DecodingOptions", "logits_processors"]


@dataclass
class DecodingOptions:
    """Everything that shapes one generation besides the prompt, the model and the tools."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
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
            for name in (
                "max_new_tokens",
                "do_sample",
                "temperature",
                "top_k",
                "top_p",
                "repetition_penalty",
            ):
                value = getattr(config, name, None)
                if value is not None:
                    options.setdefault(name, value)
        if "stop_strings" in options:
            options.setdefault("stop", options.pop("stop_strings"))
        stop = options.pop("stop", ()) or ()
        options["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        options["logits_processor"] = tuple(options.pop("logits_processor", None) or ())
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise GenerationOptionsError(
                f"unsupported generation option(s): {', '.join(unknown)}; "
                f"supported: {', '.join(sorted(known | {'generation_config', 'stop_strings'}))}"
            )
        built = cls(**options)
        built.check()
        return built

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise GenerationOptionsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise GenerationOptionsError(f"temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationOptionsError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise GenerationOptionsError(f"top_k must be >= 0, got {self.top_k}")
        if self.api_start_top_k < 0:
            raise GenerationOptionsError(
                f"api_start_top_k must be >= 0, got {self.api_start_top_k}"
            )
        if self.max_calls is not None and self.max_calls < 0:
            raise GenerationOptionsError(f"max_calls must be >= 0, got {self.max_calls}")
        if any(not s for s in self.stop):
            raise GenerationOptionsError("stop strings must not be empty")


def logits_processors(options: DecodingOptions) -> list[Callable[..., torch.Tensor]]:
    """transformers' own logits processors for the options given, then the app's."""
    from transformers import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors: list[Callable[..., torch.Tensor]] = []
    if options.repetition_penalty not in (None, 1.0):
        processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
    processors.extend(options.logits_processor)
    if options.do_sample:
        if options.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k:
            processors.append(TopKLogitsWarper(options.top_k))
        if options.top_p is not None and options.top_p < 1.0:
            processors.append(TopPLogitsWarper(options.top_p))
    return processors
