"""Running the evaluation: one generation per example and mode, recorded as it finishes.

Modes (the paper's comparisons, Section 4.2 and the decoding analysis in Section 5):

- ``base``: the model without the adapter, plain greedy decoding, no tools registered;
- ``no-tools``: the finetuned model with calls disabled (every token that can open one banned);
- ``tools``: the finetuned model, greedy, running the calls it makes;
- ``top-K``: the finetuned model, starting a call whenever the start token is among the top K
  tokens, at most one call per example as in the paper. ``top-0`` is the paper's k = 0: calls
  never start (the same decoding as ``no-tools``).

Examples decode in batches (``toolrun.batch.generate_batch``: under greedy decoding each output
equals what ``generate()`` gives alone). Generation stops once no continuation can change the
score (a stated answer's number is complete; the words QA scoring reads are written), which
saves tokens and changes no score. Every finished example is appended to a JSONL file at once,
keyed by a fingerprint of what produced it (set, mode, model, prompt, decoding); a rerun skips
what that file already holds, and scores it again with the current rules (scoring never
changes an output, so a rule fixed later applies to old records too).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backends.base import Model
from ..batch import generate_batch
from ..errors import ToolrunError
from ..registry import ToolRegistry
from ..results import Generation
from ..tools.calendar_tool import as_of
from .scoring import (
    answer_settled,
    computes_gold,
    gold_quantities,
    score_math_first_number,
    stated_answer,
)
from .tasks import QUESTION_PROMPT, EvalSet, Example, Family

__all__ = [
    "DEFAULT_MODES",
    "Mode",
    "RecordStore",
    "drive_mode",
    "parse_mode",
    "run_mode",
    "score_record",
]

DEFAULT_MODES = ("base", "no-tools", "tools", "top-1", "top-3", "top-10")


@dataclass(frozen=True)
class Mode:
    """One way of decoding: which model, whether tools run, and the call-start rule."""

    name: str
    finetuned: bool
    tools: bool
    allow_calls: bool = True
    api_start_top_k: int = 0
    max_calls: int | None = None

    def options(self) -> dict[str, Any]:
        return {
            "allow_calls": self.allow_calls,
            "api_start_top_k": self.api_start_top_k,
            "max_calls": self.max_calls,
        }


def parse_mode(spec: str | Mode) -> Mode:
    """``base``, ``no-tools`` (or ``disabled``), ``tools``, ``top-K`` (or ``topK``, ``k=K``)."""
    if isinstance(spec, Mode):
        return spec
    text = spec.strip().lower()
    if text == "base":
        return Mode("base", finetuned=False, tools=False)
    if text in ("no-tools", "notools", "disabled", "tools-disabled"):
        return Mode("no-tools", finetuned=True, tools=False, allow_calls=False)
    if text == "tools":
        return Mode("tools", finetuned=True, tools=True)
    for prefix in ("top-", "top", "k=", "topk="):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            k = int(text[len(prefix) :])
            if k == 0:
                return Mode("top-0", finetuned=True, tools=False, allow_calls=False)
            return Mode(f"top-{k}", finetuned=True, tools=True, api_start_top_k=k, max_calls=1)
    raise ToolrunError(f"unknown mode {spec!r}; use base, no-tools, tools or top-K (e.g. top-10)")


@dataclass
class RunSettings:
    """What, besides the mode and the set, decides an output: part of every record's key."""

    model_label: str
    base_label: str
    max_new_tokens: int
    batch_size: int = 8
    tool_names: dict[str, list[str]] = field(default_factory=dict)  # per set
    call_format: str = "toolformer"
    """How the model calls: ``toolformer`` prompts with text; a chat format (``hermes``...)
    prompts with a chat conversation (``chat_mode.py``)."""
    chat_template: str | None = None
    """Chat formats: a Jinja template instead of the model's own."""


