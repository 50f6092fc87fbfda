"""Summaries of the per-example records: the JSON report, the markdown table, the bar chart."""

from __future__ import annotations

import json
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


def summarize(set_name: str, mode: str, records: Sequence[dict[str, Any]]) -> ModeResult:
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    low, high = wilson_interval(correct, n)
    calls = [len(r["calls"]) for r in records]
    mean = lambda values: sum(values) / n if n else 0.0  # noqa: E731
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
        tool_errors=sum(1 for r in records for c in r["calls"] if c["error"] is not None),
        tokens_per_example=mean([r["generated_tokens"] for r in records]),
        spliced_per_example=mean([r["spliced_tokens"] for r in records]),
        seconds_per_example=mean([r["wall_s"] for r in records]),
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
        lines.append("| set | n | " + " | ".join(modes) + " |")
        lines.append("|---|---:|" + "---:|" * len(modes))
        for name in sets:
            row = {r.mode: r for r in self.results if r.set == name}
            n = max(r.n for r in row.values())
            cells = [_accuracy_cell(row[m]) if m in row else "-" for m in modes]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| set | mode | n | accuracy % | 95% CI | with call % | calls/ex | tool errors "
            "| tokens/ex | spliced/ex | s/ex |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.set} | {r.mode} | {r.n} | {100 * r.accuracy:.1f} "
                f"| {100 * r.ci_low:.1f}-{100 * r.ci_high:.1f} | {100 * r.with_call:.0f} "
                f"| {r.calls_per_example:.2f} | {r.tool_errors} | {r.tokens_per_example:.1f} "
                f"| {r.spliced_per_example:.1f} | {r.seconds_per_example:.2f} |"
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
        ax.set_title(f"accuracy by mode ({self.config.get('model')})", fontsize=9)
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
    return f"{100 * r.accuracy:.1f} ({100 * r.ci_low:.0f}-{100 * r.ci_high:.0f})"
