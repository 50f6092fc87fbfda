"""Corpora: JSONL or a folder of text files, and GSM8K with its calculator marks.

A record is a text to annotate plus ``start``, the character offset where calls may begin (a GSM8K
question is context; only its worked answer is annotated), and ``date``, the day the text was
written when the corpus says (a row's ``"date": "2024-05-17"``): the Calendar answers with it.
GSM8K's ``<<48/2=24>>`` marks are stripped from the text and kept as gold to score the annotator.

Bad files fail here, before any model loads, with ``PipelineError``: a missing path, a file with
no texts, a line that is not JSON (a half-written *last* line is an interrupted run's, and is
skipped), a row with neither ``text`` nor ``question``/``answer``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PipelineError

__all__ = [
    "ANSWER",
    "QUESTION",
    "GoldMark",
    "PipelineError",
    "Record",
    "gsm8k_record",
    "load_corpus",
    "read_jsonl",
    "records_from",
    "strip_marks",
]


_MARK = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_FINAL = re.compile(r"\n?####\s*(.+)\s*$")


@dataclass(frozen=True)
class GoldMark:
    """A calculator step in the original text: it sits at ``position`` (an index into the
    stripped text, just before the written result)."""

    position: int
    expression: str
    result: str


@dataclass
class Record:
    id: str
    text: str
    start: int = 0
    gold: list[GoldMark] = field(default_factory=list)
    date: dt.date | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "start": self.start,
            "gold": [[g.position, g.expression, g.result] for g in self.gold],
        }
        if self.date is not None:
            row["date"] = self.date.isoformat()
        return row


def strip_marks(text: str) -> tuple[str, list[GoldMark]]:
    """Remove ``<<expr=result>>`` marks; return the plain text and where each mark stood."""
    pieces: list[str] = []
    marks: list[GoldMark] = []
    last = 0
    length = 0
    for match in _MARK.finditer(text):
        chunk = text[last : match.start()]
        pieces.append(chunk)
        length += len(chunk)
        marks.append(GoldMark(length, match.group(1).strip(), match.group(2).strip()))
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces), marks


# A GSM8K row as one training text: QUESTION + question + ANSWER + answer.
QUESTION, ANSWER = "Question: ", "\nAnswer: "


def gsm8k_record(row: dict[str, Any], index: int) -> Record:
    """``Question: ...\\nAnswer: ...`` with marks stripped and ``#### n`` as "The answer is n."."""
    answer, marks = strip_marks(row["answer"])
    final = _FINAL.search(answer)
    if final is not None:
        answer = answer[: final.start()].rstrip() + f"\nThe answer is {final.group(1).strip()}."
    head = QUESTION + row["question"].strip() + ANSWER
    shifted = [GoldMark(m.position + len(head), m.expression, m.result) for m in marks]
    return Record(id=f"gsm8k-{index}", text=head + answer, start=len(head), gold=shifted)


def load_corpus(
    path: str | Path, *, skip: int = 0, limit: int | None = None, last: int | None = None
) -> list[Record]:
    """Records from a JSONL file (``text``, or GSM8K's ``question``/``answer``), a folder holding
    one, or a folder of ``.txt`` files. ``skip``/``limit`` slice the rows; ``last`` keeps only the
    final ``last`` rows (a held-out slice). Raises PipelineError for a bad or empty corpus."""
    rows = list(_iter_rows(Path(path)))
    if not rows:
        raise PipelineError(f"{path}: no texts in the corpus")
    if last is not None:
        rows = rows[len(rows) - last :]
    rows = rows[skip:]
    if limit is not None:
        rows = rows[:limit]
    return [record for _, record in rows]


def records_from(items: Any) -> list[Record]:
    """Records from what an app has at hand: texts, Records, dicts with ``text`` (and optionally
    ``id``, ``start``), or a path to a corpus. Texts without an id are numbered ``text-<i>``."""
    if isinstance(items, (str, Path)) and Path(items).exists():
        return load_corpus(items)
    if isinstance(items, str):
        raise PipelineError(
            f"{items[:60]!r} is neither a corpus file nor a list of texts (give [text, ...])"
        )
    records = []
    for index, item in enumerate(items):
        if isinstance(item, Record):
            records.append(item)
        elif isinstance(item, str):
            records.append(Record(id=f"text-{index}", text=item))
        elif isinstance(item, dict):
            records.append(_record(item, index, "text"))
        else:
            raise PipelineError(f"item {index}: expected a text, got {type(item).__name__}")
    if not records:
        raise PipelineError("no texts to annotate")
    if any(not r.text.strip() for r in records):
        raise PipelineError("empty text among the texts to annotate")
    return records


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each JSON line; a malformed line is an error unless it is the last
    one (an interrupted run's half-written line)."""
    if not path.is_file():
        raise PipelineError(f"no file {str(path)!r}")
    with path.open(encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                return  # half-written by an interrupted run
            raise PipelineError(f"{path}:{number}: not JSON ({exc.msg}): {line[:60]!r}") from None
        if not isinstance(row, dict):
            raise PipelineError(f"{path}:{number}: expected a JSON object, got {line[:60]!r}")
        yield number, row


def _record(row: dict[str, Any], index: int, where: str) -> Record:
    if "question" in row and "answer" in row:
        return gsm8k_record(row, index)
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        raise PipelineError(
            f'{where}: a row needs a non-empty "text" (or GSM8K\'s "question" and '
            f'"answer"); got keys {sorted(row)}'
        )
    return Record(
        id=str(row.get("id", f"{where.rsplit(':', 1)[0]}-{index}")),
        text=row["text"],
        start=int(row.get("start", 0)),
        date=parse_date(row.get("date"), where),
    )


def parse_date(value: Any, where: str) -> dt.date | None:
    """A row's ISO ``date`` (None when absent); PipelineError naming ``where`` otherwise."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise PipelineError(
            f'{where}: "date" must be an ISO date like "2024-05-17", got {value!r}'
        ) from None


def _iter_rows(path: Path) -> Iterator[tuple[int, Record]]:
    if path.is_dir():
        jsonl = sorted(path.glob("*.jsonl"))
        if jsonl:
            path = jsonl[0]
        else:
            for index, file in enumerate(sorted(path.glob("*.txt"))):
                text = file.read_text(encoding="utf-8").strip()
                if text:
                    yield index, Record(id=file.stem, text=text)
            return
    elif not path.exists():
        raise PipelineError(f"no corpus at {str(path)!r}: give a JSONL file or a folder")
    for index, (number, row) in enumerate(read_jsonl(path)):
        yield index, _record(row, index, f"{path.stem}:{number}")
