"""Does a tool help this model? ``toolrun eval`` answers it the way the Toolformer paper did.

    toolrun eval svamp asdiv_a mawps gsm8k --adapter build/my-adapter --limit 50 --out results

    from toolrun.evaluate import evaluate
    report = evaluate(["svamp"], adapter="build/my-adapter", limit=50, out_dir="results")
    print(report.markdown())

Each set runs in every mode (base, no-tools, tools, top-K; see ``toolrun.evaluation.runner``)
on the same examples; the report gives accuracy with a 95% interval and the cost of the tools.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backends.base import ADAPTER_CHAT_TEMPLATE, Model
from .errors import ToolrunError
from .evaluation.chat_mode import CHAT_MODES
from .evaluation.report import Report, summarize
from .evaluation.runner import (
    DEFAULT_MODES,
    Mode,
    RecordStore,
    RunSettings,
    parse_mode,
    run_mode,
)
from .evaluation.tasks import DATA_ROOT_ENV, KNOWN_SETS, EvalSet, default_data_root, load_set
from .registry import ToolRegistry
from .templates import read_template

__all__ = ["evaluate", "register"]

Source = str | os.PathLike[str] | Model | None


def evaluate(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    model: Source = None,
    adapter: str | os.PathLike[str] | None = None,
    base_model: Source = None,
    modes: Sequence[str | Mode] | None = None,
    tools: Sequence[Any] | None = None,
    task: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    quantize: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    name: str = "eval",
    resume: bool = True,
    progress: bool = False,
    data_root: str | os.PathLike[str] | None = None,
    call_format: str = "toolformer",
    chat_template: str | None = None,
    backend: str = "auto",
) -> Report:
    """Evaluate on each set in ``data`` (JSONL paths or names under the data root) in each mode.

    ``model`` is a source for ``toolrun.load_model()`` or a loaded Model; ``adapter`` makes the
    finetuned model from it. None means the default model: the base model with the adapter that
    ships in the package (``toolrun/adapters/toolrun-smollm2-135m-calc``). The ``base`` mode uses
    ``base_model``, else ``model`` without the adapter. ``modes`` defaults to all of them when
    there is an adapter, else to ``base`` alone. ``tools`` (names or functions) replaces each
    family's own tools (calculator for math, wikisearch for QA, qa for fact completion,
    calendar for dates). ``limit`` keeps a random subset fixed by ``seed``; ``batch_size``
    examples decode together. With ``out_dir``, per-example records go to ``name.records.jsonl``
    as they finish (a rerun skips them unless ``resume=False``) and ``name.json``, ``name.md``
    and ``name.png`` are written at the end.

    ``call_format``: ``toolformer`` (text prompts, bracket calls) or a chat format (``hermes``,
    ``llama3``, ``mistral``): each problem becomes a chat turn rendered with the model's template
    (``chat_template`` overrides it), the tools listed in every mode (``no-tools`` and ``base``
    ban the calls), scored on what the assistant says; see ``toolrun.evaluation.chat_mode``.
    The default modes are then ``no-tools`` and ``tools`` (top-K has no chat counterpart).

    ``backend``: the engine, as in ``load_model()`` (``"auto"``: llama.cpp on a CPU for the
    default model). Records are keyed by it (the model's label names a llama.cpp run): the two
    engines' greedy texts can differ at near ties, so their outputs are never mixed.
    """
    specs = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not specs:
        raise ToolrunError("no evaluation set given")
    model, adapter, base_model = _sources(model, adapter, base_model)
    engine = _engine(model, backend, quantize)
    chat = call_format != "toolformer"
    defaults = (CHAT_MODES if chat else DEFAULT_MODES) if adapter else ("base",)
    chosen = [parse_mode(m) for m in (modes or defaults)]
    if len({m.name for m in chosen}) != len(chosen):
        raise ToolrunError("each mode may be given once")
    root = Path(data_root) if data_root is not None else None
    sets = [load_set(s, family=task, limit=limit, seed=seed, root=root) for s in specs]
    # Tools are resolved before any model loads, so a missing one fails in a second, not later.
    registries = {
        s.name: ToolRegistry(tools if tools is not None else s.family.tools)
        if chat or any(m.tools for m in chosen)  # a chat prompt lists the tools in every mode
        else ToolRegistry()
        for s in sets
    }
    settings = RunSettings(
        model_label=_label(model, adapter, quantize, engine),
        base_label=_label(base_model, None, quantize, engine),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        tool_names={name: sorted(r.names) for name, r in registries.items()},
        call_format=call_format,
        chat_template=chat_template,
    )
    models = _Models(model, adapter, base_model, quantize, engine)
    out = Path(out_dir) if out_dir is not None else None
    store = RecordStore(out / f"{name}.records.jsonl" if out else None, resume=resume)

    bar = _Progress(sum(len(s.examples) for s in sets) * len(chosen), progress)
    results = []
    try:
        for evalset in sets:
            for mode in chosen:
                load = models.finetuned if mode.finetuned else models.base
                bar.start(f"{evalset.name}/{mode.name}")
                records = run_mode(
                    evalset, mode, load, registries[evalset.name], settings, store, bar.tick
                )
                results.append(summarize(evalset.name, mode.name, records))
    finally:
        bar.close()

    config = _config(settings, sets, chosen, limit, seed, adapter)
    report = Report(config={**config, "backend": engine}, results=results)
    if out is not None:
        report.write(out, name)
        report.files["records"] = str(store.path)
    return report


def _sources(
    model: Source, adapter: str | os.PathLike[str] | None, base_model: Source
) -> tuple[Source, str | os.PathLike[str] | None, Source]:
    """(finetuned source, its adapter, base source), with the default model spelled out.

    The default model is the base model plus the packaged adapter; ``base`` then means the
    plain base model, never the default with its adapter.
    """
    from .models import BASE_MODEL, DEFAULT_MODEL, default_adapter

    if not isinstance(model, Model) and str(model).lower() in ("none", "default", DEFAULT_MODEL):
        adapter = adapter if adapter is not None else default_adapter()
        model = BASE_MODEL
    return model, adapter, base_model if base_model is not None else model


def _engine(source: Source, backend: str, quantize: str | None) -> str:
    """The backend that runs ``source``: ``backend``, with ``"auto"`` decided as load_model does."""
    from .models import BASE_MODEL, choose_backend

    if isinstance(source, Model):
        return source.backend
    if backend == "auto":
        return choose_backend(source if source is not None else BASE_MODEL, quantize=quantize)[0]
    if backend == "llamacpp":
        return "llama.cpp"
    if backend not in ("llama.cpp", "transformers"):
        raise ToolrunError(f"unknown backend {backend!r}; choose auto, transformers or llama.cpp")
    return backend


def _label(
    source: Source,
    adapter: str | os.PathLike[str] | None,
    quantize: str | None = None,
    engine: str = "transformers",
) -> str:
    """A name for what produced an output; an adapter is named with a digest of its files.

    A transformers run keeps the plain name (the records made before llama.cpp existed stay
    valid); another engine is named.
    """
    text = source.name if isinstance(source, Model) else str(source)
    if quantize is not None and not isinstance(source, Model):
        text = f"{text} ({quantize})"
    if engine != "transformers":
        text = f"{text} [{engine}]"
    if adapter is None:
        return text
    digest = hashlib.sha1()
    folder = Path(adapter)
    # The weights and any shipped chat template: either changes the answers.
    for path in sorted([*folder.glob("adapter_*"), *folder.glob(ADAPTER_CHAT_TEMPLATE)]):
        digest.update(path.name.encode() + path.read_bytes())
    return f"{text} + {folder.name}@{digest.hexdigest()[:10]}"


class _Models:
    """Loads each model the first time a mode needs it (a fully resumed run loads none)."""

    def __init__(
        self,
        model: Source,
        adapter: str | os.PathLike[str] | None,
        base_model: Source,
        quantize: str | None,
        engine: str,
    ) -> None:
        self.sources = (model, adapter, base_model)
        self.quantize = quantize
        self.engine = engine
        self.loaded: dict[bool, Model] = {}

    def finetuned(self) -> Model:
        if True not in self.loaded:
            model, adapter, _ = self.sources
            self.loaded[True] = self._load(model, adapter)
        return self.loaded[True]

    def base(self) -> Model:
        if False not in self.loaded:
            model, adapter, base_model = self.sources
            if base_model is model and adapter is None:
                self.loaded[False] = self.finetuned()  # the same weights: load once
            else:
                self.loaded[False] = self._load(base_model, None)
        return self.loaded[False]

    def _load(self, source: Source, adapter: str | os.PathLike[str] | None) -> Model:
        if isinstance(source, Model):
            if adapter is not None:
                raise ToolrunError("an adapter needs a model source, not a loaded Model")
            return source
        from ._quiet import quiet
        from .models import load_model

        with quiet():  # no loading bar or dependency warnings between the evaluation's bar
            return load_model(
                source,
                quantize=self.quantize,  # type: ignore[arg-type]
                adapter=adapter,
                backend=self.engine,
            )


def _config(
    settings: RunSettings,
    sets: Sequence[EvalSet],
    modes: Sequence[Mode],
    limit: int | None,
    seed: int,
    adapter: Any,
) -> dict[str, Any]:
    return {
        "model": settings.model_label,
        "base_model": settings.base_label,
        "adapter": None if adapter is None else str(adapter),
        "call_format": settings.call_format,
        "max_new_tokens": settings.max_new_tokens,
        "batch_size": settings.batch_size,
        "limit": limit,
        "seed": seed,
        "modes": [m.name for m in modes],
        "sets": {
            s.name: {
                "path": str(s.path),
                "family": s.family.name,
                "examples": len(s.examples),
                "total": s.total,
                "tools": settings.tool_names.get(s.name, []),
            }
            for s in sets
        },
    }


class _Progress:
    """A tqdm bar over every example and mode, showing the running accuracy of the current one."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="ex", dynamic_ncols=True, file=sys.stderr)
        self.label, self.n, self.correct = "", 0, 0

    def start(self, label: str) -> None:
        self.label, self.n, self.correct = label, 0, 0

    def tick(self, record: dict[str, Any]) -> None:
        self.n += 1
        self.correct += bool(record["correct"])
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.label} acc {self.correct / self.n:.2f}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# The command line.


