"""Batched decoding on llama.cpp: many KV sequences in one context, on the default model's GGUF.

llama.cpp's own arithmetic depends a little on what shares a pass and where a sequence's cells
lie (its 8-bit activation rounding turns summation-order noise into logit differences of up to
about 0.7 here), so batched rows are compared with single sessions by their greedy choice and
by correlation, and greedy texts are allowed to part only at a near tie.
"""

from __future__ import annotations

import gc
import time

import pytest
import torch

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install 'toolrun[llama]')"
)

import toolrun
from toolrun import ModelLoadError
from toolrun.backends.llamacpp import LlamaCppModel, load_llamacpp
from toolrun.backends.llamacpp_batch import LlamaCppBatch
from toolrun.batch import open_batch
from toolrun.testing import PlannedCalls

PROMPTS = [
    "Question: Tom has 2 apples and buys 3 more. How many apples does he have?\nAnswer:",
    "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
]
NEAR_TIE = 1.5  # logit gap under which llama.cpp's own noise may flip a greedy choice


@pytest.fixture(scope="module")
def model() -> LlamaCppModel:
    try:
        return load_llamacpp()
    except ModelLoadError as exc:
        pytest.skip(f"the default GGUF is not installed: {exc}")


def alone(model: LlamaCppModel, *feeds: list[int]) -> torch.Tensor:
    """The logits after feeding ``feeds`` one after another to a fresh session."""
    session = model.new_session()
    try:
        for ids in feeds:
            logits = session.feed(ids)
        return logits
    finally:
        session.close()


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        int(a.argmax()) == int(b.argmax())
        and float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.999
    )


def test_the_runtime_gets_the_models_own_batch(model: LlamaCppModel) -> None:
    assert isinstance(open_batch(model), LlamaCppBatch)


def test_rows_of_different_lengths_prefill_in_one_pass(model: LlamaCppModel) -> None:
    batch, sequences = model.new_batch(), model.sequences
    ids = {key: model.encode(p) for key, p in enumerate(PROMPTS)}
    passes, tokens = sequences.passes, sequences.tokens
    logits = batch.step(ids)
    assert sequences.passes == passes + 1
    assert sequences.tokens == tokens + sum(map(len, ids.values()))
    for key, fed in ids.items():
        assert close(logits[key], alone(model, fed))
    batch.close()


def test_a_paused_row_costs_nothing_and_resumes_where_it_was(model: LlamaCppModel) -> None:
    batch, sequences = model.new_batch(), model.sequences
    a, b = model.encode(PROMPTS[0]), model.encode(PROMPTS[2])
    batch.step({"a": a, "b": b})
    steps = [model.encode(" He"), model.encode(" has"), model.encode(" five")]
    tokens = sequences.tokens
    for ids in steps:  # "b" waits for its tool: only "a" is computed
        out = batch.step({"a": ids})
    assert sequences.tokens == tokens + sum(map(len, steps))
    assert close(out["a"], alone(model, a, *steps))
    resumed = batch.step({"b": model.encode(" Paris")})["b"]
    assert close(resumed, alone(model, b, model.encode(" Paris")))
    batch.close()


def test_a_spliced_result_rides_in_the_same_pass_as_other_rows_tokens(
    model: LlamaCppModel,
) -> None:
    batch, sequences = model.new_batch(), model.sequences
    a, b = model.encode(PROMPTS[0]), model.encode(PROMPTS[1])
    batch.step({"a": a, "b": b})
    head = model.encode(" [Calculator(2 + 3) →")
    splice = [head[-1], *model.encode(" 5]")]
    passes = sequences.passes
    out = batch.step({"a": splice, "b": model.encode("1")})
    assert sequences.passes == passes + 1
    assert close(out["a"], alone(model, a, splice))
    assert close(out["b"], alone(model, b, model.encode("1")))
    batch.close()


def test_rows_join_and_leave_and_their_cells_are_freed(model: LlamaCppModel) -> None:
    batch, sequences = model.new_batch(), model.sequences
    batch.step({"a": model.encode(PROMPTS[0])})
    seq_a = batch.rows["a"]
    batch.step({"a": model.encode(" 5"), "b": model.encode(PROMPTS[2])})  # b joins a running row
    batch.remove(["a"])
    assert seq_a not in sequences.lengths
    out = batch.step({"b": model.encode(" Paris"), "c": model.encode(PROMPTS[1])})
    assert close(out["b"], alone(model, model.encode(PROMPTS[2]), model.encode(" Paris")))
    assert close(out["c"], alone(model, model.encode(PROMPTS[1])))
    batch.close()
    assert not set(batch.rows) and all(s not in sequences.lengths for s in (seq_a,))


def test_the_cell_pool_grows_without_re_encoding(model: LlamaCppModel) -> None:
    small = load_llamacpp(n_ctx=200)  # a pool of 256 cells: four 100-token rows do not fit
    sequences = small.sequences
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    ids = small.encode(text)[:120]
    batch = small.new_batch()
    for key in range(4):  # one after another: each row's cells are copied when the pool grows
        batch.step({key: ids[: 100 + key]})
    assert sequences.grown >= 1 and sequences.cells >= 4 * 100
    out = batch.step({key: ids[100 + key : 103 + key] for key in range(4)})
    assert sequences.tokens == sum(103 + key for key in range(4))  # nothing evaluated twice
    for key in range(4):
        assert close(out[key], alone(small, ids[: 103 + key]))
    batch.close()


def test_an_abandoned_session_frees_its_cells(model: LlamaCppModel) -> None:
    session = model.new_session()
    session.feed(model.encode(PROMPTS[2]))
    seq = session.seq
    assert seq in model.sequences.lengths
    del session
    gc.collect()
    assert seq not in model.sequences.lengths


def test_interleaved_sessions_do_not_disturb_each_other(model: LlamaCppModel) -> None:
    first, second = model.new_session(), model.new_session()
    a, b = model.encode(PROMPTS[0]), model.encode(PROMPTS[1])
    first.feed(a[:5])
    second.feed(b)
    out = first.feed(a[5:])
    assert close(out, alone(model, a[:5], a[5:]))
    assert first.tokens_evaluated == len(a)
    first.close()
    second.close()


@toolrun.tool(name="Calculator")
def slow_calculator(expression: str) -> str:
    """Adds or multiplies two integers, slowly (a tool that takes 20 ms)."""
    time.sleep(0.02)
    left, op, right = expression.split()
    return str(int(left) + int(right) if op == "+" else int(left) * int(right))


def chosen(model: LlamaCppModel, logits: torch.Tensor, ids: list[int], at: int) -> float:
    """The logit of the token ``ids`` chose at ``at``: the end of text where they end there."""
    if at < len(ids):
        return float(logits[ids[at]])
    return max(float(logits[eos]) for eos in model.eos_token_ids)


def test_generate_batch_equals_generate_alone_except_at_near_ties(model: LlamaCppModel) -> None:
    plans = {
        "Question: Tom has 12 apples and buys 3 more. How many apples does he have?\nAnswer:": [
            (2, " [Calculator(12 + 3) →")
        ],
        "Question: A box holds 19 pens. How many pens are in 4 boxes?\nAnswer:": [
            (3, " [Calculator(19 * 4) →"),
            (3, " [Calculator(19 * 4 + 1) →"),
        ],
        "Question: A train travels 40 km each hour for 5 hours. How far does it go?\nAnswer:": [
            (4, " [Calculator(40 * 5) →")
        ],
        "The capital of France is": [],
    }
    options = {"max_new_tokens": 24, "logits_processor": [PlannedCalls(model, plans)]}
    together = toolrun.generate_batch(list(plans), model=model, tools=[slow_calculator], **options)
    identical = 0
    for prompt, batched in zip(plans, together, strict=True):
        single = toolrun.generate(prompt, model=model, tools=[slow_calculator], **options)
        if batched.token_ids == single.token_ids:
            identical += 1
            assert [c.result for c in batched.calls] == [c.result for c in single.calls]
            continue
        # Where the two part, the model alone was torn between the two tokens (one of which may
        # be the end of text: the shorter one stopped where the longer one went on).
        pairs = zip(single.token_ids, batched.token_ids, strict=False)
        shorter = min(len(single.token_ids), len(batched.token_ids))
        at = next((i for i, (x, y) in enumerate(pairs) if x != y), shorter)
        prompt_ids = model.bos_token_ids + model.encode(prompt)
        logits = alone(model, prompt_ids + single.token_ids[:at])
        gap = chosen(model, logits, single.token_ids, at) - chosen(
            model, logits, batched.token_ids, at
        )
        assert gap < NEAR_TIE, (prompt, at, gap)
    assert identical >= len(plans) - 1
    assert together[0].calls[0].result == "15"


def test_a_follow_up_prompt_starts_from_the_cached_prefix(model: LlamaCppModel) -> None:
    # The server's prefix reuse: a leaving row's cells are kept, and a prompt that extends it
    # shares them (no copy, no re-encoding) and feeds only what is new.
    from toolrun.server.prefix_cache import PrefixCache, PrefixReuseBatch

    sequences = model.sequences
    batch = PrefixReuseBatch(model.new_batch(), PrefixCache(64 * 2**20))
    assert batch.reusable
    first = model.encode(PROMPTS[1])
    batch.step({"a": first})
    batch.remove(["a"])
    follow_up = first + model.encode("1. Red\n2. Blue")
    tokens = sequences.tokens
    out = batch.step({"b": follow_up})
    assert sequences.tokens == tokens + len(follow_up) - len(first)
    assert close(out["b"], alone(model, follow_up))
    spare = sequences.spare
    batch.close()
    batch.cache.entries.clear()  # dropping the cached prefix frees its sequence
    gc.collect()
    assert sequences.spare == spare + 2
