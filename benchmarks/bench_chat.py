"""A chat-format call mid-generation against the stop-and-resubmit pattern, as same-run ratios.

    python benchmarks/bench_chat.py                  # writes benchmarks/results/chat.json
    python benchmarks/bench_chat.py --tiny           # a tiny random Llama (seconds; CI-safe)

A conversation of about 1,000 tokens; the model writes a Hermes ``<tool_call>`` and ends its turn.
Three ways to get the model going again after the tool answered, each timed from the moment the
result is known to the logits of the next token:

1. toolrun: feed the end of turn and the template's text for the tool message on the cache;
2. resubmit: what an OpenAI-style client makes a server do: render the whole conversation with
   the tool message and prefill all of it (goal: toolrun <= 0.2 of this);
3. resubmit with a cached prefix, the best case for other runtimes: the conversation up to the
   end of the original prompt is in a prefix cache, everything after it is prefilled.

Repeats are interleaved; the figures are medians with their range. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.templates import HERMES_CHATML, render
from toolrun.testing import ForceText
from toolrun.tooldef import TOOL_ATTRIBUTE

RESULTS = Path(__file__).parent / "results"
CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1234, "b": 4321}}\n</tool_call><|im_end|>'
PARAGRAPH = (
    "The city council met on Tuesday to discuss the budget for the coming year. Members "
    "debated the cost of repairing the old bridge, the salaries of teachers, and a new bus "
    "line that would connect the northern districts with the station. "
)


@toolrun.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def conversation(model: TransformersModel, context_tokens: int) -> list[dict]:
    """A user message long enough that the rendered prompt has about ``context_tokens``."""
    text = ""
    while len(model.encode(text)) < context_tokens - 150:
        text += PARAGRAPH
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": text + "\nWhat is 1234 + 4321?"},
    ]


def timed_feed(model: TransformersModel, prefix: list[int], ids: list[int]) -> float:
    """Seconds to feed ``ids`` on a session that already holds ``prefix`` (fed untimed)."""
    session = model.new_session()
    if prefix:
        session.feed(prefix)
    start = time.perf_counter()
    session.feed(ids)
    return time.perf_counter() - start


def measure(model: TransformersModel, context_tokens: int, repeats: int) -> dict:
    messages = conversation(model, context_tokens)
    built: toolrun.Tool = getattr(add, TOOL_ATTRIBUTE)  # what @toolrun.tool attached
    schema = [built.json_schema()]
    prompt_ids = model.encode(render(model, HERMES_CHATML, messages, tools=schema))
    forcer = ForceText(model, len(prompt_ids), CALL)
    out = toolrun.chat(
        messages,
        model=model,
        tools=[add],
        call_format="hermes",
        chat_template=HERMES_CHATML,
        max_new_tokens=len(forcer.ids) + 1,
        logits_processor=[forcer],
    )
    assert out.calls and out.calls[0].result == "5555", out.text
    generated = out.token_ids
    # What toolrun fed after the call: the end of turn and the template's text (token ids).
    splice_start = len(forcer.ids) - 1  # the end-of-turn token is the last forced one
    splice = generated[splice_start : len(generated) - 1]
    before_splice = prompt_ids + generated[:splice_start]
    full = model.encode(render(model, HERMES_CHATML, [*messages, *out.messages[:2]], tools=schema))
    assert full[: len(prompt_ids)] == prompt_ids
    rest = full[len(prompt_ids) :]

    arms: dict[str, list[float]] = {"splice": [], "resubmit": [], "cached_prefix": []}
    timed_feed(model, [], prompt_ids[:32])  # warm up
    for _ in range(repeats):
        arms["splice"].append(timed_feed(model, before_splice, splice))
        arms["resubmit"].append(timed_feed(model, [], full))
        arms["cached_prefix"].append(timed_feed(model, prompt_ids, rest))
    median = {k: statistics.median(v) for k, v in arms.items()}
    return {
        "context_tokens": len(prompt_ids),
        "splice_tokens": len(splice),
        "resubmit_tokens": len(full),
        "cached_prefix_tokens": len(rest),
        "seconds": {
            k: {"median": median[k], "min": min(v), "max": max(v)} for k, v in arms.items()
        },
        "splice_vs_resubmit": median["splice"] / median["resubmit"],
        "splice_vs_cached_prefix": median["splice"] / median["cached_prefix"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama (fast)")
    parser.add_argument("--context", type=int, default=1000, help="prompt tokens")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "chat.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        from transformers import AutoTokenizer

        from toolrun.models import _resolve_folder
        from toolrun.testing import tiny_llama

        tokenizer = AutoTokenizer.from_pretrained(_resolve_folder(None))
        model = TransformersModel(tiny_llama(tokenizer), tokenizer, name="tiny-llama")
    else:
        loaded = toolrun.load_model(toolrun.BASE_MODEL, backend="transformers")
        assert isinstance(loaded, TransformersModel)
        model = loaded
    result = {
        "model": model.name,
        "threads": args.threads,
        **measure(model, args.context, args.repeats),
    }
    print(json.dumps(result, indent=2))
    if not args.tiny:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
