"""Chat templates: rendering OpenAI-style messages the way the model was trained to read them.

The model's own Jinja template, or the one its adapter ships, renders everything (transformers'
renderer, so templates behave exactly as ``tokenizer.apply_chat_template`` renders them); toolrun
never hand-writes a model's prompt in code. Two templates are written here: ``HERMES_CHATML``, a
Hermes-style template for ChatML models whose own template knows no tools (used when the hermes
format is asked for), and ``QUESTION_ANSWER``, which renders a conversation as the pipeline's
training texts read; ``toolrun finetune --chat-template`` ships it in an adapter's folder, as the
default adapter does.

After a chat format's calls run, what is fed is what the template renders for the tool messages
and the next assistant turn: the conversation is rendered with and without them, and only the
difference goes into the cache (``splice_text``).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends.base import Model
from .errors import GenerationOptionsError

__all__ = [
    "BUILT_IN_TEMPLATES",
    "HERMES_CHATML",
    "QUESTION_ANSWER",
    "assistant_message",
    "read_template",
    "render",
    "splice_text",
    "supports_tools",
    "template_for",
]

HERMES_CHATML = (Path(__file__).parent / "hermes_chatml.jinja").read_text(encoding="utf-8")
"""toolrun's Hermes-style template for ChatML models whose own template knows no tools."""

QUESTION_ANSWER = (Path(__file__).parent / "question_answer.jinja").read_text(encoding="utf-8")
"""Conversations as the pipeline's texts read ("Question: ...\nAnswer: ..."), for adapters trained
on such texts: ``toolrun finetune --chat-template`` ships it in the adapter folder."""

BUILT_IN_TEMPLATES = {"question-answer": QUESTION_ANSWER, "hermes-chatml": HERMES_CHATML}
"""The templates written here, by the names ``--chat-template`` options take."""


def read_template(path: str | Path) -> str:
    """A Jinja chat template from a file, or one of ``BUILT_IN_TEMPLATES`` by name where no such
    file exists (for ``--chat-template`` options)."""
    if str(path) in BUILT_IN_TEMPLATES and not Path(path).exists():
        return BUILT_IN_TEMPLATES[str(path)]
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = f"cannot read the chat template {str(path)!r}: {exc}"
        raise GenerationOptionsError(message) from None


def supports_tools(template: str | None) -> bool:
    """Does this template render a ``tools`` list (and so tool calls and results)?"""
    code = _JINJA_COMMENT.sub("", template or "")  # a comment may say "tools" and render none
    return "tools" in code


_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)


def template_for(model: Model, call_format: str, *, tools_given: bool) -> str:
    """The template to render with: the model's own, or HERMES_CHATML where it knows no tools.

    The bracket (toolformer) format renders with any template: its models learned their tools'
    calls in training and need no schema in the prompt. Raises GenerationOptionsError when the
    model has no template at all, or a chat format's tools are asked for with a non-ChatML
    template that cannot show them.
    """
    template = model.chat_template
    if not template:
        raise GenerationOptionsError(
            f"{model.name} has no chat template: give prompts as text with generate(), or "
            "pass chat_template= (a Jinja template) to chat()"
        )
    if supports_tools(template) or call_format == "toolformer":
        return template
    if not (tools_given or call_format == "hermes"):
        return template
    # A ChatML model (even one whose adapter ships another template) asked for Hermes calls.
    if call_format == "hermes" and any(
        "<|im_start|>" in (t or "") for t in (template, model.own_chat_template)
    ):
        return HERMES_CHATML
    raise GenerationOptionsError(
        f"the chat template of {model.name} cannot show tools and is not ChatML; pass "
        "chat_template= with one that renders `tools`, tool calls and tool messages"
    )


def render(
    model: Model,
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render ``messages`` (and the tools' JSON schemas) with ``template``."""
    from transformers.utils.chat_template_utils import render_jinja_template

    extra: dict[str, Any] = dict(model.template_tokens)
    try:
        rendered: Any = render_jinja_template(
            [[_for_template(m) for m in messages]],
            tools=[dict(t) for t in tools] if tools else None,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
    except Exception as exc:  # jinja's TemplateError, raise_exception() in a template
        raise GenerationOptionsError(f"the chat template failed to render: {exc}") from exc
    return str(rendered[0][0])  # (one text per conversation, generation spans)


def splice_text(
    model: Model,
    template: str,
    conversation: Sequence[Mapping[str, Any]],
    assistant: Mapping[str, Any],
    tool_messages: Sequence[Mapping[str, Any]],
    end_of_turn: str,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """What the template renders after the assistant's turn for its tool messages and the next
    assistant turn's opening: the difference between two renderings.

    ``end_of_turn`` is the text of the token that ended the assistant's turn, already in the cache:
    the splice starts right after its last occurrence in the rendering without the tool messages.
    """
    before = render(
        model, template, [*conversation, assistant], tools=tools, add_generation_prompt=False
    )
    after = render(
        model,
        template,
        [*conversation, assistant, *tool_messages],
        tools=tools,
        add_generation_prompt=True,
    )
    cut = before.rfind(end_of_turn) + len(end_of_turn) if end_of_turn in before else len(before)
    if after[:cut] != before[:cut]:
        # The template renders the earlier turns differently once more follow (some hide an
        # assistant's reasoning): the splice is what follows the shared prefix.
        cut = _common_prefix(before, after)
    return after[cut:]


def assistant_message(
    content: str, calls: Sequence[tuple[str, str, Mapping[str, Any] | str]]
) -> dict[str, Any]:
    """An OpenAI-style assistant message with ``tool_calls`` from ``(id, name, arguments)``."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments, ensure_ascii=False),
                },
            }
            for call_id, name, arguments in calls
        ]
    return message


def _for_template(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as templates expect it: tool-call arguments as objects, not JSON strings."""
    out = dict(message)
    calls = out.get("tool_calls")
    if calls:
        fixed = []
        for call in calls:
            call = dict(call)
            function = dict(call.get("function") or {})
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                # left as written when it is not JSON: the template shows what the model wrote
                with contextlib.suppress(ValueError):
                    function["arguments"] = json.loads(arguments) if arguments.strip() else {}
            call["function"] = function
            fixed.append(call)
        out["tool_calls"] = fixed
    if out.get("content") is None:
        out["content"] = ""
    return out


def _common_prefix(a: str, b: str) -> int:
    size = min(len(a), len(b))
    for i in range(size):
        if a[i] != b[i]:
            return i
    return size
