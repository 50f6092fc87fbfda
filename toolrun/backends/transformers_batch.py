"""Many sequences in one transformers forward pass, each pausing and resuming on its own.

Layout: one key/value cache whose rows are the sequences and whose columns are forward
positions. A row holds real tokens in some columns and holes in others: left padding when it
joined after the others, and the slots of a step where it fed fewer tokens than the longest feed
(or none, while its tool runs). Keys carry their rotary position already, so the attention mask
hides the holes and per-row position ids (the count of real tokens before) give every token the
position it has when the sequence is decoded alone. Causality is by column, which keeps each
row's own order. When holes pile up the rows are packed again: real columns move right, in
order, and empty columns are dropped. Attention is a sum over the unmasked keys, so moving
columns changes nothing but the float summation order.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .transformers import TransformersModel

__all__ = ["TransformersBatch", "supports_batching"]

_PAD = 0  # the token id written into holes; masked out, so any valid id does


def supports_batching(model: TransformersModel) -> bool:
    """True when every cache layer is a plain growing one (no sliding windows, no states)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=model.model.config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class TransformersBatch:
    """The rows of one batched cache; ``step`` runs one forward pass for the rows that feed."""

    def __init__(self, owner: TransformersModel) -> None:
        self.owner = owner
        self.device = owner.device
        self.rows: list[Hashable] = []
        self.index: dict[Hashable, int] = {}
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer, [rows, heads, cols, dim]
        self.mask = torch.zeros(0, 0, dtype=torch.bool, device=self.device)
        self.lengths = torch.zeros(0, dtype=torch.long, device=self.device)
        self.forwards = 0
        self.packs = 0

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    @torch.inference_mode()
    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> dict[Hashable, torch.Tensor]:
        """Append each row's ids (new keys start a row); return each fed row's next-token logits.

        Rows already in the batch advance together; new rows are prefilled apart (a long prompt
        padded into every decoding row would cost far more than a second pass) and then joined.
        """
        fresh = {k: list(v) for k, v in feeds.items() if k not in self.index}
        known = {k: list(v) for k, v in feeds.items() if k in self.index}
        if any(not ids for ids in feeds.values()):
            raise ValueError("every fed row needs at least one token")
        logits: dict[Hashable, torch.Tensor] = {}
        if known:
            logits.update(self._advance(known))
        if fresh:
            logits.update(self._join(fresh))
        return logits

    def remove(self, keys: Sequence[Hashable]) -> None:
        """Drop rows (finished or cancelled sequences) and their cache."""
        gone = {k for k in keys if k in self.index}
        if not gone:
            return
        keep = [i for i, key in enumerate(self.rows) if key not in gone]
        self.rows = [self.rows[i] for i in keep]
        self.index = {key: i for i, key in enumerate(self.rows)}
        if not keep:
            self.close()
            return
        picked = torch.tensor(keep, device=self.device)
        self.kv = [(k.index_select(0, picked), v.index_select(0, picked)) for k, v in self.kv]
        self.mask = self.mask.index_select(0, picked)
        self.lengths = self.lengths.index_select(0, picked)
        self._pack_if_sparse()

    def close(self) -> None:
        self.rows, self.index, self.kv = [], {}, []
        self.mask = self.mask[:0, :0]
        self.lengths = self.lengths[:0]

    # forward passes

    def _advance(self, feeds: dict[Hashable, list[int]]) -> dict[Hashable, torch.Tensor]:
        """One pass over every row: fed rows end with their tokens, the others with holes."""
        width = max(len(ids) for ids in feeds.values())
        count = len(self.rows)
        ids = [[_PAD] * width for _ in range(count)]
        real = [[False] * width for _ in range(count)]
        for key, fed in feeds.items():
            row = self.index[key]
            ids[row][width - len(fed) :] = fed
            real[row][width - len(fed) :] = [True] * len(fed)
        new_mask = torch.tensor(real, dtype=torch.bool, device=self.device)
        positions = self.lengths[:, None] + (new_mask.long().cumsum(1) - 1).clamp(min=0)
        mask = torch.cat([self.mask, new_mask], dim=1)
        logits, self.kv = self._forward(self.kv, ids, mask, positions)
        self.mask = mask
        self.lengths = self.lengths + new_mask.sum(1)
        self._pack_if_sparse()
        return {key: logits[self.index[key]] for key in feeds}

    def _join(self, feeds: dict[Hashable, list[int]]) -> dict[Hashable, torch.Tensor]:
        """Prefill new rows together (left-padded to the longest), then append them."""
        width = max(len(ids) for ids in feeds.values())
        ids = [[_PAD] * (width - len(fed)) + fed for fed in feeds.values()]
        real = [[False] * (width - len(fed)) + [True] * len(fed) for fed in feeds.values()]
        mask = torch.tensor(real, dtype=torch.bool, device=self.device)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        logits, kv = self._forward([], ids, mask, positions)

        # Both blocks are padded on the left to the same number of columns, then stacked.
        columns = max(self.columns, width)
        if self.rows:
            self.kv = [
                (
                    torch.cat([_left_pad(k, columns), _left_pad(nk, columns)]),
                    torch.cat([_left_pad(v, columns), _left_pad(nv, columns)]),
                )
                for (k, v), (nk, nv) in zip(self.kv, kv, strict=True)
            ]
        else:
            self.kv = kv
        self.mask = torch.cat(
            [F.pad(self.mask, (columns - self.columns, 0)), F.pad(mask, (columns - width, 0))]
        )
        self.lengths = torch.cat([self.lengths, mask.sum(1)])
        self.rows.extend(feeds)
        self.index = {key: i for i, key in enumerate(self.rows)}
        return {key: logits[i] for i, key in enumerate(feeds)}

    def _forward(
        self,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        ids: list[list[int]],
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        from transformers import DynamicCache

        cache: Any = DynamicCache(config=self.owner.model.config)
        for layer, (keys, values) in zip(cache.layers, kv, strict=False):
            # Hand over the tensors as they are (rebuilding through update() would copy them).
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
        out = self.owner.model(
            input_ids=torch.tensor(ids, dtype=torch.long, device=self.device),
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.forwards += 1
        layers = out.cache.layers
        return out.logits[:, -1].float(), [(layer.keys, layer.values) for layer in layers]

    # keeping holes in check

    def _pack_if_sparse(self) -> None:
        """Pack the rows when holes make up more than a quarter of the columns."""
        longest = int(self.lengths.max()) if len(self.rows) else 0
        if self.columns - longest <= max(8, longest // 4):
            return
        order = torch.sort(self.mask.to(torch.uint8), dim=1, stable=True)
        keep = order.indices[:, self.columns - longest :]  # each row's real columns, in order
        self.mask = order.values[:, self.columns - longest :].bool()
        self.kv = [(_gather_columns(k, keep), _gather_columns(v, keep)) for k, v in self.kv]
        self.packs += 1


def _left_pad(states: torch.Tensor, columns: int) -> torch.Tensor:
    return F.pad(states, (0, 0, columns - states.shape[-2], 0))


def _gather_columns(states: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    rows, heads, _, dim = states.shape
    index = columns[:, None, :, None].expand(rows, heads, columns.shape[1], dim)
    return states.gather(2, index)
