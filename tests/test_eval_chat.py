"""Chat-mode evaluation (``toolrun.evaluation.chat_mode``) on the scripted chat model."""

import json

import pytest

from toolrun import Generation, ToolRegistry
from toolrun.errors import ToolrunError
from toolrun.evaluation.chat_mode import (
    OpeningBan,
    assistant_text,
    chat_prompt,
    content_view,
    run_chat_batch,
    run_chat_mode,
)
from toolrun.evaluation.runner import RecordStore, RunSettings, parse_mode
from toolrun.evaluation.tasks import FAMILIES, EvalSet, Example
from toolrun.formats import get_format
from toolrun.templates import HERMES_CHATML, render
from toolrun.testing import ScriptedModel

HERMES = get_format("hermes")
OPENING = "<|im_start|>assistant\n"
QUESTION = Example("q1", "Tom has 48 clips and sells half. How many are left?", answer=24.0)
CALL = '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "48 / 2"}}\n</tool_call>'
SPLICE = "\n<|im_start|>user\n<tool_response>\n24\n</tool_response><|im_end|>\n" + OPENING


def evalset(*examples):
    return EvalSet("toy", path=None, family=FAMILIES["math"], examples=list(examples), total=1)  # type: ignore[arg-type]


def settings():
    return RunSettings(model_label="scripted", base_label="scripted", max_new_tokens=200)


def scripted(*pieces):
    return ScriptedModel(list(pieces), chat_template=HERMES_CHATML)


def test_the_prompt_is_one_user_turn_with_the_question():
    assert chat_prompt(FAMILIES["math"], QUESTION) == [
        {"role": "user", "content": f"Question: {QUESTION.question}"}
    ]


def test_the_content_view_leaves_out_markup_and_tool_turns_and_sees_open_calls():
    text = f"She has 48/2 =\n{CALL}<|im_end|>{SPLICE}24 clips left."
    assert content_view(text, HERMES, OPENING) == ("She has 48/2 = 24 clips left.", False)
    assert content_view(f"She has 48/2 =\n{CALL}<|im_end|>", HERMES, OPENING) == (
        "She has 48/2 =",
        True,
    )
    # a partial opener may still become a call
    assert content_view("She has 48/2 =\n<tool_", HERMES, OPENING) == ("She has 48/2 =", True)


def answer_one(model, run_settings=None, mode="tools"):
    """The record of QUESTION answered by ``model`` with the Calculator listed."""
    (record,) = run_chat_batch(
        [QUESTION],
        evalset(QUESTION),
        parse_mode(mode),
        model,
        ToolRegistry(["calculator"]),
        run_settings or settings(),
    )
    return record


def test_a_call_runs_the_answer_is_scored_on_what_the_assistant_said():
    model = scripted(f"She has 48/2 =\n{CALL}<|im_end|>", "24 clips left.")
    record = answer_one(model)
    assert record["said"] == "She has 48/2 = 24 clips left."
    # no stated answer: the first number counts (the number after "=" of its equation)
    assert (record["predicted"], record["correct"], record["stated"]) == ("24", True, False)
    assert record["correct_first_number"] is True
    assert record["calls"] == [
        {
            "name": "Calculator",
            "arguments": json.dumps({"expression": "48 / 2"}),
            "result": "24",
            "error": None,
        }
    ]
    assert record["call_format"] == "hermes"
    # The prompt lists the Calculator the way HERMES_CHATML renders it.
    fed = model.decode(model.sessions[0].feeds[0])
    schema = ToolRegistry(["calculator"]).get("Calculator").json_schema()  # type: ignore[union-attr]
    assert fed == render(
        model, HERMES_CHATML, chat_prompt(FAMILIES["math"], QUESTION), tools=[schema]
    )