def fingerprint(evalset: EvalSet, mode: Mode, settings: RunSettings) -> str:
    family = evalset.family
    payload = {
        "set": evalset.name,
        "family": family.name,
        "prompt": "fact-mask" if family.name == "fact" else QUESTION_PROMPT,
        "stop": family.stop,
        "mode": asdict(mode),
        "model": settings.model_label if mode.finetuned else settings.base_label,
        "max_new_tokens": settings.max_new_tokens,
        # math stops once a stated answer is complete (it stopped at the first number before)
        "stop_when_settled": "stated-answer" if family.name == "math" else True,
        "tools": settings.tool_names.get(evalset.name, []) if mode.tools else [],
    }
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:16]


class RecordStore:
    """Per-example records, appended to a JSONL file (or kept in memory without one)."""

    def __init__(self, path: Path | None, resume: bool = True) -> None:
        self.path = path
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        if path is not None and path.exists():
            if resume:
                with path.open(encoding="utf-8") as handle:
                    for line in handle:
                        if line.strip():
                            record = json.loads(line)
                            self.records[(record["key"], record["id"])] = record
            else:
                path.unlink()

    def get(self, key: str, example_id: str) -> dict[str, Any] | None:
        return self.records.get((key, example_id))

    def add(self, record: dict[str, Any]) -> None:
        self.records[(record["key"], record["id"])] = record
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class StopWhenSettled:
    """A logits processor that forces end-of-sequence once the answer can no longer change.

    It serves a whole batch: each sequence is told apart by its prompt, a prefix of its history.
    """

    def __init__(self, model: Model, family: Family, prompt_ids: Sequence[Sequence[int]]) -> None:
        self.model = model
        self.words = None if family.name == "math" else family.words
        self.lengths = {len(ids) for ids in prompt_ids}
        self.prompts = {tuple(ids) for ids in prompt_ids}
        self.eos = min(model.eos_token_ids)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        history = input_ids[0].tolist()
        start = next((n for n in self.lengths if tuple(history[:n]) in self.prompts), None)
        if start is None or len(history) == start:
            return scores
        if not answer_settled(self.model.decode(history[start:]), self.words):
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.eos] = 0.0
        return forced


def run_batch(
    examples: Sequence[Example],
    evalset: EvalSet,
    mode: Mode,
    model: Model,
    registry: ToolRegistry,
    settings: RunSettings,
) -> list[dict[str, Any]]:
    """Generate for a few examples together and score each: the records a person reads."""
    family = evalset.family
    prompts = [family.prompt(example) for example in examples]
    prompt_ids = [model.bos_token_ids + model.encode(p) for p in prompts]
    stopper = StopWhenSettled(model, family, prompt_ids)
    started = time.perf_counter()
    generations = generate_batch(
        prompts,
        model=model,
        tools=registry if mode.tools else ToolRegistry(),
        max_batch=settings.batch_size,
        max_new_tokens=settings.max_new_tokens,
        stop=family.stop,
        logits_processor=[stopper],
        **mode.options(),
    )
    # Wall time is shared out: the batch's time over its examples (throughput, not latency).
    share = (time.perf_counter() - started) / len(examples)
    return [
        _record(example, prompt, generation, evalset, mode, share)
        for example, prompt, generation in zip(examples, prompts, generations, strict=True)
    ]


def _record(
    example: Example,
    prompt: str,
    generation: Generation,
    evalset: EvalSet,
    mode: Mode,
    share: float,
) -> dict[str, Any]:
    record = {
        "set": evalset.name,
        "mode": mode.name,
        "id": example.id,
        "prompt": prompt,
        "output": generation.text,
        "gold": example.gold,
        "calls": [
            {"name": c.name, "arguments": c.arguments_text, "result": c.result, "error": c.error}
            for c in generation.calls
        ],
        "generated_tokens": generation.generated_tokens,
        "spliced_tokens": generation.spliced_tokens,
        "finish_reason": generation.finish_reason,
        "wall_s": round(share, 4),
        "latency_s": round(generation.timings.get("total", 0.0), 4),
    }
    return score_record(record, example, evalset.family)


