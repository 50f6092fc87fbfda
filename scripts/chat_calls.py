"""Does an adapter still call the Calculator in a chat conversation?

The adapters are trained on plain `Question: ...\\nAnswer:` texts, but `toolrun.chat` and
`toolrun serve` render a conversation with the model's chat template, where the answer opens the
assistant's turn. This asks 41 questions as one-message chats (every sixth problem of the dev set,
scripts/make_dev_problems.py, and the server test's) and counts the answers with a call, and the
right ones (the stated answer, else the first number, as `toolrun eval` scores).

    python scripts/chat_calls.py                                   # the default adapter
    python scripts/chat_calls.py --adapter build/model_ao/adapter \
        -o benchmarks/results/chat_calls_ao.json
    python scripts/chat_calls.py --second-turn       # each question after an earlier exchange
    python scripts/chat_calls.py --system "You are a helpful assistant."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import toolrun
from toolrun.evaluation.scoring import score_math, split_worked_solution

SERVER_TEST_QUESTION = "A box holds 24 pens. How many pens are in 17 boxes?"
SERVER_TEST_ANSWER = 24 * 17


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default=None, help="LoRA adapter (default: the built-in one)")
    parser.add_argument("--dev", type=Path, default=Path("build/heldout/dev_templates.jsonl"))
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON with every answer")
    parser.add_argument("--system", default=None, help="a system message before every question")
    parser.add_argument(
        "--second-turn",
        action="store_true",
        help="ask each question as a chat's second turn, after the previous question and the "
        "model's own answer to it",
    )
    args = parser.parse_args()
    with args.dev.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    golds = [_gold(row["answer"]) for row in rows[::6]] + [float(SERVER_TEST_ANSWER)]
    questions = [row["question"] for row in rows[::6]] + [SERVER_TEST_QUESTION]
    if args.adapter:
        model = toolrun.load_model(toolrun.BASE_MODEL, adapter=args.adapter)
    else:
        model = toolrun.load_model()

    def ask(messages: list[dict[str, str]]) -> toolrun.Generation:
        opening = [{"role": "system", "content": args.system}] if args.system else []
        return toolrun.chat(
            opening + messages, model=model, tools=["calculator"], max_new_tokens=60
        )

    answers = []
    for i, (question, gold) in enumerate(zip(questions, golds, strict=True)):
        earlier: list[dict[str, str]] = []
        if args.second_turn:
            before = questions[i - 1]  # the first question follows the last
            reply = ask([{"role": "user", "content": before}]).text
            earlier = [{"role": "user", "content": before}, {"role": "assistant", "content": reply}]
        out = ask([*earlier, {"role": "user", "content": question}])
        right = score_math(out.text, gold)[0]
        answers.append(
            {"question": question, "text": out.text, "calls": len(out.calls), "right": right}
        )
    with_call = sum(answer["calls"] > 0 for answer in answers)
    right = sum(answer["right"] for answer in answers)
    print(
        f"{args.adapter or 'default adapter'}: {with_call} of {len(answers)} chat answers call, "
        f"{right} are right"
    )
    if args.output:
        summary = {
            "adapter": args.adapter,
            "system": args.system,
            "second_turn": args.second_turn,
            "with_call": with_call,
            "right": right,
            "questions": len(answers),
        }
        args.output.write_text(json.dumps({**summary, "answers": answers}, indent=1) + "\n")


def _gold(solution: str) -> float:
    found = split_worked_solution(solution)
    if found is None:
        raise SystemExit(f"a dev problem without a final answer: {solution!r:.80}")
    return found[0]


if __name__ == "__main__":
    main()
