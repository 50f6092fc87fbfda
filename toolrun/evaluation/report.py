"""Summaries of the per-example records: the JSON report, the markdown table, the bar chart."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .scoring import wilson_interval

__all__ = ["ModeResult", "Report", "summarize"]


@dataclass
class ModeResult:
    """One set in one mode."""

    set: str
    mode: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    with_call: float
    """Share of examples whose output made at least one call."""
    calls_per_example: float
    tool_errors: int
    """Calls that ended in an error (bad arguments, unknown tool, the tool raised)."""
    tokens_per_example: float
    """Tokens the model generated itself."""
    spliced_per_example: float
    """Tokens the runtime fed in for call results."""
    seconds_per_example: float
    calls: int = 0
    """Calls made, over all examples."""
    calls_ok: float | None = None
    """Share of calls that ran without error (None: no call was made)."""
    calls_on_gold: float | None = None
    """Share of calls whose result is a quantity of the gold solution (None: no gold marks)."""
    stated: float | None = None
    """Math: share of outputs that state an answer ("The answer is N"), scored on it."""
    correct_first_number: int | None = None
    """Math: correct by the paper's rule alone (the first number written)."""
    accuracy_first_number: float | None = None


def summarize(set_name: str, mode: str, records: Sequence[dict[str, Any]]) -> ModeResult:
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    low, high = wilson_interval(correct, n)
    calls = [len(r["calls"]) for r in records]
    errors = sum(1 for r in records for c in r["calls"] if c["error"] is not None)
    mean = lambda values: sum(values) / n if n else 0.0  # noqa: E731
    math = n > 0 and all("correct_first_number" in r for r in records)
    first = sum(bool(r["correct_first_number"]) for r in records) if math else None
    # gold marks: the share over the calls of the examples that have them
    marked = [r for r in records if r.get("calls_on_gold") is not None]
    marked_calls = sum(len(r["calls"]) for r in marked)
    return ModeResult(
        set=set_name,
        mode=mode,
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        with_call=mean([c > 0 for c in calls]),
        calls_per_example=mean(calls),
        tool_errors=errors,
        tokens_per_example=mean([r["generated_tokens"] for r in records]),
        spliced_per_example=mean([r["spliced_tokens"] for r in records]),
        seconds_per_example=mean([r["wall_s"] for r in records]),
        calls=sum(calls),
        calls_ok=1 - errors / sum(calls) if sum(calls) else None,
        calls_on_gold=(
            sum(r["calls_on_gold"] for r in marked) / marked_calls if marked_calls else None
        ),
        stated=mean([bool(r["stated"]) for r in records]) if math else None,
        correct_first_number=first,
        accuracy_first_number=first / n if first is not None else None,
    )


