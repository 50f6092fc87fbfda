"""The `toolrun` command: help, tool listing, and clear errors for the app developer."""

from toolrun.cli import main


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
