"""The paper's few-shot annotation prompts (Schick et al. 2023, Appendix A.2), in toolrun's syntax.

The paper writes calls as ``[Calculator(expr)]``, which is already toolrun's grammar. Each prompt
ends in ``Input: {text}`` / ``Output:``; the model's probability of " [" while it copies the text
after ``Output:`` picks the positions worth a call.
"""

from __future__ import annotations

__all__ = ["PROMPTS", "prompt_for"]

CALCULATOR_PROMPT = """Your task is to add calls to a Calculator API to a piece of text. The calls \
should help you get information required to complete the text. You can call the API by writing \
"[Calculator(expression)]" where "expression" is the expression to be computed. Here are some \
examples of API calls:
Input: The number in the next term is 18 + 12 x 3 = 54.
Output: The number in the next term is 18 + 12 x 3 = [Calculator(18 + 12 * 3)] 54.
Input: The population is 658,893 people. This is 11.4% of the national average of 5,763,868 \
people.
Output: The population is 658,893 people. This is 11.4% of the national average of \
[Calculator(658,893 / 11.4%)] 5,763,868 people.
Input: A total of 252 qualifying matches were played, and 723 goals were scored (an average of \
2.87 per match). This is three times less than the 2169 goals last year.
Output: A total of 252 qualifying matches were played, and 723 goals were scored (an average of \
[Calculator(723 / 252)] 2.87 per match). This is three times less than the [Calculator(723 * 3)] \
2169 goals last year.
Input: I went to Paris in 1994 and stayed there until 2011, so in total, it was 17 years.
Output: I went to Paris in 1994 and stayed there until 2011, so in total, it was \
[Calculator(2011 - 1994)] 17 years.
Input: From this, we have 4 * 30 minutes = 120 minutes.
Output: From this, we have 4 * 30 minutes = [Calculator(4 * 30)] 120 minutes.
Input: {text}
Output:"""

CALENDAR_PROMPT = """Your task is to add calls to a Calendar API to a piece of text. The API calls \
should help you get information required to complete the text. You can call the API by writing \
"[Calendar()]". Here are some examples of API calls:
Input: Today is the first Friday of the year.
Output: Today is the first [Calendar()] Friday of the year.
Input: The president of the United States is Joe Biden.
Output: The president of the United States is [Calendar()] Joe Biden.
Input: The current day of the week is Wednesday.
Output: The current day of the week is [Calendar()] Wednesday.
Input: The number of days from now until Christmas is 30.
Output: The number of days from now until Christmas is [Calendar()] 30.
Input: The store is never open on the weekend, so today it is closed.
Output: The store is never open on the weekend, so today it is [Calendar()] closed.
Input: {text}
Output:"""

PROMPTS = {"calculator": CALCULATOR_PROMPT, "calendar": CALENDAR_PROMPT}

_GENERIC = """Your task is to add calls to a {name} API to a piece of text. The calls should help \
you get information required to complete the text. You can call the API by writing \
"[{name}(input)]".
Input: {{text}}
Output:"""


def prompt_for(tool_name: str) -> str:
    """The few-shot prompt for a tool (a generic one-line instruction for tools the paper lacks)."""
    return PROMPTS.get(tool_name.lower(), _GENERIC.format(name=tool_name))
