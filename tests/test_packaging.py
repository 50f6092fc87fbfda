"""A normal install works like the checkout.

The first tests build the wheel and read what it holds: the default adapter and the chat
template ship inside it, the only top-level name is ``toolrun``, and the entry points name
modules inside it. The ``installed`` tests run only inside the fresh virtualenv that
``make wheel-check`` builds (``TOOLRUN_WHEEL_CHECK=1``): there toolrun is the installed wheel,
never this checkout, and the default model must load with its adapter and call the Calculator.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = "toolrun/adapters/toolrun-smollm2-135m-calc"
INSTALLED = os.environ.get("TOOLRUN_WHEEL_CHECK") == "1"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    if INSTALLED:
        pytest.skip("building needs the checkout")
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "--quiet", "--wheel-dir", str(out)], check=True, cwd=ROOT)
    (path,) = out.glob("toolrun-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_carries_the_default_adapter_and_the_template(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    shipped = ("adapter_config.json", "adapter_model.safetensors", "chat_template.jinja")
    for name in (*shipped, "MODEL_CARD.md"):
        assert f"{ADAPTER}/{name}" in names
    committed = (ROOT / ADAPTER / "adapter_model.safetensors").stat().st_size
    assert wheel.getinfo(f"{ADAPTER}/adapter_model.safetensors").file_size == committed
    assert "toolrun/hermes_chatml.jinja" in names and "toolrun/question_answer.jinja" in names
    assert "toolrun/py.typed" in names


def test_the_wheel_holds_every_file_of_the_package(wheel: zipfile.ZipFile) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "toolrun"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert sorted(set(tracked) - set(wheel.namelist())) == []


def test_the_wheel_claims_only_the_toolrun_name(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"toolrun"}
    entry_points = configparser.ConfigParser()
    (info,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    entry_points.read_string(wheel.read(info).decode())
    tools = dict(entry_points["toolrun.tools"])
    assert set(tools) == {"calculator", "calendar", "wikisearch", "qa", "mt", "wolframalpha"}
    assert all(target.startswith("toolrun.tools.") for target in tools.values())
    assert entry_points["console_scripts"]["toolrun"] == "toolrun.cli:main"


def test_a_missing_adapter_is_an_error_that_says_what_to_do(monkeypatch, tmp_path) -> None:
    from toolrun import ModelLoadError, models

    monkeypatch.setattr(models, "__file__", str(tmp_path / "models.py"))
    with pytest.raises(ModelLoadError) as info:
        models.default_adapter()
    message = str(info.value)
    assert "adapter is missing" in message and "make model" in message
    assert "pip install --force-reinstall toolrun" in message
    with pytest.raises(ModelLoadError, match="adapter is missing"):
        models.load_model()  # never the base in its place


installed = pytest.mark.skipif(not INSTALLED, reason="runs in `make wheel-check`'s fresh venv")


@installed
def test_toolrun_is_the_installed_wheel_not_the_checkout() -> None:
    import toolrun
    from toolrun.models import default_adapter

    here = Path(toolrun.__file__).resolve()
    assert here.is_relative_to(Path(sys.prefix).resolve()) and "site-packages" in here.parts
    assert not here.is_relative_to(ROOT / "toolrun")
    assert default_adapter().is_relative_to(here.parent)
    with pytest.raises(ModuleNotFoundError):
        __import__("tools")  # no generic top-level name


@installed
def test_the_installed_default_model_calls_the_calculator() -> None:
    import toolrun

    registry = toolrun.ToolRegistry("calculator")  # found through the wheel's entry points
    out = toolrun.generate("Question: What is 23 * 17?\nAnswer:", tools=registry, max_new_tokens=30)
    assert [call.name for call in out.calls] == ["Calculator"], out.text
    assert out.calls[0].result == "391" and "391" in out.text


@installed
def test_the_installed_default_model_calls_in_a_chat_with_its_adapters_template() -> None:
    import toolrun
    from toolrun.templates import QUESTION_ANSWER

    model = toolrun.load_model()
    assert model.chat_template == QUESTION_ANSWER  # read from the installed adapter folder
    question = [{"role": "user", "content": "What is 23 * 17?"}]
    out = toolrun.chat(question, model=model, tools=["calculator"], max_new_tokens=30)
    assert [call.result for call in out.calls] == ["391"], out.text


@installed
def test_the_installed_command_runs(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "toolrun"
    version = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("toolrun ")
    listed = subprocess.run(
        [command, "eval", "--list", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "svamp" in listed.stdout and "MIT" in listed.stdout
