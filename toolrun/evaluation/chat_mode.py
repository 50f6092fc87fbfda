"""Evaluation in a chat call format (``toolrun eval --call-format hermes``).

Each problem is a conversation of one user turn, ``Question: {question}`` (the text prompt's
words without its ``Answer:``), rendered with the model's chat template and the set's tools'
JSON schemas (for the default model, toolrun's Hermes ChatML block). The model calls tools in
its own format; the runtime runs them at the end of its turn and splices the tool turn.

Every mode sees the same prompt with the tools listed: ``no-tools`` and ``base`` ban the calls
rather than hide the tools, so the comparison measures the calls alone. Banned means what it means
for the bracket format, where every token holding "[" is banned: every token holding the first
character of the format's call opening ("<" for ``<tool_call>``), special tokens aside
(``OpeningBan``). The runtime's own ``allow_calls=False`` refuses only the token that would
complete the opening, and a model trained to call then writes ``<tool_call1`` where it would have
called, with nothing computed: that is not an answer without tools. The top-K rule forces the
bracket format's opening token and has no chat counterpart.

What is scored is what the assistant says: the content of its turns, joined with spaces, without
the call markup and the tool turns. Then the set's rules apply as in text mode (``score_record``:
for math the stated answer, else the first number, and the paper's first-number rule beside it).
Generation stops once no continuation can change that score, as in text mode, so calls are
counted on the same footing.

The token budget counts the assistant's words, not the call markup: a Hermes Calculator call is
about 34 of the model's own tokens (``<tool_call>``, the JSON, the closing tag) where a bracket
call is about 10, so ``max_new_tokens`` (text mode's budget) bounds the tokens of what the
assistant says, and ``CHAT_TOKEN_CAP`` bounds everything the model writes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch

from ..backends.base import Model
from ..batch import generate_batch
from ..errors import ToolrunError
from ..formats import CallFormat, get_format
from ..registry import ToolRegistry
from ..results import Generation
from ..templates import render, template_for
from .runner import Mode, RecordStore, RunSettings, drive_mode, score_record
from .scoring import answer_settled
from .tasks import MASK, EvalSet, Example, Family

__all__ = [
    "CHAT_MODES",
    "ChatStopWhenSettled",
    "OpeningBan",
    "assistant_text",
    "chat_fingerprint",
    "chat_prompt",
    "content_view",
    "rescore",
    "run_chat_batch",
    "run_chat_mode",
]

CHAT_MODES = ("no-tools", "tools")
"""The default modes in a chat format: calls banned, and calls run."""
CHAT_QUESTION = "Question: {question}"
CHAT_TOKEN_CAP = 320
"""The most tokens the model writes in chat mode, markup included (the words have their own
budget, ``max_new_tokens``)."""


def chat_prompt(family: Family, example: Example) -> list[dict[str, Any]]:
    """The conversation for one example: a single user turn."""
    if family.name == "fact":
        head = example.question.split(MASK)[0].rstrip()
        content = head or example.question
    else:
        content = CHAT_QUESTION.format(question=example.question.strip())
    return [{"role": "user", "content": content}]


def assistant_text(generation: Generation, call_format: CallFormat) -> str:
    """What the assistant said: its turns' content joined, call markup left out."""
    parts = []
    for message in generation.messages:
        if message.get("role") != "assistant":
            continue
        content = str(message.get("content") or "")
        content = content[: call_format.content_length(content, 0)].strip()
        if content:
            parts.append(content)
    return " ".join(parts)


def content_view(text: str, call_format: CallFormat, turn_opening: str) -> tuple[str, bool]:
    """The assistant's words in decoded output (markup, end of turn and tool turns left out),
    and whether a call is still open (its result not spliced yet).

    ``text`` runs from the end of the prompt: content, a call's markup, the tool turns, then
    ``turn_opening`` (what the template writes to open an assistant turn) and more content.
    """
    parts: list[str] = []
    position = 0
    while True:
        cut = position + call_format.content_length(text, position)
        parts.append(text[position:cut].strip())
        if cut >= len(text):
            return " ".join(p for p in parts if p), False
        resumed = text.find(turn_opening, cut)
        if resumed < 0:
            return " ".join(p for p in parts if p), True
        position = resumed + len(turn_opening)


