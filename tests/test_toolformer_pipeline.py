"""The filter's arithmetic on a tiny random Llama, position sampling on a scripted model, the
annotation driver (resume after interruption) and LoRA finetuning, all in seconds."""

from __future__ import annotations

import json
import math

import pytest
import torch

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.testing import ScriptedModel, ScriptedSession
from toolrun.toolformer.annotate import AnnotateConfig, annotate, load_annotations
from toolrun.toolformer.data import GoldMark, Record
from toolrun.toolformer.filter import LossScorer, call_gain, loss_weights
from toolrun.toolformer.finetune import FinetuneConfig, finetune, load_texts
from toolrun.toolformer.sample import number_value, score_positions, select_positions


@toolrun.tool(name="Calculator")
def adder(expression: str) -> str:
    """Adds or multiplies two integers: '2 + 3', '4 * 5' (enough for these tests)."""
    a, op, b = expression.split()
    if op not in "+*":
        raise toolrun.ToolError(f"unsupported {op}")
    return str(int(a) + int(b) if op == "+" else int(a) * int(b))


def _logprobs(hf, ids):
    """log p(ids[j] | ids[:j]) for j >= 1, from one plain forward without any cache."""
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return [None] + [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))]


def test_loss_weights_are_the_papers():
    assert loss_weights(5) == pytest.approx([1 / 3, 0.8 / 3, 0.6 / 3, 0.4 / 3, 0.2 / 3])
    assert sum(loss_weights(7)) == pytest.approx(1.0)  # t >= 5 weigh nothing
    assert loss_weights(7)[5:] == [0.0, 0.0]
    assert call_gain("paper", 2.0, 1.0, 3.0) == 1.0
    assert call_gain("gain", 2.0, 1.0, 3.0) == 2.0


def test_inline_and_prefix_losses_match_hand_computation(tiny_llama, tokenizer):
    scorer = LossScorer(tiny_llama, window=5, batch_size=2)
    w = [1.0, 0.8, 0.6, 0.4, 0.2]
    ids = tokenizer.encode(
        "Natalia sold 48/2 = 24 clips in May and more.", add_special_tokens=False
    )
    b = 7
    call = tokenizer.encode(" [Calculator(48 / 2) → 24]", add_special_tokens=False)
    bare = tokenizer.encode(" [Calculator(48 / 2)]", add_special_tokens=False)

    def by_hand(sequence, first):  # weighted loss of the 5 tokens from index `first`
        lp = _logprobs(tiny_llama, sequence)
        return -sum(w[t] * lp[first + t] for t in range(5)) / 3.0

    expected = [
        by_hand(ids, b),
        by_hand(ids[:b] + call + ids[b:], b + len(call)),
        by_hand(ids[:b] + bare + ids[b:], b + len(bare)),
    ]
    # batch_size 2 splits the three rows across batches with padding: the values must not move.
    got = scorer.inline(ids, b, [[], call, bare])
    assert got == pytest.approx(expected, abs=1e-4)
    many = scorer.inline_many(ids, {b: [call], 3: [[], bare]})
    assert many[b] == pytest.approx(expected[1:2], abs=1e-4)
    assert many[3] == pytest.approx(
        [by_hand(ids, 3), by_hand(ids[:3] + bare + ids[3:], 3 + len(bare))], abs=1e-4
    )
    # prefix: the call in front of the whole text, one row gives every boundary.
    table = scorer.prefix(ids, [3, b], [[], call])
    assert table[0] == pytest.approx([by_hand(ids, 3), by_hand(ids, b)], abs=1e-4)
    assert table[1] == pytest.approx(
        [by_hand(call + ids, len(call) + 3), by_hand(call + ids, len(call) + b)], abs=1e-4
    )


def test_window_cut_by_the_end_of_the_text(tiny_llama, tokenizer):
    scorer = LossScorer(tiny_llama)
    ids = tokenizer.encode("one two three four", add_special_tokens=False)
    b = len(ids) - 2
    lp = _logprobs(tiny_llama, ids)
    assert scorer.inline(ids, b, [[]])[0] == pytest.approx(
        -(lp[b] + 0.8 * lp[b + 1]) / 3.0, abs=1e-5
    )


class _PeekSession(ScriptedSession):
    """Logits depend on the text fed so far: " [" scores 3 after "=", 0 elsewhere."""

    def feed(self, ids):
        self.feeds.append(list(ids))
        logits = torch.zeros(self.model.vocab_size)
        text = self.model.decode([i for feed in self.feeds for i in feed])
        logits[self.model.call_start_token] = 3.0 if text.rstrip().endswith("=") else 0.0
        return logits


class _PeekModel(ScriptedModel):
    def new_session(self):
        return _PeekSession(self)


