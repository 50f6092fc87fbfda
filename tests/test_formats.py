"""Each call format's parser: what it finds, what it refuses, and detection from templates."""

import json

import pytest

from toolrun.formats import FORMATS, detect_format, get_format
from toolrun.testing import ScriptedModel

hermes, llama3, mistral, toolformer = (
    FORMATS[n] for n in ("hermes", "llama3", "mistral", "toolformer")
)

ARGS = {"city": 'São Paulo, "centro"', "days": [1, 2], "nested": {"deep": {"x": None}}}


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (
            hermes,
            f"Sure.\n<tool_call>\n{json.dumps({'name': 'w', 'arguments': ARGS})}\n</tool_call>",
        ),
        (hermes, f"<tool_call>{json.dumps({'name': 'w', 'arguments': json.dumps(ARGS)})}"),
        (llama3, json.dumps({"name": "w", "parameters": ARGS})),
        (llama3, "<|python_tag|>" + json.dumps({"name": "w", "parameters": ARGS})),
        (mistral, "Ok [TOOL_CALLS]" + json.dumps([{"name": "w", "arguments": ARGS}])),
        (mistral, "[TOOL_CALLS]w[ARGS]" + json.dumps(ARGS)),
    ],
)
def test_json_calls_round_trip_unicode_quotes_and_nesting(fmt, text):
    found = fmt.find_call(text, 0)
    (call,) = found.calls
    assert (call.name, call.arguments, call.error) == ("w", ARGS, None)
    assert text[found.start :].lstrip().startswith(("<tool_call>", "{", "<|python", "[TOOL"))


def test_several_calls_in_each_format():
    two = [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]
    text = "".join(f"<tool_call>{json.dumps(c)}</tool_call>\n" for c in two)
    assert [c.name for c in hermes.find_call(text, 0).calls] == ["a", "b"]
    text = "; ".join(json.dumps({"name": c["name"], "parameters": c["arguments"]}) for c in two)
    assert [c.name for c in llama3.find_call(text, 0).calls] == ["a", "b"]
    assert [c.name for c in mistral.find_call("[TOOL_CALLS]" + json.dumps(two), 0).calls] == [
        "a",
        "b",
    ]
    assert [
        c.name for c in mistral.find_call("[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b[ARGS]{}", 0).calls
    ] == ["a", "b"]


@pytest.mark.parametrize(
    ("fmt", "text", "error"),
    [
        (hermes, "<tool_call>{nope</tool_call>", "malformed JSON"),
        (hermes, '<tool_call>{"name": "a", "arguments": [1]}</tool_call>', "must be a JSON object"),
        (hermes, "<tool_call>" + "[" * 5000 + "]" * 5000 + "</tool_call>", "JSON"),
        (hermes, '<tool_call>{"name": "a", "arguments": {"x": "' + "y" * 30000 + '"}}', "longer"),
        (llama3, '<|python_tag|>{"name": "a", "parameters": {', "malformed JSON"),
        (mistral, "[TOOL_CALLS][{bad", "malformed JSON"),
        (mistral, "[TOOL_CALLS]a[ARGS]{bad", "malformed JSON"),
    ],
)
def test_malformed_calls_are_found_with_an_error_not_raised(fmt, text, error):
    (call,) = fmt.find_call(text, 0).calls
    assert error in call.error


def test_what_follows_a_complete_call_is_found_and_nothing_before_it():
    call = hermes.opening("w") + json.dumps(ARGS) + "}\n</tool_call>"
    assert hermes.after_calls("Let me see.", 0) is None
    assert hermes.after_calls(call[:-3], 0) is None  # still writing the call
    assert hermes.after_calls(call + "\n<tool_re", 0) == "\n<tool_re"
    assert hermes.after_calls(call + "\n<tool_call>\n{", 0) is None  # the next call is open
    assert hermes.after_calls(call, len(call)) is None  # only calls after ``start`` count
    listed = "[TOOL_CALLS]" + json.dumps([{"name": "w", "arguments": ARGS}])
    assert mistral.after_calls("Ok", 0) is None
    assert mistral.after_calls(listed[:-2], 0) is None
    assert mistral.after_calls(listed + "[TOOL_RESULTS]", 0) == "[TOOL_RESULTS]"
    assert mistral.after_calls("[TOOL_CALLS]w[ARGS]" + json.dumps(ARGS) + " ", 0) == " "
    one = json.dumps({"name": "w", "parameters": ARGS})
    assert llama3.after_calls("Paris is sunny.", 0) is None
    assert llama3.after_calls(one[:-1], 0) is None
    assert llama3.after_calls(one + "\n\nThe weather", 0) == "\n\nThe weather"
    assert llama3.after_calls(f"<|python_tag|>{one}; {one}", 0) == ""
    assert llama3.after_calls(f"{one};\n{one[:9]}", 0) is None  # the next call is open