class ChatStopWhenSettled:
    """A logits processor that ends the turn once the assistant's answer can no longer change,
    or its words (markup aside) have used ``words_budget`` tokens, never while a call is open.

    It serves a whole batch: each row is told apart by its prompt, a prefix of its history.
    """

    def __init__(
        self,
        model: Model,
        family: Family,
        prompt_ids: Sequence[Sequence[int]],
        call_format: CallFormat,
        turn_opening: str,
        words_budget: int | None = None,
    ) -> None:
        self.model = model
        self.budget = words_budget
        self.words = None if family.name == "math" else family.words
        self.lengths = {len(ids) for ids in prompt_ids}
        self.prompts = {tuple(ids) for ids in prompt_ids}
        self.format = call_format
        self.turn_opening = turn_opening
        self.eos = min(model.eos_token_ids)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        history = input_ids[0].tolist()
        start = next((n for n in self.lengths if tuple(history[:n]) in self.prompts), None)
        if start is None or len(history) == start:
            return scores
        said, call_open = content_view(
            self.model.decode(history[start:]), self.format, self.turn_opening
        )
        if call_open:
            return scores
        spent = self.budget is not None and len(self.model.encode(said)) >= self.budget
        if not spent and not answer_settled(said, self.words):
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.eos] = 0.0
        return forced


class OpeningBan:
    """A logits processor that bans every token holding the first character of a call opening
    (special tokens aside), as the bracket format bans every token holding "["."""

    def __init__(self, model: Model, call_format: CallFormat) -> None:
        firsts = {opener[0] for opener in call_format.openers if opener}
        special = set(model.special_tokens)
        self.banned = [
            i
            for i, text in enumerate(model.token_texts)
            if text not in special and any(c in text for c in firsts)
        ]
        self._index: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._index is None or self._index.device != scores.device:
            self._index = torch.tensor(self.banned, dtype=torch.long, device=scores.device)
        scores = scores.clone()
        scores[:, self._index] = float("-inf")
        return scores


def chat_fingerprint(
    evalset: EvalSet, mode: Mode, settings: RunSettings, call_format: str, template: str
) -> str:
    """The key of a chat-mode record: what produced it, the format and the template included."""
    family = evalset.family
    payload = {
        "set": evalset.name,
        "family": family.name,
        "prompt": "chat: fact-mask" if family.name == "fact" else f"chat: {CHAT_QUESTION}",
        "mode": asdict(mode),
        "model": settings.model_label if mode.finetuned else settings.base_label,
        "max_new_tokens": settings.max_new_tokens,
        "budget": f"max_new_tokens for the words, {CHAT_TOKEN_CAP} in all",
        "stop_when_settled": "stated-answer" if family.name == "math" else True,
        "tools": settings.tool_names.get(evalset.name, []),
        "call_format": call_format,
        "template": hashlib.sha1(template.encode()).hexdigest()[:12],
    }
    if not (mode.tools and mode.allow_calls):
        payload["ban"] = "tokens holding the opening's first character"
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _template(model: Model, call_format: CallFormat, chat_template: str | None) -> str:
    return chat_template or template_for(model, call_format.name, tools_given=True)


