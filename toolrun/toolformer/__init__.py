"""The Toolformer pipeline: annotate a corpus with tool calls the model finds useful, then finetune.

    pipeline.py      annotate() and finetune() for apps: tools from anywhere, texts or files in
    prompts.py       each tool's annotation prompt, built from its examples (the paper's wording)
    sample.py        candidate positions (p(" [") under the prompt) and candidate calls (sampled
                     under the prompt, or a heuristic proposer)
    execute.py       run candidates through the registry
    filter.py        the weighted loss, both placements (prefix, inline), both criteria
    annotate.py      per-tool plans, the annotator, the resumable driver, merging runs, stats
    ray_annotate.py  the same annotation on Ray Data: a model per actor, sharded output
    finetune.py      LoRA / QLoRA / full finetuning on transformers' Trainer, resumable
    score.py         precision/recall of kept calls against gold marks (GSM8K's <<expr=result>>)
    data.py          corpora, records, PipelineError for bad input
    commands.py      `toolrun annotate`, `toolrun finetune`, `toolrun score-annotations`

Heavy dependencies (torch, transformers, peft, ray) are imported inside the functions that need
them.
"""

from __future__ import annotations

__all__: list[str] = []
