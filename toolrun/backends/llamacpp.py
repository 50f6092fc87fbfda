"""The llama.cpp backend: GGUF models on CPUs through ``llama-cpp-python``.

``Llama.eval`` appends to llama.cpp's KV cache, so a session feeds only new tokens, exactly as the
transformers backend does with its DynamicCache. The loop picks tokens itself from the logits a
session returns, so sampling, the call rules and streaming are the shared implementation.

A ``Llama`` object holds a single KV sequence, but several sessions may share one model (a QA tool
that asks the model a question inside a call, a thread that timed out). The model remembers which
session's tokens are in the cache. A session that finds another one there saves that session's
KV (``llama_state_seq_get_data``) before taking over, and restores its own the same way, so
neither re-encodes its context. When the cache was changed behind toolrun's back (a direct
``create_completion`` on the same ``Llama``), a session re-evaluates its sequence. A new session
never reuses a prefix another one left in the cache: the prompt is always evaluated in one batch,
so the same call gives the same text.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import GenerationOptionsError, ModelLoadError
from .base import Model, Session

__all__ = ["DEFAULT_N_CTX", "LlamaCppModel", "LlamaCppSession", "load_llamacpp", "new_llama"]

DEFAULT_N_CTX = 4096
"""Context size when none is given: the KV cache takes about 23 KB a token on the default model."""


def load_llamacpp(
    source: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
) -> LlamaCppModel:
    """Load a GGUF file (None: the default model's) into llama.cpp for ``toolrun.generate()``.

    ``adapter``: a PEFT LoRA folder; it is merged into the base and written as a GGUF file once,
    cached under ``toolrun.models.cache_dir()``. ``n_threads``: threads for both decoding and
    prompt batches; None means half the cores, as llama-cpp-python and llama.cpp's CLI choose.
    (llama-cpp-python alone would give prompt batches every core: on a busy 2-core machine two
    threads wait on each other at every layer and a 30-token prompt took 2-10 s instead of 0.5.)
    """
    path = name = _resolve_gguf(source)
    if adapter is not None:
        from .gguf_merge import merged_gguf

        path = merged_gguf(path, Path(adapter))
    threads = n_threads or max(_usable_cores() // 2, 1)
    llama = new_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads)
    label = name.stem if adapter is None else f"{name.stem} + {Path(adapter).name}"
    return LlamaCppModel(llama, name=label)


def new_llama(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` (``verbose=False``), safe on CPUs with broken AMX.

    llama.cpp moves weights into AMX tile buffers when the CPU advertises AMX, and some virtual
    machines advertise it but fault on the first tile instruction (SIGILL, which kills Python).
    On such CPUs a child process tries once; if it dies, the Llama is built without llama.cpp's
    extra weight buffers (AMX and repacking), which llama-cpp-python does not expose as an option.
    """
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lib
    except ImportError as exc:
        raise ModelLoadError(
            "the llama.cpp backend needs llama-cpp-python: pip install 'toolrun[llama]' "
            "(it compiles llama.cpp, a few minutes)"
        ) from exc
    kwargs.setdefault("verbose", False)
    extra_buffers = _extra_buffers_work(Path(path))
    with _params_lock:
        default_params = lib.llama_model_default_params
        if not extra_buffers:

            def without_extra_buffers() -> Any:
                params = default_params()
                params.use_extra_bufts = False
                return params

            lib.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        finally:
            lib.llama_model_default_params = default_params


class LlamaCppModel(Model):
    """Wraps a ``llama_cpp.Llama`` for the decoding loop.

    ``LlamaCppModel(Llama(model_path=...))`` works with a Llama you built yourself (create it with
    the default ``logits_all=False``); ``toolrun.load_model(path, backend="llama.cpp")`` builds
    one for you.
    """

    backend = "llama.cpp"

    def __init__(self, llama: Any, *, name: str | None = None) -> None:
        import llama_cpp

        self.llama = llama
        self.name = name or Path(llama.model_path).stem
        self._n_vocab = int(llama.n_vocab())
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        # llama.cpp's own end-of-generation set: what a plain Llama completion stops on.
        self._eos = frozenset(
            i for i in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)
        )
        # Control and user-defined tokens are the ones that `special=True` parses from text.
        parsed = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        self._specials = tuple(
            text
            for i in range(self._n_vocab)
            if llama_cpp.llama_vocab_get_attr(vocab, i) & parsed and (text := self.decode([i]))
        )
        self._lock = threading.RLock()
        self._active: LlamaCppSession | None = None  # whose tokens are in the KV cache

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        # special=True: "<|im_end|>" written in a prompt is the control token, as in transformers.
        return list(self.llama.tokenize(text.encode(), add_bos=False, special=True))

    def decode(self, ids: Sequence[int]) -> str:
        data: bytes = self.llama.detokenize(list(ids), special=True)
        return data.decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def bos_token_ids(self) -> list[int]:
        # What llama.cpp itself adds to a prompt (nothing for SmolLM2, BOS for Llama models).
        probe = list(self.llama.tokenize(b"a", add_bos=True, special=True))
        plain = list(self.llama.tokenize(b"a", add_bos=False, special=True))
        start = probe.index(plain[0]) if plain and plain[0] in probe else 0
        return probe[:start]

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials

    def new_session(self) -> LlamaCppSession:
        return LlamaCppSession(self)

    def _logits(self) -> torch.Tensor:
        """The logits of the last token evaluated, copied out of llama.cpp's buffer."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        row = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        return torch.from_numpy(row.copy())


class LlamaCppSession(Session):
    """One sequence in a shared ``Llama``: its tokens, and its saved KV while another runs."""

    def __init__(self, owner: LlamaCppModel) -> None:
        self.owner = owner
        self.ids: list[int] = []
        self.tokens_evaluated = 0
        """Tokens llama.cpp actually ran for this session: ``tokens_fed`` plus any re-evaluation
        after the cache was changed outside toolrun (tests check that nothing is re-encoded)."""
        self._saved: Any = None  # this sequence's KV, saved while another session holds the Llama
        self._closed = False

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        ids = list(ids)
        if not ids:
            raise GenerationOptionsError("feed() needs at least one token")
        owner, llama = self.owner, self.owner.llama
        # llama.cpp may round the context up; llama-cpp-python's token buffer has the size asked.
        capacity = min(llama.n_ctx(), len(llama.input_ids))
        if len(self.ids) + len(ids) > capacity:
            raise GenerationOptionsError(
                f"the sequence needs {len(self.ids) + len(ids)} tokens but the llama.cpp context "
                f"holds {capacity}: load it with a larger n_ctx"
            )
        with owner._lock:
            todo = ids if self._holds_cache() else self._claim(ids)
            try:
                llama.eval(todo)
            except Exception:
                owner._active = None  # half-evaluated: the next feed re-syncs from the prefix
                raise
            self.ids.extend(ids)
            self.tokens_fed += len(ids)
            self.tokens_evaluated += len(todo)
            return owner._logits()

    def close(self) -> None:
        with self.owner._lock:
            self._closed = True
            self._saved = None
            if self.owner._active is self:
                self.owner._active = None

    def _holds_cache(self) -> bool:
        """Is the cache this session's? O(1): checked before every token."""
        llama, n = self.owner.llama, len(self.ids)
        return (
            self.owner._active is self
            and llama.n_tokens == n
            and (n == 0 or int(llama.input_ids[n - 1]) == self.ids[-1])
        )

    def _in_sync(self) -> bool:
        """Does the cache hold exactly this session's tokens? O(n): checked on hand-overs."""
        llama, n = self.owner.llama, len(self.ids)
        return llama.n_tokens == n and np.array_equal(llama.input_ids[:n], self.ids)

    def _claim(self, ids: list[int]) -> list[int]:
        """Take the cache over from whoever used it; return the tokens left to evaluate."""
        import llama_cpp

        owner, llama = self.owner, self.owner.llama
        previous = owner._active
        if previous is not None and previous is not self:
            previous._stash()
        owner._active = self
        saved, self._saved = self._saved, None
        if saved is not None:
            buffer, size = saved
            memory = llama_cpp.llama_get_memory(llama.ctx)
            llama_cpp.llama_memory_seq_rm(memory, -1, -1, -1)
            if llama_cpp.llama_state_seq_set_data(llama.ctx, buffer, size, 0) == size:
                n = len(self.ids)
                llama.n_tokens = n
                llama.input_ids[:n] = self.ids
                llama._requires_eval = True  # a plain completion must not sample stale logits
                return ids
        # Evaluate the whole sequence again, even where the cache shares a prefix with it: llama.cpp
        # computes one token alone slightly differently from a batch (logits move by up to ~0.5),
        # so reusing another sequence's prefix would make the same prompt give different text.
        llama.n_tokens = 0  # eval() drops the cache from n_tokens on
        return self.ids + ids

    def _stash(self) -> None:
        """Save this session's KV before another session overwrites it."""
        import llama_cpp

        if self._closed or not self.ids or not self._in_sync():
            return  # nothing to keep, or already lost to a change outside toolrun
        ctx = self.owner.llama.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        self._saved = (buffer, written) if 0 < written <= size else None


