"""The annotation driver: sample, execute, filter every text; write JSONL; resume; report stats.

Each output line is one text: ``text`` with the kept calls inlined, ``original``, the kept
``calls``, and ``scored``: every position with L_none and each executed candidate's L+ and
L_nores, so ``toolrun score-annotations`` can re-apply any criterion and tau_f without rescoring.
A run appends one line per finished text; rerun with the same output and it skips those.

Several tools in one run, as the paper did: each tool is annotated on its own (its own prompt,
positions and candidates), then the calls are merged, one per position (the best), so one
finetuning teaches them all. ``merge_annotations`` merges runs made separately.

Per tool (``ToolPlan``), the paper's settings unless the config says otherwise: tau_s 0, k 20
for the Calculator and MT, tau_s 0.05, k 5 for the others; m samples per position under the
tool's example prompt (``proposer="examples"``), or a heuristic proposer where one exists
(``"heuristic"``: the Calculator's expressions; a tool without arguments is its own call);
``"auto"`` takes the heuristic where there is one, else the examples.
"""

from __future__ import annotations

import json
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Model
from ..errors import ToolDefinitionError
from ..registry import Tool, ToolRegistry
from ..syntax import render_call
from .data import PipelineError, Record, read_jsonl
from .execute import Executor
from .filter import CRITERIA, PLACEMENTS, LossScorer, call_gain
from .prompts import build_prompt, check_examples, examples_for
from .sample import (
    NUMBER,
    PromptPass,
    calculator_proposer,
    candidate_positions,
    number_value,
    score_positions,
    select_positions,
    spaced_expression,
)

__all__ = [
    "PROPOSERS",
    "AnnotateConfig",
    "Annotator",
    "ToolPlan",
    "annotate",
    "insert_calls",
    "kept_calls",
    "load_annotations",
    "merge_annotations",
    "plan_tools",
    "summarize",
]

PROPOSERS = ("auto", "examples", "heuristic")
POSITIONS = ("auto", "numbers", "words")
# The paper's per-tool sampling settings (tau_s, k, m); tools it did not have get the last row.
_PAPER = {"calculator": (0.0, 20, 10), "mt": (0.0, 20, 10)}
_OTHERS = (0.05, 5, 5)


