"""Teach a model your own tools from Python: annotate texts with the calls that help, finetune.

    import toolrun

    @toolrun.tool(examples=["The marathon is 42 km, [KmToMiles(42) → 26.1] 26.1 miles."])
    def km_to_miles(km: float) -> float: ...

    annotated = toolrun.annotate(texts, tools=[km_to_miles], output="work/annotated.jsonl")
    toolrun.finetune(annotated, output="work/adapter", only_with_calls=True)
    model = toolrun.load_model(adapter="work/adapter")

Tools are anything a registry takes: functions, installed names, ``module:function`` and
``path/to/file.py:function`` references; several at once are annotated each and merged (one
call per position), so one finetuning teaches them all. Everything is checked (tools, their
examples, the options, the data) before a model loads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry import ToolRegistry
from .annotate import AnnotateConfig, Annotator, _progress, load_annotations, plan_tools, summarize
from .annotate import annotate as annotate_file
from .data import PipelineError, records_from
from .finetune import FinetuneConfig, load_texts
from .finetune import finetune as finetune_model

__all__ = ["Annotated", "annotate", "finetune"]


@dataclass
class Annotated:
    """What ``annotate`` made: one dict per text (``text`` with the kept calls written in,
    ``original``, ``calls``, the losses in ``scored``), the run's stats, and where it was
    written (None when it was not)."""

    lines: list[dict[str, Any]]
    stats: dict[str, Any]
    output: Path | None = None

    @property
    def texts(self) -> list[str]:
        """The annotated texts, calls written in: what ``finetune`` trains on."""
        return [line["text"] for line in self.lines]


def annotate(
    texts: Any,
    *,
    tools: Sequence[Any],
    model: Any = None,
    adapter: str | os.PathLike[str] | None = None,
    device: str | None = None,
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    shard_size: int = 64,
    format: str = "jsonl",
    **options: Any,
) -> Annotated:
    """Annotate ``texts`` (a list of texts, Records or dicts, or a corpus path) with calls to
    ``tools`` that make the text after them easier to predict (Toolformer's sampling and filter).

    ``model``: a loaded transformers Model, a name or path, or None for the base model (not the
    finetuned default: annotation asks what the plain model finds useful). ``output``: a JSONL
    file written as texts finish; rerun with it to resume. ``ray=True`` runs on Ray Data
    (``ray_address`` to join a cluster, ``workers`` actors; ``output`` is then a folder of
    shards). ``options``: ``AnnotateConfig`` fields (``tau_s``, ``k``, ``m``, ``tau_f``,
    ``proposer``, ``criterion``, ``placement``, ``seed`` ...)."""
    config = _config(AnnotateConfig, options, "annotate")
    if ray:
        from .ray_annotate import annotate_on_ray

        if output is None:
            raise PipelineError("annotate(ray=True) needs an output folder for the shards")
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise PipelineError("with ray=True give the model as a name or path")
        stats = annotate_on_ray(
            texts,
            Path(output),
            tools=tools,
            config=config,
            model=None if model is None else str(model),
            adapter=None if adapter is None else str(adapter),
            device=device,
            address=ray_address,
            workers=workers,
            threads=threads,
            shard_size=shard_size,
            format=format,
            progress=progress,
        )
        return Annotated(load_annotations(Path(output)), stats, Path(output))
    registry = ToolRegistry(tools)
    config.tools = [t.name for t in registry]
    plan_tools(registry, config)
    records = records_from(texts)
    loaded = _load(model, adapter=adapter, device=device)
    if not hasattr(getattr(loaded, "model", None), "config"):
        raise PipelineError("annotation scores losses with a transformers model (not llama.cpp)")
    if output is not None:
        path = Path(output)
        stats = annotate_file(loaded, registry, records, config, path, progress=progress)
        return Annotated(load_annotations(path), stats, path)
    annotator = Annotator(loaded, registry, config)
    bar = _progress(len(records), progress)
    lines = []
    for record in records:
        lines.append(annotator(record))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Annotated(lines, summarize(lines, config))


def finetune(
    data: Any,
    *,
    output: str | os.PathLike[str],
    model: Any = None,
    tools: Sequence[str] | None = None,
    criterion: str | None = None,
    tau_f: float | None = None,
    only_with_calls: bool = False,
    repeated_calls: bool = False,
    quantize: str | None = None,
    device: str | None = None,
    merge: bool = False,
    progress: bool = True,
    resume: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Finetune a model on annotated texts and save the adapter to ``output``.

    ``data``: what ``annotate`` returned, an annotation file or folder, a list of them (one run
    per tool: merged), or a list of texts with calls written in. ``tools``, ``criterion`` and
    ``tau_f`` re-select the calls from the stored losses (a call repeating an earlier one in its
    text dropped unless ``repeated_calls``); ``only_with_calls`` drops texts where none was kept.
    ``model``: a loaded Model, a name or path, or None for the base model; ``quantize="nf4"``
    loads it in 4 bit (QLoRA). ``options``: ``FinetuneConfig`` fields
    (``epochs``, ``batch_size``, ``micro_batch_size``, ``learning_rate``, ``lora_r``,
    ``gradient_checkpointing``, ``save_steps`` ...). An interrupted run resumes."""
    config = _config(FinetuneConfig, {"only_with_calls": only_with_calls, **options}, "finetune")
    config.check()

    def read(paths: Any) -> list[str]:
        return load_texts(
            paths,
            only_with_calls=only_with_calls,
            criterion=criterion,
            tau_f=tau_f,
            tools=tools,
            repeated_calls=repeated_calls,
        )

    if isinstance(data, Annotated):
        if data.output is not None:
            texts = read(data.output)
        else:
            texts = [line["text"] for line in data.lines if line["calls"] or not only_with_calls]
    elif isinstance(data, (str, os.PathLike)):
        texts = read(Path(data))
    elif all(isinstance(d, os.PathLike) or (isinstance(d, str) and _is_path(d)) for d in data):
        texts = read([Path(d) for d in data])
    else:
        texts = [str(text) for text in data]
    if not texts:
        raise PipelineError("no texts to finetune on")
    dtype = "float32" if config.full else None
    loaded = _load(model, device=device, quantize=quantize, dtype=dtype)
    return finetune_model(
        loaded, texts, Path(output), config, merge=merge, progress=progress, resume=resume
    )


def _is_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and Path(text).exists()


def _config(kind: Any, options: dict[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)} - {"tools"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise PipelineError(f"{what}() got unknown options {unknown}; known: {sorted(names)}")
    return kind(**options)


def _load(model: Any, **kwargs: Any) -> Any:
    """A loaded model as given, else ``load_model`` of the name or path (the base by default)."""
    from ..models import BASE_MODEL, load_model

    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    # The pipeline reads losses and trains through the transformers model itself.
    return load_model(BASE_MODEL if model is None else model, backend="transformers", **kwargs)
