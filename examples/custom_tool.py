"""A custom tool: a typed, documented function becomes something the model can call.

    python examples/custom_tool.py          # the default model (SmolLM2-135M)
    python examples/custom_tool.py --fake   # a scripted model: instant, shows the mechanics

The name, the description and each argument's help come from the function; arguments the model
writes are parsed and validated against the type hints before the function runs.
"""

import sys

import toolrun
from toolrun.testing import ScriptedModel

METRES = {"km": 1000.0, "m": 1.0, "mi": 1609.344, "ft": 0.3048}


@toolrun.tool(name="Convert")
def convert(value: float, source: str, target: str) -> float:
    """Convert a length between units: km, m, mi or ft.

    Args:
        value: the amount to convert
        source: the unit it is in
        target: the unit wanted
    """
    if source not in METRES or target not in METRES:
        raise toolrun.ToolError(f"units must be among {', '.join(METRES)}")  # the model reads it
    return round(value * METRES[source] / METRES[target], 2)


def main(fake: bool) -> None:
    prompt = "Q: How many miles is a 42 km marathon?\nA:"
    script = [" 42 km is [Convert(42, km, mi) →", " 26.1 miles, or [Convert(42, km, furlong) →",
              " never mind."]  # fmt: skip
    model = ScriptedModel(script) if fake else None  # None: the default model
    out = toolrun.generate(prompt, model=model, tools=[convert], max_new_tokens=120)
    print(out.text)
    for call in out.calls:
        outcome = call.result if call.error is None else f"error: {call.error}"
        print(f"  {call.name}({call.arguments_text}) -> {outcome}")


if __name__ == "__main__":
    main("--fake" in sys.argv)
