"""Training and held-out texts where a unit conversion helps: templates with varied wording,
people, things and units; no downloads.

    python examples/teach_a_tool/make_texts.py -n 240 -o build/teach_a_tool/texts.jsonl

Each text states an amount and later its conversion ("... 42 km, which is 26.1 miles."). The
held-out texts use other sentence templates and other random draws: the check asks whether the
finetuned model calls the tool on wording it was not trained on.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from units import convert_value

from toolrun.syntax import render_value

# Unit pairs of each dimension, and the amounts drawn for the source unit.
PAIRS = {
    "length": [("km", "mi"), ("mi", "km"), ("m", "ft"), ("ft", "m"), ("cm", "in"), ("in", "cm")],
    "mass": [("kg", "lb"), ("lb", "kg"), ("g", "oz"), ("oz", "g")],
    "volume": [("l", "gal"), ("gal", "l")],
}
RANGES = {
    "km": (1, 100), "mi": (1, 60), "m": (1, 400), "ft": (2, 300), "cm": (2, 200), "in": (1, 80),
    "kg": (1, 120), "lb": (2, 250), "g": (10, 900), "oz": (1, 40), "l": (1, 200), "gal": (1, 60),
}  # fmt: skip
WORDS = {
    "km": "kilometres", "mi": "miles", "m": "metres", "ft": "feet", "cm": "centimetres",
    "in": "inches", "kg": "kilograms", "lb": "pounds", "g": "grams", "oz": "ounces",
    "l": "litres", "gal": "gallons",
}  # fmt: skip
# Units written only as words in running text ("mi", "in", "l" read badly as abbreviations).
WORD_ONLY = {"mi", "in", "l", "oz", "gal"}
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Jack", "Sofia", "Lucas"]

# {v} {S}: the amount and its unit; {r} {T}: the conversion; {Tw}: the wanted unit as a word.
TRAIN = {
    "length": [
        "{name} ran {v} {S} on Saturday, which is {r} {T}.",
        "The trail is {v} {S} long, or about {r} {T}.",
        "A distance of {v} {S} equals {r} {T}.",
        "The bridge is {v} {S} long, that is {r} {T}.",
        "The sign says {v} {S} to the coast, which is {r} {T} for visitors from abroad.",
        "{name} swam {v} {S} this morning. In {Tw}, that is {r} {T}.",
    ],
    "mass": [
        "The box weighs {v} {S}. In {Tw}, that is {r} {T}.",
        "{name}'s suitcase weighs {v} {S}, so the airline lists it as {r} {T}.",
        "{name} bought {v} {S} of apples, roughly {r} {T}.",
        "The parcel is {v} {S}, which comes to {r} {T}.",
    ],
    "volume": [
        "Our recipe needs {v} {S} of milk, which is {r} {T}.",
        "The pool holds {v} {S} of water, or {r} {T}.",
        "{name} filled the tank with {v} {S} of fuel, about {r} {T}.",
    ],
    "any": [
        "How many {Tw} is {v} {S}? It is {r} {T}.",
        "Converted to {Tw}, {v} {S} is {r} {T}.",
        "Q: What is {v} {S} in {Tw}?\nA: {v} {S} is {r} {T}.",
    ],
}
HELD_OUT = {
    "length": [
        "{name} cycled {v} {S} to work, a distance of {r} {T}.",
        "The rope measures {v} {S}; that is {r} {T}.",
    ],
    "mass": ["The baby weighed {v} {S} at birth, which is {r} {T}."],
    "volume": ["The fish tank is filled with {v} {S} of water, about {r} {T}."],
    "any": ["In {Tw}, {v} {S} comes to {r} {T}.", "{v} {S} expressed in {Tw} is {r} {T}."],
}


@dataclass
class Sample:
    """A text, and where its conversion is: ``text[:cut]`` is the prompt before the result."""

    id: str
    text: str
    value: str
    source: str
    target: str
    result: str
    cut: int


def make_texts(count: int, seed: int = 0, *, held_out: bool = False) -> list[Sample]:
    """``count`` texts from the training templates (or the held-out ones), drawn with ``seed``."""
    rng = random.Random(seed)
    templates = HELD_OUT if held_out else TRAIN
    choices = [(dim, t) for dim, ts in templates.items() for t in ts]
    out = []
    for index in range(count):
        dim, template = rng.choice(choices)
        if dim == "any":
            dim = rng.choice(list(PAIRS))
        source, target = rng.choice(PAIRS[dim])
        low, high = RANGES[source]
        amount = (
            rng.randint(low, high) if rng.random() < 0.7 else rng.randint(low * 10, high * 10) / 10
        )
        value = render_value(float(amount))
        result = render_value(convert_value(float(value), source, target))
        words = {
            "S": _spelled(source, rng),
            "T": _spelled(target, rng),
            "Tw": WORDS[target],
            "name": rng.choice(NAMES),
        }
        text = template.format(v=value, r=result, **words)
        cut = text.rindex(f" {result} ")
        prefix = "heldout" if held_out else "train"
        out.append(Sample(f"{prefix}-{index}", text, value, source, target, result, cut))
    return out


def _spelled(unit: str, rng: random.Random) -> str:
    return WORDS[unit] if unit in WORD_ONLY or rng.random() < 0.5 else unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=240, help="how many texts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", action="store_true", help="the held-out templates")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    samples = make_texts(args.n, args.seed, held_out=args.held_out)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(asdict(sample)) + "\n")
    print(f"{len(samples)} texts -> {args.output}")


if __name__ == "__main__":
    main()
