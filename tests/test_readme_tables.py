"""The README's figures are what the committed results files say, and cite only what exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts" / "readme_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tables_are_what_the_results_files_say() -> None:
    """Fails when a results file changed and `python scripts/readme_tables.py` was not run."""
    assert _tables().render(README) == README


def test_every_table_names_its_command_and_an_existing_results_file() -> None:
    blocks = re.findall(r"<!-- table:([\w-]+) -->\n(.*?)<!-- /table:\1 -->", README, re.DOTALL)
    assert {name for name, _ in blocks} == set(_tables().TABLES)
    for name, text in blocks:
        files = re.findall(r"benchmarks/results/[\w.-]*\w", text)
        assert files, f"table {name} names no results file"
        assert all((ROOT / f).is_file() for f in files), (name, files)
        assert re.search(r"`(python|toolrun) [^`]+`", text), f"table {name} names no command"


def test_files_the_readme_cites_exist() -> None:
    cited = set(
        re.findall(
            r"(?<![\w/.])((?:benchmarks|scripts|models|examples|toolrun|tests)/[\w./-]*\w)", README
        )
    )
    assert cited, "the pattern found nothing: the test would pass vacuously"
    missing = sorted(path for path in cited if not (ROOT / path).exists())
    assert not missing, f"README.md cites files that are not in the repository: {missing}"
    assert "DESIGN.md" not in README  # not in the repository


def test_operations_counts_the_arithmetic_in_a_call() -> None:
    operations = _tables().operations
    assert operations("23 * 17") == 1
    assert operations("48 + (48 / 2)") == 2
    assert operations("-5") == 0 and operations("12") == 0
    assert operations("(2 + 3") is None