def score_record(record: dict[str, Any], example: Example, family: Family) -> dict[str, Any]:
    """Set a record's scores from its output with the current rules, and return it.

    ``correct``/``predicted``: the family's rule (math: the stated answer, else the first
    number). For math also ``stated`` (did the output state an answer),
    ``correct_first_number`` (the paper's rule) and, when the example carries a worked solution
    with calculator marks, ``calls_on_gold``: how many calls computed one of its quantities.
    """
    output = record["output"]
    record["correct"], record["predicted"] = family.score(output, example)
    if family.name != "math" or example.answer is None:
        return record
    record["stated"] = stated_answer(output) is not None
    record["correct_first_number"] = score_math_first_number(output, example.answer)[0]
    gold = gold_quantities(example.solution, example.answer) if example.solution else []
    record["calls_on_gold"] = (
        sum(
            computes_gold(c["result"] if c["error"] is None else None, gold)
            for c in record["calls"]
        )
        if gold
        else None
    )
    return record


def run_mode(
    evalset: EvalSet,
    mode: Mode,
    model: Model | Callable[[], Model],
    registry: ToolRegistry,
    settings: RunSettings,
    store: RecordStore,
    tick: Callable[[dict[str, Any]], None] = lambda record: None,
) -> list[dict[str, Any]]:
    """Every example of ``evalset`` in ``mode``: reused from ``store`` when already there.

    ``model`` may be a function that loads it, called only when something is left to generate.
    """
    if settings.call_format != "toolformer":
        from .chat_mode import run_chat_mode

        return run_chat_mode(
            evalset,
            mode,
            model,
            registry,
            settings,
            store,
            tick,
            call_format=settings.call_format,
            chat_template=settings.chat_template,
        )
    return drive_mode(
        evalset,
        model,
        store,
        tick,
        key=fingerprint(evalset, mode, settings),
        rescore=lambda record, example: score_record(record, example, evalset.family),
        generate=lambda chunk, loaded: run_batch(chunk, evalset, mode, loaded, registry, settings),
        batch_size=settings.batch_size,
    )


def drive_mode(
    evalset: EvalSet,
    model: Model | Callable[[], Model],
    store: RecordStore,
    tick: Callable[[dict[str, Any]], None],
    *,
    key: str,
    rescore: Callable[[dict[str, Any], Example], dict[str, Any]],
    generate: Callable[[Sequence[Example], Model], list[dict[str, Any]]],
    batch_size: int,
) -> list[dict[str, Any]]:
    """What every mode shares: the store's records under ``key`` are reused and scored again
    with the current rules (``rescore``); the model is loaded only if something is left; the
    rest is generated ``batch_size`` examples at a time and each record is stored at once.

    One batch at a time, not a longer queue refilling ``batch_size`` rows as they finish: that
    was no faster on llama.cpp (svamp, 16 rows: eight batches' worth at once 1.20x slower over
    96 examples and 2 interleaved repeats; four batches' worth 1.01x over 64, the same number of
    passes), and a batch's records are stored as soon as it ends.
    """
    examples = list(_examples(evalset.examples))
    done: dict[str, dict[str, Any]] = {}
    for example in examples:
        record = store.get(key, example.id)
        if record is not None:
            done[example.id] = rescore(dict(record), example)
            tick(record)
    pending = [e for e in examples if e.id not in done]
    loaded = model if isinstance(model, Model) else model() if pending else None
    for chunk in _chunks(pending, batch_size):
        assert loaded is not None
        with as_of(chunk[0].today):  # the day the chunk's questions are asked on, if any
            records = generate(chunk, loaded)
        for record in records:
            record["key"] = key
            store.add(record)
            done[record["id"]] = record
            tick(record)
    return [done[e.id] for e in examples]


def _chunks(examples: Sequence[Example], size: int) -> Iterator[list[Example]]:
    """``size`` examples at a time, in order; a chunk never mixes days (Example.today)."""
    chunk: list[Example] = []
    for example in examples:
        if chunk and (len(chunk) == size or example.today != chunk[0].today):
            yield chunk
            chunk = []
        chunk.append(example)
    if chunk:
        yield chunk


def _examples(examples: Sequence[Example]) -> Iterator[Example]:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise ToolrunError(f"duplicate example id {example.id!r}: ids must be unique")
        seen.add(example.id)
        yield example
