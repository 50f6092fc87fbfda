"""Counters for ``GET /metrics``, written in the Prometheus text format by hand.

Requests by endpoint and status, tokens (prompt, generated, spliced), tool calls by tool and
outcome, time to first token as a histogram; queue depth and batch occupancy are read from the
scheduler when scraped. Everything runs on the server's event loop, so no locks.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable

__all__ = ["Histogram", "Metrics"]

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus expects them."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = sorted(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        out += [f"{name}_sum {self.sum!r}", f"{name}_count {self.count}"]
        return out


class Metrics:
    """The server's counters; ``render(gauges)`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.tokens: Counter[str] = Counter()
        self.tool_calls: Counter[tuple[str, str]] = Counter()
        self.time_to_first_token = Histogram(TTFT_BUCKETS)

    def request(self, endpoint: str, status: int) -> None:
        self.requests[endpoint, status] += 1

    def usage(self, prompt: int, generated: int, spliced: int) -> None:
        self.tokens["prompt"] += prompt
        self.tokens["generated"] += generated
        self.tokens["spliced"] += spliced

    def tool_call(self, tool: str, outcome: str) -> None:
        """``outcome``: "ok", "error" (ran on the server and failed) or "client" (sent back)."""
        self.tool_calls[tool, outcome] += 1

    def render(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> str:
        """The exposition text; ``gauges`` maps a name to (help, current value); a name ending
        in ``_total`` is a counter kept elsewhere."""
        lines = [
            "# HELP toolrun_requests_total Requests answered, by endpoint and HTTP status.",
            "# TYPE toolrun_requests_total counter",
        ]
        for (endpoint, status), count in sorted(self.requests.items()):
            labels = _labels(endpoint=endpoint, status=str(status))
            lines.append(f"toolrun_requests_total{labels} {count}")
        lines += [
            "# HELP toolrun_tokens_total Tokens by kind: prompt, generated (the model's own), "
            "spliced (tool results fed in).",
            "# TYPE toolrun_tokens_total counter",
        ]
        for kind in ("prompt", "generated", "spliced"):
            lines.append(f"toolrun_tokens_total{_labels(kind=kind)} {self.tokens[kind]}")
        lines += [
            "# HELP toolrun_tool_calls_total Tool calls by tool and outcome (ok, error, client).",
            "# TYPE toolrun_tool_calls_total counter",
        ]
        for (tool, outcome), count in sorted(self.tool_calls.items()):
            lines.append(f"toolrun_tool_calls_total{_labels(tool=tool, outcome=outcome)} {count}")
        lines += [
            "# HELP toolrun_time_to_first_token_seconds From a request's arrival to its first "
            "generated text.",
            "# TYPE toolrun_time_to_first_token_seconds histogram",
            *self.time_to_first_token.lines("toolrun_time_to_first_token_seconds"),
        ]
        for name, (help_text, read) in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
