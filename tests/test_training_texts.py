"""The default adapter's Calculator texts: scripts/make_step_texts.py (one-line answers composed
from GSM8K marks) and scripts/make_one_step_texts.py (generated one-step problems). Each answer's
expression must compute its stated answer, and the annotator must read the row as GSM8K."""

import importlib.util
import random
import re
from pathlib import Path
from types import ModuleType

import pytest

from toolrun.toolformer.data import gsm8k_record
from toolrun.toolformer.sample import calculator_proposer
from toolrun.tools.calculator import evaluate_exact

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step(row: dict[str, str]) -> tuple[str, str]:
    """A generated row's expression ("23 * 17") and final answer ("391")."""
    expression, rest = row["answer"].split(" = ", 1)
    return expression, rest.rsplit("#### ", 1)[1]


make_step_texts = _script("make_step_texts")
make_one_step_texts = _script("make_one_step_texts")


def test_two_steps_compose_into_one_line():
    solution = "In May she sold 48/2=<<48/2=24>>24 clips.\nIn all 48+24=<<48+24=72>>72.\n#### 72"
    answer = make_step_texts.one_line_answer(solution)
    assert answer == "48 + (48 / 2) = <<48+(48/2)=72>>72.\n#### 72"
    record = gsm8k_record({"question": "How many clips?", "answer": answer}, 0)
    assert record.text.endswith("Answer: 48 + (48 / 2) = 72.\nThe answer is 72.")
    # the proposer reads the composed expression where its result is written
    position = record.text.index(" 72.")
    assert calculator_proposer(record.text, position)[0] == "48 + (48 / 2)"
    # a step whose result no later step uses cannot be one expression
    unused = "A=<<2*3=6>>6, B=<<4+5=9>>9.\n#### 9"
    assert make_step_texts.one_line_answer(unused) is None


def test_generated_problems_are_one_correct_step():
    rng = random.Random(7)
    ops = set()
    for _ in range(300):
        row = make_one_step_texts.problem(rng)
        expression, result = _step(row)
        assert evaluate_exact(expression) == evaluate_exact(result)
        assert int(result) > 0 and "{" not in row["question"]
        ops.add(expression.split()[1])
        record = gsm8k_record(row, 0)
        assert record.text.endswith(f"{expression} = {result}.\nThe answer is {result}.")
        assert [(mark.expression, mark.result) for mark in record.gold] == [
            (expression.replace(" ", ""), result)
        ]
    assert ops == {"+", "-", "*", "/"}


def test_more_templates_and_distractors_keep_one_correct_step():
    rng = random.Random(11)
    templates = make_one_step_texts.TEMPLATES + make_one_step_texts.MORE_TEMPLATES
    distracted = 0
    for _ in range(400):
        row = make_one_step_texts.problem(rng, templates, distractors=0.5)
        expression, result = _step(row)
        assert evaluate_exact(expression) == evaluate_exact(result) and int(result) > 0
        question = row["question"]
        assert "{" not in question and question.endswith("?") and ".." not in question
        numbers = {int(n) for n in re.findall(r"\d+", question)}
        operands = {int(n) for n in re.findall(r"\d+", expression)}
        assert operands <= numbers  # the operands are in the problem...
        extra = numbers - operands
        if extra:  # ...and a distractor brings one number that is not an operand
            distracted += 1
            assert len(extra) == 1 and question.count(". ") >= 2
    assert 120 < distracted < 280  # about half of 400


def test_bare_questions_are_one_correct_step_and_never_the_readme_question():
    rng = random.Random(5)
    bare, avoid = make_one_step_texts.BARE_TEMPLATES, make_one_step_texts.README_OPERANDS
    rows = make_one_step_texts.problems(rng, 2000, bare, avoid=avoid)
    ops = set()
    for row in rows:
        expression, result = _step(row)
        assert evaluate_exact(expression) == evaluate_exact(result) and int(result) > 0
        assert row["question"].endswith("?") and "{" not in row["question"]
        numbers = {int(n) for n in re.findall(r"\d+", row["question"])}
        assert not {23, 17} <= numbers
        ops.add(expression.split()[1])
    assert ops == {"+", "-", "*", "/"}
    # unfiltered, 20,000 draws do ask 23 and 17 (about 1 in 2,800), so the filter is needed
    drawn = [
        make_one_step_texts.problem(rng, make_one_step_texts.BARE_TEMPLATES) for _ in range(20000)
    ]
    assert any({23, 17} <= {int(n) for n in re.findall(r"\d+", r["question"])} for r in drawn)


