"""Score an annotator against gold marks: precision and recall of kept Calculator calls.

A kept call is correct when it sits at a marked position (the whitespace before the word holding
the mark's result) and its result equals the marked result. Any criterion and tau_f can be
re-applied to an annotation file, since it stores every candidate's losses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .annotate import kept_calls
from .sample import number_value

__all__ = ["gold_position", "precision_recall", "sweep"]


def gold_position(text: str, mark: int) -> int:
    """The call position for a mark at character ``mark``: start of the whitespace before its
    word (``$<<12/60=0.2>>0.2`` sits inside the word ``$0.2``)."""
    word = mark
    while word > 0 and not text[word - 1].isspace():
        word -= 1
    space = word
    while space > 0 and text[space - 1].isspace():
        space -= 1
    return space


def _equal(a: str, b: str) -> bool:
    x, y = number_value(a), number_value(b)
    return x is not None and y is not None and abs(x - y) <= 1e-6 + 0.005 * max(1.0, abs(y))


def precision_recall(
    lines: Iterable[dict[str, Any]],
    criterion: str | None = None,
    tau_f: float | None = None,
    tool: str = "Calculator",
) -> dict[str, float]:
    """Precision, recall and counts of ``tool`` calls over annotated lines with ``gold``. With a
    criterion and tau_f the calls are re-derived from the stored losses; else the kept ones."""
    kept = correct = gold_total = gold_found = 0
    for line in lines:
        calls = (
            line["calls"]
            if criterion is None or tau_f is None
            else kept_calls(line["scored"], criterion, tau_f)
        )
        calls = [c for c in calls if c["tool"].lower() == tool.lower()]
        text = line["original"]
        gold: dict[int, list[str]] = {}
        for position, _expression, result in line.get("gold", []):
            gold.setdefault(gold_position(text, position), []).append(result)
        gold_total += sum(len(v) for v in gold.values())
        matched = set()
        for call in calls:
            kept += 1
            results = gold.get(call["position"], [])
            if any(_equal(call["result"], r) for r in results):
                correct += 1
                matched.add(call["position"])
        gold_found += sum(1 for p in matched for _ in gold[p][:1])
    return {
        "precision": correct / kept if kept else 0.0,
        "recall": gold_found / gold_total if gold_total else 0.0,
        "kept": kept,
        "correct": correct,
        "gold": gold_total,
    }


def sweep(
    lines: Sequence[dict[str, Any]],
    criteria: Sequence[str] = ("paper", "gain"),
    taus: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0),
) -> list[dict[str, Any]]:
    """precision_recall for every criterion and tau_f: one row each."""
    return [
        {"criterion": c, "tau_f": t, **precision_recall(lines, c, t)}
        for c in criteria
        for t in taus
    ]