def test_generation_stops_once_the_answer_is_settled():
    rest = "24 clips.\nThe answer is 24. Then 7 more, and a call:\n" + CALL
    model = scripted(f"48/2 =\n{CALL}<|im_end|>", rest)
    record = answer_one(model)
    # the stated answer is settled by the first letter after its number
    assert record["said"] == "48/2 = 24 clips.\nThe answer is 24. T"
    assert (record["predicted"], record["correct"], record["stated"]) == ("24", True, True)
    assert len(record["calls"]) == 1
    assert record["finish_reason"] == "eos"


def test_the_budget_counts_the_words_not_the_call_markup():
    model = scripted(f"48/2 =\n{CALL}<|im_end|>", "24 clips, and then some more words to say")
    budget = RunSettings(model_label="scripted", base_label="scripted", max_new_tokens=16)
    record = answer_one(model, budget)
    assert len(model.encode(record["said"])) == 16
    assert record["generated_tokens"] > 16 + len(model.encode(CALL))  # the call was free
    assert len(record["calls"]) == 1


def test_no_tools_bans_calls_with_the_tools_still_listed():
    model = scripted(f"She has 48/2 =\n{CALL}<|im_end|>", "24 clips left.")
    record = answer_one(model, mode="no-tools")
    assert record["calls"] == []
    assert "<" not in record["output"]  # every token holding the opening's "<" is banned
    assert "<tools>" in model.decode(model.sessions[0].feeds[0])


def test_top_k_modes_have_no_chat_counterpart():
    with pytest.raises(ToolrunError, match="bracket"):
        run_chat_batch(
            [QUESTION],
            evalset(QUESTION),
            parse_mode("top-3"),
            scripted("x"),
            ToolRegistry(),
            settings(),
        )


def test_records_are_reused_and_keyed_apart_from_text_mode(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    loads = []

    def load():
        loads.append(1)
        return scripted(f"48/2 =\n{CALL}<|im_end|>", "24 clips.")

    first = run_chat_mode(
        evalset(QUESTION),
        parse_mode("tools"),
        load,
        ToolRegistry(["calculator"]),
        settings(),
        store,
    )
    again = run_chat_mode(
        evalset(QUESTION),
        parse_mode("tools"),
        load,
        ToolRegistry(["calculator"]),
        settings(),
        RecordStore(tmp_path / "r.jsonl"),
    )
    assert loads == [1] and first == again and first[0]["correct"]


def test_assistant_text_joins_turns_without_markup():
    out = Generation(
        text="",
        calls=[],
        finish_reason="length",
        prompt_tokens=1,
        generated_tokens=1,
        spliced_tokens=0,
    )
    out.messages = [
        {"role": "assistant", "content": "48/2 =", "tool_calls": []},
        {"role": "tool", "content": "24"},
        {"role": "assistant", "content": "24 clips <tool_call>\n{"},
    ]
    assert assistant_text(out, HERMES) == "48/2 = 24 clips"


def test_the_ban_covers_every_token_holding_the_openings_first_character_but_special_ones():
    model = scripted("x")
    banned = {model.vocab[i] for i in OpeningBan(model, HERMES).banned}
    assert "<" in banned and "<|im_end|>" not in banned and "<|im_start|>" not in banned
    assert all("<" in text for text in banned)


def test_evaluate_takes_a_chat_call_format(tmp_path):
    from toolrun.evaluate import evaluate

    data = tmp_path / "toy.jsonl"
    data.write_text(json.dumps({"question": QUESTION.question, "answer": 24}) + "\n")
    model = scripted(f"She has 48/2 =\n{CALL}<|im_end|>", "24 clips.\nThe answer is 24.")
    report = evaluate(
        str(data),
        model=model,
        modes=["tools"],
        call_format="hermes",
        chat_template=HERMES_CHATML,
        out_dir=tmp_path,
        name="chat",
    )
    (result,) = report.results
    assert (result.correct, result.with_call, result.stated) == (1, 1.0, 1.0)
    assert report.config["call_format"] == "hermes"
    record = json.loads((tmp_path / "chat.records.jsonl").read_text())
    assert record["said"] == "She has 48/2 = 24 clips.\nThe answer is 24."
