"""Call formats: how each family of models writes a tool call (see ``base.py``).

    toolformer   [Name(args) → result]                         inline, run at the arrow
    hermes       <tool_call>{"name", "arguments"}</tool_call>   Hermes, Qwen2.5, Qwen3
    llama3       {"name", "parameters"} / <|python_tag|>        Llama 3.1-3.3
    mistral      [TOOL_CALLS][{"name", "arguments", "id"}]      Mistral, Mixtral

``get_format(name)`` gives one by name; ``detect_format(model)`` reads the model's chat template
and special tokens, and falls back to the bracket format where nothing else is unambiguous.
"""

from __future__ import annotations

from ..backends.base import Model
from ..errors import GenerationOptionsError
from .base import CallFormat, FoundCall, FoundCalls
from .hermes import HermesFormat
from .llama3 import Llama3Format
from .mistral import MistralFormat
from .toolformer import ToolformerFormat

__all__ = [
    "FORMATS",
    "CallFormat",
    "FoundCall",
    "FoundCalls",
    "HermesFormat",
    "Llama3Format",
    "MistralFormat",
    "ToolformerFormat",
    "detect_format",
    "get_format",
]

FORMATS: dict[str, CallFormat] = {
    f.name: f for f in (ToolformerFormat(), HermesFormat(), Llama3Format(), MistralFormat())
}


def get_format(name: str | CallFormat | None, model: Model | None = None) -> CallFormat:
    """A format by name (or as given); None or "auto" detects it from ``model``."""
    if isinstance(name, CallFormat):
        return name
    if name is None or name == "auto":
        return detect_format(model) if model is not None else FORMATS["toolformer"]
    found = FORMATS.get(name.lower())
    if found is None:
        raise GenerationOptionsError(
            f"unknown call_format {name!r}; choose one of: auto, {', '.join(FORMATS)}"
        )
    return found


def detect_format(model: Model) -> CallFormat:
    """The format the model's chat template writes calls in, when it says so unambiguously.

    A template that renders ``<tool_call>`` is Hermes-style, one with ``<|python_tag|>`` or an
    ``ipython`` role is Llama 3's, one with ``[TOOL_CALLS]`` is Mistral's. Anything else (no
    template, or a template without tools, as the default model's plain ChatML) is the bracket
    format that toolrun's own models are trained on.
    """
    cached: CallFormat | None = model.__dict__.get("_toolrun_call_format")
    if cached is not None:
        return cached
    template = model.chat_template or ""
    candidates = [
        name
        for name, signs in (
            ("hermes", ("<tool_call>",)),
            ("llama3", ("<|python_tag|>", "ipython")),
            ("mistral", ("[TOOL_CALLS]",)),
        )
        if any(sign in template for sign in signs)
    ]
    chosen = FORMATS[candidates[0]] if len(candidates) == 1 else FORMATS["toolformer"]
    model.__dict__["_toolrun_call_format"] = chosen
    return chosen
