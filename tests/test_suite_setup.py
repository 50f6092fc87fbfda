"""The suite's own guard: an extra that must be installed fails the run, never a quiet skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collect(require: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLRUN_TEST_REQUIRE": require}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--co",
            "tests/test_syntax.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_required_module_that_is_missing_fails_the_run() -> None:
    run = collect("pytest,no_such_module_for_toolrun")
    assert run.returncode != 0
    assert "not installed: no_such_module_for_toolrun" in run.stderr + run.stdout


def test_required_modules_that_are_there_pass() -> None:
    assert collect("pytest,json").returncode == 0