def _turn_opening(model: Model, template: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """What the template writes to open an assistant turn (ChatML: ``<|im_start|>assistant\\n``)."""
    with_opening = render(model, template, messages)
    without = render(model, template, messages, add_generation_prompt=False)
    if not with_opening.startswith(without) or with_opening == without:
        raise ToolrunError("the chat template does not open an assistant turn after a prompt")
    return with_opening[len(without) :]


def run_chat_batch(
    examples: Sequence[Example],
    evalset: EvalSet,
    mode: Mode,
    model: Model,
    registry: ToolRegistry,
    settings: RunSettings,
    *,
    call_format: str | CallFormat = "hermes",
    chat_template: str | None = None,
) -> list[dict[str, Any]]:
    """Generate for a few examples together in a chat format and score each (the records)."""
    if mode.api_start_top_k:
        raise ToolrunError(f"mode {mode.name!r} forces the bracket format's call start token")
    fmt = get_format(call_format, model)
    family = evalset.family
    conversations = [chat_prompt(family, e) for e in examples]
    schemas = [t.json_schema() for t in registry]
    template = _template(model, fmt, chat_template)
    prompt_ids = [
        model.encode(render(model, template, c, tools=schemas or None)) for c in conversations
    ]
    stopper = ChatStopWhenSettled(
        model,
        family,
        prompt_ids,
        fmt,
        _turn_opening(model, template, conversations[0]),
        words_budget=settings.max_new_tokens,
    )
    calls_allowed = mode.tools and mode.allow_calls
    processors: list[Any] = [stopper] if calls_allowed else [OpeningBan(model, fmt), stopper]
    started = time.perf_counter()
    generations = generate_batch(
        conversations,
        model=model,
        tools=registry,  # listed in every mode; no-tools and base ban the calls
        max_batch=settings.batch_size,
        call_format=fmt,
        chat_template=template,
        max_new_tokens=max(CHAT_TOKEN_CAP, settings.max_new_tokens),
        logits_processor=processors,
        allow_calls=calls_allowed,
        max_calls=mode.max_calls,
    )
    share = (time.perf_counter() - started) / len(examples)
    records = []
    for example, conversation, generation in zip(examples, conversations, generations, strict=True):
        record = {
            "set": evalset.name,
            "mode": mode.name,
            "id": example.id,
            "prompt": conversation[0]["content"],
            "output": generation.text,
            "said": assistant_text(generation, fmt),
            "gold": example.gold,
            "calls": [
                {
                    "name": c.name,
                    "arguments": c.arguments_text,
                    "result": c.result,
                    "error": c.error,
                }
                for c in generation.calls
            ],
            "call_format": generation.call_format,
            "generated_tokens": generation.generated_tokens,
            "spliced_tokens": generation.spliced_tokens,
            "finish_reason": generation.finish_reason,
            "wall_s": round(share, 4),
            "latency_s": round(generation.timings.get("total", 0.0), 4),
        }
        records.append(rescore(record, example, family))
    return records


def rescore(record: dict[str, Any], example: Example, family: Family) -> dict[str, Any]:
    """Set a chat record's scores with the current rules from what the assistant said."""
    scored = score_record({"output": record["said"], "calls": record["calls"]}, example, family)
    record.update({k: v for k, v in scored.items() if k not in ("output", "calls")})
    return record


def run_chat_mode(
    evalset: EvalSet,
    mode: Mode,
    model: Model | Callable[[], Model],
    registry: ToolRegistry,
    settings: RunSettings,
    store: RecordStore,
    tick: Callable[[dict[str, Any]], None] = lambda record: None,
    *,
    call_format: str = "hermes",
    chat_template: str | None = None,
) -> list[dict[str, Any]]:
    """Every example of ``evalset`` in ``mode`` in a chat format, reusing ``store``'s records.

    ``model`` may be a function that loads it, called only when something is left to generate.
    """
    # Without chat_template= the model's own template (or HERMES_CHATML) is used: the model's
    # label in the settings already names it.
    return drive_mode(
        evalset,
        model,
        store,
        tick,
        key=chat_fingerprint(evalset, mode, settings, call_format, chat_template or "(model's)"),
        rescore=lambda record, example: rescore(record, example, evalset.family),
        generate=lambda chunk, loaded: run_chat_batch(
            chunk,
            evalset,
            mode,
            loaded,
            registry,
            settings,
            call_format=call_format,
            chat_template=chat_template,
        ),
        batch_size=settings.batch_size,
    )
