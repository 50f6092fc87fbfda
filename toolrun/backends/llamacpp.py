"""The llama.cpp backend: GGUF models on CPUs through ``llama-cpp-python``.

A ``LlamaCppModel`` decodes in one llama.cpp context of its own that holds many KV sequences
(``llamacpp_batch.SequenceContext``). A session is one sequence in it: ``feed`` appends only the
new tokens, exactly as the transformers backend does with its DynamicCache, so a tool result is
spliced without re-encoding anything. Sessions never disturb each other (a QA tool that asks the
same model a question inside a call gets a sequence of its own), and ``new_batch()`` decodes many
sequences of the same context in one pass. The loop picks tokens itself from the logits a session
returns, so sampling, the call rules and streaming are the shared implementation.

The ``llama_cpp.Llama`` the model wraps supplies the weights, the tokenizer and the metadata; its
own context is not used for decoding (``load_llamacpp`` keeps it tiny).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from ..defaults import BASE_MODEL, DEFAULT_MODEL, cache_dir, default_model_gguf
from ..errors import GenerationOptionsError, ModelLoadError
from .base import Model, Session, shipped_chat_template
from .llamacpp_batch import LlamaCppBatch, SequenceContext

__all__ = [
    "DEFAULT_N_CTX",
    "LlamaCppModel",
    "LlamaCppSession",
    "extra_buffers_work",
    "load_llamacpp",
    "new_llama",
]

DEFAULT_N_CTX = 4096
"""Tokens one sequence may hold when none is given (the KV cache takes about 23 KB a token on the
default model; the cell pool grows when several sequences together need more)."""


def load_llamacpp(
    source: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
    name: str | None = None,
    extra_buffers: bool | None = None,
) -> LlamaCppModel:
    """Load a GGUF file (None: the default model's) into llama.cpp for ``toolrun.generate()``.

    ``adapter``: a PEFT LoRA folder; it is merged into the base and written as a GGUF file once,
    cached under ``toolrun.models.cache_dir()``; its ``chat_template.jinja``, if any, replaces the
    GGUF's chat template. ``n_ctx``: tokens one sequence may hold.
    ``n_threads``: threads for both decoding and prompt batches; None means half the cores, as
    llama-cpp-python and llama.cpp's CLI choose. (llama-cpp-python alone would give prompt batches
    every core: on a busy 2-core machine two threads wait on each other at every layer and a
    30-token prompt took 2-10 s instead of 0.5.) ``name``: how the model presents itself.
    ``extra_buffers``: llama.cpp's AMX and repacked weight buffers; None uses them where they
    work (see ``new_llama``), False never (for comparisons).
    """
    path = file = _resolve_gguf(source)
    if adapter is not None:
        from .gguf_merge import merged_gguf

        path = merged_gguf(file, Path(adapter))
    threads = n_threads or max(_usable_cores() // 2, 1)
    # The Llama holds weights, tokenizer and metadata; decoding runs in the model's own
    # multi-sequence context, so the Llama's context (and its logits buffer) is kept minimal.
    llama = new_llama(
        path, n_ctx=64, n_batch=8, n_ubatch=8, n_threads=threads, extra_buffers=extra_buffers
    )
    label = name or (file.stem if adapter is None else f"{file.stem} + {Path(adapter).name}")
    # Warm now (the weights paged in, compute buffers sized): the first generation runs as fast
    # as the later ones.
    model = LlamaCppModel(llama, name=label, n_ctx=n_ctx, n_threads=threads)
    if adapter is not None:
        model.adapter_chat_template = shipped_chat_template(adapter)
    return model.warm_up()


def new_llama(
    path: str | os.PathLike[str], *, extra_buffers: bool | None = None, **kwargs: Any
) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` (``verbose=False``), safe on CPUs with broken AMX.

    llama.cpp moves weights into AMX tile buffers when the CPU has AMX, and a llama.cpp compiled
    by GCC up to 13.2.0 dies in its first AMX product (SIGSEGV, which kills Python): that GCC's
    ``_tile_loadconfig`` tells the optimiser it reads 8 bytes, so the stores filling the rest of
    the 64-byte tile configuration are dropped. ``make`` builds llama-cpp-python with ``-fno-dse``,
    which keeps them; a plain ``pip install`` does not. On AMX CPUs a child process therefore
    tries first; if it dies, the Llama is built without llama.cpp's extra weight buffers (AMX and
    repacking), which llama-cpp-python does not expose as an option. ``extra_buffers=False``
    builds it without them in any case; True skips the probe.
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
    if extra_buffers is None:
        extra_buffers = extra_buffers_work(Path(path))
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

    ``LlamaCppModel(Llama(model_path=...))`` works with a Llama you built yourself;
    ``toolrun.load_model(path)`` builds one for you. ``n_ctx`` (tokens one sequence may hold) and
    ``n_threads`` default to the Llama's own settings.
    """

    backend = "llama.cpp"

    def __init__(
        self,
        llama: Any,
        *,
        name: str | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        import llama_cpp

        self.llama = llama
        self.name = name or Path(llama.model_path).stem
        self.n_ctx = int(n_ctx or llama.n_ctx())
        self.n_threads = int(n_threads or llama.n_threads)
        self.n_threads_batch = int(n_threads or llama.n_threads_batch)
        self._n_vocab = int(llama.n_vocab())
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        vocab = self._vocab
        self._bos = int(llama_cpp.llama_vocab_bos(vocab))
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
        self._sequences: SequenceContext | None = None
        self._sequences_lock = threading.Lock()

    # text

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        # special=True: "<|im_end|>" written in a prompt is the control token, as in transformers
        # (chat templates write their markers as text).
        return list(self.llama.tokenize(text.encode(), add_bos=False, special=True))

    def decode(self, ids: Sequence[int]) -> str:
        # What llama-cpp-python's detokenize does (each token's piece, special tokens as text,
        # a space after a leading BOS dropped), from a cache of pieces: the loop decodes a few
        # tokens at every step.
        pieces = self._pieces
        data = b"".join(pieces[i] if i in pieces else self._piece(i) for i in ids)
        if ids and ids[0] == self._bos and data[:1] == b" ":
            data = data[1:]
        return data.decode("utf-8", errors="replace")

    @cached_property
    def _pieces(self) -> dict[int, bytes]:
        return {}

    def _piece(self, token: int) -> bytes:
        import llama_cpp

        if not 0 <= token < self._n_vocab:
            raise ValueError(f"token id {token} is outside the vocabulary")
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
            if n >= 0:
                break
            size = -n
        piece = buffer.raw[:n]
        self._pieces[token] = piece
        return piece

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def bos_token_ids(self) -> list[int]:
        return list(self._bos_token_ids)

    @cached_property
    def _bos_token_ids(self) -> tuple[int, ...]:
        # What llama.cpp itself adds to a prompt (nothing for SmolLM2, BOS for Llama models).
        probe = list(self.llama.tokenize(b"a", add_bos=True, special=True))
        plain = list(self.llama.tokenize(b"a", add_bos=False, special=True))
        start = probe.index(plain[0]) if plain and plain[0] in probe else 0
        return tuple(probe[:start])

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials

    @property
    def own_chat_template(self) -> str | None:
        template = self.llama.metadata.get("tokenizer.chat_template")
        return str(template) if template else None

    @property
    def template_tokens(self) -> dict[str, str]:
        import llama_cpp

        tokens = {}
        for key, token in (
            ("bos_token", self._bos),
            ("eos_token", int(llama_cpp.llama_vocab_eos(self._vocab))),
        ):
            if 0 <= token < self._n_vocab:
                tokens[key] = llama_cpp.llama_vocab_get_text(self._vocab, token).decode(
                    "utf-8", errors="replace"
                )
        return tokens

    @property
    def context_length(self) -> int:
        return self.n_ctx

    # decoding

    @property
    def sequences(self) -> SequenceContext:
        """The context every session and batch of this model decodes in (made on first use)."""
        if self._sequences is None:
            with self._sequences_lock:
                if self._sequences is None:
                    self._sequences = SequenceContext(
                        self.llama.model,
                        n_vocab=self._n_vocab,
                        max_sequence=self.n_ctx,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads_batch,
                    )
        return self._sequences

    def new_session(self) -> LlamaCppSession:
        return LlamaCppSession(self)

    def new_batch(self) -> LlamaCppBatch:
        """Many sequences decoded together in this model's context (for ``generate_batch``)."""
        return LlamaCppBatch(self)

    def warm_up(self) -> LlamaCppModel:
        """Make the decoding context now (pages the weights in), not on the first generation."""
        self.sequences  # noqa: B018 - built on first access
        return self


class LlamaCppSession(Session):
    """One sequence in the model's context: ``feed`` evaluates only the tokens it is given."""

    def __init__(self, owner: LlamaCppModel) -> None:
        self.owner = owner
        self.sequences = owner.sequences
        self.seq = self.sequences.open()
        # A session dropped without close() (an abandoned generator) still frees its cells.
        self._release = weakref.finalize(self, self.sequences.release, self.seq)

    @property
    def tokens_evaluated(self) -> int:
        """Tokens llama.cpp ran for this session (equal to ``tokens_fed``: nothing is re-run)."""
        return self.sequences.lengths.get(self.seq, self.tokens_fed)

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        ids = list(ids)
        if not ids:
            raise GenerationOptionsError("feed() needs at least one token")
        if not self._release.alive:
            raise GenerationOptionsError("this session was closed")
        logits = self.sequences.decode({self.seq: ids})[self.seq]
        self.tokens_fed += len(ids)
        return logits

    def close(self) -> None:
        self._release()


def _resolve_gguf(source: str | os.PathLike[str] | None) -> Path:
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
# The crash depends on the batch size and thread count (seen here: SIGSEGV at 2 and 64 tokens
# with one thread, a pass at 64 tokens with two threads once: the dropped stores leave whatever
# the stack held), so the probe tries several.
_PROBE = """
import sys, llama_cpp
for threads in (1, 2):
    llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    for size in (64, 1, 2, 7, 33):
        llama.eval(list(range(100, 100 + size)))
"""


def extra_buffers_work(path: Path) -> bool:
    """Whether llama.cpp's extra weight buffers (AMX, repacking) work for ``path`` here: False
    when the CPU has AMX and a Llama using it dies (see ``new_llama``); probed once per llama.cpp
    build and boot, remembered under ``cache_dir()``."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: no AMX to worry about
    if "amx_tile" not in flags:
        return True
    import llama_cpp

    library = Path(llama_cpp.__file__).parent / "lib"
    stamp = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in library.glob("*"))
    boot = Path("/proc/sys/kernel/random/boot_id")
    key = hashlib.sha256(
        "\n".join([*stamp, boot.read_text() if boot.is_file() else ""]).encode()
    ).hexdigest()[:16]
    verdict = cache_dir() / "llamacpp" / f"amx-v2-{key}"
    for answer in ("works", "fails"):
        if verdict.with_suffix(f".{answer}").is_file():
            return answer == "works"
    try:
        child = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    if child.returncode > 0:
        return False  # an error, not a crash (a bad file): decide nothing for next time
    works = child.returncode == 0  # killed by any signal: llama.cpp's AMX path crashed
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.with_suffix(".works" if works else ".fails").touch()
    return works
