"""A chat template shipped in an adapter's folder replaces the base model's on both backends, and
the bracket format renders chats with any template (its calls need no schema in the prompt)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import toolrun
from toolrun.backends.base import ADAPTER_CHAT_TEMPLATE, shipped_chat_template
from toolrun.errors import GenerationOptionsError, ModelLoadError
from toolrun.models import BASE_MODEL, default_adapter
from toolrun.templates import (
    HERMES_CHATML,
    QUESTION_ANSWER,
    read_template,
    render,
    supports_tools,
    template_for,
)
from toolrun.testing import ScriptedModel

QUESTION = [{"role": "user", "content": "What is 23 * 17?"}]


def test_question_answer_renders_turns_as_the_training_texts_read() -> None:
    model = ScriptedModel("", chat_template=QUESTION_ANSWER)
    conversation = [
        {"role": "system", "content": "Be brief."},
        *QUESTION,
        {"role": "assistant", "content": " [Calculator(23 * 17) → 391] 391."},
        {"role": "user", "content": "And 2 + 2?"},
    ]
    assert render(model, QUESTION_ANSWER, conversation) == (
        "Be brief.\n\nQuestion: What is 23 * 17?\nAnswer: [Calculator(23 * 17) → 391] 391."
        "<|im_end|>\nQuestion: And 2 + 2?\nAnswer:"
    )


def test_a_bracket_format_chat_runs_its_calls_under_a_template_that_is_not_chatml() -> None:
    model = ScriptedModel([" [Calculator(23 * 17) →", " 391."], chat_template=QUESTION_ANSWER)
    out = toolrun.chat(QUESTION, model=model, tools=["calculator"], max_new_tokens=30)
    assert [(c.name, c.result) for c in out.calls] == [("Calculator", "391")]
    assert out.text == "[Calculator(23 * 17) → 391] 391."  # the reply's opening space dropped
    assert (out.calls[0].start, out.calls[0].end) == (0, len("[Calculator(23 * 17) → 391]"))
    fed = model.decode(model.sessions[0].feeds[0])
    assert fed == "Question: What is 23 * 17?\nAnswer:"


def test_the_adapters_template_replaces_the_models_own() -> None:
    model = ScriptedModel("", chat_template=HERMES_CHATML)
    assert model.chat_template == HERMES_CHATML
    model.adapter_chat_template = QUESTION_ANSWER
    assert model.chat_template == QUESTION_ANSWER
    assert model.own_chat_template == HERMES_CHATML


def test_a_template_that_cannot_be_read_is_a_load_error(tmp_path: Path) -> None:
    assert shipped_chat_template(tmp_path) is None
    (tmp_path / ADAPTER_CHAT_TEMPLATE).write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ModelLoadError, match="chat template"):
        shipped_chat_template(tmp_path)


@pytest.fixture(scope="module")
def adapter_with_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default adapter's weights (so llama.cpp finds their merged file cached) with the
    question-answer template beside them."""
    folder = tmp_path_factory.mktemp("adapter") / "shipped"
    shutil.copytree(default_adapter(), folder)
    (folder / ADAPTER_CHAT_TEMPLATE).write_text(QUESTION_ANSWER, encoding="utf-8")
    return folder


@pytest.mark.parametrize("backend", ["transformers", "llama.cpp"])
def test_load_model_takes_the_template_from_the_adapter_folder(
    adapter_with_template: Path, backend: str
) -> None:
    if backend == "llama.cpp":
        pytest.importorskip("llama_cpp", reason="pip install 'toolrun[llama]'")
    base = toolrun.load_model(BASE_MODEL, backend=backend)
    assert base.chat_template is not None and "<|im_start|>" in base.chat_template
    tuned = toolrun.load_model(BASE_MODEL, backend=backend, adapter=adapter_with_template)
    assert tuned.chat_template == QUESTION_ANSWER
    out = toolrun.chat(QUESTION, model=tuned, tools=["calculator"], max_new_tokens=4)
    assert out.prompt_tokens == len(tuned.encode("Question: What is 23 * 17?\nAnswer:"))


def test_hermes_calls_asked_of_a_chatml_model_with_an_adapter_template_get_hermes_chatml() -> None:
    model = ScriptedModel("", chat_template="{{ '<|im_start|>' }}")
    model.adapter_chat_template = QUESTION_ANSWER
    assert template_for(model, "toolformer", tools_given=True) == QUESTION_ANSWER
    assert template_for(model, "hermes", tools_given=True) == HERMES_CHATML


def test_a_template_that_names_tools_only_in_a_comment_renders_none() -> None:
    assert "tools" in QUESTION_ANSWER and not supports_tools(QUESTION_ANSWER)
    assert supports_tools(HERMES_CHATML)


def test_chat_template_options_take_a_file_or_a_built_in_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_template("question-answer") == QUESTION_ANSWER
    assert read_template("hermes-chatml") == HERMES_CHATML
    mine = tmp_path / "question-answer"  # a file of that name wins over the built-in
    mine.write_text("{{ messages[0].content }}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert read_template("question-answer") == "{{ messages[0].content }}"
    with pytest.raises(GenerationOptionsError, match="cannot read the chat template 'nowhere'"):
        read_template("nowhere")
