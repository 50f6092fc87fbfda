"""Honest scoring through the harness: the stated answer, the paper's rule beside it, and how
good the calls were (made, ran, computed a step of the gold solution)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import toolrun
from toolrun.evaluate import evaluate
from toolrun.evaluation import FAMILIES, EvalSet, Example, parse_mode
from toolrun.evaluation.report import summarize
from toolrun.evaluation.runner import RecordStore, RunSettings, run_mode
from toolrun.testing import ScriptedModel


@toolrun.tool(name="Calculator")
def calculator(expression: str) -> str:
    """Multiply or add two integers written as "a * b" or "a + b"."""
    for op in "*+":
        if op in expression:
            a, b = (int(part) for part in expression.split(op))
            return str(a * b if op == "*" else a + b)
    raise toolrun.ToolError(f"cannot compute {expression!r}")


# A step-by-step answer: the first number is an intermediate step, the stated answer is right.
STEPWISE = ["She has 9 eggs left, so [Calculator(9 * 2) →", " 18 dollars. The answer is 18."]


def toy_set(tmp_path: Path, answers: list[int]) -> Path:
    path = tmp_path / "toy" / "test.jsonl"
    path.parent.mkdir(exist_ok=True)
    rows = [{"id": f"q{i}", "question": f"Eggs? ({i})", "answer": a} for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tools_record_is_scored_on_the_stated_answer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = evaluate(
        toy_set(tmp_path, [18, 9]),
        model=ScriptedModel(STEPWISE),
        modes=["tools"],
        tools=[calculator],
        out_dir=out,
        max_new_tokens=120,
    )
    result = report.result("toy", "tools")
    # stated 18: right for q0; the paper's rule reads 9 (the first number): right for q1 only
    assert (result.correct, result.correct_first_number) == (1, 1)
    assert result.stated == 1.0 and result.calls == 2 and result.calls_ok == 1.0
    assert result.calls_on_gold is None  # the set has no worked solutions

    records = [json.loads(line) for line in (out / "eval.records.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["id"] == "q0")
    assert first["output"] == (
        "She has 9 eggs left, so [Calculator(9 * 2) → 18] 18 dollars. The answer is 18."
    )
    assert (first["correct"], first["predicted"], first["stated"]) == (True, "18", True)
    assert first["correct_first_number"] is False
    assert first["calls"] == [
        {"name": "Calculator", "arguments": "9 * 2", "result": "18", "error": None}
    ]
    second = next(r for r in records if r["id"] == "q1")
    assert (second["correct"], second["correct_first_number"]) == (False, True)

    markdown = (out / "eval.md").read_text()
    assert "| toy | 2 | 50.0 (9-91) |" in markdown  # the rules agree on the count here
    assert "| toy | tools | 2 | 50.0 | 9.5-90.5 | 50.0 | 100 | 100 | 1.00 | 100 | - |" in markdown


def test_markdown_gives_the_first_number_rule_where_it_differs(tmp_path: Path) -> None:
    report = evaluate(
        toy_set(tmp_path, [18, 18]),
        model=ScriptedModel(STEPWISE),
        modes=["tools"],
        tools=[calculator],
        max_new_tokens=120,
    )
    assert report.result("toy", "tools").accuracy_first_number == 0.0
    assert "| toy | 2 | 100.0 (34-100) [first number 0.0] |" in report.markdown()


def test_generation_stops_once_the_stated_answer_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rambling = ScriptedModel(" 2 + 2 is 4. The answer is 4. Question: what is 5 + 5? 10")
    evaluate(toy_set(tmp_path, [4]), model=rambling, modes=["base"], out_dir=out)
    record = json.loads((out / "eval.records.jsonl").read_text())
    assert record["output"] == " 2 + 2 is 4. The answer is 4. Q"  # stopped, nothing lost
    assert record["finish_reason"] == "eos" and record["correct"] is True


def test_reused_records_are_scored_with_the_current_rules(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = toy_set(tmp_path, [18])
    options = {"modes": ["tools"], "tools": [calculator], "out_dir": out, "max_new_tokens": 120}
    evaluate(path, model=ScriptedModel(STEPWISE), **options)  # type: ignore[arg-type]
    records = out / "eval.records.jsonl"
    stale = json.loads(records.read_text())
    stale.update(correct=False, predicted="9")  # as an older rule scored it
    stale.pop("correct_first_number")
    records.write_text(json.dumps(stale) + "\n")
    # A model that would answer differently: the record is reused, not regenerated...
    report = evaluate(path, model=ScriptedModel("7"), **options)  # type: ignore[arg-type]
    assert len(records.read_text().splitlines()) == 1
    # ...and scored again from its output
    assert report.result("toy", "tools").correct == 1


@dataclass(frozen=True)
class WorkedExample(Example):
    """An example with its gold worked solution (GSM8K's calculator marks)."""

    solution: str | None = None


def test_calls_on_the_gold_solution(tmp_path: Path) -> None:
    solution = "She has 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18."
    examples = [
        WorkedExample("a", "Eggs?", answer=18, solution=solution),
        WorkedExample("b", "Eggs again?", answer=18, solution=solution),
    ]
    evalset = EvalSet("gsm8k_marked", tmp_path / "x.jsonl", FAMILIES["math"], examples, 2)
    model = ScriptedModel(
        [
            " [Calculator(9 * 2) →",  # 18: a gold step
            " so [Calculator(16 * 4) →",  # 64: not a step of the solution
            " then [Calculator(nine + 2) →",  # an error: ran, but not without error
            " 18. The answer is 18.",
        ]
    )
    settings = RunSettings("scripted", "scripted", max_new_tokens=160, batch_size=2)
    registry = toolrun.ToolRegistry([calculator])
    records = run_mode(evalset, parse_mode("tools"), model, registry, settings, RecordStore(None))
    assert [r["calls_on_gold"] for r in records] == [1, 1]
    result = summarize("gsm8k_marked", "tools", records)
    assert result.calls == 6 and result.tool_errors == 2
    assert result.calls_ok == pytest.approx(4 / 6)
    assert result.calls_on_gold == pytest.approx(2 / 6)
    assert result.with_call == 1.0 and result.correct == 2
