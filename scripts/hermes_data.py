"""Render Calculator annotations as Hermes chat conversations: the Hermes adapter's training texts.

    python scripts/hermes_data.py build/hermes/train.jsonl -o build/hermes/chat.jsonl \\
        --criterion gain --tau-f 0.5

Input: an annotation file from ``toolrun annotate`` (GSM8K texts ``Question: ...\\nAnswer: ...``,
every candidate's losses stored, so ``--criterion``/``--tau-f`` re-select the calls exactly as
``toolrun finetune`` does for the bracket adapter). Each text becomes one conversation:

    system   the Calculator's JSON schema (toolrun's HERMES_CHATML tool block)
    user     Question: ...
    assistant  the answer up to the call, then <tool_call>{"name": "Calculator", ...}</tool_call>
    tool       the result
    assistant  the answer resumed after the result (repeated, as in the text), up to the next call
    ...

The training text is that conversation rendered with ``toolrun.templates.HERMES_CHATML`` and
the registry's ``Tool.json_schema()``, the same template and schema ``toolrun.chat(...,
call_format="hermes")`` renders at inference, and its last ``<|im_end|>`` is left to
``toolrun finetune``, which appends the end-of-sequence token (``<|im_end|>`` for SmolLM2).

Every text is checked against what the runtime feeds at inference: the prompt, what the model
writes in each turn, its end of turn, and the splice ``templates.splice_text`` computes (the
runtime's own function) must concatenate to the training text, as text and token for token.
Texts that fail the check are reported and left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolrun import ToolRegistry, load_model
from toolrun.backends.base import Model
from toolrun.formats.hermes import HermesFormat
from toolrun.models import BASE_MODEL
from toolrun.syntax import sanitize_result
from toolrun.templates import HERMES_CHATML, assistant_message, render, splice_text
from toolrun.toolformer.annotate import kept_calls, load_annotations

QUESTION = "Question: "
ANSWER = "\nAnswer: "
END_OF_TURN = "<|im_end|>"


def question_of(row: Mapping[str, Any]) -> str:
    """The user turn: ``Question: ...`` as the annotated text's head holds it."""
    head = str(row["original"])[: int(row["start"])]
    if not head.startswith(QUESTION) or not head.endswith(ANSWER):
        raise ValueError(f"{row['id']}: not a GSM8K-style 'Question: ...\\nAnswer: ' text")
    return head[: -len(ANSWER)]


def conversation(
    row: Mapping[str, Any], calls: Sequence[Mapping[str, Any]], registry: ToolRegistry
) -> list[dict[str, Any]]:
    """The user turn, then the answer cut at each call into assistant and tool messages.

    A call sits at the whitespace before the number it computes; the turn before it ends with
    the call, the tool message carries the result, and the next turn resumes at that number.
    Contents are stripped, as the runtime strips what the model writes into a message.
    """
    original, start = str(row["original"]), int(row["start"])
    messages: list[dict[str, Any]] = [{"role": "user", "content": question_of(row)}]
    cursor = start
    for n, call in enumerate(sorted(calls, key=lambda c: int(c["position"]))):
        tool = registry.get(str(call["tool"]))
        if tool is None:
            raise ValueError(f"{row['id']}: no tool {call['tool']!r} in the registry")
        position = int(call["position"])
        call_id = f"call_{n}"
        arguments = tool.bind(str(call["arguments"]))  # the bracket text as JSON arguments
        content = original[cursor:position].strip()
        messages.append(assistant_message(content, [(call_id, tool.name, arguments)]))
        result = sanitize_result(
            str(call["result"]),
            tool.max_result_chars,
            (END_OF_TURN, "<|im_start|>", "<|endoftext|>"),
            markers=HermesFormat.markers,
        )
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "name": tool.name, "content": result}
        )
        cursor = position
    messages.append({"role": "assistant", "content": original[cursor:].strip()})
    return messages


def training_text(model: Model, messages: Sequence[Mapping[str, Any]], schemas: Any) -> str:
    """The conversation as HERMES_CHATML renders it, without the final end of turn."""
    text = render(model, HERMES_CHATML, messages, tools=schemas, add_generation_prompt=False)
    closing = END_OF_TURN + "\n"
    if not text.endswith(closing):
        raise ValueError("the rendered conversation does not end with an assistant turn")
    return text[: -len(closing)]


