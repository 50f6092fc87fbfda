"""QA: the generating model (or a named one) answers inside a call, optionally grounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ScriptPerSession

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools import _bm25
from toolrun.tools.qa import GROUNDED_ENV, MODEL_ENV, make_qa, qa
from toolrun.tools.wikisearch import CORPUS_ENV, make_wikisearch


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOOLRUN_CACHE", str(tmp_path / "cache"))
    for name in (GROUNDED_ENV, MODEL_ENV, CORPUS_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    _bm25._loaded.clear()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "Eiffel_Tower.txt").write_text(
        "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", encoding="utf-8"
    )
    (folder / "Everest.txt").write_text("Everest is 8,849 metres high.", encoding="utf-8")
    return folder


def test_the_generating_model_answers_inside_the_call() -> None:
    model = ScriptPerSession(
        ["Q: [QA(What is the capital of France?) →", " so Paris."], ["Paris\nand more"]
    )
    out = toolrun.generate("Q:", model=model, tools=["qa"])
    assert out.text == "Q: [QA(What is the capital of France?) → Paris] so Paris."
    assert out.calls[0].name == "QA" and out.calls[0].error is None
    assert model.prompt(1) == "Q: What is the capital of France?\nA:"
    assert len(model.sessions) == 2


def test_the_inner_generation_cannot_call_tools() -> None:
    # The inner script tries to open a call; calls are disabled there, so it cannot.
    model = ScriptPerSession(["[QA(x) →", " done"], ["[Calculator(1+1) →"])
    out = toolrun.generate("Q:", model=model, tools=["qa", "calculator"])
    assert len(out.calls) == 1
    result = out.calls[0].result or ""
    assert "Calculator(1+1)" in result and "2" not in result  # written, never run


def test_a_named_model_answers_instead() -> None:
    answerer = ScriptedModel(["Rome\n"])
    outer = ScriptedModel(["It is [QA(capital of Italy?) →", "."])
    out = toolrun.generate("Q:", model=outer, tools=[make_qa(answerer)])
    assert out.text == "It is [QA(capital of Italy?) → Rome]."
    assert len(outer.sessions) == 1 and len(answerer.sessions) == 1


def test_grounded_on_wikisearch_passages(corpus: Path) -> None:
    answerer = ScriptPerSession(["1889\n"])
    tool = make_qa(answerer, search=make_wikisearch(corpus, results=1))
    outer = ScriptedModel(["Built in [QA(When was the Eiffel Tower completed?) →", "."])
    out = toolrun.generate("Q:", model=outer, tools=[tool])
    assert out.calls[0].result == "1889"
    assert answerer.prompt(0) == (
        "Context: Eiffel Tower: The Eiffel Tower in Paris was completed in 1889 for the "
        "World's Fair.\nQ: When was the Eiffel Tower completed?\nA:"
    )


def test_a_search_without_results_leaves_the_question_ungrounded(corpus: Path) -> None:
    answerer = ScriptPerSession(["no idea\n"])
    tool = make_qa(answerer, search=make_wikisearch(corpus))
    assert tool("Who painted the Mona Lisa?") == "no idea"
    assert "Context" not in answerer.prompt(0)


def test_empty_answer_and_empty_question_are_errors() -> None:
    tool = make_qa(ScriptedModel(["\nlater"]))
    with pytest.raises(toolrun.ToolError, match="the model gave no answer"):
        tool("What?")
    with pytest.raises(toolrun.ToolError, match="empty question"):
        tool("   ")


def test_entry_point_grounding_from_the_environment(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GROUNDED_ENV, "yes")
    with pytest.raises(toolrun.ToolConfigError, match="must be 0 or 1"):
        toolrun.ToolRegistry(["qa"])
    monkeypatch.setenv(GROUNDED_ENV, "1")
    monkeypatch.setenv(CORPUS_ENV, str(corpus / "missing"))
    with pytest.raises(toolrun.ToolConfigError, match="does not exist"):
        toolrun.ToolRegistry(["QA"])  # the search's configuration is checked too
    monkeypatch.setenv(CORPUS_ENV, str(corpus))
    model = ScriptPerSession(["[QA(How high is Everest?) →", " ok"], ["8,849 metres\n"])
    out = toolrun.generate("Q:", model=model, tools=["qa"])
    assert out.calls[0].result == "8,849 metres"
    assert "Context: Everest is 8,849 metres high.\n" in model.prompt(1)


def test_direct_call_uses_the_named_model() -> None:
    assert qa.__name__ == "qa"
    assert make_qa(ScriptedModel(["Paris"]))("capital of France?") == "Paris"


@pytest.mark.slow
def test_the_real_base_model_answers_and_translates_inside_a_call() -> None:
    from toolrun.tools.mt import make_mt

    # The base model: the default adds a Calculator adapter trained only on arithmetic text.
    model = toolrun.load_model(toolrun.BASE_MODEL)
    ctx = toolrun.ToolContext(model=model, tool_name="QA")
    answer = make_qa(max_new_tokens=10)("Who wrote Hamlet?", ctx)
    assert "Shakespeare" in answer and "\n" not in answer
    assert "cat" in make_mt(max_new_tokens=10)("Le chat est noir.", ctx).lower()