def test_after_a_call_only_the_end_of_turn_or_another_call_may_follow():
    model = ScriptedModel(
        "x", chat_template="t", extra_tokens=["<tool_call>", "<tool_response>", ";", "{", " {"]
    )
    ids = {text: i for i, text in enumerate(model.token_texts)}
    for fmt, tail, good, bad in [
        (hermes, "", ["\n", "<tool_call>", "<"], ["<tool_response>", "T", "{"]),
        (hermes, "\n<tool_", ["c"], ["r", "\n"]),
        (mistral, "", ["[", " "], ["T", "{"]),
        (llama3, "", [";", " {", "{", "\n", "<"], ["T", "}"]),  # "<": <|python_tag|>
    ]:
        allowed = set(fmt.turn_end_tokens(model, tail, True).tolist())
        alone = set(fmt.turn_end_tokens(model, tail, False).tolist())
        assert model.eos_token_ids <= alone <= allowed
        assert all(ids[t] in allowed for t in good), (fmt.name, tail)
        assert not any(ids[t] in allowed for t in bad), (fmt.name, tail)
        assert not any(ids[t] in alone for t in good if t.strip(" \n")), (fmt.name, tail)


def test_text_that_is_not_a_call():
    assert hermes.find_call("No tools needed. <tool", 0) is None
    assert llama3.find_call("Hello! Here is JSON: {}", 0) is None
    assert llama3.find_call('{"answer": 4}', 0) is None  # JSON content, not a call
    assert mistral.find_call("[INST] quoted", 0) is None
    assert toolformer.find_call("a [list] of -> things", 0) is None


def test_content_holds_back_a_partial_opening():
    assert hermes.content_length("Hi <tool_c", 0) == 3
    assert hermes.content_length("Hi <b>", 0) == 6
    assert hermes.content_length("Hi <tool_call>{", 0) == 3
    assert llama3.content_length('{"na', 0) == 0
    assert llama3.content_length("Sure, {x}", 0) == len("Sure, {x}")
    assert mistral.content_length("Ok [TOOL_CA", 0) == 3


def test_would_open_sees_an_opening_split_over_pieces():
    assert hermes.would_open("text <tool_", 0, "call>")
    assert not hermes.would_open("text <tool_", 0, "box>")
    assert llama3.would_open("", 0, ' {"')
    assert not llama3.would_open("Sure: ", 0, "{")
    assert toolformer.would_open("x", 0, " [")


def test_detection_from_the_chat_template():
    def model(template):
        return ScriptedModel("x", chat_template=template)

    assert detect_format(model("... <tool_call> ...")).name == "hermes"
    assert detect_format(model("... <|python_tag|> ... ipython")).name == "llama3"
    assert detect_format(model("... [TOOL_CALLS] ...")).name == "mistral"
    assert detect_format(model("{{ messages }}")).name == "toolformer"
    assert detect_format(model("<tool_call> and [TOOL_CALLS]")).name == "toolformer"  # ambiguous
    assert detect_format(ScriptedModel("x")).name == "toolformer"
    assert get_format("Hermes").name == "hermes"


def test_describe_tools_puts_the_tools_and_their_examples_before_a_text_prompt():
    import toolrun

    @toolrun.tool(examples=["Half of 48 is [km_to_miles(48) → 29.83] 29.83 miles."])
    def km_to_miles(km: float) -> float:
        """Convert kilometres to miles."""
        return round(km * 0.621371, 2)

    model = ScriptedModel("It is [km_to_miles(10) →")
    out = toolrun.generate("10 km is", model=model, tools=[km_to_miles], describe_tools=True)
    prompt = model.decode(model.sessions[0].feeds[0])
    assert prompt.endswith("\n\n10 km is")
    assert "km_to_miles(km: float): Convert kilometres to miles." in prompt
    assert "[km_to_miles(48) → 29.83]" in prompt
    assert out.calls[0].result == "6.21"
    plain = ScriptedModel("x")
    toolrun.generate("10 km is", model=plain, tools=[km_to_miles])
    assert plain.decode(plain.sessions[0].feeds[0]) == "10 km is"
