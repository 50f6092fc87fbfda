"""The held-out check: does the model call Convert on texts it was not trained on, are its calls
valid, and does it use the result?

For each held-out text the prompt is the text up to its conversion ("... 42 km, which is"); the
model writes on, greedily, with Convert available. Per prompt:

- called: it wrote a Convert call;
- valid: the call parsed and the tool accepted it (no ``→ error``), over the calls made;
- used: the next number written after the call is the call's result, over the valid calls;
- right: the call's result is the text's own conversion, over the valid calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from make_texts import Sample
from units import convert

import toolrun
from toolrun.toolformer.sample import NUMBER, number_value


def check(model: Any, samples: Sequence[Sample], *, max_new_tokens: int = 24) -> dict[str, Any]:
    """Call rate, valid and used shares, and the first outputs, over ``samples``."""
    called = valid = used = right = calls = 0
    outputs = []
    started = time.perf_counter()
    for sample in samples:
        prompt = sample.text[: sample.cut]
        out = toolrun.generate(
            prompt, model=model, tools=[convert], max_new_tokens=max_new_tokens, stop=["\n"]
        )
        made = [c for c in out.calls if c.name == "Convert"]
        called += bool(made)
        calls += len(made)
        for call in made:
            if call.error is not None:
                continue
            valid += 1
            after = NUMBER.search(out.text[call.end :])
            used += after is not None and number_value(after.group(0)) == number_value(call.result)
            right += number_value(call.result or "") == number_value(sample.result)
        outputs.append(prompt + out.text)
    n = len(samples)
    return {
        "prompts": n,
        "call_rate": called / n,
        "calls": calls,
        "valid": valid / calls if calls else 0.0,
        "used": used / valid if valid else 0.0,
        "right": right / valid if valid else 0.0,
        "seconds": round(time.perf_counter() - started, 1),
        "outputs": outputs[:5],
    }
