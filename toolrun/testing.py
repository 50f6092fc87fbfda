"""A scripted fake model for tests: it writes a fixed script, so every loop path can run fast.

    model = ScriptedModel(["The sum is [Calculator(2 + 3) →", " so 5."])
    out = toolrun.generate("Q:", model=model, tools=[calculator])
    out.text == "The sum is [Calculator(2 + 3) → 5] so 5."

Each piece of the script is text the model writes. A piece that ends in an arrow makes the model
wait until the runtime has fed text containing "]" (the result) before it writes the next piece.
When the script is done the model emits end-of-sequence.

With ``chat_template=`` it is a chat model: "<|im_end|>" ends a turn (and the sequence), and a
piece that ends with it makes the model wait until the runtime has fed a new assistant turn
("<|im_start|>assistant\n", after the tool results) before it writes the next piece:

    model = ScriptedModel(['<tool_call>{"name": "add", ...}</tool_call><|im_end|>', "It is 5."],
                          chat_template=toolrun.templates.HERMES_CHATML)

The tokenizer is a small greedy longest-match vocabulary with the merges that matter in real
tokenizers (" [", " →", ")]", "=[", "->"), single characters, and UTF-8 byte tokens for anything
else, so a multi-byte character not in the vocabulary arrives split across several tokens.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from .backends.base import Model, Session

__all__ = ["ForceText", "PlannedCalls", "ScriptedModel", "ScriptedSession", "tiny_llama"]

EOS = "<eos>"
END_OF_TURN = "<|im_end|>"
MERGES = (" [", " →", ")]", "=[", "->", END_OF_TURN, "<|im_start|>")


class ScriptedModel(Model):
    """A fake model that writes ``script`` (a string or a list of pieces), whatever it is fed.

    ``logit_bias`` raises chosen tokens (by text) for every step, to put a token such as " [" in the
    top-k without choosing it. ``split_arrow`` leaves "→" out of the vocabulary so that it arrives
    as three byte tokens.
    """

    backend = "scripted"

    def __init__(
        self,
        script: str | Sequence[str],
        *,
        logit_bias: dict[str, float] | None = None,
        split_arrow: bool = False,
        extra_tokens: Iterable[str] = (),
        chat_template: str | None = None,
    ) -> None:
        self.name = "scripted"
        self.template = chat_template
        pieces = [script] if isinstance(script, str) else list(script)
        self.script = [p for p in pieces if p]  # an empty piece has no token to write
        chars = set(string.printable) | set("".join(self.script)) | {"→", "×", "÷"}
        if split_arrow:
            chars.discard("→")
            merges = tuple(m for m in MERGES if "→" not in m)
        else:
            merges = MERGES
        vocab = [EOS, *merges, *extra_tokens, *sorted(chars - {"\x0b", "\x0c"})]
        vocab += [f"<0x{b:02X}>" for b in range(256)]
        self.vocab = list(dict.fromkeys(vocab))
        self.ids = {text: i for i, text in enumerate(self.vocab)}
        self._longest = max(len(t) for t in self.vocab[: len(self.vocab) - 256])
        self.logit_bias = {self.ids[t]: bias for t, bias in (logit_bias or {}).items()}
        self.sessions: list[ScriptedSession] = []

    # tokenizer

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            for size in range(min(self._longest, len(text) - i), 0, -1):
                piece = text[i : i + size]
                if piece in self.ids and not piece.startswith("<0x"):
                    ids.append(self.ids[piece])
                    i += size
                    break
            else:
                ids += [self.ids[f"<0x{b:02X}>"] for b in text[i].encode()]
                i += 1
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        pending = bytearray()
        for i in ids:
            token = self.vocab[i]
            if token.startswith("<0x") and len(token) == 6:
                pending.append(int(token[3:5], 16))
                continue
            if pending:
                out.append(pending.decode(errors="replace"))
                pending.clear()
            out.append(token)
        if pending:
            out.append(pending.decode(errors="replace"))
        return "".join(out)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        if self.template is not None:
            return frozenset({self.ids[EOS], self.ids[END_OF_TURN]})
        return frozenset({self.ids[EOS]})

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return (EOS, END_OF_TURN, "<|im_start|>")

    @property
    def own_chat_template(self) -> str | None:
        return self.template

    @property
    def template_tokens(self) -> dict[str, str]:
        return {"eos_token": END_OF_TURN if self.template is not None else EOS}

    def new_session(self) -> ScriptedSession:
        session = ScriptedSession(self)
        self.sessions.append(session)
        return session


class ScriptedSession(Session):
    """Follows the script one token per fed token; records every feed for assertions."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model
        self.pieces = [model.encode(piece) for piece in model.script]
        self.piece = 0
        self.offset = 0
        self.waiting_for_result = False
        self.waiting_for_turn = False
        self.turn_text = ""
        self.feeds: list[list[int]] = []

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        first = not self.feeds
        self.feeds.append(list(ids))
        self.tokens_fed += len(ids)
        if not first:  # the prompt does not advance the script
            for token in ids:
                if not self.waiting_for_turn:
                    self._advance(token)
                    continue
                self.turn_text += self.model.decode([token])
                if self.turn_text.endswith("<|im_start|>assistant\n"):  # (splices may be chunked)
                    self.waiting_for_turn = False
                    self.piece += 1
                    self.offset = 0
        return self._logits()

    def _advance(self, token: int) -> None:
        if self.waiting_for_result:
            if "]" in self.model.decode([token]):
                self.waiting_for_result = False
                self.piece += 1
                self.offset = 0
            return
        if self.piece >= len(self.pieces):
            return
        self.offset += 1
        if self.offset >= len(self.pieces[self.piece]):
            text = self.model.script[self.piece].rstrip()
            if text.endswith(("→", "->")):
                self.waiting_for_result = True
            elif text.endswith(END_OF_TURN) and self.model.template is not None:
                self.waiting_for_turn, self.turn_text = True, ""
            else:
                self.piece += 1
                self.offset = 0

    def _logits(self) -> torch.Tensor:
        logits = torch.zeros(self.model.vocab_size)
        for token, bias in self.model.logit_bias.items():
            logits[token] += bias
        eos = self.model.ids[END_OF_TURN if self.model.template is not None else EOS]
        if self.piece >= len(self.pieces) or self.waiting_for_result or self.waiting_for_turn:
            logits[eos] = 10.0  # script done (or a call left hanging by the runtime): stop
        else:
            logits[eos] = -1.0
            logits[self.pieces[self.piece][self.offset]] = 10.0
        return logits


