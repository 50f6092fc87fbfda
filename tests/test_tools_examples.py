"""The examples run offline with --fake, and print what they promise."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("custom_tool", "[Convert(42, km, mi) → 26.1]"),
        ("custom_tool", "error: units must be among km, m, mi, ft"),
        ("async_http_tool", "[ExchangeRate(EUR, USD) → 1.08]"),
        ("async_http_tool", "error: rate service answered 404"),
        ("offline_search", "[WikiSearch(first compiler) → Grace Hopper built the first compiler"),
        ("approval_tool", "error: call to SendEmail was not approved] done."),
        ("approval_tool", "outbox: [('team@example.com', 'Lunch at noon')]"),
    ],
)
def test_example_runs_offline(
    name: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXAMPLES / f"{name}.py"
    monkeypatch.setenv("TOOLRUN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [str(path), "--fake"])
    runpy.run_path(str(path), run_name="__main__")
    assert expected in capsys.readouterr().out