def test_one_mark_rows_are_those_one_call_answers():
    make_heldout_sets = _script("make_heldout_sets")
    one = {"answer": "She has 3*4=<<3*4=12>>12 apples.\n#### 12"}
    unmarked_step = {"answer": "Paislee has 3/4*500=<<3/4*500=375>>375, so 500-375 more.\n#### 125"}
    no_mark = {"answer": "Half of 10 is 5.\n#### 5"}
    two = {"answer": "<<2*3=6>>6 and <<6+1=7>>7\n#### 7"}
    assert make_heldout_sets.one_mark_answers(one)
    assert not any(map(make_heldout_sets.one_mark_answers, (unmarked_step, no_mark, two)))


make_dev_problems = _script("make_dev_problems")


def test_dev_problems_are_right_and_share_nothing_with_the_training_templates():
    rng = random.Random(3)
    for templates, steps in ((make_dev_problems.ONE_STEP, 1), (make_dev_problems.TWO_STEP, 2)):
        for _ in range(300):
            row = make_dev_problems.problem(rng, templates)
            expression, answer = _step(row)
            assert row["steps"] == steps
            assert len(re.findall(r" [-+*/] ", expression)) == steps, expression
            assert evaluate_exact(expression) == int(answer) > 0, row
    # other names and items than the texts the adapters were trained on
    train = make_one_step_texts
    assert not {n for n, _ in make_dev_problems.NAMES} & {n for n, _ in train.NAMES}
    assert not set(make_dev_problems.ITEMS) & set(train.ITEMS)


def test_answer_only_texts_write_the_expression_only_in_the_call():
    answer_only = _script("answer_only_texts").answer_only
    one_line = make_step_texts.one_line_answer(
        "In May 48/2=<<48/2=24>>24 clips.\nIn all 48+24=<<48+24=72>>72.\n#### 72"
    )
    assert answer_only(one_line) == "<<48+(48/2)=72>>72.\n#### 72"
    generated = make_one_step_texts.problem(random.Random(0))["answer"]
    assert re.fullmatch(r"<<\d+[-+*/]\d+=(\d+)>>\1\.\n#### \1", answer_only(generated))
    record = gsm8k_record({"question": "How many clips?", "answer": answer_only(one_line)}, 0)
    assert record.text.endswith("Answer: 72.\nThe answer is 72.")
    assert [(g.expression, g.result) for g in record.gold] == [("48+(48/2)", "72")]
    with pytest.raises(ValueError, match="no written expression"):
        answer_only("no mark here\n#### 3")


# A ChatML template written here (with a default system turn, as SmolLM2's has).
CHATML = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe brief.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chat_copies_continue_what_chat_feeds_the_model():
    from toolrun import templates
    from toolrun.testing import ScriptedModel

    as_chat = _script("chat_texts").as_chat
    model = ScriptedModel("", chat_template=CHATML)
    answer = "[Calculator(24 * 17) → 408] 408.\nThe answer is 408."
    chat = as_chat(model, CHATML, f"Question: How many pens?\nAnswer: {answer}")
    prompt = templates.render(model, CHATML, [{"role": "user", "content": "How many pens?"}])
    assert prompt.endswith("<|im_start|>assistant\n") and "Be brief." in prompt
    # The end of the turn is left to finetune(), which ends every text with the EOS token.
    assert chat == prompt + answer
    with pytest.raises(ValueError, match="not a question"):
        as_chat(model, CHATML, "Today is Monday.")
