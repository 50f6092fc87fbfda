"""What the tracing API costs per generation and per tool call, with tracing off and on.

    python benchmarks/bench_tracing.py         # writes benchmarks/results/tracing.json

Each mode runs in a fresh process (what is imported matters):

- ``absent``: OpenTelemetry never imported (an app that does not use it);
- ``api_only``: ``opentelemetry.trace`` imported, no provider configured;
- ``recording``: the SDK's tracer and meter providers, spans handed to an exporter that drops
  them (the cost toolrun adds, not the exporter's).

Per mode: nanoseconds per generation (``start_generation`` + ``first_token`` + ``finished``)
and per call (``tool_call`` entered, ``record``, exited), medians over interleaved rounds, and
each as a same-run ratio to the cheapest real generation there is: ``toolrun.generate`` on the
scripted fake model writing 8 tokens and one call. A real model's single decoding step costs
10 to 1000 times that generation, so the ratios are upper bounds.

End to end: a no-call generation on a tiny random Llama with tracing off and recording,
alternated in one process (``end_to_end``: the on/off ratio of whole generations).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = ("absent", "api_only", "recording")


def measure(mode: str, rounds: int, loops: int) -> dict:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    if mode != "absent":
        import opentelemetry.trace  # noqa: F401
    if mode == "recording":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        from toolrun import tracing

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        tracing.configure(tracer_provider=provider, meter_provider=meters)

    import toolrun
    from toolrun import tracing
    from toolrun.registry import CallOutcome
    from toolrun.testing import ScriptedModel

    @toolrun.tool(name="Add")
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    generation = toolrun.Generation(  # the fields finished() reads; the rest keep defaults
        text="t",
        calls=[],
        finish_reason="eos",
        prompt_tokens=5,
        generated_tokens=8,
        spliced_tokens=2,
    )
    outcome = CallOutcome("5", None, {"a": 2, "b": 3}, 0.001)
    model = ScriptedModel(["abc [Add(2, 3) →", " de"])

    def one_generation() -> None:
        trace = tracing.start_generation(
            model="m", backend="b", call_format="toolformer", prompt_tokens=5
        )
        trace.first_token()
        trace.finished(generation)

    trace = tracing.start_generation(
        model="m", backend="b", call_format="toolformer", prompt_tokens=1
    )

    def one_call() -> None:
        with trace.tool_call("Add", "call_0", {"a": 2, "b": 3}) as span:
            span.record(outcome)

    def timed(fn: Callable[[], object], n: int) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - start) / n

    scripted = lambda: toolrun.generate("Q:", model=model, tools=[add])  # noqa: E731
    assert scripted().calls[0].result == "5"
    per_generation, per_call, scripted_ns = [], [], []
    for _ in range(rounds):  # interleaved, so load on the machine hits all three alike
        per_generation.append(timed(one_generation, loops))
        per_call.append(timed(one_call, loops))
        scripted_ns.append(timed(scripted, max(loops // 200, 5)))
    otel_loaded = any(m.startswith("opentelemetry") for m in sys.modules)
    return {
        "mode": mode,
        "opentelemetry_imported": otel_loaded,
        "ns_per_generation": statistics.median(per_generation),
        "ns_per_generation_range": [min(per_generation), max(per_generation)],
        "ns_per_call": statistics.median(per_call),
        "ns_per_call_range": [min(per_call), max(per_call)],
        "scripted_generation_ns": statistics.median(scripted_ns),
        "generation_overhead_ratio": statistics.median(
            g / s for g, s in zip(per_generation, scripted_ns, strict=True)
        ),
        "call_overhead_ratio": statistics.median(
            c / s for c, s in zip(per_call, scripted_ns, strict=True)
        ),
    }


def end_to_end(rounds: int, new_tokens: int = 48) -> dict:
    """A real no-call generation (a tiny random Llama, transformers) with tracing off and on,
    alternated in one process: the ratio is what tracing costs a whole generation."""
    import torch

    torch.set_num_threads(1)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from transformers import AutoTokenizer

    import toolrun
    from toolrun import tracing
    from toolrun.backends.transformers import TransformersModel
    from toolrun.models import _resolve_folder
    from toolrun.testing import tiny_llama

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    tokenizer = AutoTokenizer.from_pretrained(_resolve_folder(None))
    model = TransformersModel(tiny_llama(tokenizer), tokenizer, name="tiny")
    ban_eos = [
        lambda ids, scores: scores.index_fill(1, torch.tensor(sorted(model.eos_token_ids)), -1e9)
    ]

    def run() -> float:
        start = time.perf_counter()
        toolrun.generate(
            "The city of", model=model, max_new_tokens=new_tokens, logits_processor=ban_eos
        )
        return time.perf_counter() - start

    run()
    off, on = [], []
    for _ in range(rounds):
        tracing.configure()
        off.append(run())
        tracing.configure(tracer_provider=provider)
        on.append(run())
    tracing.configure()
    return {
        "new_tokens": new_tokens,
        "seconds_off": statistics.median(off),
        "seconds_on": statistics.median(on),
        "on_vs_off": statistics.median(on) / statistics.median(off),
        "on_vs_off_range": [
            min(a / b for a, b in zip(on, off, strict=True)),
            max(a / b for a, b in zip(on, off, strict=True)),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loops", type=int, default=20000)
    parser.add_argument("--mode", choices=[*MODES, "end_to_end"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "tracing.json")
    args = parser.parse_args()
    if args.mode == "end_to_end":
        print(json.dumps(end_to_end(args.rounds)))
        return
    if args.mode:
        print(json.dumps(measure(args.mode, args.rounds, args.loops)))
        return
    results = []
    for mode in MODES:
        options = ["--mode", mode, "--rounds", str(args.rounds), "--loops", str(args.loops)]
        child = subprocess.run(
            [sys.executable, __file__, *options],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        row = results[-1]
        print(
            f"{mode:>10}: {row['ns_per_generation']:8.0f} ns/generation "
            f"({row['generation_overhead_ratio']:.2e} of a scripted generation), "
            f"{row['ns_per_call']:8.0f} ns/call ({row['call_overhead_ratio']:.2e})"
        )
    child = subprocess.run(
        [sys.executable, __file__, "--mode", "end_to_end", "--rounds", str(args.rounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    whole = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"end to end, a {whole['new_tokens']}-token generation: on/off {whole['on_vs_off']:.3f}")
    report = {
        "benchmark": "tracing API cost per generation and per call (medians over interleaved "
        "rounds; ratios to a same-process scripted generate() with one call)",
        "command": "python benchmarks/bench_tracing.py",
        "rounds": args.rounds,
        "loops": args.loops,
        "python": platform.python_version(),
        "threads": 1,
        "modes": results,
        "end_to_end": whole,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
