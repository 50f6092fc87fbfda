"""Annotation at corpus scale on Ray Data: the same annotator, one model per actor.

    toolrun annotate corpus.jsonl -o out/ --tools calculator --ray --workers 8
    toolrun annotate corpus.jsonl -o out/ --ray --ray-address ray://head:10001

The corpus is cut into shards of ``shard_size`` texts in corpus order and read into a Ray
Dataset, one row a shard; ``map_batches`` hands the shards to a pool of actors, each holding its
own model, registry and annotator (``Annotator``, exactly what the single-process run uses), which
executes candidates through the registry and writes the shard's lines as
``out/shard-00012.jsonl`` (or ``.parquet``) plus its stats, each file atomically. A rerun skips
the shards already written, so an interrupted run resumes; ``out/stats.json`` sums the shards.
``load_annotations(out)`` and ``toolrun finetune out/`` read the folder as one file.

A local Ray is started when none is running and no address is given; toolrun's own code travels
to the workers (``py_modules``), the model and tool files must be readable at the same paths on
every node. Ray is the optional extra ``toolrun[ray]``, imported only here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..registry import ToolRegistry, resolve_tool
from .annotate import AnnotateConfig, Annotator, _progress, plan_tools, summarize
from .data import PipelineError, Record, records_from

__all__ = [
    "FORMATS",
    "annotate_on_ray",
    "combine_stats",
    "read_shards",
    "start_local_ray",
    "tool_reference",
]

FORMATS = ("jsonl", "parquet")
_RUN = "run.json"  # what the shards were made from: a rerun must match it
_JSON_COLUMNS = ("gold", "calls", "counts", "scored")  # nested; Parquet keeps them as JSON text


def annotate_on_ray(
    corpus: Any,
    output: str | Path,
    *,
    tools: Sequence[Any],
    config: AnnotateConfig | None = None,
    model: str | None = None,
    adapter: str | None = None,
    device: str | None = None,
    address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    shard_size: int = 64,
    format: str = "jsonl",
    progress: bool = True,
) -> dict[str, Any]:
    """Annotate ``corpus`` (a corpus path or a list of texts/Records) into the folder ``output``
    on Ray with ``workers`` actors of ``threads`` CPU threads each; return the combined stats.

    ``model``/``adapter``: what each actor loads (a name or path for ``toolrun.load_model``; the
    base model by default). ``tools``: names, references or functions. Everything is checked
    before Ray starts."""
    from ..models import BASE_MODEL

    if format not in FORMATS:
        raise PipelineError(f"format must be one of {FORMATS}, got {format!r}")
    if workers < 1 or threads < 1 or shard_size < 1:
        raise PipelineError("workers, threads and shard_size must be at least 1")
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise PipelineError("on Ray, give the model as a name or path: each actor loads its own")
    references = [tool_reference(item) for item in tools]
    registry = ToolRegistry(references)
    config = config or AnnotateConfig()
    config.tools = [t.name for t in registry]
    plan_tools(registry, config)  # bad options and missing examples fail before Ray starts
    records = records_from(corpus)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    shards = [records[i : i + shard_size] for i in range(0, len(records), shard_size)]
    _check_run(output, records, shard_size, config)
    pending = [i for i in range(len(shards)) if not (output / _shard_name(i, format)).is_file()]
    done_texts = len(records) - sum(len(shards[i]) for i in pending)

    started = time.perf_counter()
    finished: list[dict[str, Any]] = []
    if pending:
        rows = [
            {"shard": i, "records": json.dumps([r.to_json() for r in shards[i]])} for i in pending
        ]
        actor = {
            "output": str(output),
            "model": str(model) if model is not None else BASE_MODEL,
            "adapter": None if adapter is None else str(adapter),
            "device": device,
            "tools": references,
            "config": asdict(config),
            "threads": threads,
            "format": format,
        }
        finished = _run(rows, actor, address, workers, threads, progress, len(records), done_texts)
    stats = combine_stats([_read_stats(output, i, format) for i in range(len(shards))], config)
    stats["shards"] = len(shards)
    stats["workers"] = workers
    stats["seconds_this_run"] = round(time.perf_counter() - started, 1)
    stats["shard_seconds_this_run"] = {row["shard"]: row["seconds"] for row in finished}
    (output / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _run(
    rows: list[dict[str, Any]],
    actor: dict[str, Any],
    address: str | None,
    workers: int,
    threads: int,
    progress: bool,
    total: int,
    done: int,
) -> list[dict[str, Any]]:
    """Annotate the shards in ``rows`` on Ray; the actors' summaries, one a shard."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise PipelineError("annotation on Ray needs ray: pip install 'toolrun[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        start_local_ray(workers * threads, address=address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _ShardAnnotator,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs=actor,
            num_cpus=threads,
        )
        bar = _progress(total - done, progress, initial=done)
        kept = 0
        finished = []
        for row in dataset.iter_rows():  # shards arrive as they finish
            finished.append(
                {
                    "shard": int(row["shard"]),
                    "texts": int(row["texts"]),
                    "kept": int(row["kept"]),
                    "seconds": float(row["seconds"]),
                }
            )
            kept += int(row["kept"])
            if bar is not None:
                bar.update(int(row["texts"]))
                bar.set_postfix(shard=int(row["shard"]), kept_this_run=kept)
        if bar is not None:
            bar.close()
        return finished
    finally:
        if started_here:
            ray.shutdown()


def start_local_ray(num_cpus: int, *, address: str | None = None) -> None:
    """Start a local Ray with ``num_cpus`` (or join ``address``), shipping this toolrun to the
    workers (``py_modules``) so that they run the same code as the driver."""
    import ray

    import toolrun

    options: dict[str, Any] = {
        "address": address,
        "log_to_driver": False,
        "runtime_env": {"py_modules": [str(Path(toolrun.__file__).parent)]},
    }
    if address is None:
        options.update(num_cpus=num_cpus, include_dashboard=False)
    ray.init(**options)


class _ShardAnnotator:
    """A Ray actor: loads the model once, then annotates shards and writes each one's file."""

    def __init__(
        self,
        output: str,
        model: str,
        adapter: str | None,
        device: str | None,
        tools: list[Any],
        config: dict[str, Any],
        threads: int,
        format: str,
    ) -> None:
        import torch

        import toolrun

        torch.set_num_threads(threads)
        self.output = Path(output)
        self.format = format
        self.config = AnnotateConfig(**config)
        registry = ToolRegistry(tools)
        loaded = toolrun.load_model(model, adapter=adapter, device=device, backend="transformers")
        self.annotator = Annotator(loaded, registry, self.config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"shard": [], "texts": [], "kept": [], "seconds": []}
        for shard, payload in zip(batch["shard"], batch["records"], strict=True):
            started = time.perf_counter()
            records = [_record(row) for row in json.loads(payload)]
            lines = [self.annotator(record) for record in records]
            stats = summarize(lines, self.config)
            _write_shard(self.output, int(shard), lines, stats, self.format)
            out["shard"].append(int(shard))
            out["texts"].append(len(lines))
            out["kept"].append(stats["kept"])
            out["seconds"].append(round(time.perf_counter() - started, 2))
        return out


def _record(row: dict[str, Any]) -> Record:
    from .data import GoldMark, parse_date

    gold = [GoldMark(*mark) for mark in row.get("gold", [])]
    day = parse_date(row.get("date"), row["id"])
    return Record(id=row["id"], text=row["text"], start=row["start"], gold=gold, date=day)


def _shard_name(index: int, format: str) -> str:
    return f"shard-{index:05d}.{format}"


def _write_shard(
    output: Path, index: int, lines: list[dict[str, Any]], stats: dict[str, Any], format: str
) -> None:
    """The shard's lines, then its stats, each written whole under a temporary name and renamed
    (a rerun sees a shard as done only when both are complete)."""
    final = output / _shard_name(index, format)
    partial = final.with_name(f".{final.name}.partial")
    if format == "jsonl":
        partial.write_text(
            "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
            encoding="utf-8",
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, list[Any]] = {k: [] for k in ("id", "text", "original", "start")}
        columns.update({k: [] for k in _JSON_COLUMNS})
        for line in lines:
            for key in columns:
                value = line[key]
                columns[key].append(json.dumps(value) if key in _JSON_COLUMNS else value)
        pq.write_table(pa.table(columns), partial)
    stats_file = output / f"shard-{index:05d}.stats.json"
    stats_file.with_name(f".{stats_file.name}.partial").write_text(json.dumps(stats) + "\n")
    stats_file.with_name(f".{stats_file.name}.partial").replace(stats_file)
    partial.replace(final)


def _read_stats(output: Path, index: int, format: str) -> dict[str, Any]:
    path = output / f"shard-{index:05d}.stats.json"
    if not path.is_file():
        raise PipelineError(f"shard {index} of {output} did not finish: run again to resume")
    stats: dict[str, Any] = json.loads(path.read_text())
    return stats


def read_shards(folder: str | Path) -> list[dict[str, Any]]:
    """Every line of a Ray annotation folder, shard by shard (JSONL or Parquet)."""
    lines: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("shard-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    parquet = sorted(Path(folder).glob("shard-*.parquet"))
    if parquet:
        import pyarrow.parquet as pq

        for path in parquet:
            for row in pq.read_table(path).to_pylist():
                lines.append(
                    {k: json.loads(v) if k in _JSON_COLUMNS else v for k, v in row.items()}
                )
    return lines


def combine_stats(parts: Sequence[dict[str, Any]], config: AnnotateConfig) -> dict[str, Any]:
    """The stats of several shards as one run's (``summarize`` over all their lines)."""
    keys = ("texts", "positions", "selected", "candidates", "executed", "scored", "kept")
    totals = {key: sum(int(p.get(key, 0)) for p in parts) for key in keys}
    per_tool: dict[str, int] = {}
    for part in parts:
        for tool, count in part.get("kept_per_tool", {}).items():
            per_tool[tool] = per_tool.get(tool, 0) + count
    return {
        **totals,
        "kept_per_tool": per_tool,
        "texts_with_calls": sum(int(p.get("texts_with_calls", 0)) for p in parts),
        "config": asdict(config),
    }


def _check_run(
    output: Path, records: list[Record], shard_size: int, config: AnnotateConfig
) -> None:
    """Shards already in ``output`` must come from the same texts, sharding and settings."""
    digest = hashlib.sha256(json.dumps([shard_size, asdict(config)], sort_keys=True).encode())
    for record in records:
        digest.update(record.id.encode() + b"\0" + record.text.encode() + b"\0")
    run = {"fingerprint": digest.hexdigest(), "texts": len(records), "shard_size": shard_size}
    path = output / _RUN
    if path.is_file():
        if json.loads(path.read_text()).get("fingerprint") != run["fingerprint"]:
            raise PipelineError(
                f"{output} holds shards of another run (other texts, shard size or settings): "
                "give another output folder or empty this one"
            )
        return
    path.write_text(json.dumps(run, indent=2) + "\n")


def tool_reference(item: Any) -> Any:
    """What an actor can resolve to the same tool: a name or reference as given (a relative
    ``file.py:function`` made absolute), or a function's ``module:function`` / ``file.py:function``;
    else the object itself, for Ray to pickle."""
    if isinstance(item, str):
        where, colon, attribute = item.rpartition(":")
        if colon and where.endswith(".py"):
            return f"{Path(where).expanduser().resolve()}:{attribute}"
        return item
    function = resolve_tool(item).function
    name = getattr(function, "__name__", "")
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    if module is None or getattr(module, name, None) is not function:
        return item
    if module.__name__ == "__main__" or module.__name__.startswith("_toolrun_ref_"):
        try:
            return f"{Path(inspect.getfile(function)).resolve()}:{name}"
        except (TypeError, OSError):
            return item
    return f"{module.__name__}:{name}"
