"""Write an adapter's training texts, with chat copies, from annotated Calculator and Calendar runs.

The annotated texts are `Question: ...\\nAnswer: ...`; `toolrun.chat` and `toolrun serve` render
a conversation with the model's chat template instead, where the answer opens the assistant's
turn. An adapter trained on the plain texts alone learns to call after "Answer:" and not at the
start of a turn (the answer-only candidate called in 1 of 41 chats, scripts/chat_calls.py). So
every other Calculator text is written a second time as a one-message chat, rendered by the
model's own template (question as the user's message, the annotated answer as the assistant's),
as `toolrun.chat` renders it.

Calls are re-selected from the stored losses (criterion gain, tau_f 0.5, a repeated call dropped,
as `toolrun finetune --criterion` does). Calculator texts that kept no call are left out (an
answer-only text without one teaches answering in the head); every Calendar text stays, with or
without a call (a text about its own day teaches the date stepping that follows the call).

    python scripts/chat_texts.py --calculator a0.jsonl a1.jsonl --calendar dates.jsonl \
        -o texts.jsonl
    toolrun finetune texts.jsonl ...           # a JSONL with a "text" field a line
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import toolrun
from toolrun import templates
from toolrun.toolformer.data import ANSWER, QUESTION
from toolrun.toolformer.finetune import load_texts


def as_chat(model: toolrun.Model, template: str, text: str) -> str:
    """``text`` ("Question: q\\nAnswer: a") as the conversation [user q, assistant a] rendered
    by ``template``; raises ValueError for a text of another shape."""
    if not text.startswith(QUESTION) or ANSWER not in text:
        raise ValueError(f"not a question and its answer: {text[:80]!r}")
    question, answer = text[len(QUESTION) :].split(ANSWER, 1)
    user = [{"role": "user", "content": question}]
    prompt = templates.render(model, template, user)
    whole = templates.render(
        model, template, [*user, {"role": "assistant", "content": answer}],
        add_generation_prompt=False,
    )  # fmt: skip
    # The training text must continue exactly what chat() feeds the model.
    if not whole.startswith(prompt):
        raise ValueError("the template renders the assistant's turn unlike its generation prompt")
    # finetune() ends every text with the EOS token, which ends the turn in ChatML.
    end = model.template_tokens.get("eos_token", "")
    whole = whole.rstrip("\n")
    return whole[: -len(end)] if end and whole.endswith(end) else whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calculator", nargs="+", type=Path, required=True)
    parser.add_argument("--calendar", nargs="*", type=Path, default=[])
    parser.add_argument("--tau-f", type=float, default=0.5)
    parser.add_argument("--chat-every", type=int, default=2, help="a chat copy of every Nth text")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    select = {"criterion": "gain", "tau_f": args.tau_f}
    calculator = load_texts(args.calculator, only_with_calls=True, tools=["calculator"], **select)
    calendar = load_texts(args.calendar, tools=["calendar"], **select) if args.calendar else []
    model = toolrun.load_model(toolrun.BASE_MODEL, backend="transformers")
    template = templates.template_for(model, "toolformer", tools_given=True)
    chats = [as_chat(model, template, text) for text in calculator[:: args.chat_every]]
    with open(args.output, "w", encoding="utf-8") as f:
        for text in calculator + chats + calendar:
            f.write(json.dumps({"text": text}) + "\n")
    print(
        f"{len(calculator)} Calculator texts with a call, {len(chats)} of them again as chats, "
        f"{len(calendar)} Calendar texts -> {args.output}"
    )


if __name__ == "__main__":
    main()
