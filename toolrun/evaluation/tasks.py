"""Evaluation sets and the task families that prompt and score them.

A set is any JSONL file whose rows have ``question`` and either ``answer`` (a number: a math
word problem) or ``answers`` (a list of strings: question answering, fact completion, dates).
A row may say on which day it is asked (``"today": "2025-03-14"``): questions relative to today
are asked on the day their answers are for, and the Calendar answers with it.

The prompt is a plain completion, with no examples, fixed before any score was seen:
``"Question: {question}\\nAnswer:"``; for fact completion (LAMA, whose questions hold a
``[MASK]``) the statement up to the mask, to be completed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ToolrunError
from .scoring import score_date, score_math, score_qa, split_worked_solution

__all__ = [
    "DATA_ROOT_ENV",
    "FAMILIES",
    "KNOWN_SETS",
    "EvalSet",
    "Example",
    "Family",
    "KnownSet",
    "default_data_root",
    "load_set",
    "resolve_data",
]

DATA_ROOT_ENV = "TOOLRUN_EVAL_DATA"
QUESTION_PROMPT = "Question: {question}\nAnswer:"
MASK = "[MASK]"


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    answer: float | None = None
    answers: tuple[str, ...] = ()
    solution: str | None = None
    """The gold worked solution, where the set has one (GSM8K's, with "<<48/2=24>>" marks)."""
    today: dt.date | None = None
    """The day the question is asked on, when its answer depends on it."""

    @property
    def gold(self) -> str:
        if self.answer is not None:
            return f"{self.answer:g}"
        return " | ".join(self.answers)


@dataclass(frozen=True)
class Family:
    """How one kind of task is prompted and scored, and which tools it is meant to use."""

    name: str
    tools: tuple[str, ...]
    stop: tuple[str, ...]
    words: int = 20  # how many leading words may contain the answer (QA-style scoring)

    def prompt(self, example: Example) -> str:
        if self.name == "fact":
            head = example.question.split(MASK)[0].rstrip()
            return head or example.question
        return QUESTION_PROMPT.format(question=example.question.strip())

    def score(self, output: str, example: Example) -> tuple[bool, str | None]:
        """(correct, what was taken as the prediction)."""
        if self.name == "math":
            if example.answer is None:
                raise ToolrunError(f"example {example.id!r} has no numeric 'answer'")
            return score_math(output, example.answer)
        if self.name == "dates":
            return score_date(output, example.answers, self.words)
        return score_qa(output, example.answers, self.words)


# Paper's tools per family: the calculator for math, Wikipedia search for open QA, the QA model
# for LAMA, the calendar for dates. Math stops at a blank line or a new "Question:" (it may take
# several lines); the others end with their first line of text (see answer_settled: a stop
# string "\n" would also end an output that opens with a newline, before any answer).
FAMILIES: dict[str, Family] = {
    "math": Family("math", ("calculator",), ("\n\n", "\nQuestion:")),
    "qa": Family("qa", ("wikisearch",), ("\nQuestion:",), words=20),
    "fact": Family("fact", ("qa",), ("\nQuestion:",), words=5),
    "dates": Family("dates", ("calendar",), ("\nQuestion:",), words=20),
}


@dataclass
class EvalSet:
    name: str
    path: Path
    family: Family
    examples: list[Example]
    total: int
    """Rows in the file, before ``limit``."""


@dataclass(frozen=True)
class KnownSet:
    """A public set ``toolrun eval NAME`` knows by name; toolrun ships none of the data."""

    name: str
    path: str
    """Under the data root."""
    task: str
    rows: int
    source: str
    licence: str


_LAMA = "github.com/norakassner/BERT-kNN (facebookresearch/LAMA's data)"
_NON_COMMERCIAL = "CC BY-NC 4.0 (non-commercial)"
KNOWN_SETS: tuple[KnownSet, ...] = (
    KnownSet("svamp", "svamp/test.jsonl", "math", 1000, "github.com/arkilpatel/SVAMP", "MIT"),
    KnownSet(
        "asdiv", "asdiv/test.jsonl", "math", 2093, "github.com/chaochun/nlu-asdiv-dataset",
        _NON_COMMERCIAL,
    ),
    KnownSet(
        "asdiv_a", "asdiv/test_asdiv_a.jsonl", "math", 1218,
        "github.com/chaochun/nlu-asdiv-dataset (the ASDiv-A folds)", _NON_COMMERCIAL,
    ),
    KnownSet(
        "mawps", "mawps/test.jsonl", "math", 2065, "github.com/microsoft/ToRA (MAWPS)", "MIT"
    ),
    KnownSet(
        "mawps_2373", "mawps_2373/test.jsonl", "math", 2373,
        "github.com/LYH-YF/MWPToolkit (MAWPS)", "MIT",
    ),
    KnownSet(
        "gsm8k", "gsm8k/test.jsonl", "math", 1319, "github.com/openai/grade-school-math", "MIT"
    ),
    KnownSet(
        "nq_open", "nq_open/test.jsonl", "qa", 3610,
        "github.com/google-research-datasets/natural-questions (NQ-open dev)", "CC BY-SA 3.0",
    ),
    KnownSet(
        "webquestions", "webquestions/test.jsonl", "qa", 2032,
        "github.com/CfaBotTeam/stanford (DrQA's conversion of SEMPRE's test split)",
        "none stated",
    ),
    KnownSet(
        "triviaqa", "triviaqa/test.jsonl", "qa", 3000,
        "github.com/mosaicml/llm-foundry (3,000-question subsample)", "Apache-2.0",
    ),
    KnownSet(
        "bigbench_qa_wikidata", "bigbench_qa_wikidata/test.jsonl", "qa", 20321,
        "github.com/mosaicml/llm-foundry (BIG-bench qa_wikidata)", "Apache-2.0",
    ),
    KnownSet("lama_squad", "lama_squad/test.jsonl", "fact", 305, _LAMA, _NON_COMMERCIAL),
    KnownSet(
        "lama_squad_mask_final", "lama_squad/test_mask_final.jsonl", "fact", 213, _LAMA,
        _NON_COMMERCIAL,
    ),
    KnownSet(
        "lama_google_re", "lama_google_re/test.jsonl", "fact", 5528, _LAMA, _NON_COMMERCIAL
    ),
    KnownSet(
        "lama_trex", "lama_trex/test.jsonl", "fact", 22881, _LAMA + ", 28 of 41 relations",
        _NON_COMMERCIAL,
    ),
    KnownSet(
        "lama_trex_mask_final", "lama_trex/test_mask_final.jsonl", "fact", 18601,
        _LAMA + ", 28 of 41 relations", _NON_COMMERCIAL,
    ),
    KnownSet(
        "situatedqa_temp", "situatedqa_temp/test.jsonl", "dates", 2795,
        "github.com/mikejqzhang/SituatedQA", "none stated (questions from NQ-open, CC BY-SA 3.0)",
    ),
    KnownSet(
        "bbh_date_understanding", "bbh_date_understanding/test.jsonl", "dates", 250,
        "github.com/suzgunmirac/BIG-Bench-Hard", "MIT",
    ),
)  # fmt: skip


def default_data_root() -> Path:
    """``$TOOLRUN_EVAL_DATA``, else ``../shared/evals/data`` (the project's public sets)."""
    return Path(os.environ.get(DATA_ROOT_ENV, "../shared/evals/data"))


def resolve_data(spec: str | os.PathLike[str], root: Path | None = None) -> tuple[str, Path]:
    """(name, path) for a JSONL path or a set name such as ``svamp`` or ``asdiv_a``."""
    path = Path(spec)
    if path.is_file():
        return _name_of(path), path
    root = root or default_data_root()
    name = str(spec).replace("-", "_")
    known = {s.name: s for s in KNOWN_SETS}.get(name)
    candidates = [root / known.path] if known else []
    candidates += [root / name / "test.jsonl", *sorted(root.glob(f"*/test_{name}.jsonl"))]
    # "lama_trex_mask_final" names lama_trex/test_mask_final.jsonl
    candidates += [
        folder / f"test_{name.removeprefix(folder.name + '_')}.jsonl"
        for folder in sorted(root.glob("*"))
        if name.startswith(folder.name + "_")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return name, candidate
    where = f"under {root}" if root.is_dir() else f"in {root} (no such folder)"
    origin = f" {name} comes from {known.source} ({known.licence})." if known else ""
    raise ToolrunError(
        f"no evaluation set {str(spec)!r}: not a file, and not found {where}. toolrun ships no "
        f"evaluation data: give a JSONL file, or point --data-root (or ${DATA_ROOT_ENV}) at "
        f"a folder holding {known.path if known else name + '/test.jsonl'}.{origin} "
        "`toolrun eval --list` shows the sets it knows by name."
    )


def _name_of(path: Path) -> str:
    """svamp/test.jsonl -> svamp; asdiv/test_asdiv_a.jsonl -> asdiv_a;
    lama_trex/test_mask_final.jsonl -> lama_trex_mask_final; other.jsonl -> other."""
    if path.stem == "test":
        return path.parent.name
    if not path.stem.startswith("test_"):
        return path.stem
    rest = path.stem.removeprefix("test_")
    # a subset beside its set's test.jsonl is named after the set too
    if (path.parent / "test.jsonl").is_file() and path.parent.name not in rest:
        return f"{path.parent.name}_{rest}"
    return rest


def _family_for(name: str, examples: Sequence[Example]) -> Family:
    if examples and all(e.answer is not None for e in examples):
        return FAMILIES["math"]
    lowered = name.lower()
    if any(key in lowered for key in ("lama", "trex", "google_re")):
        return FAMILIES["fact"]
    if any(key in lowered for key in ("date", "temp", "situated")):
        return FAMILIES["dates"]
    return FAMILIES["qa"]


def _parse_row(row: dict[str, object], line: int, path: Path) -> Example:
    question = row.get("question")
    if not isinstance(question, str):
        raise ToolrunError(f"{path}:{line}: each row needs a 'question' string")
    answer, answers = row.get("answer"), row.get("answers")
    ident = str(row.get("id", f"{path.stem}-{line}"))
    solution = row.get("solution")
    if isinstance(answers, list):
        today = row.get("today")
        try:
            day = dt.date.fromisoformat(str(today)) if today is not None else None
        except ValueError:
            raise ToolrunError(
                f'{path}:{line}: "today" must be an ISO date like "2025-03-14", got {today!r}'
            ) from None
        return Example(ident, question, answers=tuple(str(a) for a in answers), today=day)
    if isinstance(answer, str) and (worked := split_worked_solution(answer)) is not None:
        return Example(ident, question, answer=worked[0], solution=worked[1])  # "... #### 18"
    if isinstance(answer, (int, float, str)):
        if isinstance(solution, str):
            return Example(ident, question, answer=float(answer), solution=solution)
        try:
            return Example(ident, question, answer=float(str(answer).replace(",", "")))
        except ValueError:
            return Example(ident, question, answers=(str(answer),))
    raise ToolrunError(f"{path}:{line}: each row needs 'answer' (a number) or 'answers' (a list)")


def _with_solutions(examples: list[Example], path: Path) -> list[Example]:
    """The worked solutions of ``original/<same name>`` beside the set, when it is the set's
    unmodified source row for row (same questions; GSM8K's answers there end in "#### N")."""
    source = path.parent / "original" / path.name
    if any(e.solution for e in examples) or not source.is_file():
        return examples
    solutions = []
    with source.open(encoding="utf-8") as handle:
        for text in handle:
            if text.strip():
                row = json.loads(text)
                answer = row.get("answer")
                worked = split_worked_solution(answer) if isinstance(answer, str) else None
                solutions.append((row.get("question"), worked[1] if worked else None))
    if len(solutions) != len(examples) or any(
        question != e.question or solution is None
        for (question, solution), e in zip(solutions, examples, strict=True)
    ):
        return examples
    return [
        replace(e, solution=solution) for (_, solution), e in zip(solutions, examples, strict=True)
    ]


def load_set(
    spec: str | os.PathLike[str],
    *,
    family: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    root: Path | None = None,
) -> EvalSet:
    """Read a set; ``limit`` keeps a random subset fixed by ``seed``, in file order.

    The subset for a larger limit contains the one for a smaller limit with the same seed, so a
    run can be extended without redoing what is done.
    """
    name, path = resolve_data(spec, root)
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if text.strip():
                examples.append(_parse_row(json.loads(text), line, path))
    examples = _with_solutions(examples, path)
    total = len(examples)
    if limit is not None and limit < total:
        order = list(range(total))
        random.Random(seed).shuffle(order)
        examples = [examples[i] for i in sorted(order[:limit])]
    if family is None:
        chosen = _family_for(name, examples)
    elif family in FAMILIES:
        chosen = FAMILIES[family]
    else:
        raise ToolrunError(f"unknown task {family!r}; choose from {', '.join(FAMILIES)}")
    return EvalSet(name, path, chosen, examples, total)
