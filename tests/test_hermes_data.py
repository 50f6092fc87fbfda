"""scripts/hermes_data.py: an annotated text becomes the Hermes conversation the runtime would
feed, token for token, when the model writes the training text's assistant turns."""

import importlib.util
from pathlib import Path

import toolrun
from toolrun.templates import HERMES_CHATML
from toolrun.testing import ScriptedModel

_spec = importlib.util.spec_from_file_location(
    "hermes_data", Path(__file__).resolve().parent.parent / "scripts" / "hermes_data.py"
)
assert _spec is not None and _spec.loader is not None
hermes_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hermes_data)

HEAD = "Question: Tom has 48 clips and sells half, then 3 more.\nAnswer: "
ANSWER = "He sells 48/2 = 24 clips, then 24+3 = 27.\nThe answer is 27."
ORIGINAL = HEAD + ANSWER


def row_and_calls():
    first = ORIGINAL.index(" 24 clips")
    second = ORIGINAL.index(" 27.")
    calls = [
        {"tool": "Calculator", "position": first, "arguments": "48 / 2", "result": "24"},
        {"tool": "Calculator", "position": second, "arguments": "24 + 3", "result": "27"},
    ]
    return {"id": "t", "original": ORIGINAL, "start": len(HEAD)}, calls


def test_an_annotated_text_becomes_turns_cut_at_each_call():
    row, calls = row_and_calls()
    messages = hermes_data.conversation(row, calls, toolrun.ToolRegistry(["calculator"]))
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert messages[0]["content"] == "Question: Tom has 48 clips and sells half, then 3 more."
    assert messages[1]["content"] == "He sells 48/2 ="
    assert messages[1]["tool_calls"][0]["function"]["name"] == "Calculator"
    assert messages[2]["content"] == "24"
    assert messages[3]["content"] == "24 clips, then 24+3 ="
    assert messages[5]["content"] == "27.\nThe answer is 27."


def test_the_training_text_is_what_the_runtime_feeds_when_the_model_writes_its_turns():
    row, calls = row_and_calls()
    registry = toolrun.ToolRegistry(["calculator"])
    schemas = [t.json_schema() for t in registry]
    probe = ScriptedModel("", chat_template=HERMES_CHATML)
    messages = hermes_data.conversation(row, calls, registry)
    text = hermes_data.training_text(probe, messages, schemas)
    pieces = hermes_data.inference_pieces(probe, messages, schemas)
    assert hermes_data.check(probe, text, pieces) is None
    assert '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "48 / 2"}}' in text
    assert not text.endswith("<|im_end|>\n")  # finetune appends the end of turn

    # The runtime itself, with a model that writes the assistant turns of the training text:
    # everything it feeds (prompt, the model's tokens, the splices) is the training text.
    written = [p for kind, p in pieces if kind == "written"]
    model = ScriptedModel(
        [w + "<|im_end|>" for w in written[:-1]] + written[-1:], chat_template=HERMES_CHATML
    )
    out = toolrun.chat(
        messages[:1], model=model, tools=registry, call_format="hermes", max_new_tokens=500
    )
    assert [c.result for c in out.calls] == ["24", "27"]
    fed = [token for feed in model.sessions[0].feeds for token in feed]
    assert model.decode(fed) == text
