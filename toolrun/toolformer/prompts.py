"""The annotation prompt of each tool: the paper's "Your task is to add calls to a ... API" prompt,
built from the tool's examples.

A tool's examples are texts with the call written in, as the runtime writes it:
``"From this, we have 4 * 30 minutes = [Calculator(4 * 30) → 120] 120 minutes."``. The prompt
shows each as an ``Input:`` line (the text without its calls) and an ``Output:`` line (the calls
written in, results left out, as in the paper), then ends in ``Input: {text}`` / ``Output:``: the
model's probability of " [" while it copies the text after ``Output:`` picks the positions worth a
call, and what it writes after ``[Name(`` there is a candidate call.

Examples come from ``@toolrun.tool(examples=[...])``; the built-in tools that carry none fall back
to ``BUILTIN_EXAMPLES`` (the paper's own examples, with results added). The Calculator's and the
Calendar's prompts are the paper's, word for word.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ToolDefinitionError
from ..registry import Tool
from ..syntax import iter_calls, render_call, strip_calls

__all__ = [
    "BUILTIN_EXAMPLES",
    "build_prompt",
    "example_lines",
    "examples_for",
    "prompt_for",
]

# The paper's examples (Schick et al. 2023, appendix A.2), results added as the tools return them.
BUILTIN_EXAMPLES: dict[str, tuple[str, ...]] = {
    "calculator": (
        "The number in the next term is 18 + 12 x 3 = [Calculator(18 + 12 * 3) → 54] 54.",
        "The population is 658,893 people. This is 11.4% of the national average of "
        "[Calculator(658,893 / 11.4%) → 5779763.16] 5,763,868 people.",
        "A total of 252 qualifying matches were played, and 723 goals were scored (an average of "
        "[Calculator(723 / 252) → 2.87] 2.87 per match). This is three times less than the "
        "[Calculator(723 * 3) → 2169] 2169 goals last year.",
        "I went to Paris in 1994 and stayed there until 2011, so in total, it was "
        "[Calculator(2011 - 1994) → 17] 17 years.",
        "From this, we have 4 * 30 minutes = [Calculator(4 * 30) → 120] 120 minutes.",
    ),
    "calendar": (
        "Today is the first [Calendar() → Today is Friday, January 6, 2023.] Friday of the year.",
        "The president of the United States is [Calendar() → Today is Monday, March 20, 2023.] "
        "Joe Biden.",
        "The current day of the week is [Calendar() → Today is Wednesday, May 10, 2023.] "
        "Wednesday.",
        "The number of days from now until Christmas is "
        "[Calendar() → Today is Friday, November 25, 2022.] 30.",
        "The store is never open on the weekend, so today it is "
        "[Calendar() → Today is Saturday, June 3, 2023.] closed.",
    ),
    "qa": (
        'Joe Biden was born in [QA("Where was Joe Biden born?") → Scranton] Scranton, '
        '[QA("In which state is Scranton?") → Pennsylvania] Pennsylvania.',
        'Coca-Cola, or [QA("What other name is Coca-Cola known by?") → Coke] Coke, is a '
        'carbonated soft drink manufactured by [QA("Who manufactures Coca-Cola?") → '
        "The Coca-Cola Company] the Coca-Cola Company.",
    ),
    "wikisearch": (
        "The colors on the flag of Ghana have the following meanings: red is for "
        '[WikiSearch("Ghana flag red meaning") → Red symbolises the blood of those who died in '
        "the country's struggle for independence.] the blood of martyrs, green for forests, and "
        "gold for mineral wealth.",
        "But what are the risks during production of nanomaterials? "
        '[WikiSearch("nanomaterial production risks") → Some nanomaterials may give rise to '
        "various kinds of lung damage.] Some nanomaterials may give rise to various kinds of lung "
        "damage.",
        'Metformin is the first-line drug for [WikiSearch("Metformin first-line drug") → '
        "Metformin is the first-line medication for the treatment of type 2 diabetes.] patients "
        "with type 2 diabetes and obesity.",
    ),
    "mt": (
        "He has published one book: O homem suprimido "
        '[MT("O homem suprimido") → The Suppressed Man] ("The Suppressed Man")',
        "In Morris de Jonge's Jeschuah, der klassische jüdische Mann "
        '[MT("der klassische jüdische Mann") → the classic Jewish man], there is a description '
        "of a Jewish writer",
    ),
    "wolframalpha": (
        'The boiling point of water at the top of Mount Everest is [WolframAlpha("boiling point '
        'of water at 8849 m altitude") → 70.5 °C] about 70 °C.',
        'The distance from the Earth to the Moon is [WolframAlpha("distance Earth Moon") → '
        "384400 km] 384,400 km on average.",
    ),
}

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
    """The tool's own examples, else the built-in table's for a built-in tool's name."""
    return tuple(tool.examples) or BUILTIN_EXAMPLES.get(tool.name.lower(), ())


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
