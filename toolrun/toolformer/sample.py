"""Step 1: where to call (positions scored by p(" [")) and what to call (candidate arguments).

Positions are character offsets into a text: the call is inserted there, so a position is the
whitespace before a word (the call goes ``... = [Calculator(48 / 2) → 24] 24 ...``, which is the
shape the runtime produces). The paper scores every position by the probability of " [" while
the model copies the text under the tool's few-shot prompt, keeps those above tau_s, at most k.

Candidates come from heuristic proposers (for the Calculator: expressions over numbers already in
the prefix, and the expression written just before an "="; for a tool without arguments: its one
call) and from the model's own samples, the paper's way: at each selected position, m calls
sampled after ``[Name(`` under the tool's example prompt (``PromptPass``: one forward pass over
the prompt and the copied text scores every position and keeps its cache for the sampling; the
prompt's instruction and examples, the same for every text, are encoded once per tool).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..backends.base import Model

__all__ = [
    "Position",
    "PromptPass",
    "calculator_proposer",
    "call_arguments",
    "candidate_positions",
    "number_value",
    "sample_calls",
    "score_positions",
    "select_positions",
    "spaced_expression",
]

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|(?<![\w.])\d+(?:\.\d+)?")
_WORD = re.compile(r"\s+(\S+)")
_OPS = {"x": "*", "×": "*", "*": "*", "/": "/", "÷": "/", "+": "+", "-": "-", "−": "-"}
# A chain of numbers and operators, e.g. "100 - 50 - 30 - 15", "$0.2 x 50" or "48 + (48 / 2)",
# that ends the prefix (optionally followed by "=" or "is"): the text wrote the expression whose
# result comes next.
_OPERAND = r"(?:\(\s*)*\$?\d[\d,]*(?:\.\d+)?%?(?:\s*\))*"
_CHAIN = re.compile(rf"({_OPERAND}(?:\s*[-+*/x×÷−]\s*{_OPERAND})+)\s*(?:=|is)?\s*$")


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
        expression = spaced_expression(chain.group(1))
        if expression is not None:
            proposals.append(expression)
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


def spaced_expression(written: str) -> str | None:
    """``written`` as the Calculator's calls spell it, "48 + (48 / 2)" (for "48+(48÷2)" or
    "48 + ( 48/2 )"); None for a percentage or unbalanced parentheses."""
    tokens = re.findall(r"\d[\d,]*(?:\.\d+)?%?|[-+*/x×÷−()]", written)
    parts = [_OPS.get(t, t.replace(",", "")) for t in tokens]
    if any(p.endswith("%") for p in parts) or not _balanced(parts):
        return None
    return " ".join(parts).replace("( ", "(").replace(" )", ")")


def _balanced(parts: Sequence[str]) -> bool:
    """Whether the parentheses among ``parts`` close in order (a chain can start inside one)."""
    depth = 0
    for part in parts:
        depth += {"(": 1, ")": -1}.get(part, 0)
        if depth < 0:
            return False
    return depth == 0


Proposer = Callable[[str, int], list[str]]
PROPOSERS: dict[str, Proposer] = {"calculator": calculator_proposer}


def call_arguments(written: str) -> tuple[bool, str | None]:
    """Read what a model wrote after ``[Name(``: (finished, arguments). The arguments end at the
    ")" that closes the call (parentheses, brackets and quotes inside are skipped); a "]", an
    arrow or a newline before it ends the attempt without a call."""
    depth = 0
    quote = ""
    for i, char in enumerate(written):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                return True, (written[:i].strip() or None) if char == ")" else None
            depth -= 1
        elif char in "\n→":
            return True, None
    return False, None


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
    """The model's own candidates through any backend's Session: up to ``m`` argument strings
    sampled after ``[Name(`` at ``position`` under the prompt (the first greedy, the rest
    sampled), deduplicated. ``PromptPass.sample`` does the same in one batch (transformers)."""
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
            arguments = None
            for _ in range(max_tokens):
                if attempt == 0:
                    token = int(torch.argmax(logits))
                else:
                    probs = torch.softmax(logits.float() / temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if token in model.eos_token_ids:
                    break
                out.append(token)
                finished, arguments = call_arguments(model.decode(out))
                if finished:
                    break
                logits = session.feed([token])
        finally:
            session.close()
        if arguments and arguments not in found:
            found.append(arguments)
    return found


class PromptPass:
    """One text under one tool's prompt: p(" [") at each position, and calls sampled there.

    For a transformers model the prompt's head (instruction and examples, up to the last
    ``Input:``) is encoded once per prompt and its cache shared (``heads``, owned by the caller);
    the rest, the text with the copy after ``Output:`` cut at the positions, is one forward pass
    whose cache each position's sampling starts from. Other backends score through sessions
    (``score_positions``) and sample one call at a time (``sample_calls``).
    """

    def __init__(
        self,
        model: Model,
        prompt: str,
        text: str,
        positions: Sequence[int],
        heads: dict[str, tuple[list[int], Any]] | None = None,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.text = text
        self.positions = list(positions)
        hf = getattr(model, "model", None)
        self._hf = hf if hf is not None and hasattr(hf, "config") else None
        if self._hf is None:
            self.probabilities = score_positions(model, prompt, text, self.positions)
            return
        self._ends: list[int] = []
        self._cache: Any = None
        self.probabilities = self._forward(heads if heads is not None else {})

    @torch.inference_mode()
    def _forward(self, heads: dict[str, tuple[list[int], Any]]) -> list[float]:
        model, hf = self.model, self._hf
        assert hf is not None
        from transformers import DynamicCache

        head, _, tail = self.prompt.partition("{text}")
        context = head + self.text + tail
        ids = [*model.bos_token_ids, *model.encode(context)]
        for i, position in enumerate(self.positions):
            last = self.positions[i - 1] if i else 0
            segment = (" " if i == 0 else "") + self.text[last:position]
            ids += model.encode(segment) if segment else []
            self._ends.append(len(ids) - 1)
        # The head ends before the last "Input:"'s space, a token boundary in BPE vocabularies;
        # checked, and encoded with the rest when it is not one.
        cut = head.rstrip(" ")
        if cut not in heads:
            head_ids = [*model.bos_token_ids, *model.encode(cut)]
            out = hf(
                input_ids=torch.tensor([head_ids], device=_device(hf)),
                cache=DynamicCache(config=hf.config),
                use_cache=True,
                logits_to_keep=1,
            )
            heads[cut] = (head_ids, out.cache)
        head_ids, head_cache = heads[cut]
        if ids[: len(head_ids)] == head_ids and len(ids) > len(head_ids):
            cache, start = copy.deepcopy(head_cache), len(head_ids)
        else:
            cache, start = DynamicCache(config=hf.config), 0
        # Logits only where they are read: the vocabulary projection of every token would cost
        # as much as the rest of the pass.
        keep = [end - start for end in self._ends] or [len(ids) - start - 1]
        out = hf(
            input_ids=torch.tensor([ids[start:]], device=_device(hf)),
            cache=cache,
            use_cache=True,
            logits_to_keep=torch.tensor(keep, device=_device(hf)),
        )
        self._cache = out.cache
        self._length = len(ids)
        if not self._ends:
            return []
        logits = out.logits[0]
        return [float(p) for p in torch.softmax(logits.float(), -1)[:, model.call_start_token]]

    def sample(
        self,
        index: int,
        tool_name: str,
        *,
        m: int,
        seed: int = 0,
        temperature: float = 1.0,
        max_tokens: int = 24,
    ) -> list[str]:
        """Up to ``m`` distinct argument strings written after ``[Name(`` at position ``index``
        (an index into ``positions``): the first greedy, the rest sampled at ``temperature``."""
        if m <= 0:
            return []
        position = self.positions[index]
        if self._hf is None:
            return sample_calls(
                self.model,
                self.prompt,
                self.text,
                position,
                tool_name,
                m=m,
                seed=seed,
                max_tokens=max_tokens,
                temperature=temperature,
            )
        return self._sample_batched(index, tool_name, m, seed, temperature, max_tokens)

    @torch.inference_mode()
    def _sample_batched(
        self, index: int, tool_name: str, m: int, seed: int, temperature: float, max_tokens: int
    ) -> list[str]:
        model, hf = self.model, self._hf
        assert hf is not None
        device = _device(hf)
        generator = torch.Generator().manual_seed(seed)
        cache = copy.deepcopy(self._cache)
        cache.crop(self._ends[index] + 1 - self._length)  # back to the state after the position
        opening = model.encode(f" [{tool_name}(")
        out = hf(input_ids=torch.tensor([opening], device=device), cache=cache, use_cache=True)
        logits = out.logits[0, -1:].float().expand(m, -1)
        cache = out.cache
        cache.batch_repeat_interleave(m)
        rows: list[list[int]] = [[] for _ in range(m)]
        found: dict[int, str | None] = {}
        live = list(range(m))  # rows still writing; finished ones leave the batch
        for _ in range(max_tokens):
            tokens = {}
            for i, row in enumerate(live):
                if row == 0:
                    tokens[row] = int(torch.argmax(logits[i]))
            sampled = [row for row in live if row != 0]
            if sampled:
                where = [live.index(row) for row in sampled]
                probs = torch.softmax(logits[where].cpu() / temperature, -1)
                drawn = torch.multinomial(probs, 1, generator=generator)[:, 0]
                tokens.update({row: int(t) for row, t in zip(sampled, drawn, strict=True)})
            for row in live:
                token = tokens[row]
                if token in model.eos_token_ids:
                    found[row] = None
                    continue
                rows[row].append(token)
                finished, arguments = call_arguments(model.decode(rows[row]))
                if finished:
                    found[row] = arguments
            keep = [i for i, row in enumerate(live) if row not in found]
            if not keep:
                break
            if len(keep) < len(live):
                cache.batch_select_indices(torch.tensor(keep, device=device))
            live = [live[i] for i in keep]
            step = torch.tensor([tokens[row] for row in live], device=device).view(-1, 1)
            out = hf(input_ids=step, cache=cache, use_cache=True)
            logits = out.logits[:, -1].float()
            cache = out.cache
        return list(dict.fromkeys(a for row in range(m) if (a := found.get(row))))


def _device(hf: Any) -> torch.device:
    return next(hf.parameters()).device