def test_sampling_positions_and_thresholds_on_a_scripted_model():
    model = _PeekModel("")
    text = "So 4 + 4 = 8 and 2 + 2 = 4 then 9"
    positions = [text.index(" 8"), text.index(" 2"), text.index(" 4 then"), text.index(" 9")]
    probabilities = score_positions(model, "Prompt. Input: {text}\nOutput:", text, positions)
    high = math.exp(3) / (math.exp(3) + model.vocab_size - 1)
    low = 1 / model.vocab_size
    assert probabilities == pytest.approx([high, low, high, low])
    both = select_positions(positions, probabilities, tau_s=0.05, k=5)
    assert [p.index for p in both] == [positions[0], positions[2]]
    assert [p.index for p in select_positions(positions, probabilities, tau_s=0.0, k=3)] == sorted(
        [positions[0], positions[2], positions[1]]
    )
    assert select_positions(positions, probabilities, tau_s=0.5, k=5) == []
    assert [p.index for p in select_positions(positions, probabilities, tau_s=0.0, k=1)] == [
        positions[0]
    ]


@pytest.fixture()
def tiny_model(tiny_llama, tokenizer):
    return TransformersModel(tiny_llama, tokenizer, name="tiny")


RECORDS = [
    Record(id=f"r{i}", text=f"Q: add.\nA: {i} + 3 = {i + 3}, times 2 = {2 * i + 6}.", start=11)
    for i in range(1, 4)
]


def test_annotate_resumes_after_interruption(tiny_model, tmp_path):
    registry = toolrun.ToolRegistry([adder])
    config = AnnotateConfig(tau_f=-100.0)  # keep the best call everywhere: the tiny model is random
    clean = tmp_path / "clean.jsonl"
    stats = annotate(tiny_model, registry, RECORDS, config, clean, progress=False)
    assert (
        stats["texts"] == 3 and stats["kept"] == 6 and stats["kept_per_tool"] == {"Calculator": 6}
    )
    line = load_annotations(clean)[0]
    assert (
        line["text"] == "Q: add.\nA: 1 + 3 = [Calculator(1 + 3) → 4] 4, times 2 = "
        "[Calculator(4 * 2) → 8] 8."
    )
    assert json.loads((tmp_path / "clean.jsonl.stats.json").read_text())["texts"] == 3

    resumed = tmp_path / "resumed.jsonl"
    annotate(tiny_model, registry, RECORDS, config, resumed, progress=False, max_records=1)
    with resumed.open("a") as handle:
        handle.write('{"id": "r2", "text": "half a li')  # killed mid-write
    stats = annotate(tiny_model, registry, RECORDS, config, resumed, progress=False)
    assert stats["texts"] == 3 and stats["seconds_this_run"] >= 0
    assert [x["id"] for x in load_annotations(resumed)] == ["r1", "r2", "r3"]
    assert resumed.read_text() == clean.read_text()


def test_prefix_placement_and_consistency(tiny_model, tmp_path):
    registry = toolrun.ToolRegistry([adder])
    both = AnnotateConfig(placement="prefix", tau_f=-100.0, consistency=False, last_n=2)
    annotate(tiny_model, registry, RECORDS[:1], both, tmp_path / "p.jsonl", progress=False)
    line = load_annotations(tmp_path / "p.jsonl")[0]
    sizes = [len(entry["candidates"]) for entry in line["scored"]]
    assert max(sizes) > 1  # without the check, calls with other results are scored too
    assert all(len(c) == 4 for entry in line["scored"] for c in entry["candidates"])
    checked = AnnotateConfig(placement="prefix", tau_f=-100.0)
    annotate(tiny_model, registry, RECORDS[:1], checked, tmp_path / "c.jsonl", progress=False)
    line = load_annotations(tmp_path / "c.jsonl")[0]
    results = {entry["position"]: [c[1] for c in entry["candidates"]] for entry in line["scored"]}
    assert any(results.values())
    for position, found in results.items():
        written = number_value(line["original"][position:].split()[0])
        assert found in ([], [f"{written:g}"])


def test_wrapping_in_lora_shows_no_dependency_warnings(tiny_llama):
    # peft reads a property transformers deprecated: nothing a toolrun user can act on.
    import copy
    import warnings

    from toolrun.toolformer.finetune import with_lora

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with_lora(copy.deepcopy(tiny_llama), FinetuneConfig(lora_r=4, lora_alpha=8))
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("full", [False, True])
def test_finetune_saves_the_chat_template_beside_every_model_it_writes(
    tiny_llama, tokenizer, tmp_path, full
):
    import copy

    base = TransformersModel(copy.deepcopy(tiny_llama), tokenizer, name="tiny")
    config = FinetuneConfig(epochs=1, batch_size=2, warmup_steps=0, full=full)
    out = tmp_path / "out"
    finetune(base, ["a b c"] * 2, out, config, merge=True, progress=False, chat_template="T")
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == "T"
    # LoRA writes a merged copy too, which gets the template; a full model is its own merge
    assert (out / "merged" / "chat_template.jinja").is_file() is not full
    if not full:
        assert (out / "merged" / "chat_template.jinja").read_text(encoding="utf-8") == "T"


