"""Corpora: JSONL or a folder of text files, and GSM8K with its calculator marks.

A record is a text to annotate plus ``start``, the character offset where calls may begin (a GSM8K
question is context; only its worked answer is annotated). GSM8K's ``<<48/2=24>>`` marks are
stripped from the text and kept as gold to score the annotator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GoldMark", "Record", "gsm8k_record", "load_corpus", "strip_marks"]

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

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "start": self.start,
            "gold": [[g.position, g.expression, g.result] for g in self.gold],
        }


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


def gsm8k_record(row: dict[str, Any], index: int) -> Record:
    """``Question: ...\\nAnswer: ...`` with marks stripped and ``#### n`` as "The answer is n."."""
    answer, marks = strip_marks(row["answer"])
    final = _FINAL.search(answer)
    if final is not None:
        answer = answer[: final.start()].rstrip() + f"\nThe answer is {final.group(1).strip()}."
    head = f"Question: {row['question'].strip()}\nAnswer: "
    shifted = [GoldMark(m.position + len(head), m.expression, m.result) for m in marks]
    return Record(id=f"gsm8k-{index}", text=head + answer, start=len(head), gold=shifted)


def load_corpus(
    path: str | Path, *, skip: int = 0, limit: int | None = None, last: int | None = None
) -> list[Record]:
    """Records from a JSONL file (``text``, or GSM8K's ``question``/``answer``), a folder holding
    one, or a folder of ``.txt`` files. ``skip``/``limit`` slice the rows; ``last`` keeps only the
    final ``last`` rows (a held-out slice)."""
    rows = list(_iter_rows(Path(path)))
    if last is not None:
        rows = rows[len(rows) - last :]
    rows = rows[skip:]
    if limit is not None:
        rows = rows[:limit]
    return [record for _, record in rows]


def _iter_rows(path: Path) -> Iterator[tuple[int, Record]]:
    if path.is_dir():
        jsonl = sorted(path.glob("*.jsonl"))
        if jsonl:
            path = jsonl[0]
        else:
            for index, file in enumerate(sorted(path.glob("*.txt"))):
                yield index, Record(id=file.stem, text=file.read_text(encoding="utf-8").strip())
            return
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            row = json.loads(line)
            if "question" in row and "answer" in row:
                yield index, gsm8k_record(row, index)
            else:
                text = str(row["text"])
                rid = str(row.get("id", f"{path.stem}-{index}"))
                yield index, Record(id=rid, text=text, start=int(row.get("start", 0)))
