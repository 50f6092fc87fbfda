"""The harness end to end on scripted models: known outputs give known accuracies and files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import toolrun
from toolrun.cli import build_parser
from toolrun.evaluate import evaluate
from toolrun.evaluation import Report, load_set, parse_mode
from toolrun.testing import ScriptedModel


@toolrun.tool(name="Calculator")
def calculator(expression: str) -> str:
    """Add integers written as "a + b"."""
    try:
        return str(sum(int(part) for part in expression.split("+")))
    except ValueError as exc:
        raise toolrun.ToolError(f"cannot add {expression!r}") from exc


CALLING = ["The answer is [Calculator(2 + 3) →", " 5 apples."]


@pytest.fixture
def math_set(tmp_path: Path) -> Path:
    path = tmp_path / "toy" / "test.jsonl"
    path.parent.mkdir()
    rows = [
        {"id": f"q{i}", "question": f"What is 2 + 3? ({i})", "answer": a}
        for i, a in enumerate([5, 5, 7, 2])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(path: Path, finetuned: ScriptedModel, modes: list[str], **kwargs: object) -> Report:
    return evaluate(
        path,
        model=finetuned,
        base_model=ScriptedModel("The answer is 7."),
        modes=modes,
        tools=[calculator],
        **kwargs,  # type: ignore[arg-type]
    )


def test_known_accuracies_per_mode(math_set: Path) -> None:
    report = run(math_set, ScriptedModel(CALLING), ["base", "tools", "top-1", "no-tools"])
    base = report.result("toy", "base")
    assert (base.n, base.correct, base.with_call) == (4, 1, 0.0)  # "7" matches one example

    tools = report.result("toy", "tools")
    assert tools.correct == 2 and tools.accuracy == 0.5  # "5" matches two
    assert tools.with_call == 1.0 and tools.calls_per_example == 1.0
    assert tools.tool_errors == 0 and tools.spliced_per_example > 0
    assert 0.15 < tools.ci_low < 0.5 < tools.ci_high < 0.85

    assert report.result("toy", "top-1").correct == 2

    disabled = report.result("toy", "no-tools")
    assert disabled.with_call == 0.0 and disabled.spliced_per_example == 0.0


def test_tool_errors_are_counted(math_set: Path) -> None:
    failing = ScriptedModel(["So [Calculator(two + three) →", " 5."])
    report = run(math_set, failing, ["tools"])
    result = report.result("toy", "tools")
    assert result.tool_errors == 4 and result.with_call == 1.0
    assert result.correct == 2  # the model's own "5" after the error still counts


def test_files_written_and_chart_renders(math_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run(math_set, ScriptedModel(CALLING), ["base", "tools"], out_dir=out, name="r")
    data = json.loads((out / "r.json").read_text())
    assert {(r["mode"], r["correct"]) for r in data["results"]} == {("base", 1), ("tools", 2)}
    assert data["config"]["sets"]["toy"]["family"] == "math"

    markdown = (out / "r.md").read_text()
    assert "| toy | 4 | 25.0 (5-70) | 50.0 (15-85) |" in markdown

    records = [json.loads(line) for line in (out / "r.records.jsonl").read_text().splitlines()]
    assert len(records) == 8
    called = next(r for r in records if r["mode"] == "tools")
    # decoding stops once the first number after the call is complete: no score can change
    assert called["output"] == "The answer is [Calculator(2 + 3) → 5] 5 a"
    assert called["finish_reason"] == "eos"
    assert called["calls"] == [
        {"name": "Calculator", "arguments": "2 + 3", "result": "5", "error": None}
    ]
    assert called["prompt"].startswith("Question: What is 2 + 3?")

    import matplotlib.pyplot as plt

    image = plt.imread(out / "r.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas
    assert set(report.files) == {"json", "md", "png", "records"}


def test_resume_skips_recorded_examples(math_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(math_set, ScriptedModel(CALLING), ["tools"], out_dir=out, limit=2)
    records = out / "eval.records.jsonl"
    assert len(records.read_text().splitlines()) == 2

    # Same settings, a model that would now answer differently: the records are reused,
    # and only the two examples the larger limit adds are generated.
    other = ScriptedModel("The answer is 7.")
    report = run(math_set, other, ["tools"], out_dir=out, limit=3)
    assert len(records.read_text().splitlines()) == 3
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert sum("7" in r["output"] for r in lines) == 1
    assert report.result("toy", "tools").n == 3

    fresh = run(math_set, other, ["tools"], out_dir=out, resume=False)
    assert fresh.result("toy", "tools").correct == 1  # only the gold 7
    assert len(records.read_text().splitlines()) == 4


def test_limit_is_a_fixed_nested_subset(tmp_path: Path) -> None:
    path = tmp_path / "test_many.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"q{i}", "answer": i}) + "\n" for i in range(40))
    )
    first = [e.id for e in load_set(path, limit=5, seed=3).examples]
    assert first == [e.id for e in load_set(path, limit=5, seed=3).examples]
    assert first != [e.id for e in load_set(path, limit=5, seed=4).examples]
    assert set(first) <= {e.id for e in load_set(path, limit=10, seed=3).examples}
    assert load_set(path).name == "many" and load_set(path).total == 40


def test_families_and_prompts(tmp_path: Path) -> None:
    qa = tmp_path / "lama_trex" / "test.jsonl"
    qa.parent.mkdir()
    qa.write_text(
        json.dumps({"id": "a", "question": "Dante was born in [MASK] .", "answers": ["Florence"]})
        + "\n"
    )
    fact = load_set(qa)
    assert fact.family.name == "fact" and fact.family.words == 5
    assert fact.family.prompt(fact.examples[0]) == "Dante was born in"
    assert fact.family.score(" Florence, Italy.", fact.examples[0])[0]
    assert load_set(qa, family="qa").family.prompt(fact.examples[0]).startswith("Question: Dante")

    # sets are found by name under a data root, subsets by their folder and file name
    (qa.parent / "test_mask_final.jsonl").write_text(qa.read_text())
    assert load_set("lama_trex", root=tmp_path).name == "lama_trex"
    subset = load_set("lama_trex_mask_final", root=tmp_path)
    assert subset.name == "lama_trex_mask_final" and subset.family.name == "fact"
    with pytest.raises(toolrun.ToolrunError, match="no evaluation set"):
        load_set("nowhere", root=tmp_path)


def test_modes_parse() -> None:
    assert parse_mode("top-10").options() == {
        "allow_calls": True,
        "api_start_top_k": 10,
        "max_calls": 1,
    }
    assert parse_mode("top0").options()["allow_calls"] is False  # the paper's k = 0
    assert parse_mode("disabled").name == "no-tools" and parse_mode("base").finetuned is False
    with pytest.raises(toolrun.ToolrunError):
        parse_mode("sometimes")


def test_cli_registers_eval() -> None:
    args = build_parser().parse_args(["eval", "svamp", "--modes", "base,top-10", "--limit", "5"])
    assert args.run.__module__ == "toolrun.evaluate"
    assert (args.data, args.modes, args.limit) == (["svamp"], "base,top-10", 5)


def test_a_set_name_without_data_names_both_ways_to_give_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolrun.cli import main

    monkeypatch.chdir(tmp_path)  # outside a checkout: no ../shared/evals/data
    monkeypatch.delenv("TOOLRUN_EVAL_DATA", raising=False)
    assert main(["eval", "svamp"]) == 1
    err = capsys.readouterr().err
    assert "--data-root" in err and "TOOLRUN_EVAL_DATA" in err
    assert "github.com/arkilpatel/SVAMP (MIT)" in err and "Traceback" not in err
    assert main(["eval"]) == 1
    assert "toolrun eval --list" in capsys.readouterr().err


def test_eval_list_shows_every_known_set_with_source_and_licence(
    math_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolrun.cli import main
    from toolrun.evaluation.tasks import KNOWN_SETS

    root = math_set.parent.parent
    (root / "svamp").mkdir()
    (root / "svamp" / "test.jsonl").write_text(math_set.read_text())
    assert main(["eval", "--list", "--data-root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data root: {root}"
    assert len(lines) == 1 + len(KNOWN_SETS)
    svamp = next(line for line in lines if line.startswith("svamp "))
    assert "found" in svamp and "MIT" in svamp and "github.com/arkilpatel/SVAMP" in svamp
    asdiv = next(line for line in lines if line.startswith("asdiv "))
    assert "missing" in asdiv and "non-commercial" in asdiv


def test_known_sets_resolve_in_the_project_data() -> None:
    from toolrun.evaluation.tasks import KNOWN_SETS, resolve_data

    checkout = Path(__file__).resolve().parents[1]
    root = Path(os.environ.get("TOOLRUN_EVAL_DATA") or checkout.parent / "shared/evals/data")
    if not root.is_dir():
        pytest.skip("no project evaluation data beside this checkout")
    for known in KNOWN_SETS:
        name, path = resolve_data(known.name, root)
        assert (name, path) == (known.name, root / known.path)


def test_default_model_means_base_plus_packaged_adapter(tmp_path: Path) -> None:
    from toolrun.evaluate import _label, _sources
    from toolrun.models import BASE_MODEL, default_adapter

    model, adapter, base = _sources(None, None, None)
    assert (model, adapter, base) == (BASE_MODEL, default_adapter(), BASE_MODEL)
    assert _sources("elsewhere", "a", None) == ("elsewhere", "a", "elsewhere")

    # an adapter is named by its content: retraining it in place makes new records
    folder = tmp_path / "my-adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"one")
    first = _label(BASE_MODEL, folder)
    assert first.startswith(f"{BASE_MODEL} + my-adapter@")
    (folder / "adapter_model.safetensors").write_bytes(b"two")
    assert _label(BASE_MODEL, folder) != first


def test_a_runs_engine_names_its_records(tmp_path: Path) -> None:
    """llama.cpp and transformers texts differ at near ties: their records are never mixed."""
    from toolrun.evaluate import _engine, _label
    from toolrun.models import BASE_MODEL

    assert _label(BASE_MODEL, None) == BASE_MODEL  # transformers: the name older records carry
    assert _label(BASE_MODEL, None, engine="llama.cpp") == f"{BASE_MODEL} [llama.cpp]"
    assert _engine(BASE_MODEL, "transformers", None) == "transformers"
    assert _engine(BASE_MODEL, "auto", "nf4") == "transformers"  # bitsandbytes
    assert _engine(ScriptedModel("x"), "auto", None) == "scripted"
    with pytest.raises(toolrun.ToolrunError, match="unknown backend"):
        _engine(BASE_MODEL, "vllm", None)


def test_worked_solutions_give_calls_on_gold(tmp_path: Path) -> None:
    """A "#### N" answer, or the set's unmodified source beside it, carries the gold solution;
    a call whose result is one of its marks' results counts as computing a gold quantity."""
    question = "Tom has 3 apples and buys 2 more. How many?"
    worked = "He has 3 + 2 = <<3+2=5>>5 apples.\n#### 5"
    inline = tmp_path / "inline" / "test.jsonl"
    inline.parent.mkdir()
    inline.write_text(json.dumps({"question": question, "answer": worked}) + "\n")
    beside = tmp_path / "beside" / "test.jsonl"
    (beside.parent / "original").mkdir(parents=True)
    beside.write_text(json.dumps({"question": question, "answer": 5}) + "\n")
    (beside.parent / "original" / "test.jsonl").write_text(
        json.dumps({"question": question, "answer": worked}) + "\n"
    )
    for path in (inline, beside):
        (example,) = load_set(path).examples
        assert example.answer == 5 and example.solution == "He has 3 + 2 = <<3+2=5>>5 apples."
    # a source that is not the set row for row is not used
    (beside.parent / "original" / "test.jsonl").write_text(
        json.dumps({"question": "Another question?", "answer": worked}) + "\n"
    )
    assert load_set(beside).examples[0].solution is None

    report = run(inline, ScriptedModel(CALLING), ["tools"])
    assert report.result("inline", "tools").calls_on_gold == 1.0