def test_finetune_lora_saves_an_adapter_that_lowers_the_loss(tiny_llama, tokenizer, tmp_path):
    import copy

    from peft import PeftModel

    base = TransformersModel(copy.deepcopy(tiny_llama), tokenizer, name="tiny")
    texts = ["So 48 / 2 = [Calculator(48 / 2) → 24] 24 clips."] * 4
    config = FinetuneConfig(
        epochs=8, batch_size=2, learning_rate=1e-2, lora_r=4, lora_alpha=8, warmup_steps=1
    )
    summary = finetune(base, texts, tmp_path / "adapter", config, progress=False)
    assert summary["steps"] == 16 and summary["last_loss"] < summary["first_loss"] - 0.5
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_llama), str(tmp_path / "adapter"))
    assert loaded.peft_config["default"].r == 4
    ann = tmp_path / "a.jsonl"
    ann.write_text(
        json.dumps({"text": "x", "calls": []})
        + "\n"
        + json.dumps({"text": "y", "calls": [1]})
        + "\n{broken"
    )
    assert load_texts(ann) == ["x", "y"] and load_texts(ann, only_with_calls=True) == ["y"]
    scored = [
        {
            "tool": "Calculator",
            "position": 2,
            "l_none": 1.0,
            "candidates": [["1 + 1", "2", 1.0, 2.0]],
        },
        {"tool": "Calendar", "position": 4, "l_none": 1.0, "candidates": [["", "Today", 1.0, 3.0]]},
    ]
    ann.write_text(
        json.dumps({"text": "?", "original": "a: 2 b c", "calls": [], "scored": scored}) + "\n"
    )
    assert load_texts(ann, criterion="gain", tau_f=0.5) == [
        "a: [Calculator(1 + 1) → 2] 2 [Calendar() → Today] b c"
    ]
    assert load_texts(ann, criterion="gain", tau_f=1.5) == ["a: 2 [Calendar() → Today] b c"]
    assert load_texts(ann, criterion="gain", tau_f=0.5, tools=["calculator"]) == [
        "a: [Calculator(1 + 1) → 2] 2 b c"
    ]
    # The same Calendar call a second time in a text repeats it: dropped unless asked for.
    scored.append(
        {"tool": "Calendar", "position": 6, "l_none": 1.0, "candidates": [["", "Today", 1.0, 3.0]]}
    )
    ann.write_text(
        json.dumps({"text": "?", "original": "a: 2 b c", "calls": [], "scored": scored}) + "\n"
    )
    assert load_texts(ann, criterion="gain", tau_f=1.5) == ["a: 2 [Calendar() → Today] b c"]
    assert load_texts(ann, criterion="gain", tau_f=1.5, repeated_calls=True) == [
        "a: 2 [Calendar() → Today] b [Calendar() → Today] c"
    ]


def test_position_scores_agree_between_session_and_single_pass(tiny_model):
    from toolrun.toolformer.prompts import prompt_for
    from toolrun.toolformer.sample import candidate_positions

    text = "Q: x.\nA: Today 3 and 4 make 7 days."
    positions = candidate_positions(text, 6, numbers_only=False)
    prompt = prompt_for("Calendar")
    fast = score_positions(tiny_model, prompt, text, positions)
    session_path = score_positions(_SessionOnly(tiny_model), prompt, text, positions)
    assert fast == pytest.approx(session_path, rel=1e-4)


class _SessionOnly:
    """The tiny model seen through the Model interface only (no ``.model``)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_gold_marks_are_proposed_where_no_expression_is_written(tiny_model, tmp_path):
    """An answer-only text ("A: 14.") leaves the heuristic nothing to read (one number in the
    question); with ``propose_gold`` the gold mark's expression is tried, spaced as calls are."""
    text = "Q: How many legs do 7 birds have?\nA: 14."
    record = Record(id="g", text=text, start=text.index("A:") + 3,
                    gold=[GoldMark(text.index("14"), "7*2", "14")])  # fmt: skip
    registry = toolrun.ToolRegistry([adder])
    config = AnnotateConfig(tau_f=-100.0)
    annotate(tiny_model, registry, [record], config, tmp_path / "h.jsonl", progress=False)
    assert load_annotations(tmp_path / "h.jsonl")[0]["calls"] == []
    config = AnnotateConfig(tau_f=-100.0, propose_gold=True)
    annotate(tiny_model, registry, [record], config, tmp_path / "g.jsonl", progress=False)
    gold = load_annotations(tmp_path / "g.jsonl")[0]
    assert gold["text"] == "Q: How many legs do 7 birds have?\nA: [Calculator(7 * 2) → 14] 14."
