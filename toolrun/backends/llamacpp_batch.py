"""Many sequences in one llama.cpp context: sessions and batched decoding share it.

llama.cpp tags every KV cell with the sequence (``seq_id``) it belongs to, and attention masks
out the cells of other sequences, so one context decodes many independent sequences in a single
``llama_decode``: a new prompt, one token of another sequence and a tool result of a third go
into the same batch, and each sequence gets the logits of its own last token. A sequence that
feeds nothing in a pass (its tool is running) is not in the batch and costs nothing.

``SequenceContext`` owns that context: it hands out sequence ids, runs passes, and frees a
sequence's cells when it is released. The cache is unified (every sequence draws cells from one
pool, so a long sequence and many short ones fit alike). When the live sequences need more cells
than the pool has, a context twice as large is made and every sequence's cells are copied over
(``llama_state_seq_get_data``/``set_data``): nothing is ever re-encoded.

``LlamaCppBatch`` is the ``Batch`` the runtime in ``toolrun/batch.py`` drives: its rows are
sequences of the model's shared context.

Every ``llama_decode`` runs on a thread of the context's own. llama.cpp's AMX kernels load the
CPU's tile configuration once per thread and trust it afterwards; any other AMX user on that
thread (torch's oneDNN runs bf16 products on AMX and releases the tiles after each) leaves it
cleared, and llama.cpp's next product dies with SIGILL. On a thread that runs nothing else, the
configuration stays (tests/test_backend_llamacpp.py has the bf16 product in between).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import weakref
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import GenerationOptionsError

if TYPE_CHECKING:
    from .llamacpp import LlamaCppModel

__all__ = ["LlamaCppBatch", "LlamaCppPrefix", "SequenceContext"]

N_BATCH = 2048
"""Tokens one llama_decode call takes; a longer feed is cut into several passes."""
N_UBATCH = 256
"""Tokens llama.cpp computes at once; a longer pass is split internally. Half llama.cpp's default:
without flash attention each layer's attention scores are ubatch x context floats a head, and at
256 they stay in cache (a 1,000-token prefill of the default model in 1.60 s against 1.80 s at
512 and 2.51 s at 1,024, with AMX; 7% faster without it)."""


class SequenceContext:
    """One llama.cpp context holding many KV sequences; thread-safe."""

    def __init__(
        self,
        model: Any,
        *,
        n_vocab: int,
        max_sequence: int,
        n_threads: int,
        n_threads_batch: int,
    ) -> None:
        """``model``: a ``llama_model`` pointer. ``max_sequence``: tokens one sequence may hold
        (its context length); the pool starts with that many cells and grows as needed."""
        import llama_cpp

        self._lib = llama_cpp
        self._model = model
        self.n_vocab = n_vocab
        self.max_sequence = max_sequence
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.max_sequences = int(llama_cpp.llama_max_parallel_sequences())
        # llama.cpp needs room for one output per sequence in a pass, and n_batch <= n_ctx.
        first_pool = max(max_sequence, self.max_sequences)
        self.n_batch = min(first_pool, N_BATCH)  # tokens per llama_decode call
        self.lock = threading.RLock()
        self.lengths: dict[int, int] = {}  # live sequence -> tokens in its cache
        self._free = list(range(self.max_sequences - 1, -1, -1))
        self._seq_ids = (ctypes.c_int32 * self.max_sequences)(*range(self.max_sequences))
        self._seq_base = ctypes.addressof(self._seq_ids)
        self.passes = 0  # llama_decode calls, for tests
        self.tokens = 0  # tokens llama.cpp evaluated, for tests (nothing is evaluated twice)
        self.grown = 0  # times the cell pool was enlarged
        # llama.cpp's AMX tile state must survive between passes: see the module's docstring.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="toolrun-llama.cpp")
        self._batch_buffers()
        self._ctx = self._new_context(first_pool)
        self._warm_up()

    @property
    def cells(self) -> int:
        """KV cells in the pool (llama.cpp may round the size asked up)."""
        return int(self._lib.llama_n_ctx(self._ctx))

    def open(self) -> int:
        """A new, empty sequence id."""
        with self.lock:
            if not self._free:
                raise GenerationOptionsError(
                    f"llama.cpp decodes at most {self.max_sequences} sequences at once per model"
                )
            seq = self._free.pop()
            self.lengths[seq] = 0
            return seq

    def release(self, seq: int) -> None:
        """Free a sequence's cells and id (a no-op for one already released)."""
        with self.lock:
            if self.lengths.pop(seq, None) is None:
                return
            if self._ctx is not None:
                memory = self._lib.llama_get_memory(self._ctx)
                self._lib.llama_memory_seq_rm(memory, seq, -1, -1)
            self._free.append(seq)

    def fork(self, source: int, length: int) -> int:
        """A new sequence starting with the first ``length`` tokens of ``source``: their cells
        are shared (tagged with both sequences), not copied or re-encoded."""
        with self.lock:
            if not 0 < length <= self.lengths.get(source, 0):
                raise GenerationOptionsError(f"sequence {source} has no {length} tokens to share")
            seq = self.open()
            memory = self._lib.llama_get_memory(self._ctx)
            self._lib.llama_memory_seq_cp(memory, source, seq, 0, length)
            self.lengths[seq] = length
            return seq

    @property
    def spare(self) -> int:
        """Sequence ids not in use."""
        return len(self._free)

    def state_bytes(self, seq: int) -> int:
        """The size of a sequence's cache (what copying it out would take)."""
        with self.lock:
            return int(self._lib.llama_state_seq_get_size(self._ctx, seq))

    def decode(self, feeds: Mapping[int, Sequence[int]]) -> dict[int, torch.Tensor]:
        """Append each sequence's ids in one pass; return each one's next-token logits (1-D)."""
        with self.lock:
            for seq, ids in feeds.items():
                if seq not in self.lengths:
                    raise GenerationOptionsError(f"sequence {seq} was released")
                if not ids:
                    raise GenerationOptionsError("feed() needs at least one token")
                needed = self.lengths[seq] + len(ids)
                if needed > self.max_sequence:
                    raise GenerationOptionsError(
                        f"the sequence needs {needed} tokens but the llama.cpp context holds "
                        f"{self.max_sequence}: load it with a larger n_ctx"
                    )
            rows = [(seq, list(ids)) for seq, ids in feeds.items()]
            total = sum(len(ids) for _, ids in rows)
            if sum(self.lengths.values()) + total > self.cells:
                self._grow(sum(self.lengths.values()) + total)
            out: dict[int, torch.Tensor] = {}
            # Rows are cut into passes of at most n_batch tokens (a long prompt spans several);
            # a row's logits come from the pass that holds its last token.
            chunk: list[tuple[int, list[int], bool]] = []
            size = 0
            for seq, ids in rows:
                start = 0
                while start < len(ids):
                    take = min(len(ids) - start, self.n_batch - size)
                    chunk.append((seq, ids[start : start + take], start + take == len(ids)))
                    size += take
                    start += take
                    if size == self.n_batch:
                        out.update(self._pass(chunk))
                        chunk, size = [], 0
            if chunk:
                out.update(self._pass(chunk))
            return out

    def close(self) -> None:
        with self.lock:
            if self._ctx is not None:
                self._lib.llama_free(self._ctx)
                self._ctx = None
            self.lengths.clear()
            self._decoder.shutdown(wait=False)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    # internals

    def _new_context(self, cells: int) -> Any:
        lib = self._lib
        params = lib.llama_context_default_params()
        params.n_ctx = cells
        params.n_batch = self.n_batch
        params.n_ubatch = min(N_UBATCH, self.n_batch)
        params.n_seq_max = self.max_sequences
        params.kv_unified = True  # one pool of cells for every sequence
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads_batch
        # Off, as llama-cpp-python sets it: on this class of CPU llama.cpp's flash attention made
        # single-token steps about 2x slower (benchmarks/bench_llamacpp.py).
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        ctx = lib.llama_init_from_model(self._model, params)
        if not ctx:
            raise GenerationOptionsError(f"llama.cpp could not make a context of {cells} cells")
        return ctx

    def _warm_up(self) -> None:
        """Run one token and drop it: the weights are paged in and the compute buffers sized
        now, so the first generation runs as fast as the later ones."""
        seq = self.open()
        try:
            self.decode({seq: [0]})
        finally:
            self.release(seq)
        self.passes = self.tokens = 0

    def _pass(self, chunk: list[tuple[int, list[int], bool]]) -> dict[int, torch.Tensor]:
        """One llama_decode over ``chunk``; logits for the rows whose last token is in it."""
        lib = self._lib
        n = 0
        outputs: list[int] = []
        self._wants[: sum(len(ids) for _, ids, _ in chunk)] = 0
        for seq, ids, ends_row in chunk:
            k = len(ids)
            start = self.lengths[seq]
            self._tokens[n : n + k] = ids
            self._positions[n : n + k] = range(start, start + k)
            self._seq_ptrs[n : n + k] = self._seq_base + 4 * seq
            if ends_row:
                self._wants[n + k - 1] = 1
                outputs.append(seq)
            n += k
        self._batch.n_tokens = n
        status = self._decode()
        if status == 1:  # no free cells in a row (the pool is fragmented): grow, then retry
            self._grow(self.cells + n)
            status = self._decode()
        if status != 0:
            self._roll_back(chunk)
            raise GenerationOptionsError(f"llama.cpp failed to decode a batch (status {status})")
        self.passes += 1
        self.tokens += n
        for seq, ids, _ in chunk:
            self.lengths[seq] += len(ids)
        if not outputs:
            return {}
        # One copy out of llama.cpp's buffer, which the next pass overwrites.
        if len(outputs) == 1:  # a single sequence's step: no 2-D block to index
            row = torch.empty(self.n_vocab, dtype=torch.float32)
            ctypes.memmove(row.data_ptr(), lib.llama_get_logits(self._ctx), row.nbytes)
            return {outputs[0]: row}
        logits = torch.empty(len(outputs), self.n_vocab, dtype=torch.float32)
        ctypes.memmove(logits.data_ptr(), lib.llama_get_logits(self._ctx), logits.nbytes)
        return dict(zip(outputs, logits.unbind(0), strict=True))

    def _decode(self) -> int:
        """llama_decode of the filled batch, on the context's own thread."""
        return int(self._decoder.submit(self._lib.llama_decode, self._ctx, self._batch).result())

    def _batch_buffers(self) -> None:
        """The arrays one pass is written into, and the llama_batch that points at them."""
        size = self.n_batch
        self._tokens = np.empty(size, dtype=np.int32)
        self._positions = np.empty(size, dtype=np.int32)
        self._seq_ptrs = np.empty(size, dtype=np.uintp)  # each points into self._seq_ids
        self._wants = np.zeros(size, dtype=np.int8)
        self._n_seq = np.ones(size, dtype=np.int32)
        batch: Any = self._lib.llama_batch()
        batch.token = self._tokens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.embd = None
        batch.pos = self._positions.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.n_seq_id = self._n_seq.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(
            self._seq_ptrs.ctypes.data, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))
        )
        batch.logits = self._wants.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch = batch

    def _roll_back(self, chunk: list[tuple[int, list[int], bool]]) -> None:
        """Drop cells a failed pass may have left (llama.cpp keeps finished micro-batches)."""
        memory = self._lib.llama_get_memory(self._ctx)
        for seq, _, _ in chunk:
            self._lib.llama_memory_seq_rm(memory, seq, self.lengths[seq], -1)

    def _grow(self, needed: int) -> None:
        """Move every sequence into a context with at least ``needed`` cells (doubling)."""
        lib = self._lib
        cells = max(2 * self.cells, needed)
        bigger = self._new_context(cells)
        try:
            for seq, length in self.lengths.items():
                if length == 0:
                    continue
                size = lib.llama_state_seq_get_size(self._ctx, seq)
                buffer = (ctypes.c_uint8 * size)()
                written = lib.llama_state_seq_get_data(self._ctx, buffer, size, seq)
                if lib.llama_state_seq_set_data(bigger, buffer, written, seq) == 0:
                    raise GenerationOptionsError("llama.cpp could not move a sequence's cache")
        except Exception:
            lib.llama_free(bigger)
            raise
        lib.llama_free(self._ctx)
        self._ctx = bigger
        self.grown += 1


