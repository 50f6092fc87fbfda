"""`make demo`: the default model answers questions, calling tools as it writes.

    python examples/demo.py [--model PATH] [--quantize nf4] [--top-k-start K]

Text streams as it is generated. Each call is run at its arrow and its result is spliced into the
model's cache; the summary after each answer lists the calls the runtime ran.
"""

from __future__ import annotations

import argparse
import time

import toolrun

QUESTIONS = [
    "A baker makes 48 muffins and sells them in boxes of 6. Each box costs $4. "
    "How much money does he make?",
    "Tom reads 23 pages a day for 17 days. How many pages does he read?",
    "A shirt costs $25 and is on sale for 20% off. What is the sale price?",
    "What is today's date?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or .gguf (default: built in)")
    parser.add_argument("--quantize", choices=["nf4", "int8"], default=None)
    parser.add_argument(
        "--top-k-start",
        type=int,
        default=None,
        metavar="K",
        help="open a call whenever '[' is in the top K (paper: 10)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()

    started = time.perf_counter()
    model = toolrun.load_model(args.model, quantize=args.quantize)
    # The default model was finetuned to call tools by itself; another model gets the paper's
    # rule (open a call whenever "[" is among its top 10 tokens) unless told otherwise.
    top_k = args.top_k_start if args.top_k_start is not None else (0 if args.model is None else 10)
    print(f"model: {model.name} ({model.backend}), loaded in {time.perf_counter() - started:.1f} s")

    for question in QUESTIONS:
        prompt = f"Question: {question}\nAnswer:"
        print(f"\n{prompt}", end="", flush=True)
        for event in toolrun.stream(
            prompt,
            model=model,
            tools=["calculator", "calendar"],
            stop=["\nQuestion:", "\n\n"],
            max_new_tokens=args.max_new_tokens,
            api_start_top_k=top_k,
        ):
            if isinstance(event, toolrun.TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, toolrun.Done):
                out = event.generation
        print()
        for call in out.calls:
            outcome = call.result if call.error is None else f"error: {call.error}"
            print(
                f"  -> ran {call.name}({call.arguments_text}) = {outcome} "
                f"in {call.latency_s * 1000:.1f} ms"
            )
        print(
            f"  ({out.generated_tokens} tokens, {out.tokens_per_second:.1f} tokens/s, "
            f"{len(out.calls)} call(s), finish: {out.finish_reason})"
        )


if __name__ == "__main__":
    main()