def inference_pieces(
    model: Model, messages: Sequence[Mapping[str, Any]], schemas: Any
) -> list[tuple[str, str]]:
    """What the runtime feeds, piece by piece: ``(kind, text)`` with kind ``prompt``,
    ``written`` (the model's own tokens), ``end`` (its end of turn) or ``splice``."""
    prompt = render(model, HERMES_CHATML, messages[:1], tools=schemas)
    pieces = [("prompt", prompt)]
    done = 1
    while done < len(messages):
        assistant = messages[done]
        tools: list[Mapping[str, Any]] = []
        while done + 1 + len(tools) < len(messages) and messages[done + 1 + len(tools)]["role"] == (
            "tool"
        ):
            tools.append(messages[done + 1 + len(tools)])
        before = render(model, HERMES_CHATML, messages[:done], tools=schemas)
        with_turn = render(
            model,
            HERMES_CHATML,
            [*messages[:done], assistant],
            tools=schemas,
            add_generation_prompt=False,
        )
        written = with_turn[len(before) :]
        if not with_turn.startswith(before) or not written.endswith(END_OF_TURN + "\n"):
            raise ValueError("an assistant turn does not extend the prompt before it")
        pieces.append(("written", written[: -len(END_OF_TURN + "\n")]))
        if not tools:
            break
        pieces.append(("end", END_OF_TURN))
        spliced = splice_text(
            model, HERMES_CHATML, messages[:done], assistant, tools, END_OF_TURN, tools=schemas
        )
        pieces.append(("splice", spliced))
        done += 1 + len(tools)
    return pieces


def check(model: Model, text: str, pieces: Sequence[tuple[str, str]]) -> str | None:
    """Why the training text differs from what inference feeds, or None when it does not."""
    if "".join(p for _, p in pieces) != text:
        return "text differs"
    fed: list[int] = []
    for _, piece in pieces:
        fed += model.encode(piece)
    if fed != model.encode(text):
        return "tokens differ"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", help="JSONL from `toolrun annotate`")
    parser.add_argument("-o", "--output", required=True, help="JSONL of rendered chat texts")
    parser.add_argument("--criterion", choices=["gain", "paper"], default="gain")
    parser.add_argument("--tau-f", type=float, default=0.5)
    parser.add_argument("--tools", default="calculator", help="tools whose calls are kept")
    parser.add_argument("--model", default=BASE_MODEL, help="model whose tokenizer renders")
    args = parser.parse_args(argv)

    registry = ToolRegistry([t.strip() for t in args.tools.split(",") if t.strip()])
    schemas = [t.json_schema() for t in registry]
    model = load_model(args.model)
    rows = load_annotations(args.annotations)
    lengths: list[int] = []
    failures: dict[str, int] = {}
    calls_total = with_calls = 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            calls = [
                c
                for c in kept_calls(row["scored"], args.criterion, args.tau_f)
                if c["tool"] in registry
            ]
            messages = conversation(row, calls, registry)
            text = training_text(model, messages, schemas)
            problem = check(model, text, inference_pieces(model, messages, schemas))
            if problem is not None:
                failures[problem] = failures.get(problem, 0) + 1
                print(f"{row['id']}: {problem}; left out", file=sys.stderr)
                continue
            lengths.append(len(model.encode(text)) + 1)  # + the end of turn finetune appends
            calls_total += len(calls)
            with_calls += bool(calls)
            record = {"id": row["id"], "text": text, "calls": calls, "messages": messages}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    ordered = sorted(lengths)
    stats = {
        "annotated_texts": len(rows),
        "texts": len(lengths),
        "texts_with_calls": with_calls,
        "calls": calls_total,
        "left_out": failures,
        "criterion": args.criterion,
        "tau_f": args.tau_f,
        "tokens_mean": round(statistics.fmean(lengths), 1) if lengths else 0,
        "tokens_median": ordered[len(ordered) // 2] if ordered else 0,
        "tokens_p90": ordered[int(len(ordered) * 0.9)] if ordered else 0,
        "tokens_max": ordered[-1] if ordered else 0,
    }
    out.with_suffix(".stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    return 0 if lengths else 1


if __name__ == "__main__":
    sys.exit(main())