def test_qa_reads_the_first_line_of_text(tmp_path: Path) -> None:
    path = tmp_path / "trivia" / "test.jsonl"
    path.parent.mkdir()
    rows = [
        {"id": "a", "question": "Where was Dante born?", "answers": ["Florence"]},
        {"id": "b", "question": "Where was Petrarch born?", "answers": ["Arezzo"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ScriptedModel("\n Florence, Italy.\nArezzo is next.")
    report = evaluate(path, model=model, modes=["base"], out_dir=tmp_path / "out")
    assert report.result("trivia", "base").correct == 1
    record = json.loads((tmp_path / "out" / "eval.records.jsonl").read_text().splitlines()[0])
    assert record["output"].startswith("\n Florence, Italy.\n")  # a leading newline is no stop
    assert "Arezzo" not in record["output"]  # generation ended with the first line


@pytest.mark.slow
def test_real_model_end_to_end(tmp_path: Path) -> None:
    """The default model in three modes on two problems: calls run, records are scored right."""
    import re

    path = tmp_path / "tiny.jsonl"
    rows = [
        {"id": "a", "question": "Tom has 3 apples and buys 4 more. How many now?", "answer": 7},
        {
            "id": "b",
            "question": "Tom reads 23 pages a day for 17 days. How many pages does he read?",
            "answer": 391,
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate(path, modes=["base", "no-tools", "tools"], out_dir=tmp_path, name="e2e")
    records = [json.loads(line) for line in (tmp_path / "e2e.records.jsonl").open()]
    assert len(records) == 6 and {r["mode"] for r in records} == {"base", "no-tools", "tools"}
    assert all(r["generated_tokens"] <= 48 for r in records)
    assert all("[" not in r["output"] and not r["calls"] for r in records if r["mode"] != "tools")

    gold = {row["id"]: row["answer"] for row in rows}
    for r in records:
        # scored on the stated answer when there is one, else on the first number: by hand
        stated = re.search(r"The answer is \$?(-?[\d,]+(?:\.\d+)?)", r["output"])
        numbers = re.findall(r"-?\d+(?:\.\d+)?", re.sub(r"\[[^\]]*\]", "", r["output"]))
        if stated is not None:
            assert r["stated"] and r["predicted"] == stated.group(1)
            assert r["correct"] is (float(stated.group(1).replace(",", "")) == gold[r["id"]])
        elif not numbers:
            assert r["predicted"] is None and r["correct"] is False

    called = [r for r in records if r["mode"] == "tools" and r["calls"]]
    assert called, "the default model made no call on either problem"
    for r in called:
        for call in r["calls"]:
            assert call["name"] == "Calculator" and call["error"] is None
            assert f"[Calculator({call['arguments']}) → {call['result']}]" in r["output"]
    tools = report.result("tiny", "tools")
    assert tools.calls == sum(len(r["calls"]) for r in called) and tools.calls_ok == 1.0
    assert tools.with_call == len(called) / 2
    assert tools.correct == sum(r["correct"] for r in records if r["mode"] == "tools")


def test_questions_about_today_are_asked_on_their_own_day(tmp_path: Path) -> None:
    path = tmp_path / "dateset" / "test.jsonl"
    path.parent.mkdir()
    days = ["2031-03-14", "2031-03-14", "2031-03-14", "2000-02-29", "2031-03-14"]
    answers = ["Friday", "Friday", "Friday", "Tuesday", "Friday"]
    rows = [
        {"id": f"d{i}", "question": "What day is it?", "answers": [a], "today": day}
        for i, (day, a) in enumerate(zip(days, answers, strict=True))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_set(path).family.name == "dates"
    model = ScriptedModel(["It is [Calendar() →", " Friday."])
    out = tmp_path / "out"
    report = evaluate(
        path, model=model, modes=["tools"], tools=["calendar"], out_dir=out, batch_size=2
    )
    records = [json.loads(line) for line in (out / "eval.records.jsonl").read_text().splitlines()]
    said = {r["id"]: r["calls"][0]["result"] for r in records}
    assert said == {
        f"d{i}": "Today is Friday, March 14, 2031."
        if day == "2031-03-14"
        else "Today is Tuesday, February 29, 2000."
        for i, day in enumerate(days)
    }
    assert report.result("dateset", "tools").correct == 4  # "Friday." is wrong on 2000-02-29
    bad = tmp_path / "bad" / "test.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"question": "q", "answers": ["a"], "today": "soon"}) + "\n")
    with pytest.raises(toolrun.ToolrunError, match='"today" must be an ISO date'):
        load_set(bad)