@dataclass
class AnnotateConfig:
    """Thresholds and options. ``tau_s``, ``k`` and ``m`` left None take the paper's value for
    each tool (see the module docstring); the Calculator's proposer is its heuristic, so its m is
    0 unless given (a 135M model writes no useful Calculator calls). Calculator heuristics:
    ``consistency`` (a result must equal the number written next; only the first such candidate
    is scored) and ``skip_copied`` (no call before a number already written earlier in the text:
    it is restated, not computed). ``positions``: where calls may go, before every word or only
    before numbers (``auto``: numbers for the Calculator and tools that return numbers).
    ``propose_gold``: the text's gold marks (GSM8K's ``<<48+(48/2)=72>>``) are the Calculator's
    first candidates, for texts that write a result without the expression that computes it
    ("Answer: 72."), where the heuristic reads only two-number expressions."""

    tools: list[str] = field(default_factory=lambda: ["Calculator"])
    placement: str = "inline"
    criterion: str = "gain"
    tau_s: float | None = None
    tau_f: float = 1.0
    k: int | None = None
    m: int | None = None
    proposer: str = "auto"
    positions: str = "auto"
    temperature: float = 1.0
    max_call_tokens: int = 24
    window: int = 5
    batch_size: int = 32
    last_n: int = 6
    consistency: bool = True
    skip_copied: bool = True
    propose_gold: bool = False
    seed: int = 0

    def check(self) -> None:
        """Raise PipelineError for options out of range (before any model loads)."""
        problems = []
        if self.placement not in PLACEMENTS:
            problems.append(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.criterion not in CRITERIA:
            problems.append(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.proposer not in PROPOSERS:
            problems.append(f"proposer must be one of {PROPOSERS}, got {self.proposer!r}")
        if self.positions not in POSITIONS:
            problems.append(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        for name in ("k", "m"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be at least 0, got {value}")
        if self.tau_s is not None and not 0 <= self.tau_s <= 1:
            problems.append(f"tau_s is a probability, got {self.tau_s}")
        if self.temperature <= 0 or self.window < 1 or self.batch_size < 1:
            problems.append("temperature, window and batch_size must be positive")
        if not self.tools:
            problems.append("no tools to annotate")
        if problems:
            raise PipelineError("bad annotation options: " + "; ".join(problems))


@dataclass(frozen=True)
class ToolPlan:
    """How one tool is annotated: the settings resolved from the config and the tool."""

    tool: Tool
    prompt: str
    tau_s: float
    k: int
    m: int
    numbers_only: bool
    heuristic: bool  # the Calculator's proposer, or the one call of a tool without arguments

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def calculator(self) -> bool:
        return self.tool.name.lower() == "calculator"


def plan_tools(registry: ToolRegistry, config: AnnotateConfig) -> list[ToolPlan]:
    """A plan per configured tool; raises (before any model loads) for unknown tools, bad
    options, and a tool asked to propose from examples it does not have."""
    config.check()
    plans = []
    for name in config.tools:
        tool = registry.get(name)
        if tool is None:
            known = ", ".join(registry.names)
            raise PipelineError(f"tool {name!r} is not in the registry ({known})")
        key = tool.name.lower()
        has_heuristic = key == "calculator" or not tool.parameters
        proposer = config.proposer
        if proposer == "auto":
            proposer = "heuristic" if has_heuristic else "examples"
        if proposer == "heuristic" and not has_heuristic:
            raise PipelineError(
                f"{tool.name} has no heuristic proposer (only the Calculator and tools without "
                "arguments do): use proposer 'examples' and give the tool examples"
            )
        examples = examples_for(tool)
        tau_s, k, m = _PAPER.get(key, _OTHERS)
        if proposer == "heuristic":
            m = 0  # the heuristic carries the tool; samples only when asked for (m given)
        m = config.m if config.m is not None else m
        if proposer == "examples" and m < 1:
            raise PipelineError(f"the examples proposer samples m calls a position: m is {m}")
        if m > 0:
            if not examples:
                raise ToolDefinitionError(
                    f"{tool.name} has no examples for the annotator's prompt: give "
                    f"@toolrun.tool(examples=[...]) a few texts with the call written in, e.g. "
                    f"'... [{tool.name}(...) → result] ...' (or choose another proposer)"
                )
            check_examples(tool, examples)
        plans.append(
            ToolPlan(
                tool=tool,
                prompt=build_prompt(tool, examples),
                tau_s=config.tau_s if config.tau_s is not None else tau_s,
                k=config.k if config.k is not None else k,
                m=m,
                numbers_only=_numbers_only(tool, config.positions),
                heuristic=proposer == "heuristic",
            )
        )
    return plans


def _numbers_only(tool: Tool, positions: str) -> bool:
    """Calls before numbers only: a Calculator's result, or any tool's that returns a number, is
    the number written next."""
    if positions != "auto":
        return positions == "numbers"
    if tool.name.lower() == "calculator":
        return True
    try:
        returns = typing.get_type_hints(tool.function).get("return")
    except Exception:
        return False
    return returns in (int, float)


class Annotator:
    """Annotates one text at a time with every planned tool; holds what is shared between texts
    (the loss scorer, the executor's result cache, the prompts' encoded heads)."""

    def __init__(self, model: Any, registry: ToolRegistry, config: AnnotateConfig) -> None:
        self.model = model
        self.config = config
        self.plans = plan_tools(registry, config)
        self.scorer = LossScorer(model.model, window=config.window, batch_size=config.batch_size)
        self.executor = Executor(registry, model.special_tokens)
        self.heads: dict[str, tuple[list[int], Any]] = {}

    def __call__(self, record: Record) -> dict[str, Any]:
        """Annotate one text; the returned dict is one JSONL line."""
        model, config = self.model, self.config
        text = record.text
        counts = {
            "positions": 0,
            "selected": 0,
            "candidates": 0,
            "executed": 0,
            "scored": 0,
            "kept": 0,
        }
        scored: list[dict[str, Any]] = []
        for plan in self.plans:
            name = plan.name
            positions = [
                p
                for p in candidate_positions(text, record.start, numbers_only=plan.numbers_only)
                if p > 0
            ]
            counts["positions"] += len(positions)
            prompted = None
            if plan.m > 0 and positions:
                prompted = PromptPass(model, plan.prompt, text, positions, self.heads)
                probabilities = prompted.probabilities
            elif plan.tau_s <= 0 and len(positions) <= plan.k:
                probabilities = [0.0] * len(positions)  # every position is kept whatever p is
            else:
                probabilities = score_positions(model, plan.prompt, text, positions)
            selected = select_positions(positions, probabilities, tau_s=plan.tau_s, k=plan.k)
            counts["selected"] += len(selected)
            checked = plan.calculator and config.consistency
            for position in selected:
                follows = _next_number(text, position.index)
                # A number written earlier in the text is restated there, not computed.
                copied = plan.calculator and config.skip_copied
                copied = copied and _copied(text, position.index, follows)
                arguments: list[str] = []
                if plan.calculator and config.propose_gold and not copied:
                    gold = (spaced_expression(mark.expression) for mark in record.gold)
                    arguments += [expression for expression in gold if expression]
                if plan.heuristic and plan.calculator and not copied:
                    arguments += calculator_proposer(text, position.index, last_n=config.last_n)
                elif plan.heuristic and not plan.calculator:
                    arguments.append("")  # a tool without arguments is its own one candidate
                if prompted is not None and not copied:
                    arguments += prompted.sample(
                        positions.index(position.index),
                        name,
                        m=plan.m,
                        seed=config.seed + position.index,
                        temperature=config.temperature,
                        max_tokens=config.max_call_tokens,
                    )
                arguments = list(dict.fromkeys(arguments))
                counts["candidates"] += len(arguments)
                entries: list[list[Any]] = []
                for args in arguments:
                    result = self.executor(name, args, record.date)
                    if result is None:
                        continue
                    counts["executed"] += 1
                    # The Calculator's consistency check: its result must be the number written
                    # next.
                    if checked and not _same(result, follows):
                        continue
                    entries.append([args, result])
                    if checked:
                        # Every survivor gives the same written result: score only the first
                        # proposed (the expression written in the text when there is one).
                        break
                counts["scored"] += len(entries)
                scored.append(
                    {
                        "tool": name,
                        "position": position.index,
                        "p_start": round(position.p_start, 6),
                        "candidates": entries,
                    }
                )
        _score(model, self.scorer, text, scored, config)
        calls = kept_calls(scored, config.criterion, config.tau_f)
        counts["kept"] = len(calls)
        return {
            "id": record.id,
            "text": insert_calls(text, calls),
            "original": text,
            "start": record.start,
            "gold": [[g.position, g.expression, g.result] for g in record.gold],
            **({"date": record.date.isoformat()} if record.date else {}),
            "calls": calls,
            "counts": counts,
            "scored": scored,
        }


def _next_number(text: str, position: int) -> float | None:
    word = text[position:].split(maxsplit=1)
    return number_value(word[0]) if word else None


def _copied(text: str, position: int, value: float | None) -> bool:
    """The number at ``position`` already appears before it (a restatement, not a new result)."""
    return value is not None and any(
        number_value(m.group(0)) == value for m in NUMBER.finditer(text[:position])
    )


def _same(result: str, value: float | None) -> bool:
    got = number_value(result)
    if got is None or value is None:
        return False
    return abs(got - value) <= 1e-6 + 1e-3 * abs(value) or round(got, 2) == round(value, 2)


def _score(
    model: Any, scorer: LossScorer, text: str, scored: list[dict[str, Any]], config: AnnotateConfig
) -> None:
    """Fill L_none, L+ and L_nores into ``scored`` for the configured placement."""
    if not scored:
        return
    cuts = sorted({entry["position"] for entry in scored})
    ids, boundary = _tokenize(model, text, cuts)

    def call_ids(entry: dict[str, Any], args: str, result: str | None) -> list[int]:
        rendered = render_call(entry["tool"], args, result)
        if config.placement == "inline":
            return list(model.encode(" " + rendered))
        return list(model.encode(rendered + "\n"))

    if config.placement == "inline":
        requests: dict[int, list[list[int]]] = {}
        for entry in scored:
            rows = requests.setdefault(boundary[entry["position"]], [[]])
            for args, result in entry["candidates"]:
                rows += [call_ids(entry, args, result), call_ids(entry, args, None)]
        table = scorer.inline_many(ids, requests)
        used: dict[int, int] = {}
        for entry in scored:
            b = boundary[entry["position"]]
            offset = used.get(b, 1)
            size = 2 * len(entry["candidates"])
            _store(entry, table[b][0], table[b][offset : offset + size])
            used[b] = offset + size
        return
    if config.placement != "prefix":
        raise ValueError(f"placement must be 'prefix' or 'inline', got {config.placement!r}")
    prefixes: dict[tuple[int, ...], int] = {(): 0}
    for entry in scored:
        for args, result in entry["candidates"]:
            for z in (call_ids(entry, args, result), call_ids(entry, args, None)):
                prefixes.setdefault(tuple(z), len(prefixes))
    grid = scorer.prefix(ids, [boundary[c] for c in cuts], [list(z) for z in prefixes])
    column = {cut: i for i, cut in enumerate(cuts)}
    for entry in scored:
        col = column[entry["position"]]
        losses = []
        for args, result in entry["candidates"]:
            losses += [
                grid[prefixes[tuple(call_ids(entry, args, result))]][col],
                grid[prefixes[tuple(call_ids(entry, args, None))]][col],
            ]
        _store(entry, grid[0][col], losses)


def _store(entry: dict[str, Any], l_none: float, losses: Sequence[float]) -> None:
    entry["l_none"] = round(l_none, 5)
    for i, candidate in enumerate(entry["candidates"]):
        candidate[2:] = [round(losses[2 * i], 5), round(losses[2 * i + 1], 5)]


def _tokenize(model: Model, text: str, cuts: Sequence[int]) -> tuple[list[int], dict[int, int]]:
    """Token ids of ``text`` encoded in segments cut at ``cuts``, and each cut's token index: every
    placement and the no-call baseline then see exactly the same tokens."""
    ids: list[int] = [*model.bos_token_ids]
    boundary: dict[int, int] = {}
    last = 0
    for cut in [*cuts, len(text)]:
        ids += model.encode(text[last:cut]) if cut > last else []
        boundary[cut] = len(ids)
        last = cut
    return ids, boundary


def kept_calls(
    scored: Sequence[dict[str, Any]], criterion: str, tau_f: float, *, repeats: bool = False
) -> list[dict[str, Any]]:
    """The best candidate at each position whose gain >= tau_f (one call per position), less the
    repeats: a call that a kept call earlier in the text already made (same tool, arguments and
    result) adds nothing once both are in the text, yet each scored its gain alone. Training on
    such pairs taught the model to call the Calendar twice in a row. ``repeats=True`` keeps them
    (how the 0.3 default adapter's texts were made)."""
    best: dict[int, dict[str, Any]] = {}
    for entry in scored:
        for candidate in entry["candidates"]:
            if len(candidate) < 4:
                continue
            args, result, l_plus, l_noresult = candidate[:4]
            gain = call_gain(criterion, entry["l_none"], l_plus, l_noresult)
            current = best.get(entry["position"])
            if gain >= tau_f and (current is None or gain > current["gain"]):
                best[entry["position"]] = {
                    "tool": entry["tool"],
                    "position": entry["position"],
                    "arguments": args,
                    "result": result,
                    "gain": round(gain, 5),
                }
    kept, made = [], set()
    for position in sorted(best):
        call = best[position]
        key = (call["tool"], call["arguments"], call["result"])
        if repeats or key not in made:
            made.add(key)
            kept.append(call)
    return kept


def insert_calls(text: str, calls: Sequence[dict[str, Any]]) -> str:
    """The text with `` [Name(args) → result]`` inserted at each call's position."""
    for call in sorted(calls, key=lambda c: -c["position"]):
        p = call["position"]
        text = (
            text[:p] + " " + render_call(call["tool"], call["arguments"], call["result"]) + text[p:]
        )
    return text


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """The complete lines of an annotation file (a half-written last line is ignored; a missing
    file has none), or of a folder of shards written on Ray."""
    file = Path(path)
    if file.is_dir():
        from .ray_annotate import read_shards

        return read_shards(file)
    if not file.exists():
        return []
    return [row for _, row in read_jsonl(file)]


def merge_annotations(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Lines of several annotation runs over the same texts (one tool each, say) merged by id:
    every run's scored positions, and the kept calls, one per position (the highest gain), put
    back into the original text. Texts only some runs have are kept as they are."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        lines = load_annotations(path)
        if not lines:
            raise PipelineError(f"no annotated texts in {str(path)!r}")
        for line in lines:
            if "id" not in line or "original" not in line:
                raise PipelineError(f"{path}: a line without id/original cannot be merged")
            seen = merged.get(line["id"])
            if seen is None:
                merged[line["id"]] = {**line, "calls": list(line["calls"])}
                continue
            if seen["original"] != line["original"]:
                raise PipelineError(f"{path}: text {line['id']!r} differs between the runs")
            best = {c["position"]: c for c in seen["calls"]}
            for call in line["calls"]:
                current = best.get(call["position"])
                if current is None or call.get("gain", 0) > current.get("gain", 0):
                    best[call["position"]] = call
            seen["calls"] = [best[p] for p in sorted(best)]
            seen["scored"] = [*seen.get("scored", []), *line.get("scored", [])]
            seen["counts"] = {
                k: seen["counts"].get(k, 0) + line["counts"].get(k, 0)
                for k in {*seen.get("counts", {}), *line.get("counts", {})}
            }
    out = list(merged.values())
    for line in out:
        line["text"] = insert_calls(line["original"], line["calls"])
        line["counts"]["kept"] = len(line["calls"])
    return out


def annotate(
    model: Any,
    registry: ToolRegistry,
    records: Sequence[Record],
    config: AnnotateConfig,
    output: str | Path,
    *,
    progress: bool = True,
    max_records: int | None = None,
) -> dict[str, Any]:
    """Annotate ``records`` into ``output`` (JSONL), skipping ids already there; return the stats
    (also written next to the output as ``<output>.stats.json``)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done_lines = load_annotations(output)
    _truncate_to(output, len(done_lines))
    done = {line["id"] for line in done_lines}
    todo = [r for r in records if r.id not in done]
    if max_records is not None:
        todo = todo[:max_records]
    annotator = Annotator(model, registry, config)
    started = time.perf_counter()
    bar = _progress(len(todo), progress, initial=len(done))
    kept = sum(len(x["calls"]) for x in done_lines)
    with output.open("a", encoding="utf-8") as handle:
        for record in todo:
            line = annotator(record)
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            handle.flush()
            done_lines.append(line)
            kept += len(line["calls"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(kept=kept)
    if bar is not None:
        bar.close()
    stats = summarize(done_lines, config)
    stats["seconds_this_run"] = round(time.perf_counter() - started, 1)
    Path(str(output) + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _truncate_to(path: Path, complete: int) -> None:
    """Drop a half-written last line left by an interrupted run."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) > complete:
        path.write_text("".join(lines[:complete]), encoding="utf-8")


def _progress(total: int, enabled: bool, initial: int = 0, unit: str = "text") -> Any:
    """A progress bar with rate and ETA on stderr, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total + initial,
        initial=initial,
        desc="annotate",
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def summarize(lines: Sequence[dict[str, Any]], config: AnnotateConfig) -> dict[str, Any]:
    """Totals over annotated lines: texts, positions, candidates, executed, kept per tool; and a
    hint when no position passed tau_s (a small model rarely opens a call)."""
    totals = {"positions": 0, "selected": 0, "candidates": 0, "executed": 0, "scored": 0, "kept": 0}
    per_tool: dict[str, int] = {}
    top: dict[str, float] = {}
    for line in lines:
        for key in totals:
            totals[key] += int(line["counts"].get(key, 0))
        for call in line["calls"]:
            per_tool[call["tool"]] = per_tool.get(call["tool"], 0) + 1
        for entry in line.get("scored", []):
            top[entry["tool"]] = max(top.get(entry["tool"], 0.0), entry.get("p_start", 0.0))
    stats: dict[str, Any] = {
        "texts": len(lines),
        **totals,
        "kept_per_tool": per_tool,
        "texts_with_calls": sum(1 for line in lines if line["calls"]),
        "config": asdict(config),
    }
    if lines and totals["positions"] and not totals["selected"]:
        stats["hint"] = (
            "no position passed tau_s: the model rarely opens a call here (a small model's "
            "p(' [') is low); lower tau_s (e.g. 0) or use k to take the most likely positions"
        )
    return stats
