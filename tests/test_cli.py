"""The `toolrun` command: help, tool listing, and clear errors for the app developer."""

import argparse
import json

import pytest

import toolrun
from toolrun.cli import build_parser, main


def test_tools_lists_the_built_ins(capsys):
    assert main(["tools"]) == 0
    out = capsys.readouterr().out
    for signature in ("Calculator(expression: str)", "Calendar()", "WikiSearch(query: str)"):
        assert signature in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "generate" in capsys.readouterr().out


def test_a_missing_model_is_a_one_line_error(capsys, tmp_path):
    assert main(["generate", "hi", "--model", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("toolrun: error: no model at")
    assert "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"toolrun {toolrun.__version__}"


def _commands_and_options():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    yield "toolrun", parser
    for name in ("generate", "tools", "eval"):
        yield name, sub.choices[name]


@pytest.mark.parametrize(("name", "command"), list(_commands_and_options()))
def test_every_option_has_help(name, command):
    missing = [
        action.option_strings or [action.dest]
        for action in command._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert not missing, f"{name}: options without help: {missing}"


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(toolrun, "load_model", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tools", "calculator,nosuchtool"], "no tool named 'nosuchtool'"),
        (["--max-new-tokens", "0"], "max_new_tokens"),
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "2"], "top_p"),
        (["--max-calls", "-1"], "max_calls"),
    ],
)
def test_mistakes_are_caught_before_the_model_loads(no_model_loads, capsys, argv, message):
    assert main(["generate", "hi", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("toolrun: error:") and message in err
    assert "Traceback" not in err


@pytest.fixture
def scripted(monkeypatch):
    """load_model() gives a scripted model that calls the Calculator; generate's options kept."""
    from toolrun.testing import ScriptedModel

    seen: dict = {}
    real_generate = toolrun.generate

    def generate(prompt, **kwargs):
        seen.update(kwargs)
        return real_generate(prompt, **kwargs)

    monkeypatch.setattr(
        toolrun, "load_model", lambda *a, **k: ScriptedModel(["So [Calculator(23 * 17) →", " ok."])
    )
    monkeypatch.setattr(toolrun, "generate", generate)
    return seen


def test_json_output(scripted, capsys):
    assert main(["generate", "Q:", "--tools", "calculator", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == "So [Calculator(23 * 17) → 391] ok."
    assert data["calls"][0]["name"] == "Calculator" and data["calls"][0]["result"] == "391"
    assert data["finish_reason"] == "eos" and "token_ids" not in data


def test_sampling_options_reach_generate(scripted, capsys):
    argv = ["--temperature", "0.7", "--top-p", "0.9", "--seed", "3", "--stop", "ok", "--stop", "!"]
    assert main(["generate", "Q:", *argv, "--max-calls", "2"]) == 0
    assert scripted["do_sample"] is True
    assert (scripted["temperature"], scripted["top_p"], scripted["seed"]) == (0.7, 0.9, 3)
    assert scripted["stop"] == ["ok", "!"] and scripted["max_calls"] == 2
    scripted.clear()
    assert main(["generate", "Q:", "--temperature", "0"]) == 0  # 0 means greedy
    assert "do_sample" not in scripted and scripted["temperature"] == 0


def test_quiet_by_default_and_verbose_on_request(caplog):
    import logging
    import warnings

    from toolrun._quiet import quiet, set_verbose

    def noisy():
        warnings.warn("old API", FutureWarning, stacklevel=1)
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning("no CPU kernel")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet():
            noisy()
        assert caught == []
        assert "no CPU kernel" not in caplog.text
        set_verbose(True)
        try:
            with quiet():
                noisy()
        finally:
            set_verbose(False)
        assert [str(w.message) for w in caught] == ["old API"]
    assert "no CPU kernel" in caplog.text


def test_verbose_after_the_subcommand_too():
    args = build_parser().parse_args(["generate", "hi", "--verbose"])
    assert args.verbose is True
    args = build_parser().parse_args(["--verbose", "generate", "hi"])
    assert args.verbose is True
    assert build_parser().parse_args(["generate", "hi"]).verbose is False


def test_chat_turn_in_the_models_own_call_format(monkeypatch, capsys, tmp_path):
    from toolrun.templates import HERMES_CHATML
    from toolrun.testing import ScriptedModel

    call = (
        '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "23 * 17"}}\n</tool_call>'
    )
    model = ScriptedModel([call + "<|im_end|>", "It is 391."], chat_template=HERMES_CHATML)
    monkeypatch.setattr(toolrun, "load_model", lambda *a, **k: model)
    argv = [
        "generate",
        "What is 23 * 17?",
        "--chat",
        "--system",
        "Be brief.",
        "--tools",
        "calculator",
    ]
    assert main([*argv, "--max-new-tokens", "300"]) == 0
    out, err = capsys.readouterr()
    assert out == "It is 391.\n"  # what the assistant said, no markup
    assert "call Calculator" in err and "-> 391" in err
    prompt = model.decode(model.sessions[0].feeds[0])
    assert prompt.startswith("<|im_start|>system\nBe brief.") and '"Calculator"' in prompt


def test_chat_only_options_need_chat(no_model_loads, capsys):
    assert main(["generate", "hi", "--system", "x"]) == 1
    assert "--chat" in capsys.readouterr().err
