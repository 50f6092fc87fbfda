"""The transformers backend: any Hugging Face causal LM, quantised with bitsandbytes or not."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch

from .base import Model, Session

__all__ = ["TransformersModel", "TransformersSession"]


class TransformersModel(Model):
    """Wraps a transformers causal LM and its tokenizer for the decoding loop.

    ``TransformersModel(hf_model, tokenizer)`` works with any model you already loaded;
    ``toolrun.load_model()`` builds one for you.
    """

    backend = "transformers"

    def __init__(self, model: Any, tokenizer: Any, *, name: str | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        eos = model.generation_config.eos_token_id if model.generation_config else None
        if eos is None:
            eos = tokenizer.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        self._eos = frozenset(i for i in ids if i is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(
            self.tokenizer.decode(
                list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        )

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def bos_token_ids(self) -> list[int]:
        return list(self._bos_token_ids)

    @cached_property
    def _bos_token_ids(self) -> tuple[int, ...]:
        # What the tokenizer itself adds to a prompt (SmolLM2 adds nothing, Llama adds BOS),
        # probed once rather than on every generate().
        probe = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        return tuple(probe[: len(probe) - len(plain)]) if probe[-len(plain) :] == plain else ()

    @cached_property
    def special_tokens(self) -> tuple[str, ...]:
        # Every token the tokenizer marks special, the named ones and the added control tokens
        # alike (SmolLM2 has 17, of which all_special_tokens names 3).
        named = set(self.tokenizer.all_special_tokens)
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        named.update(t.content for t in added.values() if getattr(t, "special", False))
        return tuple(sorted(named, key=len, reverse=True))

    @property
    def own_chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):  # several named templates: the default one
            template = template.get("default") or next(iter(template.values()), None)
        return template if isinstance(template, str) else None

    @property
    def template_tokens(self) -> dict[str, str]:
        found = {}
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = getattr(self.tokenizer, name, None)
            if isinstance(value, str):
                found[name] = value
        return found

    @property
    def context_length(self) -> int | None:
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) else None

    def new_session(self) -> TransformersSession:
        return TransformersSession(self)

    def new_batch(self) -> Any:
        """Many sequences in one forward pass (``transformers_batch.TransformersBatch``) when
        every cache layer can grow per row; otherwise one session per sequence, fed in turn."""
        from .transformers_batch import TransformersBatch, supports_batching

        if supports_batching(self):
            return TransformersBatch(self)
        from ..batch import SessionBatch

        return SessionBatch(self)


class TransformersSession(Session):
    """One sequence's DynamicCache; each ``feed`` runs only the new tokens."""

    def __init__(self, owner: TransformersModel) -> None:
        from transformers import DynamicCache

        self.owner = owner
        self.cache: Any = DynamicCache(config=owner.model.config)
        self.device = owner.device

    @torch.no_grad()  # not inference_mode: logits processors may edit the scores in place
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        # The cache object is updated in place; only the new tokens are run.
        out = self.owner.model(
            input_ids=input_ids, cache=self.cache, use_cache=True, logits_to_keep=1
        )
        self.tokens_fed += len(ids)
        return out.logits[0, -1].float()

    def close(self) -> None:
        self.cache = None
