"""LoRA adapters on llama.cpp: merge a PEFT adapter into a GGUF base and write a new GGUF, once.

transformers + peft do the merge (the same path as ``load_model(adapter=...)`` on the transformers
backend), so both backends run the same merged weights. Tensors the adapter leaves unchanged are
copied byte for byte from the base, keeping its quantisation; tensors it changes are written as
Q8_0 (F32 where a row does not split into 32-value blocks), close to the float weights the
transformers backend runs. llama.cpp stores the query and key projections with each head's rotary
halves interleaved, so those are permuted the way llama.cpp's own converter does; an adapter that
changes nothing therefore reproduces every base tensor exactly (the tests check this).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import cache_dir
from ..errors import ModelLoadError

__all__ = ["merged_gguf", "writer_like"]

_lock = threading.Lock()


def merged_gguf(base: Path, adapter: Path, *, cache: Path | None = None) -> Path:
    """The GGUF file of ``base`` with the LoRA ``adapter`` merged in, written once and cached.

    ``cache``: the folder to write to; ``toolrun.models.cache_dir() / "gguf"`` when None.
    """
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if importlib.util.find_spec("peft") is None:
        raise ModelLoadError("adapters need peft: pip install 'toolrun[train]'")
    folder = cache if cache is not None else cache_dir() / "gguf"
    out = folder / f"{base.stem}-{adapter.resolve().name}-{_fingerprint(base, adapter)}.gguf"
    if out.is_file():
        return out
    with _lock:
        if out.is_file():
            return out
        folder.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".merging-", suffix=".gguf", dir=folder)
        os.close(handle)
        try:
            _write_merged(base, adapter, Path(staging))
            os.replace(staging, out)  # atomic: a half-written file is never taken as done
        except Exception as exc:
            Path(staging).unlink(missing_ok=True)
            if isinstance(exc, ModelLoadError):
                raise
            raise ModelLoadError(f"could not merge {adapter} into {base}: {exc}") from exc
    return out


def _fingerprint(base: Path, adapter: Path) -> str:
    """Changes whenever the base file or the adapter's config or weights change (not its card).

    By content, not path or time: every checkout, clone or reinstalled wheel holds the same
    adapter at a new path with new times, and must find the file merged once, not merge again
    (each copy is 140 MB). The base is named by its size and its first and last MiB: hashing
    the whole file on every load would cost more than it guards against.
    """
    digest = hashlib.sha256()
    weights = [p for p in adapter.iterdir() if p.name.startswith("adapter_") and p.is_file()]
    for path in sorted(weights):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    size = base.stat().st_size
    with base.open("rb") as handle:
        digest.update(f"{base.name}:{size}".encode() + handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read())
    return digest.hexdigest()[:12]


def _write_merged(base: Path, adapter: Path, out: Path) -> None:
    import gguf

    from .._quiet import quiet
    from ..models import load_model

    reader = gguf.GGUFReader(base)
    arch = str(reader.fields["general.architecture"].contents())
    if arch != "llama":
        raise ModelLoadError(
            f"adapters on llama.cpp support llama-architecture GGUF files; {base} is {arch!r}"
        )
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    kv_field = reader.fields.get("llama.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    n_blocks = int(reader.fields["llama.block_count"].contents())

    with quiet():  # transformers' progress bar and peft's warnings mean nothing to the user here
        merged: Any = load_model(
            str(base), adapter=adapter, device="cpu", dtype="float32", backend="transformers"
        )
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    weights: dict[str, np.ndarray] = {}
    for hf_name, tensor in merged.model.state_dict().items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is not None:
            weights[name] = tensor.detach().float().numpy()
    base_names = {t.name for t in reader.tensors}
    output, embeddings = weights.get("output.weight"), weights.get("token_embd.weight")
    tied = output is None or (embeddings is not None and np.array_equal(output, embeddings))
    if "output.weight" not in base_names and not tied:
        raise ModelLoadError("the adapter unties the output layer from the embeddings")

    writer = writer_like(reader, out)
    for tensor in reader.tensors:
        if tensor.name not in weights:
            raise ModelLoadError(f"the merged model has no weight for GGUF tensor {tensor.name}")
        values = weights[tensor.name]
        if tensor.name.endswith("attn_q.weight"):
            values = _permute(values, n_head, n_head)
        elif tensor.name.endswith("attn_k.weight"):
            values = _permute(values, n_head, n_head_kv)
        original = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        if values.shape != original.shape:
            raise ModelLoadError(
                f"{tensor.name}: merged shape {values.shape} != base shape {original.shape}"
            )
        if np.array_equal(values, original):
            writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
        elif values.ndim == 2 and values.shape[-1] % 32 == 0:
            quantized = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor.name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(tensor.name, values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def writer_like(reader: Any, out: Path) -> Any:
    """A ``gguf.GGUFWriter`` for ``out`` holding every metadata field of ``reader``'s file (its
    tokenizer, hyperparameters and template); the caller adds the tensors and writes it."""
    import gguf

    writer = gguf.GGUFWriter(out, arch=str(reader.fields["general.architecture"].contents()))
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # the writer adds these itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    return writer


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """Hugging Face's q/k row order to llama.cpp's (inverse of transformers' GGUF loader)."""
    heads = n_head_kv if n_head != n_head_kv else n_head
    shape = weights.shape
    return (
        weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )
