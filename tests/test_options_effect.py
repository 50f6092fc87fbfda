"""Every decoding option changes what the transformers path generates, as it should.

Each test would fail if its option were ignored: two seeded runs that match under greedy
decoding prove nothing, so each checks a property only the option can produce, and first checks
that plain decoding lacks it. The model is the tiny random Llama (its next-token distribution
is nearly flat, so sampling wanders far from greedy unless an option holds it in). Only the
public API is used: ``toolrun.generate(...)`` and the logits processors it accepts.
"""

from __future__ import annotations

import time

import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.testing import ScriptedModel

PROMPT = "The weather in Lyon today is"
TOKENS = 24


@pytest.fixture(scope="module")
def model(tiny_llama, tokenizer) -> TransformersModel:
    return TransformersModel(tiny_llama, tokenizer)


class Recorder:
    """A logits processor that keeps the scores each step chose from, by history length."""

    def __init__(self) -> None:
        self.scores: dict[int, torch.Tensor] = {}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores[input_ids.shape[1]] = scores[0].detach().clone()
        return scores

    def steps(self, out: toolrun.Generation) -> list[tuple[torch.Tensor, int]]:
        """(scores, the token then chosen) for every generated token."""
        first = min(self.scores)
        return [(self.scores[first + i], token) for i, token in enumerate(out.token_ids)]


def generate(model: TransformersModel, **options: object) -> toolrun.Generation:
    options.setdefault("max_new_tokens", TOKENS)
    return toolrun.generate(PROMPT, model=model, allow_calls=False, **options)  # type: ignore[arg-type]


def rank(scores: torch.Tensor, token: int) -> int:
    """0 for the best-scoring token."""
    return int((scores > scores[token]).sum())


def nucleus_mass_before(scores: torch.Tensor, token: int) -> float:
    """Probability of the tokens strictly more likely than ``token`` (top_p keeps it if < p)."""
    probs = torch.softmax(scores.double(), dim=-1)
    return float(probs[probs > probs[token]].sum())


def test_do_sample_and_seed(model: TransformersModel) -> None:
    greedy = generate(model)
    assert generate(model, seed=1).token_ids == greedy.token_ids  # greedy ignores the seed
    sampled = generate(model, do_sample=True, seed=0)
    assert sampled.token_ids != greedy.token_ids
    assert generate(model, do_sample=True, seed=0).token_ids == sampled.token_ids
    assert generate(model, do_sample=True, seed=1).token_ids != sampled.token_ids


def test_temperature(model: TransformersModel) -> None:
    greedy = generate(model)
    assert generate(model, do_sample=True, seed=0).token_ids != greedy.token_ids
    # near zero, sampling is greedy: ignored, it would sample as at temperature 1
    cold = generate(model, do_sample=True, seed=0, temperature=1e-4)
    assert cold.token_ids == greedy.token_ids
    # hot, it strays further from the best tokens than at 1
    ranks = {}
    for temperature in (0.02, 50.0):
        recorder = Recorder()
        out = generate(
            model, do_sample=True, seed=0, temperature=temperature, logits_processor=[recorder]
        )
        ranks[temperature] = sorted(rank(s, t) for s, t in recorder.steps(out))[TOKENS // 2]
    assert ranks[0.02] < 1000 < ranks[50.0]  # median rank among 49,152 tokens


def test_top_k(model: TransformersModel) -> None:
    recorder = Recorder()
    out = generate(model, do_sample=True, seed=0, logits_processor=[recorder])
    assert max(rank(s, t) for s, t in recorder.steps(out)) >= 3  # plain sampling strays
    for seed in range(3):
        recorder = Recorder()
        out = generate(model, do_sample=True, seed=seed, top_k=3, logits_processor=[recorder])
        assert all(rank(s, t) < 3 for s, t in recorder.steps(out))


def test_top_p(model: TransformersModel) -> None:
    recorder = Recorder()
    out = generate(model, do_sample=True, seed=0, logits_processor=[recorder])
    assert max(nucleus_mass_before(s, t) for s, t in recorder.steps(out)) > 0.05
    for seed in range(3):
        recorder = Recorder()
        out = generate(model, do_sample=True, seed=seed, top_p=0.01, logits_processor=[recorder])
        # the smallest set of tokens holding 1% of the probability: nothing below it
        assert all(nucleus_mass_before(s, t) < 0.01 for s, t in recorder.steps(out))


def test_options_from_a_generation_config(model: TransformersModel) -> None:
    from transformers import GenerationConfig

    recorder = Recorder()
    config = GenerationConfig(do_sample=True, top_k=2)
    out = generate(model, seed=0, generation_config=config, logits_processor=[recorder])
    assert all(rank(s, t) < 2 for s, t in recorder.steps(out))
    assert out.token_ids != generate(model).token_ids  # it sampled


def test_repetition_penalty(model: TransformersModel) -> None:
    plain = generate(model, max_new_tokens=64)
    assert len(set(plain.token_ids)) < 64  # greedy comes back to tokens it wrote
    penalised = generate(model, max_new_tokens=64, repetition_penalty=1e3)
    assert len(set(penalised.token_ids)) == 64  # a strong penalty never repeats one
    assert penalised.token_ids[:1] == plain.token_ids[:1]  # nothing to penalise yet


# Per-tool result limits and call latency, through a whole generation.


@toolrun.tool(max_result_chars=12)
def short_story() -> str:
    """A long result, cut to 12 characters."""
    return "Once upon a time there was a very long result."


@toolrun.tool
def long_story() -> str:
    """The same result under the default limit."""
    return "Once upon a time there was a very long result."


@toolrun.tool
def slow() -> str:
    """Takes at least 0.2 s."""
    time.sleep(0.2)
    return "done"


def test_max_result_chars_is_per_tool() -> None:
    model = ScriptedModel(["A [short_story() →", " and [long_story() →", " end."])
    out = toolrun.generate("Go:", model=model, tools=[short_story, long_story])
    short, full = out.calls
    assert len(short.result) <= 12 and short.result != full.result  # type: ignore[arg-type]
    assert full.result == "Once upon a time there was a very long result."
    assert short.result in out.text and short.result.rstrip("…") in full.result  # type: ignore[union-attr]
    assert out.text.count("very long result") == 1  # only the uncut one reached the model


def test_call_latency_is_measured() -> None:
    model = ScriptedModel(["[slow() →", " [short_story() →", " end."])
    started = time.perf_counter()
    out = toolrun.generate("Go:", model=model, tools=[slow, short_story])
    wall = time.perf_counter() - started
    waited, quick = out.calls
    # lower bounds and the whole run's time: no wall-clock guess that a loaded machine breaks
    assert 0.2 <= waited.latency_s <= wall
    assert 0.0 <= quick.latency_s <= wall - waited.latency_s
