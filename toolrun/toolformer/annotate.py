"""The annotation driver: sample, execute, filter every text; write JSONL; resume; report stats.

Each output line is one text: ``text`` with the kept calls inlined, ``original``, the kept
``calls``, and ``scored``: every position with L_none and each executed candidate's L+ and
L_nores, so ``toolrun score-annotations`` can re-apply any criterion and tau_f without rescoring.
A run appends one line per finished text; rerun with the same output and it skips those.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Model
from ..registry import ToolRegistry
from ..syntax import render_call
from .data import Record
from .execute import Executor
from .filter import LossScorer, call_gain
from .prompts import prompt_for
from .sample import (
    NUMBER,
    calculator_proposer,
    candidate_positions,
    number_value,
    sample_calls,
    score_positions,
    select_positions,
)

__all__ = [
    "AnnotateConfig",
    "annotate",
    "annotate_record",
    "kept_calls",
    "load_annotations",
    "summarize",
]


@dataclass
class AnnotateConfig:
    """Thresholds and options. Defaults: the paper's Calculator settings (tau_s 0, k 20; its m 10
    model samples are off for a 135M model, which writes no calls: proposers carry the
    Calculator). Calculator heuristics: ``consistency`` (a result must equal the number written
    next; only the first such candidate is scored) and ``skip_copied`` (no call before a number
    already written earlier in the text: it is restated, not computed)."""

    tools: list[str] = field(default_factory=lambda: ["Calculator"])
    placement: str = "inline"
    criterion: str = "gain"
    tau_s: float = 0.0
    tau_f: float = 1.0
    k: int = 20
    m: int = 0
    window: int = 5
    batch_size: int = 32
    last_n: int = 6
    consistency: bool = True
    skip_copied: bool = True
    seed: int = 0

    def for_tool(self, name: str) -> tuple[bool, int]:
        """(positions before numbers only, k) for a tool: the paper's per-tool data heuristics."""
        if name.lower() == "calculator":
            return True, self.k
        return False, min(self.k, 5)


def annotate_record(
    model: Any,
    registry: ToolRegistry,
    record: Record,
    config: AnnotateConfig,
    scorer: LossScorer,
    executor: Executor,
) -> dict[str, Any]:
    """Annotate one text; the returned dict is one JSONL line."""
    text = record.text
    counts = {"positions": 0, "selected": 0, "candidates": 0, "executed": 0, "scored": 0, "kept": 0}
    scored: list[dict[str, Any]] = []
    for tool_name in config.tools:
        found = registry.get(tool_name)
        name = found.name if found is not None else tool_name
        numbers_only, k = config.for_tool(name)
        positions = [
            p for p in candidate_positions(text, record.start, numbers_only=numbers_only) if p > 0
        ]
        counts["positions"] += len(positions)
        prompt = prompt_for(name)
        if config.tau_s <= 0 and len(positions) <= k:
            probabilities = [0.0] * len(positions)  # every position is kept whatever p(" [") is
        else:
            probabilities = score_positions(model, prompt, text, positions)
        selected = select_positions(positions, probabilities, tau_s=config.tau_s, k=k)
        counts["selected"] += len(selected)
        for position in selected:
            follows = _next_number(text, position.index)
            entries: list[list[Any]] = []
            if config.skip_copied and numbers_only and _copied(text, position.index, follows):
                arguments = []  # the number was written before: copied, not computed
            else:
                arguments = _candidates(model, prompt, text, position.index, name, config)
            counts["candidates"] += len(arguments)
            for args in arguments:
                result = executor(name, args)
                if result is None:
                    continue
                counts["executed"] += 1
                # The Calculator's consistency check: its result must be the number written next.
                if config.consistency and numbers_only and not _same(result, follows):
                    continue
                entries.append([args, result])
                if config.consistency and numbers_only:
                    # Every survivor gives the same written result: score only the first proposed
                    # (the expression written in the text when there is one).
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
    _score(model, scorer, text, scored, config)
    calls = kept_calls(scored, config.criterion, config.tau_f)
    counts["kept"] = len(calls)
    return {
        "id": record.id,
        "text": insert_calls(text, calls),
        "original": text,
        "start": record.start,
        "gold": [[g.position, g.expression, g.result] for g in record.gold],
        "calls": calls,
        "counts": counts,
        "scored": scored,
    }


def _candidates(
    model: Model, prompt: str, text: str, position: int, name: str, config: AnnotateConfig
) -> list[str]:
    found: list[str] = []
    if name.lower() == "calculator":
        found += calculator_proposer(text, position, last_n=config.last_n)
    elif not config.m:
        found.append("")  # a tool without arguments (Calendar) is its own single candidate
    if config.m:
        found += sample_calls(
            model, prompt, text, position, name, m=config.m, seed=config.seed + position
        )
    return list(dict.fromkeys(found))


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
    scored: Sequence[dict[str, Any]], criterion: str, tau_f: float
) -> list[dict[str, Any]]:
    """The best candidate at each position whose gain >= tau_f (one call per position)."""
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
    return [best[p] for p in sorted(best)]


def insert_calls(text: str, calls: Sequence[dict[str, Any]]) -> str:
    """The text with `` [Name(args) → result]`` inserted at each call's position."""
    for call in sorted(calls, key=lambda c: -c["position"]):
        p = call["position"]
        text = (
            text[:p] + " " + render_call(call["tool"], call["arguments"], call["result"]) + text[p:]
        )
    return text


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """The complete lines of an annotation file (a half-written last line is ignored)."""
    out: list[dict[str, Any]] = []
    file = Path(path)
    if not file.exists():
        return out
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
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
    scorer = LossScorer(model.model, window=config.window, batch_size=config.batch_size)
    executor = Executor(registry, model.special_tokens)
    started = time.perf_counter()
    bar = _progress(len(todo), progress, initial=len(done))
    with output.open("a", encoding="utf-8") as handle:
        for record in todo:
            line = annotate_record(model, registry, record, config, scorer, executor)
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            handle.flush()
            done_lines.append(line)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(kept=sum(len(x["calls"]) for x in done_lines))
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


def _progress(total: int, enabled: bool, initial: int = 0) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total + initial,
        initial=initial,
        desc="annotate",
        unit="text",
        file=sys.stderr,
        dynamic_ncols=True,
    )


def summarize(lines: Sequence[dict[str, Any]], config: AnnotateConfig) -> dict[str, Any]:
    """Totals over annotated lines: texts, positions, candidates, executed, kept per tool."""
    totals = {"positions": 0, "selected": 0, "candidates": 0, "executed": 0, "scored": 0, "kept": 0}
    per_tool: dict[str, int] = {}
    for line in lines:
        for key in totals:
            totals[key] += int(line["counts"].get(key, 0))
        for call in line["calls"]:
            per_tool[call["tool"]] = per_tool.get(call["tool"], 0) + 1
    return {
        "texts": len(lines),
        **totals,
        "kept_per_tool": per_tool,
        "texts_with_calls": sum(1 for line in lines if line["calls"]),
        "config": asdict(config),
    }
