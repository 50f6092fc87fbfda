"""The tutorial (examples/teach_a_tool): its tool, its texts, its held-out check, and a smoke run
of the whole script on the tiny random model (the measured run is in its README)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

import toolrun
from toolrun.testing import ScriptedModel

TUTORIAL = Path(__file__).resolve().parents[1] / "examples" / "teach_a_tool"


@pytest.fixture(scope="module")
def tutorial():
    sys.path.insert(0, str(TUTORIAL))
    import check
    import make_texts
    import teach
    import units

    yield argparse.Namespace(check=check, make_texts=make_texts, teach=teach, units=units)
    sys.path.remove(str(TUTORIAL))


def test_the_tool_converts_and_refuses_clearly(tutorial):
    registry = toolrun.ToolRegistry([tutorial.units.convert])
    assert registry.call("Convert", "42 km in miles").result == "26.1"
    assert registry.call("Convert", "3.5 kilograms to pounds").result == "7.7"
    assert "cannot convert mass" in registry.call("Convert", "7 kg in km").error
    assert "unknown unit" in registry.call("Convert", "7 parsecs in km").error
    assert "write the amount" in registry.call("Convert", "some miles").error


def test_texts_vary_and_mark_their_conversion(tutorial):
    train = tutorial.make_texts.make_texts(60, seed=0)
    held_out = tutorial.make_texts.make_texts(20, seed=1, held_out=True)
    assert len({s.text for s in train}) == 60
    templates = {t for ts in tutorial.make_texts.HELD_OUT.values() for t in ts}
    assert not templates & {t for ts in tutorial.make_texts.TRAIN.values() for t in ts}
    convert = tutorial.units.convert
    for sample in train + held_out:
        assert sample.text[sample.cut :].startswith(f" {sample.result} ")
        query = f"{sample.value} {sample.source} in {sample.target}"
        assert toolrun.ToolRegistry([convert]).call("Convert", query).result == sample.result


def test_the_check_counts_calls_validity_and_use(tutorial):
    sample = tutorial.make_texts.Sample(
        "s", "It is 42 km, which is 26.1 miles.", "42", "km", "mi", "26.1", 21
    )
    scripts = {
        "used": [" [Convert(42 km in miles) →", " 26.1 miles."],
        "misread": [" [Convert(42 km in miles) →", " 30 miles."],
        "invalid": [" [Convert(42 parsecs in miles) →", " far."],
        "none": [" 26 miles."],
    }
    got = {
        name: tutorial.check.check(ScriptedModel(script), [sample], max_new_tokens=60)
        for name, script in scripts.items()
    }
    assert [got[n]["call_rate"] for n in scripts] == [1.0, 1.0, 1.0, 0.0]
    assert [got[n]["valid"] for n in scripts] == [1.0, 1.0, 0.0, 0.0]
    assert (got["used"]["used"], got["used"]["right"]) == (1.0, 1.0)
    assert (got["misread"]["used"], got["misread"]["right"]) == (0.0, 1.0)


def test_the_tutorial_runs_end_to_end_on_a_tiny_model(
    tutorial, tiny_llama, tokenizer, tmp_path, monkeypatch
):
    from test_teach_pipeline import closing_llama

    folder = tmp_path / "tiny"
    closing_llama(tiny_llama, tokenizer).save_pretrained(folder)  # its calls end quickly
    tokenizer.save_pretrained(folder)

    # A random model writes no valid query: a Convert that takes any text stands in for it.
    @toolrun.tool(name="Convert", examples=tutorial.units.convert.__toolrun_tool__.examples)
    def anything(query: str) -> float:
        return 1.0

    monkeypatch.setattr(tutorial.teach, "convert", anything)
    monkeypatch.setattr(tutorial.check, "convert", anything)
    monkeypatch.setitem(tutorial.teach.ANNOTATE, "tau_s", 0.0)  # its p(" [") is 1/49152
    args = argparse.Namespace(
        work=str(tmp_path / "work"),
        model=str(folder),
        texts=6,
        heldout=2,
        epochs=1.0,
        tau_f=-100.0,  # a random model's calls help nothing: keep them to have something to train
        threads=1,
        quiet=True,
    )
    report = tutorial.teach.run(args)
    assert set(report["seconds"]) == {
        "texts and model",
        "annotate",
        "check untrained",
        "finetune",
        "check finetuned",
        "total",
    }
    assert report["annotation"]["texts"] == 6 and report["training"]["steps"] >= 1
    for model in ("untrained", "finetuned"):
        assert {"call_rate", "valid", "used", "right"} <= set(report[model])
    saved = json.loads((tmp_path / "work" / "report.json").read_text())
    assert saved["annotator_vs_generator"] == report["annotator_vs_generator"]
    assert (tmp_path / "work" / "adapter" / "adapter_config.json").is_file()
