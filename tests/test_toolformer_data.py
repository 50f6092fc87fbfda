"""Corpus loading, GSM8K mark stripping, proposers, call insertion and scoring against gold."""

from __future__ import annotations

import json
from datetime import date

from toolrun.toolformer.annotate import insert_calls, kept_calls
from toolrun.toolformer.data import Record, gsm8k_record, load_corpus, strip_marks
from toolrun.toolformer.sample import calculator_proposer, candidate_positions, number_value
from toolrun.toolformer.score import gold_position, precision_recall

ROW = {
    "question": "Natalia sold clips to 48 friends. How many?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "She earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 72",
}


def test_strip_marks_keeps_positions_before_results():
    text, marks = strip_marks(ROW["answer"])
    assert "<<" not in text
    assert [(m.expression, m.result) for m in marks] == [("48/2", "24"), ("0.2*50", "10")]
    assert text[marks[0].position :].startswith("24 clips")
    assert text[marks[1].position :].startswith("10.")  # after the "$"


def test_gsm8k_record_shifts_gold_and_rewrites_the_final_answer():
    record = gsm8k_record(ROW, 3)
    assert record.id == "gsm8k-3"
    assert record.text.startswith("Question: Natalia sold clips")
    assert record.text.endswith("\nThe answer is 72.")
    assert record.text[record.start :].startswith("Natalia sold 48/2")
    for mark in record.gold:
        assert record.text[mark.position :].startswith(mark.result)


def test_load_corpus_slices_and_plain_text(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [ROW] * 3 + [{"text": "plain 1 and 2", "id": "p"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.id for r in load_corpus(path, last=2)] == ["gsm8k-2", "p"]
    assert [r.id for r in load_corpus(path, skip=1, limit=1)] == ["gsm8k-1"]
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("hello 3\n")
    assert load_corpus(folder)[0].text == "hello 3"


def test_candidate_positions_are_whitespace_before_number_words():
    text = "Q: 5 apples.\nA: 5 + 3 = $8 now"
    positions = candidate_positions(text, start=text.index("A:"))
    assert [text[p:].split()[0] for p in positions] == ["5", "3", "$8"]
    assert all(text[p].isspace() for p in positions)
    every = candidate_positions(text, start=text.index("A:"), numbers_only=False)
    assert len(every) == 7  # "A:" starts at `start`: the space before it counts


def test_calculator_proposer_prefers_written_expression_then_recent_numbers():
    text = "He had 7 then 100 - 50 - 30 - 15 = 5 and 0.2 x 50 = 10"
    assert calculator_proposer(text, text.index(" 5 and"))[0] == "100 - 50 - 30 - 15"
    at_ten = calculator_proposer(text, text.rindex(" 10"))
    assert at_ten[:3] == ["0.2 * 50", "0.2 + 50", "0.2 - 50"]  # the pairs of the latest numbers
    plain = "Tom has 1,200 coins and 3 bags so each bag holds 400"
    proposals = calculator_proposer(plain, plain.index(" 400"))
    assert "1200 / 3" in proposals and "3 * 1200" not in proposals
    assert proposals[:2] == ["1200 + 3", "1200 * 3"]
    assert len(calculator_proposer(plain, plain.index(" 400"), last_n=2)) == 6


def test_calculator_proposer_reads_parenthesised_expressions():
    text = "So 48 + (48 / 2) = 72 and (3 + 4) * 2 = 14, but 5) * 2 = 10"
    assert calculator_proposer(text, text.index(" 72"))[0] == "48 + (48 / 2)"
    assert calculator_proposer(text, text.index(" 14"))[0] == "(3 + 4) * 2"
    # A chain that starts inside a parenthesis it never opened is not proposed as written.
    assert calculator_proposer(text, text.rindex(" 10"))[0] != "5) * 2"


def test_number_value():
    assert number_value("$1,200.50,") == 1200.5
    assert number_value("25%") == 25
    assert number_value("clips") is None


def test_insert_calls_uses_the_runtime_format():
    text = "So 48/2 = 24 clips and 24+1 = 25."
    calls = [
        {
            "tool": "Calculator",
            "position": text.index(" 24 clips"),
            "arguments": "48 / 2",
            "result": "24",
        },
        {
            "tool": "Calculator",
            "position": text.index(" 25."),
            "arguments": "24 + 1",
            "result": "25",
        },
    ]
    assert insert_calls(text, calls) == (
        "So 48/2 = [Calculator(48 / 2) → 24] 24 clips and 24+1 = [Calculator(24 + 1) → 25] 25."
    )


def test_kept_calls_best_per_position_and_both_criteria():
    scored = [
        {
            "tool": "Calculator",
            "position": 10,
            "l_none": 1.0,
            "candidates": [["a", "1", 2.0, 3.5], ["b", "2", 1.5, 2.0]],
        }
    ]
    # gain: L_nores - L+ = 1.5 (a) and 0.5 (b); paper: min(1.0, L_nores) - L+ = -1.0, -0.5.
    gain = kept_calls(scored, "gain", 1.0)
    assert [(c["arguments"], c["gain"]) for c in gain] == [("a", 1.5)]
    assert kept_calls(scored, "gain", 0.4)[0]["arguments"] == "a"
    assert kept_calls(scored, "paper", 0.0) == []
    assert kept_calls(scored, "paper", -0.6)[0]["arguments"] == "b"


def test_kept_calls_drop_a_call_the_text_already_made():
    def entry(position, args, result, l_plus):
        return {
            "tool": "Calendar",
            "position": position,
            "l_none": 3.0,
            "candidates": [[args, result, l_plus, 3.0]],
        }

    # Two positions each gain alone from the same day; once the first is in the text, the second
    # repeats it. A different result (another day) is a different call and stays.
    scored = [
        entry(30, "", "Monday", 1.0),
        entry(10, "", "Monday", 2.0),
        entry(50, "", "Tuesday", 1.0),
    ]
    kept = kept_calls(scored, "gain", 0.5)
    assert [(c["position"], c["result"]) for c in kept] == [(10, "Monday"), (50, "Tuesday")]
    # How the 0.3 adapter's texts were made: every position on its own gain.
    assert len(kept_calls(scored, "gain", 0.5, repeats=True)) == 3


def test_precision_recall_against_gold():
    record = gsm8k_record(ROW, 0)
    first, second = (gold_position(record.text, g.position) for g in record.gold)
    assert record.text[first:].startswith(" 24") and record.text[second:].startswith(" $10")
    line = {
        "original": record.text,
        "gold": record.to_json()["gold"],
        "calls": [
            {"tool": "Calculator", "position": first, "arguments": "48 / 2", "result": "24"},
            {"tool": "Calculator", "position": second, "arguments": "60 - 51", "result": "9"},
            {"tool": "Calendar", "position": 3, "arguments": "", "result": "Today"},
        ],
    }
    scores = precision_recall([line])
    assert scores["kept"] == 2 and scores["correct"] == 1 and scores["gold"] == 2
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5


def test_a_records_date_survives_the_trip_to_a_ray_worker():
    from toolrun.toolformer.ray_annotate import _record

    record = Record(id="a", text="Today is Friday.", date=date(2031, 3, 14))
    assert _record(json.loads(json.dumps(record.to_json()))) == record
    plain = Record(id="b", text="no date")
    assert "date" not in plain.to_json() and _record(plain.to_json()) == plain