def _resolve_gguf(source: str | os.PathLike[str] | None) -> Path:
    from ..models import BASE_MODEL, DEFAULT_MODEL, default_model_gguf

    if source is None or str(source).lower() == BASE_MODEL:
        return default_model_gguf()
    if str(source).lower() in (DEFAULT_MODEL, "default"):
        raise ModelLoadError(
            f"{DEFAULT_MODEL!r} is the base model plus its adapter: use "
            f"toolrun.load_model(backend='llama.cpp'), or load_llamacpp(adapter=...)"
        )
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    raise ModelLoadError(
        f"the llama.cpp backend loads .gguf files; {str(source)!r} is not one "
        f"(give a .gguf file, {BASE_MODEL!r}, or use backend='transformers')"
    )


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_params_lock = threading.Lock()
_PROBE = """
import sys, llama_cpp
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, verbose=False)
llama.eval(list(range(100, 164)))
"""


def _extra_buffers_work(path: Path) -> bool:
    """False when the CPU advertises AMX but a Llama using it dies: probed once, remembered."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: no AMX to worry about
    if "amx_tile" not in flags:
        return True
    import llama_cpp

    from ..models import cache_dir

    library = Path(llama_cpp.__file__).parent / "lib"
    stamp = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in library.glob("*"))
    boot = Path("/proc/sys/kernel/random/boot_id")
    key = hashlib.sha256(
        "\n".join([*stamp, boot.read_text() if boot.is_file() else ""]).encode()
    ).hexdigest()[:16]
    verdict = cache_dir() / "llamacpp" / f"amx-{key}"
    for answer in ("works", "fails"):
        if verdict.with_suffix(f".{answer}").is_file():
            return answer == "works"
    try:
        child = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    works = child.returncode == 0
    if child.returncode not in (0, -signal.SIGILL):
        return works  # failed for another reason (a bad file): decide nothing for next time
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.with_suffix(".works" if works else ".fails").touch()
    return works
