"""What the decoding loop needs from a model, whatever engine runs it.

A ``Model`` tokenizes, detokenizes and opens ``Session``s. A session owns one sequence's cache:
``feed(ids)`` appends tokens and returns the next-token logits, so a tool result is spliced in by
feeding only its own tokens. Engines (transformers, llama.cpp, the scripted test model) subclass
these two classes; the loop, the grammar and the registry are shared.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import torch

from ..errors import ModelLoadError

__all__ = ["ADAPTER_CHAT_TEMPLATE", "Model", "Session", "shipped_chat_template"]


class Session(ABC):
    """One sequence's state in a model: the tokens fed so far and their cache."""

    tokens_fed: int = 0
    """How many tokens were run through the model in this session (tests count splices)."""

    @abstractmethod
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Append ``ids`` to the sequence; return the next-token logits, 1-D float."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the cache early (optional)."""


class Model(ABC):
    """A language model the runtime can drive. Get one from ``toolrun.load_model()``."""

    name: str = "model"
    backend: str = "abstract"
    chosen_because: str = ""
    """Why ``load_model(backend="auto")`` picked this backend (shown in the repr)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included as text."""

    @abstractmethod
    def new_session(self) -> Session:
        """A fresh sequence with an empty cache."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def eos_token_ids(self) -> frozenset[int]: ...

    @property
    def bos_token_ids(self) -> list[int]:
        """Tokens to put in front of a prompt (empty for models trained without a BOS)."""
        return []

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Texts of every token the tokenizer marks special (added/control tokens included);
        tool results may never contain them verbatim."""
        return ()

    adapter_chat_template: str | None = None
    """The chat template shipped in the loaded adapter's folder (``chat_template.jinja``), if any:
    the adapter was trained to read conversations that way, so it replaces the model's own."""

    @property
    def chat_template(self) -> str | None:
        """The Jinja template chats are rendered with: the adapter's, else the model's own."""
        return self.adapter_chat_template or self.own_chat_template

    @property
    def own_chat_template(self) -> str | None:
        """The model's own Jinja chat template (the tokenizer's, or a GGUF's metadata), if any."""
        return None

    @property
    def context_length(self) -> int | None:
        """The most tokens a sequence may hold (prompt, generated and spliced), if known."""
        return None

    @property
    def template_tokens(self) -> dict[str, str]:
        """Token texts a chat template may refer to: ``bos_token``, ``eos_token`` (when set)."""
        return {}

    @cached_property
    def token_texts(self) -> list[str]:
        """The decoded text of every token id, computed once (used to find marker tokens)."""
        return [self.decode([i]) for i in range(self.vocab_size)]

    @cached_property
    def call_start_token(self) -> int:
        """The token the model most naturally opens a call with (" [" where it exists)."""
        for text in (" [", "["):
            ids = self.encode(text)
            if len(ids) == 1:
                return ids[0]
        return self.encode("[")[-1]

    @cached_property
    def call_opening_tokens(self) -> list[int]:
        """Every token whose text contains "[": banning them all is what disables calls."""
        return [i for i, text in enumerate(self.token_texts) if "[" in text]

    def call_opening_index(self, device: torch.device) -> torch.Tensor:
        """``call_opening_tokens`` as a tensor on ``device``, built once per model and device."""
        by_device: dict[str, torch.Tensor] = self.__dict__.setdefault("_opening_index", {})
        key = str(device)
        if key not in by_device:
            by_device[key] = torch.tensor(self.call_opening_tokens, dtype=torch.long, device=device)
        return by_device[key]

    def __repr__(self) -> str:
        why = f" ({self.chosen_because})" if self.chosen_because else ""
        return f"<{type(self).__name__} {self.name!r} backend={self.backend}{why}>"


ADAPTER_CHAT_TEMPLATE = "chat_template.jinja"
"""The file in an adapter folder that holds its chat template (Hugging Face's file name)."""


def shipped_chat_template(adapter: str | os.PathLike[str]) -> str | None:
    """The chat template an adapter folder ships, or None when it ships none."""
    path = Path(adapter) / ADAPTER_CHAT_TEMPLATE
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"could not read the adapter's chat template {path}: {exc}") from exc
