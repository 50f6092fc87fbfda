"""Prefix reuse: a follow-up request whose prompt extends an earlier sequence skips its prefill.

A client-side tool loop or a multi-turn chat sends the whole conversation again, and what the
model already read of it is the token prefix of a sequence this server decoded moments ago.
``PrefixCache`` keeps the caches of finished sequences, keyed by their token ids, bounded in
bytes (least recently used goes first). ``PrefixReuseBatch`` wraps the runtime's batch: when a
row starts, it looks up the longest cached prefix of the row's prompt, starts the row from that
cache and feeds only the rest; when a row leaves, it keeps the row's cache.

The backend must offer two hooks (``ReusableTransformersBatch`` adds them to the transformers
batch; a batch without them simply gets no reuse):

    snapshot(key) -> KVSnapshot      the row's cache, compact and detached, for its fed tokens
    start_from(key, snapshot, n)     the next step starts row ``key`` on the first n positions
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..backends.base import Model
from ..backends.transformers_batch import TransformersBatch
from ..batch import Batch, open_batch

__all__ = [
    "KVSnapshot",
    "PrefixCache",
    "PrefixReuseBatch",
    "ReusableTransformersBatch",
    "reusing_batches",
]


@dataclass(frozen=True)
class KVSnapshot:
    """One sequence's cache: per layer (keys, values), each ``[1, heads, length, dim]``."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    length: int

    @property
    def nbytes(self) -> int:
        return sum(k.nelement() * k.element_size() * 2 for k, _ in self.layers)


@dataclass
class _Entry:
    ids: tuple[int, ...]
    snapshot: Any
    nbytes: int