class LlamaCppPrefix:
    """A finished row's cache kept for prefix reuse: a sequence of its own, freed when dropped."""

    def __init__(self, sequences: SequenceContext, seq: int, length: int) -> None:
        self.seq, self.length = seq, length
        self.nbytes = sequences.state_bytes(seq)
        self._release = weakref.finalize(self, sequences.release, seq)


class LlamaCppBatch:
    """Rows of the model's shared llama.cpp context, decoded together (``Batch`` protocol).

    It also offers the server's prefix-reuse hooks (``toolrun/server/prefix_cache.py``):
    ``snapshot`` keeps a leaving row's cells under a sequence of their own, and ``start_from``
    starts a new row on them, sharing the cells rather than copying them.
    """

    def __init__(self, owner: LlamaCppModel) -> None:
        self.owner = owner
        self.sequences = owner.sequences
        self.rows: dict[Hashable, int] = {}  # key -> seq id
        self.starts: dict[Hashable, tuple[LlamaCppPrefix, int]] = {}

    def step(self, feeds: Mapping[Hashable, Sequence[int]]) -> dict[Hashable, torch.Tensor]:
        """Append each row's ids (a new key starts a row); return each fed row's logits."""
        if any(not ids for ids in feeds.values()):
            raise ValueError("every fed row needs at least one token")
        for key in feeds:
            if key in self.rows:
                continue
            start = self.starts.pop(key, None)
            if start is None:
                self.rows[key] = self.sequences.open()
            else:
                prefix, length = start
                self.rows[key] = self.sequences.fork(prefix.seq, length)
        by_seq = self.sequences.decode({self.rows[key]: ids for key, ids in feeds.items()})
        return {key: by_seq[self.rows[key]] for key in feeds}

    def snapshot(self, key: Hashable) -> LlamaCppPrefix | None:
        """Keep row ``key``'s cache for later rows (None when sequence ids run short)."""
        seq = self.rows.get(key)
        if seq is None or self.sequences.spare < self.sequences.max_sequences // 4:
            return None
        length = self.sequences.lengths.get(seq, 0)
        if length == 0:
            return None
        return LlamaCppPrefix(self.sequences, self.sequences.fork(seq, length), length)

    def start_from(self, key: Hashable, snapshot: LlamaCppPrefix, length: int) -> None:
        """Start row ``key``, at its next step, on the first ``length`` tokens of ``snapshot``."""
        self.starts[key] = (snapshot, length)

    def remove(self, keys: Sequence[Hashable]) -> None:
        """Drop rows (finished or cancelled sequences) and free their cells."""
        for key in keys:
            self.starts.pop(key, None)
            seq = self.rows.pop(key, None)
            if seq is not None:
                self.sequences.release(seq)

    def close(self) -> None:
        self.remove([*self.rows, *self.starts])
