"""The tool to teach: unit conversion from a fixed table, which a 135M model cannot do by itself.

    [Convert(42 km in miles) → 26.1]    [Convert(3.5 kg to pounds) → 7.7]

One text argument the model copies from what it read ("42 km", "miles"), parsed and checked by
the tool: a 135M model proposes the right call far more often this way than as typed
``Convert(42, km, mi)`` arguments, where it swaps and guesses unit codes (see README.md).

Give it to the pipeline as ``examples/teach_a_tool/units.py:convert`` (CLI) or ``convert``
(Python). Its ``examples`` are what the annotator prompts the model with: texts with the call
written in, the way the finetuned model will write it.
"""

from __future__ import annotations

import re

import toolrun

# Each unit in its dimension's base unit (metre, kilogram, litre).
UNITS = {
    "km": ("length", 1000.0),
    "m": ("length", 1.0),
    "cm": ("length", 0.01),
    "mi": ("length", 1609.344),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "l": ("volume", 1.0),
    "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784),
}
# The names people write for them (plurals are found by dropping the "s").
NAMES = {
    "kilometre": "km", "kilometer": "km", "metre": "m", "meter": "m", "centimetre": "cm",
    "centimeter": "cm", "mile": "mi", "foot": "ft", "feet": "ft", "inch": "in", "inche": "in",
    "kilogram": "kg", "kilo": "kg", "gram": "g", "pound": "lb", "lbs": "lb", "ounce": "oz",
    "litre": "l", "liter": "l", "millilitre": "ml", "milliliter": "ml", "gallon": "gal",
}  # fmt: skip
_QUERY = re.compile(
    r"^\s*(?P<value>-?\d[\d,]*(?:\.\d+)?)\s*(?P<source>[A-Za-z][A-Za-z .]*?)\s+"
    r"(?:in|to|into|as)\s+(?P<target>[A-Za-z][A-Za-z .]*?)\s*\??\s*$"
)


def unit_code(name: str) -> str:
    """ "km", "kilometres", "Miles" -> the table's code; raises ToolError for anything else."""
    word = name.strip().lower().rstrip(".")
    if word in UNITS:
        return word
    for candidate in (word, word[:-1] if word.endswith("s") else word):
        if candidate in NAMES:
            return NAMES[candidate]
    raise toolrun.ToolError(f"unknown unit {name!r}; use one of {', '.join(UNITS)}")


def convert_value(value: float, source: str, target: str) -> float:
    """``value`` in unit ``source`` expressed in ``target``, rounded to 1 decimal."""
    (kind, factor), (wanted, into) = UNITS[unit_code(source)], UNITS[unit_code(target)]
    if kind != wanted:
        raise toolrun.ToolError(f"cannot convert {kind} ({source}) to {wanted} ({target})")
    return round(value * factor / into, 1)


@toolrun.tool(
    name="Convert",
    examples=[
        "The marathon is 42 km long, which is [Convert(42 km in miles) → 26.1] 26.1 miles.",
        "How many pounds is 3.5 kg? It is [Convert(3.5 kg in pounds) → 7.7] 7.7 pounds.",
        "The tank holds 12 gallons, or [Convert(12 gallons in litres) → 45.4] 45.4 litres.",
        "She is 5.5 ft tall. In centimetres that is [Convert(5.5 ft in cm) → 167.6] 167.6 cm.",
    ],
)
def convert(query: str) -> float:
    """Convert an amount between units of length, mass or volume, rounded to 1 decimal.

    Args:
        query: the amount with its unit, then "in" and the unit wanted, e.g. 42 km in miles
    """
    found = _QUERY.match(query)
    if found is None:
        raise toolrun.ToolError("write the amount, its unit, 'in' and the unit wanted")
    value = float(found["value"].replace(",", ""))
    return convert_value(value, found["source"], found["target"])