class PrefixCache:
    """Finished sequences' caches by token ids; ``lookup`` finds the longest shared prefix."""

    def __init__(self, max_bytes: int, *, min_tokens: int = 8) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self.entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def lookup(self, ids: Sequence[int]) -> tuple[Any, int] | None:
        """The snapshot sharing the longest prefix with ``ids``, and how many tokens it covers.

        At least one token of ``ids`` is always left to feed (its logits are needed).
        """
        ids = tuple(ids)
        best: _Entry | None = None
        best_length = 0
        limit = len(ids) - 1
        for entry in self.entries.values():
            length = _common_prefix(entry.ids, ids, min(limit, len(entry.ids)))
            if length > best_length:
                best, best_length = entry, length
        if best is None or best_length < self.min_tokens:
            self.misses += 1
            return None
        self.entries.move_to_end(best.ids)
        self.hits += 1
        self.reused_tokens += best_length
        return best.snapshot, best_length

    def add(self, ids: Sequence[int], snapshot: Any, nbytes: int) -> None:
        """Keep a sequence's cache; entries it extends are dropped, then the oldest over budget."""
        key = tuple(ids)
        if len(key) < self.min_tokens or nbytes > self.max_bytes:
            return
        for other in [k for k in self.entries if len(k) <= len(key) and key[: len(k)] == k]:
            self._drop(other)
        self.entries[key] = _Entry(key, snapshot, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        entry = self.entries.pop(key)
        self.bytes -= entry.nbytes


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    if limit <= 0 or a[0] != b[0]:
        return 0
    if a[:limit] == b[:limit]:  # the common case (a follow-up): one comparison, in C
        return limit
    low, high = 0, limit  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


class PrefixReuseBatch:
    """A ``Batch`` that starts new rows from cached prefixes and keeps the caches of rows that
    leave. Everything else goes to the wrapped batch."""

    def __init__(self, inner: Batch, cache: PrefixCache) -> None:
        self.inner = inner
        self.cache = cache
        self.fed: dict[Hashable, list[int]] = {}
        self.reusable = callable(getattr(inner, "snapshot", None)) and callable(
            getattr(inner, "start_from", None)
        )

    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> Mapping[Hashable, torch.Tensor]:
        passed: dict[Hashable, Sequence[int]] = {}
        for key, ids in feeds.items():
            if key in self.fed:
                self.fed[key].extend(ids)
                passed[key] = ids
                continue
            self.fed[key] = list(ids)
            found = self.cache.lookup(ids) if self.reusable else None
            if found is None:
                passed[key] = ids
            else:
                snapshot, length = found
                self.inner.start_from(key, snapshot, length)  # type: ignore[attr-defined]
                passed[key] = ids[length:]
        return self.inner.step(passed)

    def remove(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            ids = self.fed.pop(key, None)
            if ids and self.reusable and len(ids) >= self.cache.min_tokens:
                snapshot = self.inner.snapshot(key)  # type: ignore[attr-defined]
                if snapshot is not None:
                    self.cache.add(ids, snapshot, snapshot.nbytes)
        self.inner.remove(keys)

    def close(self) -> None:
        self.fed.clear()
        self.inner.close()


def reusing_batches(cache: PrefixCache) -> Callable[[Model], PrefixReuseBatch]:
    """A batch factory for ``Runtime(batch_factory=...)``: the model's batch, reusing prefixes."""

    def factory(model: Model) -> PrefixReuseBatch:
        inner = open_batch(model)
        if type(inner) is TransformersBatch:
            inner = ReusableTransformersBatch(inner.owner)
        return PrefixReuseBatch(inner, cache)

    return factory


class ReusableTransformersBatch(TransformersBatch):
    """The transformers batch with the two prefix hooks (see the module docstring)."""

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self.starts: dict[Hashable, tuple[KVSnapshot, int]] = {}

    def snapshot(self, key: Hashable) -> KVSnapshot | None:
        row = self.index.get(key)
        if row is None:
            return None
        columns = self.mask[row].nonzero().squeeze(1)
        layers = [
            (k[row : row + 1].index_select(2, columns), v[row : row + 1].index_select(2, columns))
            for k, v in self.kv
        ]
        return KVSnapshot(layers, int(columns.numel()))

    def start_from(self, key: Hashable, snapshot: KVSnapshot, length: int) -> None:
        self.starts[key] = (snapshot, length)

    @torch.inference_mode()
    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> dict[Hashable, torch.Tensor]:
        starting = {k: list(v) for k, v in feeds.items() if k in self.starts}
        others = {k: v for k, v in feeds.items() if k not in starting}
        logits: dict[Hashable, torch.Tensor] = dict(super().step(others)) if others else {}
        if starting:
            logits.update(self._join_from(starting))
        return logits

    def remove(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            self.starts.pop(key, None)
        super().remove(keys)

    def _join_from(self, feeds: dict[Hashable, list[int]]) -> dict[Hashable, torch.Tensor]:
        """Prefill new rows on top of their cached prefixes, then append them to the batch.

        Each row is [holes | its prefix | holes | its new tokens]: the mask hides the holes and
        positions continue from the prefix, as in any other pass of this batch.
        """
        starts = [self.starts.pop(key) for key in feeds]
        prefix = max(length for _, length in starts)
        width = max(len(ids) for ids in feeds.values())
        kv = []
        for layer in range(len(starts[0][0].layers)):
            keys = [_left_pad(s.layers[layer][0][:, :, :n], prefix) for s, n in starts]
            values = [_left_pad(s.layers[layer][1][:, :, :n], prefix) for s, n in starts]
            kv.append((torch.cat(keys), torch.cat(values)))
        ids = [[0] * (width - len(fed)) + fed for fed in feeds.values()]
        real = [
            [False] * (prefix - n) + [True] * n + [False] * (width - len(fed)) + [True] * len(fed)
            for (_, n), fed in zip(starts, feeds.values(), strict=True)
        ]
        mask = torch.tensor(real, dtype=torch.bool, device=self.device)
        done = torch.tensor([n for _, n in starts], device=self.device)
        fed_mask = mask[:, prefix:]
        positions = done[:, None] + (fed_mask.long().cumsum(1) - 1).clamp(min=0)
        logits, kv = self._forward(kv, ids, mask, positions)

        columns = max(self.columns, prefix + width)
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
            [
                F.pad(self.mask, (columns - self.columns, 0)),
                F.pad(mask, (columns - prefix - width, 0)),
            ]
        )
        self.lengths = torch.cat([self.lengths, mask.sum(1)])
        self.rows.extend(feeds)
        self.index = {key: i for i, key in enumerate(self.rows)}
        return {key: logits[i] for i, key in enumerate(feeds)}


def _left_pad(states: torch.Tensor, columns: int) -> torch.Tensor:
    return F.pad(states, (0, 0, columns - states.shape[-2], 0))
