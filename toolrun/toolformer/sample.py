"""Step 1: where to call (positions scored by p(" [")) and what to call (candidate arguments).

Positions are character offsets into a text: the call is inserted there, so a position is the
whitespace before a word (the call goes ``... = [Calculator(48 / 2) → 24] 24 ...``, which is the
shape the runtime produces). The paper scores every position by the probability of " [" while
the model copies the text under the tool's few-shot prompt, keeps those above tau_s, at most k.

Candidates come from proposers (for the Calculator: expressions over numbers already in the
prefix, and the expression written just before an "=") and, optionally, from the model's own
samples.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..backends.base import Model

__all__ = [
    "Position",
    "calculator_proposer",
    "candidate_positions",
    "number_value",
    "sample_calls",
    "score_positions",
    "select_positions",
]

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|(?<![\w.])\d+(?:\.\d+)?")
_WORD = re.compile(r"\s+(\S+)")
_OPS = {"x": "*", "×": "*", "*": "*", "/": "/", "÷": "/", "+": "+", "-": "-", "−": "-"}
# A chain of numbers and operators, e.g. "100 - 50 - 30 - 15" or "$0.2 x 50", that ends the prefix
# (optionally followed by "=" or "is"): the text wrote the expression whose result comes next.
_CHAIN = re.compile(
    r"((?:\$?\d[\d,]*(?:\.\d+)?%?\s*[-+*/x×÷−]\s*)+\$?\d[\d,]*(?:\.\d+)?%?)\s*(?:=|is)?\s*$"
)


@dataclass(frozen=True)
class Position:
    index: int
    p_start: float = 0.0


def number_value(text: str) -> float | None:
    """The value of a number as written ("1,200", "$4.50", "25%" -> 1200, 4.5, 25)."""
    cleaned = text.strip().strip("$%.,;:!?)(").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def candidate_positions(text: str, start: int = 0, *, numbers_only: bool = True) -> list[int]:
    """Offsets of the whitespace before each word at or after ``start``; with ``numbers_only``
    (the Calculator's heuristic) only before words that contain a number."""
    out = []
    for match in _WORD.finditer(text, max(start - 1, 0)):
        if match.start() < max(start - 1, 0) or match.start() == 0:
            continue
        if numbers_only and not re.search(r"\d", match.group(1)):
            continue
        out.append(match.start())
    return out


def score_positions(model: Model, prompt: str, text: str, positions: Sequence[int]) -> list[float]:
    """p(" [" | prompt, text[:position]) for each position, in one incremental pass.

    The text after ``Output:`` is fed in segments cut at the positions, so every position is a
    token boundary and the logits returned after a segment are exactly the next-token
    distribution there. Works with any backend's Session.
    """
    if not positions:
        return []
    head, _, tail = prompt.partition("{text}")
    hf = getattr(model, "model", None)
    if hf is not None and hasattr(hf, "config"):
        return _score_positions_batched(model, hf, head + text + tail, text, positions)
    session = model.new_session()
    try:
        logits = session.feed([*model.bos_token_ids, *model.encode(head + text + tail)])
        start_token = model.call_start_token
        probabilities = []
        last = 0
        for position in positions:
            # The copy after "Output:" starts with a space, as in the prompt's examples.
            segment = (" " if last == 0 else "") + text[last:position]
            ids = model.encode(segment) if segment else []
            if ids:
                logits = session.feed(ids)
            probabilities.append(float(torch.softmax(logits.float(), -1)[start_token]))
            last = position
        return probabilities
    finally:
        session.close()


@torch.inference_mode()
def _score_positions_batched(
    model: Model, hf: Any, context: str, text: str, positions: Sequence[int]
) -> list[float]:
    """The same probabilities from one forward pass (transformers models): the same segments,
    read at each segment's last token."""
    ids = [*model.bos_token_ids, *model.encode(context)]
    ends = []
    last = 0
    for position in positions:
        segment = (" " if last == 0 else "") + text[last:position]
        ids += model.encode(segment) if segment else []
        ends.append(len(ids) - 1)
        last = position
    device = next(hf.parameters()).device
    logits = hf(input_ids=torch.tensor([ids], device=device)).logits[0, ends]
    probabilities = torch.softmax(logits.float(), -1)[:, model.call_start_token]
    return [float(p) for p in probabilities]


def select_positions(
    positions: Sequence[int], probabilities: Sequence[float], *, tau_s: float, k: int
) -> list[Position]:
    """Keep positions whose p(" [") >= tau_s, the k most probable, in text order."""
    kept = [Position(i, p) for i, p in zip(positions, probabilities, strict=True) if p >= tau_s]
    kept.sort(key=lambda pos: -pos.p_start)
    return sorted(kept[:k], key=lambda pos: pos.index)


def _numbers_before(text: str, position: int) -> list[str]:
    return [m.group(0).replace(",", "") for m in NUMBER.finditer(text[:position])]


def calculator_proposer(text: str, position: int, *, last_n: int = 6) -> list[str]:
    """Calculator arguments worth trying at ``position``: the expression written just before it
    (any length), then a op b over the last ``last_n`` distinct numbers in the prefix."""
    proposals: list[str] = []
    chain = _CHAIN.search(text[:position])
    if chain is not None:
        tokens = re.findall(r"\d[\d,]*(?:\.\d+)?%?|[-+*/x×÷−]", chain.group(1))
        parts = [_OPS.get(t, t.replace(",", "")) for t in tokens]
        if all(not p.endswith("%") for p in parts):
            proposals.append(" ".join(parts))
    newest: list[str] = []
    for number in reversed(_numbers_before(text, position)):
        if number not in newest:
            newest.append(number)
        if len(newest) == last_n:
            break
    # Most recent numbers first: with the consistency check the first proposal that gives the
    # written result is the one kept, and steps usually combine the latest numbers.
    for later, earlier in itertools.combinations(newest, 2):
        a, b = earlier, later
        if "0" in (a, b):
            continue  # x + 0, x * 0: nothing computed
        if "1" in (a, b):  # x * 1 and x / 1 compute nothing either
            proposals += [f"{a} + {b}", f"{a} - {b}", f"{b} - {a}"]
            continue
        proposals += [
            f"{a} + {b}",
            f"{a} * {b}",
            f"{a} - {b}",
            f"{a} / {b}",
            f"{b} - {a}",
            f"{b} / {a}",
        ]
    return list(dict.fromkeys(proposals))


Proposer = Callable[[str, int], list[str]]
PROPOSERS: dict[str, Proposer] = {"calculator": calculator_proposer}


def sample_calls(
    model: Model,
    prompt: str,
    text: str,
    position: int,
    tool_name: str,
    *,
    m: int,
    seed: int = 0,
    max_tokens: int = 24,
    temperature: float = 1.0,
) -> list[str]:
    """The model's own candidates: up to ``m`` argument strings sampled after ``[Name(`` at
    ``position`` under the few-shot prompt (the first greedy, the rest sampled), deduplicated."""
    head, _, tail = prompt.partition("{text}")
    context = head + text + tail + " " + text[:position] + f" [{tool_name}("
    generator = torch.Generator().manual_seed(seed)
    found: list[str] = []
    base = [*model.bos_token_ids, *model.encode(context)]
    for attempt in range(m):
        session = model.new_session()
        try:
            logits = session.feed(base)
            out: list[int] = []
            for _ in range(max_tokens):
                if attempt == 0:
                    token = int(torch.argmax(logits))
                else:
                    probs = torch.softmax(logits.float() / temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if token in model.eos_token_ids:
                    break
                out.append(token)
                written = model.decode(out)
                if ")" in written or "]" in written or "\n" in written:
                    break
                logits = session.feed([token])
        finally:
            session.close()
        written = model.decode(out)
        arguments = written.split(")")[0].split("]")[0].split("\n")[0].strip()
        if ")" in written and arguments and arguments not in found:
            found.append(arguments)
    return found
