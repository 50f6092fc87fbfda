"""Step 3: keep a call when its result makes the following tokens easier to predict.

The paper's weighted loss over the tokens that follow position i:

    L_i(z) = -sum_t w_t log p(x_(i+t) | z, x_1..x_(i+t-1)),  w~_t = max(0, 1 - 0.2 t), normalised

Two placements of the call z:
- ``prefix`` (the paper): z is put in front of the whole text; one forward of ``z + text`` gives
  L_i(z) at every position at once.
- ``inline``: z is inserted at position i, ``x_1..x_(i-1) z x_i ...``, as the finetuned model will
  write it. The prefix x_1..x_(i-1) is encoded once per position and its cache is shared by a
  batch holding every candidate's call plus the window tokens.

Two criteria on L+ = L(call with result), L_nores = L(call without result), L_none = L(no call):
- ``paper``: gain = min(L_none, L_nores) - L+
- ``gain``: gain = L_nores - L+ (what the result itself is worth, apart from the cost of an
  unfamiliar call; the better criterion for a small base model, see DESIGN.md)
A candidate is kept when gain >= tau_f; at most one call (the best) per position.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

__all__ = ["LossScorer", "call_gain", "loss_weights", "weighted_loss"]

Placement = Literal["prefix", "inline"]
Criterion = Literal["paper", "gain"]
PLACEMENTS = ("prefix", "inline")
CRITERIA = ("paper", "gain")


def loss_weights(window: int = 5) -> list[float]:
    """w_t = max(0, 1 - 0.2 t) / sum, for t = 0 .. window-1."""
    raw = [max(0.0, 1.0 - 0.2 * t) for t in range(window)]
    total = sum(raw)
    return [w / total for w in raw]


def weighted_loss(logprobs: Sequence[float], weights: Sequence[float]) -> float:
    """-sum_t w_t log p_t over the tokens there are (a window cut by the end of the text)."""
    return -sum(w * lp for w, lp in zip(weights, logprobs, strict=False))


def call_gain(criterion: str, l_none: float, l_plus: float, l_noresult: float) -> float:
    if criterion == "paper":
        return min(l_none, l_noresult) - l_plus
    if criterion == "gain":
        return l_noresult - l_plus
    raise ValueError(f"criterion must be 'paper' or 'gain', got {criterion!r}")


class LossScorer:
    """Weighted losses of text windows under a transformers causal LM, in batches.

    ``hf_model`` is a Hugging Face causal LM (``TransformersModel.model``); token ids come from the
    caller, so the same tokenisation serves every placement.
    """

    def __init__(self, hf_model: Any, *, window: int = 5, batch_size: int = 32) -> None:
        self.hf = hf_model
        self.window = window
        self.weights = loss_weights(window)
        self.batch_size = batch_size

    @property
    def _device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def inline(
        self, ids: Sequence[int], boundary: int, insertions: Sequence[Sequence[int]]
    ) -> list[float]:
        """L at token ``boundary`` of ``ids`` with each insertion put there (``[]`` = no call)."""
        return self.inline_many(ids, {boundary: insertions})[boundary]

    @torch.inference_mode()
    def inline_many(
        self, ids: Sequence[int], requests: Mapping[int, Sequence[Sequence[int]]]
    ) -> dict[int, list[float]]:
        """``inline`` for several boundaries of one text. The text is encoded once; each
        boundary's batch runs on that cache cropped to the boundary."""
        if not requests:
            return {}
        if min(requests) < 1:
            raise ValueError("a call needs at least one token before it")
        from transformers import DynamicCache

        text = list(ids[: max(requests) + self.window])
        out = self.hf(
            input_ids=torch.tensor([text], device=self._device),
            cache=DynamicCache(config=self.hf.config),
            use_cache=True,
        )
        full = torch.log_softmax(out.logits[0].float(), -1)
        results: dict[int, list[float]] = {}
        for boundary, insertions in requests.items():
            window = text[boundary : boundary + self.window]
            cache = None
            if any(insertions):
                cache = copy.deepcopy(out.cache)
                extra = cache.get_seq_length() - boundary
                if extra:
                    cache.crop(-extra)  # transformers 5: a negative count removes that many
            losses: list[float] = []
            for start in range(0, len(insertions), self.batch_size):
                chunk = [list(z) for z in insertions[start : start + self.batch_size]]
                # A row with nothing inserted is read off the full-text pass.
                rows = [z + window for z in chunk if z]
                logp = self._forward(rows, cache, boundary) if rows else None
                r = 0
                for z in chunk:
                    if not z:
                        values = [
                            float(full[boundary + t - 1, token]) for t, token in enumerate(window)
                        ]
                    else:
                        assert logp is not None
                        values = [
                            float(
                                full[boundary - 1, token]
                                if len(z) + t == 0
                                else logp[r, len(z) + t - 1, token]
                            )
                            for t, token in enumerate(window)
                        ]
                        r += 1
                    losses.append(weighted_loss(values, self.weights))
            results[boundary] = losses
        return results

    @torch.inference_mode()
    def prefix(
        self, ids: Sequence[int], boundaries: Sequence[int], prefixes: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """For each prefix z (``[]`` = none): L at every boundary of ``z + ids``."""
        if min(boundaries, default=1) < 1:
            raise ValueError("a call needs at least one token before it")
        text = list(ids[: max(boundaries, default=0) + self.window])
        out: list[list[float]] = []
        for start in range(0, len(prefixes), self.batch_size):
            chunk = [list(z) for z in prefixes[start : start + self.batch_size]]
            logp = self._forward([z + text for z in chunk], None, 0)
            for r, z in enumerate(chunk):
                row = []
                for b in boundaries:
                    values = [
                        float(logp[r, len(z) + b + t - 1, text[b + t]])
                        for t in range(min(self.window, len(text) - b))
                    ]
                    row.append(weighted_loss(values, self.weights))
                out.append(row)
        return out

    def _forward(self, rows: list[list[int]], cache: Any, past: int) -> torch.Tensor:
        """Log-probabilities for right-padded rows, on top of a shared cache of ``past`` tokens."""
        width = max(len(r) for r in rows)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long, device=self._device)
        mask = torch.zeros((len(rows), past + width), dtype=torch.long, device=self._device)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : past + len(row)] = 1
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        if cache is not None:
            shared = copy.deepcopy(cache)
            shared.batch_repeat_interleave(len(rows))
            kwargs.update(cache=shared, use_cache=True)
        logits = self.hf(**kwargs).logits
        return torch.log_softmax(logits.float(), -1)
