"""The annotation prompt of each tool: the paper's "Your task is to add calls to a ... API" prompt,
built from the tool's examples.

A tool's examples are texts with the call written in, as the runtime writes it:
``"From this, we have 4 * 30 minutes = [Calculator(4 * 30) → 120] 120 minutes."``. The prompt
shows each as an ``Input:`` line (the text without its calls) and an ``Output:`` line (the calls
written in, results left out, as in the paper), then ends in ``Input: {text}`` / ``Output:``: the
model's probability of " [" while it copies the text after ``Output:`` picks the positions worth a
call, and what it writes after ``[Name(`` there is a candidate call.

Examples come from ``@toolrun.tool(examples=[...])``; the built-in tools carry the paper's own
(``toolrun/tools/*.py``, ``EXAMPLES``, results added). The Calculator's and the Calendar's prompts
are the paper's, word for word.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ToolDefinitionError
from ..registry import Tool
from ..syntax import iter_calls, render_call, strip_calls

__all__ = [
    "build_prompt",
    "example_lines",
    "examples_for",
    "prompt_for",
]

# The paper's instructions, word for word, for the tools it had.
_INSTRUCTIONS = {
    "calculator": "Your task is to add calls to a Calculator API to a piece of text. The calls "
    "should help you get information required to complete the text. You can call the API by "
    'writing "[Calculator(expression)]" where "expression" is the expression to be computed. '
    "Here are some examples of API calls:",
    "calendar": "Your task is to add calls to a Calendar API to a piece of text. The API calls "
    "should help you get information required to complete the text. You can call the API by "
    'writing "[Calendar()]". Here are some examples of API calls:',
    "qa": "Your task is to add calls to a Question Answering API to a piece of text. The "
    "questions should help you get information required to complete the text. You can call the "
    'API by writing "[QA(question)]" where "question" is the question you want to ask. Here are '
    "some examples of API calls:",
    "wikisearch": "Your task is to complete a given piece of text. You can use a Wikipedia Search "
    'API to look up information. You can do so by writing "[WikiSearch(term)]" where "term" is '
    "the search term you want to look up. Here are some examples of API calls:",
    "mt": "Your task is to complete a given piece of text by using a Machine Translation API. You "
    'can do so by writing "[MT(text)]" where text is the text to be translated into English. '
    "Here are some examples:",
}


def examples_for(tool: Tool) -> tuple[str, ...]:
    """The tool's own examples (``@toolrun.tool(examples=...)``; the built-in tools carry the
    paper's)."""
    return tuple(tool.examples)


def example_lines(tool_name: str, example: str) -> tuple[str, str]:
    """(Input, Output) of one example: the text without its calls, and with the calls written in
    without results. Raises ToolDefinitionError when the example holds no call to the tool."""
    calls = list(iter_calls(example))
    if not any(call.name.lower() == tool_name.lower() for call in calls):
        raise ToolDefinitionError(
            f"example for {tool_name} has no call to it, e.g. "
            f"'... [{tool_name}(arguments) → result] ...': {example!r}"
        )
    output, last = [], 0
    for call in calls:
        output += [example[last : call.start], render_call(call.name, call.arguments)]
        last = call.end
    output.append(example[last:])
    return strip_calls(example), "".join(output)


def check_examples(tool: Tool, examples: Sequence[str]) -> None:
    """Every example calls the tool with arguments it accepts; one error lists every problem."""
    problems = []
    for i, example in enumerate(examples):
        try:
            example_lines(tool.name, example)
        except ToolDefinitionError as exc:
            problems.append(f"example {i + 1}: {exc}")
            continue
        for call in iter_calls(example):
            if call.name.lower() != tool.name.lower():
                continue
            try:
                tool.bind(call.arguments)
            except Exception as exc:  # ArgumentSyntaxError or pydantic.ValidationError
                problems.append(f"example {i + 1}: {tool.name}({call.arguments}) is invalid: {exc}")
    if problems:
        raise ToolDefinitionError(
            f"bad examples for {tool.name}:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def build_prompt(tool: Tool, examples: Sequence[str]) -> str:
    """The paper's prompt for ``tool``: instruction, examples, then ``Input: {text}\\nOutput:``."""
    lines = [_INSTRUCTIONS.get(tool.name.lower()) or _instruction(tool)]
    for example in examples:
        given, wanted = example_lines(tool.name, example)
        lines += [f"Input: {given}", f"Output: {wanted}"]
    lines += ["Input: {text}", "Output:"]
    return "\n".join(lines)


def _instruction(tool: Tool) -> str:
    """The paper's wording for a tool it did not have, from the tool's signature and docstring."""
    names = tool.parameters
    parts = [f'"{name}" is {tool.parameter_help.get(name) or "the " + name}' for name in names]
    where = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)
    description = (tool.description.splitlines() or [""])[0].strip()
    about = f" The {tool.name} API: {description.rstrip('.')}." if description else ""
    return (
        f"Your task is to add calls to a {tool.name} API to a piece of text.{about} The calls "
        "should help you get information required to complete the text. You can call the API by "
        f'writing "[{tool.name}({", ".join(names)})]"' + (f" where {where}" if where else "") + ". "
        "Here are some examples of API calls:"
    )


def prompt_for(tool: Tool | str) -> str:
    """The prompt for a tool (or a built-in tool's name); a tool without examples gets the bare
    instruction, which is enough to score positions but not to sample calls."""
    if isinstance(tool, str):
        from ..registry import resolve_tool

        tool = resolve_tool(tool)
    return build_prompt(tool, examples_for(tool))