class ForceText:
    """A logits processor that makes a real model write ``text`` first, then lets it go on.

    It exercises calls on models that would not make one: ``logits_processor=[ForceText(model,
    len(prompt_ids), " [Calculator(2+3) →")]``. ``seen`` keeps every step's ``(input_ids,
    scores)`` as the processor received them, for comparing against a full re-encode.
    """

    def __init__(self, model: Model, prompt_len: int, text: str) -> None:
        self.ids = model.encode(text)
        self.prompt_len = prompt_len
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.seen.append((input_ids.clone(), scores.clone()))
        step = input_ids.shape[1] - self.prompt_len
        if step < len(self.ids):
            forced = torch.full_like(scores, float("-inf"))
            forced[0, self.ids[step]] = 0.0
            return forced
        return scores


class PlannedCalls:
    """A logits processor that makes a real model call tools on a per-prompt plan.

    ``plans[prompt] = [(gap, " [Calculator(2+3) →"), ...]``: after ``gap`` free tokens (counted
    from the prompt or from the last result's "]") the call head is forced token by token. Free
    tokens never contain "[" or "]", so the plan alone decides where calls happen, and the end of
    sequence waits until the planned calls are made. It reads only ``input_ids``, so one instance
    serves every prompt of a batch.
    """

    def __init__(self, model: Model, plans: dict[str, list[tuple[int, str]]]) -> None:
        self.plans = {
            tuple(model.bos_token_ids + model.encode(p)): [(g, model.encode(t)) for g, t in plan]
            for p, plan in plans.items()
        }
        self.closing = {i for i, text in enumerate(model.token_texts) if "]" in text}
        self.banned = torch.tensor(sorted(self.closing | set(model.call_opening_tokens)))
        self.eos = torch.tensor(sorted(model.eos_token_ids))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ids = input_ids[0].tolist()
        prompt = max((p for p in self.plans if tuple(ids[: len(p)]) == p), key=len, default=())
        tail = ids[len(prompt) :]
        ends = [i for i, token in enumerate(tail) if token in self.closing]
        since = len(tail) - (ends[-1] + 1 if ends else 0)
        plan = self.plans.get(prompt, [])
        if len(ends) < len(plan):
            gap, head = plan[len(ends)]
            if gap <= since < gap + len(head):
                forced = torch.full_like(scores, float("-inf"))
                forced[0, head[since - gap]] = 0.0
                return forced
        scores = scores.clone()
        if len(ends) < len(plan):  # no stopping before the planned calls
            scores[0, self.eos.to(scores.device)] = float("-inf")
        scores[0, self.banned.to(scores.device)] = float("-inf")
        return scores


def tiny_llama(tokenizer: Any, *, seed: int = 0) -> Any:
    """A randomly initialised 2-layer Llama with ``tokenizer``'s vocabulary (no downloads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model
