"""Finetuning on the Trainer: the same steps as the hand-written loop it replaced (so the default
recipe's adapter does not change), gradient accumulation, resuming after an interruption, and
clear errors for bad data before any model loads."""

from __future__ import annotations

import copy
import json
import math
import random

import pytest
import torch

from toolrun.backends.transformers import TransformersModel
from toolrun.toolformer.data import PipelineError
from toolrun.toolformer.finetune import FinetuneConfig, batch_plan, finetune, load_texts, with_lora

TEXTS = [
    "So 48 / 2 = [Calculator(48 / 2) → 24] 24 clips.",
    "A plain sentence without any call in it at all.",
    "He had 3 + 4 = [Calculator(3 + 4) → 7] 7 apples and ate 2.",
    "The trip was 18 km, which is [Convert(18 km in miles) → 11.2] 11.2 miles.",
    "Short.",
]


def _reference_loop(base, texts, config):
    """The hand-written loop of toolrun 0.1 (fp32 LoRA), kept here as the reference."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    hf = base.model
    hf.train()
    hf = with_lora(hf, config)
    eos = sorted(base.eos_token_ids)[:1]
    examples = [list(base.encode(t))[: config.max_length - 1] + eos for t in texts]
    total = max(1, round(math.ceil(len(examples) / config.batch_size) * config.epochs))
    trainable = [p for p in hf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)

    def schedule(step):
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order, losses = [], []
    pad = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else eos[0]
    for _ in range(total):
        if len(order) < config.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[: config.batch_size]]
        del order[: config.batch_size]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        out = hf(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
    return losses, {k: v.detach().clone() for k, v in hf.state_dict().items() if "lora" in k}


def _lora_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture()
def fresh_model(tiny_llama, tokenizer):
    return lambda: TransformersModel(copy.deepcopy(tiny_llama), tokenizer, name="tiny")


CONFIG = dict(epochs=2.5, batch_size=2, learning_rate=1e-2, lora_r=4, lora_alpha=8, warmup_steps=2)


def test_trainer_steps_equal_the_hand_written_loop(fresh_model, tmp_path):
    config = FinetuneConfig(**CONFIG, lora_dropout=0.1, save_steps=0)
    reference, weights = _reference_loop(fresh_model(), TEXTS, config)
    summary = finetune(fresh_model(), TEXTS, tmp_path / "a", config, progress=False)
    got = json.loads((tmp_path / "a" / "training.json").read_text())
    assert summary["steps"] == len(reference) == 8
    assert got["first_loss"] == reference[0], (got["first_loss"], reference[0])
    assert summary["last_loss"] == pytest.approx(sum(reference[-10:]) / 8, rel=1e-5)
    saved = _lora_weights(tmp_path / "a")
    assert len(saved) == len(weights) > 0
    for key, value in weights.items():
        name = key.replace(".default", "")
        assert torch.equal(saved[name], value), (saved[name] - value).abs().max()


def test_accumulation_gives_the_same_steps_as_one_big_batch(fresh_model, tmp_path):
    whole = FinetuneConfig(**CONFIG, lora_dropout=0.0, save_steps=0)
    split = FinetuneConfig(**CONFIG, lora_dropout=0.0, save_steps=0, micro_batch_size=1)
    a = finetune(fresh_model(), TEXTS, tmp_path / "a", whole, progress=False)
    b = finetune(fresh_model(), TEXTS, tmp_path / "b", split, progress=False)
    # The loss is averaged over every token of the step, not over the micro-batches' means.
    assert b["first_loss"] == pytest.approx(a["first_loss"], rel=1e-5)
    for key, value in _lora_weights(tmp_path / "a").items():
        torch.testing.assert_close(_lora_weights(tmp_path / "b")[key], value, rtol=1e-4, atol=1e-5)


class _Interrupt(Exception):
    pass


def test_an_interrupted_finetuning_resumes_where_it_stopped(fresh_model, tmp_path):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise _Interrupt

    config = FinetuneConfig(**CONFIG, lora_dropout=0.1, save_steps=2)
    clean = finetune(fresh_model(), TEXTS, tmp_path / "clean", config, progress=False)
    with pytest.raises(_Interrupt):
        finetune(
            fresh_model(), TEXTS, tmp_path / "cut", config, progress=False, callbacks=[StopAfter()]
        )
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-4").is_dir()
    resumed = finetune(fresh_model(), TEXTS, tmp_path / "cut", config, progress=False)
    assert resumed["resumed_at_step"] == 4 and clean["resumed_at_step"] is None
    assert resumed["first_loss"] == clean["first_loss"]
    assert resumed["last_loss"] == pytest.approx(clean["last_loss"], rel=1e-5)
    for key, value in _lora_weights(tmp_path / "clean").items():
        torch.testing.assert_close(_lora_weights(tmp_path / "cut")[key], value)
    assert not (tmp_path / "cut" / "checkpoints").exists()  # finished: nothing left to resume
    # Other settings do not resume from those checkpoints: they start over.
    with pytest.raises(_Interrupt):
        finetune(
            fresh_model(), TEXTS, tmp_path / "x", config, progress=False, callbacks=[StopAfter()]
        )
    other = FinetuneConfig(**{**CONFIG, "learning_rate": 5e-3}, save_steps=2)
    assert (
        finetune(fresh_model(), TEXTS, tmp_path / "x", other, progress=False)["resumed_at_step"]
        is None
    )


def test_batch_plan_deals_shuffled_texts_and_keeps_leftovers_first():
    plan = batch_plan(5, 2, 4, seed=0)
    assert len(plan) == 8 and sorted(plan[:5]) == [0, 1, 2, 3, 4]
    assert batch_plan(5, 2, 4, seed=0) == plan != batch_plan(5, 2, 4, seed=1)


def test_bad_training_data_and_options_fail_clearly(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PipelineError, match="no training texts"):
        load_texts(empty)
    with pytest.raises(PipelineError, match="no file"):
        load_texts(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{oops\n{"text": "b"}\n')
    with pytest.raises(PipelineError, match=r"broken.jsonl:2: not JSON"):
        load_texts(broken)
    half = tmp_path / "half.jsonl"
    half.write_text('{"text": "a"}\n{"text": "b')  # an interrupted run's last line
    assert load_texts(half) == ["a"]
    nocalls = tmp_path / "nocalls.jsonl"
    nocalls.write_text('{"text": "a", "calls": []}\n')
    with pytest.raises(PipelineError, match="with a kept call"):
        load_texts(nocalls, only_with_calls=True)
    with pytest.raises(PipelineError, match="micro_batch_size"):
        FinetuneConfig(batch_size=8, micro_batch_size=3).check()
