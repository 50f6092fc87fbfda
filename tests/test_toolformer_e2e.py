"""End to end on the real default model: annotate a tiny corpus, keep a call, finetune, load,
and check that the adapter makes the model write the calls it was trained on (the base does not)."""

from __future__ import annotations

import json

import pytest

import toolrun
from toolrun.models import BASE_MODEL
from toolrun.templates import QUESTION_ANSWER
from toolrun.toolformer.annotate import AnnotateConfig, annotate, load_annotations
from toolrun.toolformer.data import load_corpus
from toolrun.toolformer.finetune import FinetuneConfig, finetune, load_texts
from toolrun.toolformer.score import precision_recall

ROWS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
        "many clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
        "<<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
        "babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she "
        "earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
]


@pytest.mark.slow
def test_annotate_finetune_and_load_the_adapter(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    model = toolrun.load_model(BASE_MODEL, device="cpu")
    registry = toolrun.ToolRegistry(["calculator"])
    output = tmp_path / "annotated.jsonl"
    config = AnnotateConfig(tools=["Calculator"], placement="inline", criterion="gain", tau_f=0.5)
    stats = annotate(model, registry, load_corpus(corpus), config, output, progress=False)
    assert stats["kept_per_tool"].get("Calculator", 0) >= 1
    lines = load_annotations(output)
    assert "[Calculator(48 / 2) → 24] 24 clips" in lines[0]["text"]
    assert precision_recall(lines)["correct"] >= 1

    texts = load_texts(output)
    expected = [("48 / 2", "24"), ("12 / 60", "0.2")]
    prompts = [text[: text.index(" [Calculator(")] for text in texts]
    assert [p.rsplit("\n", 1)[-1] for p in prompts] == [
        "Answer: Natalia sold 48/2 =",
        "Answer: Weng earns 12/60 =",
    ]
    # Where each training text makes its first call, the base writes on without one...
    for prompt in prompts:
        base = toolrun.generate(prompt, model=model, tools=["calculator"], max_new_tokens=12)
        assert base.calls == [], base.text

    # Four steps at a high rate: enough for a LoRA to learn two texts' calls (the real recipe
    # is 75 steps on 400 texts; this checks the pipeline, not the recipe).
    adapter = tmp_path / "adapter"
    training = FinetuneConfig(epochs=4, batch_size=2, lora_r=4, learning_rate=3e-3, warmup_steps=1)
    summary = finetune(
        model, texts, adapter, training, progress=False, chat_template=QUESTION_ANSWER
    )
    assert summary["steps"] == 4 and summary["last_loss"] < summary["first_loss"]
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "chat_template.jinja").read_text(encoding="utf-8") == QUESTION_ANSWER

    # ...and the finetuned model, loaded from the saved adapter, writes the call there.
    tuned = toolrun.load_model(BASE_MODEL, adapter=adapter, device="cpu")
    for prompt, (arguments, result) in zip(prompts, expected, strict=True):
        out = toolrun.generate(prompt, model=tuned, tools=["calculator"], max_new_tokens=12)
        assert [(c.name, c.arguments_text, c.result) for c in out.calls[:1]] == [
            ("Calculator", arguments, result)
        ], out.text
        assert out.text.startswith(f" [Calculator({arguments}) → {result}]")

    # In a chat the shipped template renders the question as the texts read, so the model calls
    # where it learned to (the base's ChatML would open the answer where it never saw a call).
    assert tuned.chat_template == QUESTION_ANSWER
    question = [{"role": "user", "content": ROWS[0]["question"]}]
    out = toolrun.chat(question, model=tuned, tools=["calculator"], max_new_tokens=24)
    assert [(c.name, c.arguments_text, c.result) for c in out.calls[:1]] == [
        ("Calculator", "48 / 2", "24")
    ], out.text
