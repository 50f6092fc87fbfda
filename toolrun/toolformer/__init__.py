"""The Toolformer pipeline: annotate a corpus with tool calls the model finds useful, then finetune.

    sample.py    candidate positions (p(" [") under the tool's few-shot prompt) and candidate calls
    execute.py   run candidates through the registry
    filter.py    the weighted loss, both placements (prefix, inline), both criteria (paper, gain)
    annotate.py  the resumable driver that writes annotated JSONL and a stats report
    finetune.py  LoRA (or full) finetuning on the annotated texts
    score.py     precision/recall of kept calls against gold marks (GSM8K's <<expr=result>>)

Heavy dependencies (torch, transformers, peft) are imported inside the functions that need them.
"""

from __future__ import annotations

__all__: list[str] = []
