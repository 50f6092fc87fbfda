"""The evaluation harness behind ``toolrun eval`` and ``toolrun.evaluate.evaluate()``.

- scoring.py: the paper's scoring rules (math, QA and fact completion, dates), Wilson intervals;
- tasks.py: reading sets, task families, prompts;
- runner.py: modes, per-example generation and resumable records;
- report.py: summaries, JSON, markdown and the bar chart.
"""

from __future__ import annotations

from .report import ModeResult, Report
from .runner import DEFAULT_MODES, Mode, parse_mode
from .tasks import FAMILIES, EvalSet, Example, load_set

__all__ = [
    "DEFAULT_MODES",
    "FAMILIES",
    "EvalSet",
    "Example",
    "Mode",
    "ModeResult",
    "Report",
    "load_set",
    "parse_mode",
]