def register(subparsers: Any) -> None:
    """Add ``toolrun eval`` to the ``toolrun`` command."""
    from .cli import add_backend, add_verbose  # here: cli imports this module

    p = subparsers.add_parser(
        "eval",
        help="measure accuracy with and without tools (the Toolformer paper's comparisons)",
        description="Evaluate a model on JSONL sets (question + answer or answers) in several "
        "modes side by side; write a JSON report, a markdown table, a bar chart and "
        'per-example records. A row\'s "today" (an ISO date) is the day its question is asked '
        "on: the Calendar answers with it.",
    )
    p.add_argument(
        "data",
        nargs="*",
        help="JSONL files, or set names under --data-root (svamp, asdiv_a, gsm8k...; see --list)",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the sets known by name: rows, task, source and licence, and whether each is "
        "found under the data root",
    )
    p.add_argument("--model", default=None, help="model folder, .gguf file or default name")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder (the finetuned model)")
    p.add_argument(
        "--base-model",
        default=None,
        help="model for the base mode (default: --model without the adapter)",
    )
    p.add_argument(
        "--quantize",
        choices=["nf4", "int8"],
        default=None,
        help="bitsandbytes quantisation of both models",
    )
    p.add_argument(
        "--modes",
        default=None,
        help="comma-separated: base, no-tools, tools, top-K (default: "
        f"{','.join(DEFAULT_MODES)} with --adapter; {','.join(CHAT_MODES)} in a chat "
        "--call-format; else base)",
    )
    p.add_argument(
        "--tools",
        default=None,
        help="comma-separated tool names for every set (default: each family's own)",
    )
    p.add_argument(
        "--task",
        choices=["math", "qa", "fact", "dates"],
        default=None,
        help="task family for every set (default: guessed from the fields and name)",
    )
    p.add_argument(
        "--call-format",
        choices=["toolformer", "hermes", "llama3", "mistral"],
        default="toolformer",
        help="toolformer: text prompts, bracket calls; a chat format: each problem as a chat "
        "turn, the tools listed, calls in that format (default: %(default)s)",
    )
    p.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="with a chat --call-format: a Jinja chat template file instead of the model's "
        "(or a built-in: question-answer, hermes-chatml)",
    )
    add_backend(p, "; records are kept apart per engine")
    p.add_argument("--limit", type=int, default=None, help="a random subset of N per set")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (default 0)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=48,
        help="tokens each answer may take (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="examples decoded together")
    p.add_argument("--out", default="eval-results", help="output folder (default: %(default)s)")
    p.add_argument("--name", default="eval", help="file name stem (default: %(default)s)")
    p.add_argument(
        "--data-root",
        default=None,
        help=f"where set names are looked up (default: ${DATA_ROOT_ENV}, else "
        "../shared/evals/data, the project's copy beside a checkout); toolrun ships no data",
    )
    p.add_argument("--fresh", action="store_true", help="discard earlier records, do not resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose(p)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.list:
        _list_sets(Path(args.data_root) if args.data_root else default_data_root())
        return 0
    if not args.data:
        raise ToolrunError(
            "name an evaluation set (a JSONL file or a known name; `toolrun eval --list`)"
        )
    report = evaluate(
        args.data,
        model=args.model,
        adapter=args.adapter,
        base_model=args.base_model,
        modes=args.modes.split(",") if args.modes else None,
        tools=[t.strip() for t in args.tools.split(",") if t.strip()] if args.tools else None,
        task=args.task,
        limit=args.limit,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        quantize=args.quantize,
        out_dir=args.out,
        name=args.name,
        resume=not args.fresh,
        progress=not args.no_progress,
        data_root=args.data_root,
        call_format=args.call_format,
        backend=args.backend,
        chat_template=read_template(args.chat_template) if args.chat_template else None,
    )
    print(report.markdown())
    for kind, path in report.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def _list_sets(root: Path) -> None:
    """The known sets, where each comes from and its licence, and which are under ``root``."""
    found = root.is_dir()
    print(
        f"data root: {root}" + ("" if found else f" (missing: set --data-root or ${DATA_ROOT_ENV})")
    )
    width = max(len(s.name) for s in KNOWN_SETS)
    for known in KNOWN_SETS:
        here = "found" if (root / known.path).is_file() else "missing"
        print(
            f"{known.name:<{width}}  {known.rows:>6,} rows  {known.task:<5}  {here:<7}  "
            f"{known.licence}  <{known.source}>"
        )
