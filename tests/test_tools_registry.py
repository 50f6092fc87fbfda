"""The built-in tools as an app meets them: entry points, `toolrun tools`, names in any case."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

import toolrun
from toolrun.cli import main
from toolrun.testing import ScriptedModel
from toolrun.tools import calculator, calendar_tool, mt, qa, wikisearch, wolframalpha

SIGNATURES = {
    "calculator": "Calculator(expression: str)",
    "calendar": "Calendar()",
    "wikisearch": "WikiSearch(query: str)",
    "qa": "QA(question: str)",
    "mt": "MT(text: str)",
    "wolframalpha": "WolframAlpha(query: str)",
}


def test_entry_points_give_the_six_tools_with_the_papers_names() -> None:
    found = toolrun.available_tools()
    for key, signature in SIGNATURES.items():
        assert found[key].signature == signature
        assert found[key].description
    functions = {
        "calculator": calculator.calculator,
        "calendar": calendar_tool.calendar,
        "wikisearch": wikisearch.wikisearch,
        "qa": qa.qa,
        "mt": mt.mt,
        "wolframalpha": wolframalpha.wolframalpha,
    }
    for key, function in functions.items():
        assert found[key].function is function


def test_toolrun_tools_lists_all_six(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools"]) == 0
    listed = capsys.readouterr().out
    for signature in SIGNATURES.values():
        assert f"{signature}\n    " in listed


@pytest.mark.parametrize("name", ["calculator", "Calculator", "CALCULATOR"])
def test_an_app_names_them_in_any_case(name: str) -> None:
    model = ScriptedModel(["[Calculator(6 x 7) →", "."])
    assert toolrun.generate("Q:", model=model, tools=[name]).calls[0].result == "42"


def test_the_model_may_write_any_case_too() -> None:
    model = ScriptedModel(["[calculator(6 x 7) →", "."])
    assert toolrun.generate("Q:", model=model, tools=["Calculator"]).calls[0].result == "42"


def test_factories_make_tools_with_the_papers_names(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    made = [
        calendar_tool.make_calendar(),
        wikisearch.make_wikisearch(tmp_path),
        qa.make_qa(),
        mt.make_mt(),
        mt.make_mt("http://localhost:5000/translate"),
        wolframalpha.make_wolframalpha("id"),
    ]
    names = [toolrun.ToolRegistry([f]).names[0] for f in made]
    assert names == ["Calendar", "WikiSearch", "QA", "MT", "MT", "WolframAlpha"]


def test_several_tools_in_one_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLRUN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "Moon.txt").write_text("The Moon orbits Earth.", encoding="utf-8")
    tools = [
        "calculator",
        calendar_tool.make_calendar(lambda: datetime(2023, 1, 30)),
        wikisearch.make_wikisearch(tmp_path / "docs"),
    ]
    model = ScriptedModel(
        ["[Calendar() →", " [WikiSearch(moon) →", " [Calculator(365 / 12) →", " end"]
    )
    out = toolrun.generate("Q:", model=model, tools=tools)
    assert [c.result for c in out.calls] == [
        "Today is Monday, January 30, 2023.",
        "Moon: The Moon orbits Earth.",
        "30.42",
    ]
    assert out.text.endswith("→ 30.42] end")