@dataclass
class Report:
    """What ``toolrun.evaluate()`` returns: results per set and mode, and where files went."""

    config: dict[str, Any]
    results: list[ModeResult]
    files: dict[str, str] = field(default_factory=dict)

    def result(self, set_name: str, mode: str) -> ModeResult:
        for found in self.results:
            if found.set == set_name and found.mode == mode:
                return found
        raise KeyError((set_name, mode))

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "results": [asdict(r) for r in self.results]}

    def markdown(self) -> str:
        """A pivot of accuracy by set and mode, then every measure per set and mode."""
        sets = list(dict.fromkeys(r.set for r in self.results))
        modes = list(dict.fromkeys(r.mode for r in self.results))
        model, base = self.config.get("model"), self.config.get("base_model")
        names = f"model: {model}" + (f"; base: {base}" if base and base != model else "")
        lines = [f"Accuracy (%) with 95% Wilson interval; {names}", ""]
        if any(r.accuracy_first_number is not None for r in self.results):
            lines += [
                'Math is scored on the stated answer ("The answer is N", "#### N") when the '
                "output states one, else on the first number (the paper's rule); [first number "
                "N] gives the paper's rule alone where it differs.",
                "",
            ]
        lines.append("| set | n | " + " | ".join(modes) + " |")
        lines.append("|---|---:|" + "---:|" * len(modes))
        for name in sets:
            row = {r.mode: r for r in self.results if r.set == name}
            n = max(r.n for r in row.values())
            cells = [_accuracy_cell(row[m]) if m in row else "-" for m in modes]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| set | mode | n | accuracy % | 95% CI | first number % | stated % | with call % "
            "| calls/ex | calls ok % | calls on gold % | tokens/ex | spliced/ex | s/ex |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.set} | {r.mode} | {r.n} | {100 * r.accuracy:.1f} "
                f"| {100 * r.ci_low:.1f}-{100 * r.ci_high:.1f} "
                f"| {_percent(r.accuracy_first_number, 1)} | {_percent(r.stated)} "
                f"| {100 * r.with_call:.0f} | {r.calls_per_example:.2f} "
                f"| {_percent(r.calls_ok)} | {_percent(r.calls_on_gold)} "
                f"| {r.tokens_per_example:.1f} | {r.spliced_per_example:.1f} "
                f"| {r.seconds_per_example:.2f} |"
            )
        return "\n".join(lines) + "\n"

    def chart(self, path: Path) -> None:
        """Grouped bars: accuracy per set, one bar per mode, Wilson intervals as error bars."""
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt

        sets = list(dict.fromkeys(r.set for r in self.results))
        modes = list(dict.fromkeys(r.mode for r in self.results))
        width = 0.8 / max(1, len(modes))
        bars_total = len(sets) * max(1, len(modes))
        fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 2.0 + 0.35 * bars_total)), 4.5))
        for i, mode in enumerate(modes):
            xs: list[float] = []
            heights: list[float] = []
            errors: tuple[list[float], list[float]] = ([], [])
            for j, name in enumerate(sets):
                found = [r for r in self.results if r.set == name and r.mode == mode]
                if not found:
                    continue
                r = found[0]
                xs.append(j + (i - (len(modes) - 1) / 2) * width)
                heights.append(100 * r.accuracy)
                errors[0].append(100 * (r.accuracy - r.ci_low))
                errors[1].append(100 * (r.ci_high - r.accuracy))
            bars = ax.bar(xs, heights, width, yerr=errors, capsize=2, label=mode)
            ax.bar_label(bars, fmt="%.1f", fontsize=7 if bars_total <= 12 else 5, padding=2)
        ax.set_xticks(range(len(sets)), sets)
        ax.set_ylabel("accuracy (%)")
        # small models score near zero: scale to the data, not to 100%
        top = max((100 * r.ci_high for r in self.results), default=100.0)
        ax.set_ylim(0, min(100.0, max(10.0, 1.15 * top)))
        # The model's label is long (base, engine, adapter and digest): its own line, wrapped.
        label = textwrap.fill(str(self.config.get("model")), 70, break_on_hyphens=False)
        ax.set_title(f"accuracy by mode\n{label}", fontsize=9)
        ax.legend(fontsize=8, ncols=min(len(modes), 6), loc="upper right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def write(self, out_dir: Path, name: str) -> dict[str, str]:
        """Write ``name.json``, ``name.md`` and ``name.png`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {kind: out_dir / f"{name}.{kind}" for kind in ("json", "md", "png")}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        paths["md"].write_text(self.markdown(), encoding="utf-8")
        self.chart(paths["png"])
        self.files.update({kind: str(path) for kind, path in paths.items()})
        return self.files


def _accuracy_cell(r: ModeResult) -> str:
    cell = f"{100 * r.accuracy:.1f} ({100 * r.ci_low:.0f}-{100 * r.ci_high:.0f})"
    if r.correct_first_number is not None and r.correct_first_number != r.correct:
        cell += f" [first number {100 * (r.accuracy_first_number or 0.0):.1f}]"
    return cell


def _percent(share: float | None, decimals: int = 0) -> str:
    return "-" if share is None else f"{100 * share:.{decimals}f}"
