"""Teaching a model any tool: tools from anywhere, the paper's example prompt and sampling,
several tools in one run, the Python API, and clear errors before any model loads."""

from __future__ import annotations

import json
import textwrap
from datetime import date

import pytest

import toolrun
from toolrun.backends.transformers import TransformersModel
from toolrun.cli import main
from toolrun.errors import ToolDefinitionError
from toolrun.toolformer.annotate import (
    AnnotateConfig,
    annotate,
    load_annotations,
    merge_annotations,
    plan_tools,
)
from toolrun.toolformer.data import PipelineError, Record, load_corpus
from toolrun.toolformer.pipeline import Annotated
from toolrun.toolformer.pipeline import annotate as annotate_texts
from toolrun.toolformer.pipeline import finetune as finetune_texts
from toolrun.toolformer.prompts import build_prompt, prompt_for
from toolrun.toolformer.sample import PromptPass, call_arguments, sample_calls
from toolrun.tools import calendar_tool

TOOL_FILE = '''
import toolrun

@toolrun.tool(
    name="Echo",
    examples=[
        "She said [Echo(hello there) → hello there] hello there to 3 people.",
        "The sign read [Echo(open late) → open late] open late, twice.",
    ],
)
def echo(text: str) -> str:
    """Repeat a text.

    Args:
        text: what to repeat
    """
    return text

@toolrun.tool
def bare(value: float) -> float:
    """No examples: it cannot be sampled under an example prompt."""
    return value
'''

TEXTS = [
    "Q: add.\nA: 1 + 3 = 4, and she said so to 9 friends.",
    "Q: add.\nA: 2 + 5 = 7, and the sign read open.",
    "Q: add.\nA: 3 + 3 = 6 apples.",
]


@pytest.fixture()
def tool_file(tmp_path):
    path = tmp_path / "mytools.py"
    path.write_text(textwrap.dedent(TOOL_FILE))
    return path


def closing_llama(tiny_llama, tokenizer, logit=11.0):
    """A copy of the tiny random Llama that writes ")" about half the time: its sampled calls
    end after a token or two, so the example proposer has candidates to execute (a plain random
    model rarely closes a call). Dimension 0 of every embedding is made large, so it stays
    positive through the layers, and only ")" reads it in the output layer."""
    import copy

    import torch

    model = copy.deepcopy(tiny_llama)
    (close,) = tokenizer.encode(")")
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 10.0
        model.lm_head.weight[:, 0] = 0.0
        seen = []
        hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        model(input_ids=torch.tensor([tokenizer.encode(" ".join(TEXTS))]))
        hook.remove()
        model.lm_head.weight[close, 0] = logit / float(seen[0][0, :, 0].mean())
    return model


@pytest.fixture()
def tiny_model(tiny_llama, tokenizer):
    return TransformersModel(closing_llama(tiny_llama, tokenizer), tokenizer, name="tiny")


@pytest.fixture()
def tiny_folder(tiny_llama, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    closing_llama(tiny_llama, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    return path


def test_the_prompt_is_built_from_the_tools_examples(tool_file):
    echo = toolrun.ToolRegistry([f"{tool_file}:echo"]).get("Echo")
    prompt = build_prompt(echo, echo.examples)
    assert prompt.startswith("Your task is to add calls to a Echo API to a piece of text.")
    assert 'by writing "[Echo(text)]" where "text" is what to repeat.' in prompt
    assert "Input: She said hello there to 3 people.\n" in prompt
    assert "Output: She said [Echo(hello there)] hello there to 3 people.\n" in prompt
    assert prompt.endswith("Input: {text}\nOutput:")
    # The paper's own prompts for its tools, word for word.
    calculator = prompt_for("calculator")
    assert calculator.startswith("Your task is to add calls to a Calculator API")
    assert "Output: From this, we have 4 * 30 minutes = [Calculator(4 * 30)] 120 minutes." in (
        calculator
    )
    assert "[Calendar()] Friday of the year." in prompt_for("calendar")


def test_call_arguments_end_at_the_closing_parenthesis():
    assert call_arguments("42 km in miles) → 26") == (True, "42 km in miles")
    assert call_arguments("(2 + 3) * 4)]") == (True, "(2 + 3) * 4")
    assert call_arguments('"a)b", 2)') == (True, '"a)b", 2')
    assert call_arguments("42 km in") == (False, None)
    assert call_arguments("42]") == (True, None)
    assert call_arguments("42\nmore)") == (True, None)
    assert call_arguments(")") == (True, None)


def test_batched_sampling_matches_the_session_path(tiny_model, tool_file):
    echo = toolrun.ToolRegistry([f"{tool_file}:echo"]).get("Echo")
    prompt = build_prompt(echo, echo.examples)
    text = TEXTS[0]
    positions = [text.index(" 4"), text.index(" so"), text.index(" 9")]
    heads: dict = {}
    first = PromptPass(tiny_model, prompt, text, positions, heads)
    again = PromptPass(tiny_model, prompt, text, positions, heads)  # from the cached head
    assert len(heads) == 1
    assert again.probabilities == pytest.approx(first.probabilities, rel=1e-4)
    from toolrun.toolformer.sample import score_positions

    assert first.probabilities == pytest.approx(
        score_positions(tiny_model, prompt, text, positions), rel=1e-4
    )
    batched = first.sample(1, "Echo", m=4, seed=7, max_tokens=6)
    assert batched == first.sample(1, "Echo", m=4, seed=7, max_tokens=6)  # seeded
    greedy = sample_calls(tiny_model, prompt, text, positions[1], "Echo", m=1, max_tokens=6)
    if greedy:  # a random model may never close the call within 6 tokens
        assert batched[0] == greedy[0]


def test_plans_follow_the_paper_per_tool_and_check_examples(tool_file):
    registry = toolrun.ToolRegistry(["calculator", "calendar", f"{tool_file}:echo"])
    plans = plan_tools(registry, AnnotateConfig(tools=registry.names))
    by_name = {p.name: p for p in plans}
    calc, cal, echo = by_name["Calculator"], by_name["Calendar"], by_name["Echo"]
    assert (calc.tau_s, calc.k, calc.m, calc.heuristic, calc.numbers_only) == (0, 20, 0, True, True)
    assert (cal.tau_s, cal.k, cal.m, cal.heuristic) == (0.05, 5, 0, True)
    assert (echo.tau_s, echo.k, echo.m, echo.heuristic, echo.numbers_only) == (
        0.05,
        5,
        5,
        False,
        False,
    )
    asked = plan_tools(registry, AnnotateConfig(tools=["Calculator"], proposer="examples"))
    assert asked[0].m == 10 and not asked[0].heuristic  # the paper's m for the Calculator

    @toolrun.tool(name="Half", examples=["Half of 8 is [Half(8) → 4] 4."])
    def half(x: float) -> float:
        return x / 2

    assert plan_tools(toolrun.ToolRegistry([half]), AnnotateConfig(tools=["Half"]))[0].numbers_only
    bare = toolrun.ToolRegistry([f"{tool_file}:bare"])
    with pytest.raises(ToolDefinitionError, match="bare has no examples"):
        plan_tools(bare, AnnotateConfig(tools=["bare"]))
    with pytest.raises(PipelineError, match="no heuristic proposer"):
        plan_tools(bare, AnnotateConfig(tools=["bare"], proposer="heuristic"))
    with pytest.raises(PipelineError, match="proposer must be one of"):
        plan_tools(bare, AnnotateConfig(tools=["bare"], proposer="magic"))

    @toolrun.tool(name="Wrong", examples=["no call in here at all"])
    def wrong(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="example 1: example for Wrong has no call"):
        plan_tools(toolrun.ToolRegistry([wrong]), AnnotateConfig(tools=["Wrong"]))

    @toolrun.tool(name="Typed", examples=["It is [Typed(seven) → 7] 7."])
    def typed(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match=r"Typed\(seven\) is invalid"):
        plan_tools(toolrun.ToolRegistry([typed]), AnnotateConfig(tools=["Typed"]))


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bad_input_fails_before_the_model_loads(tmp_path, corpus, tool_file, capsys):
    nowhere = str(tmp_path / "no-model")  # a model load would fail with "no model at"
    out = str(tmp_path / "out.jsonl")
    cases = [
        (["--tools", "nosuchmodule:fn"], "importing 'nosuchmodule' failed"),
        (["--tools", f"{tool_file}:missing"], "has no 'missing'"),
        (["--tools", f"{tool_file}:bare"], "bare has no examples for the annotator's prompt"),
        (["--tools", "calculator", "--proposer", "examples", "--m", "0"], "samples m calls"),
    ]
    for extra, message in cases:
        code, _, err = _run(
            ["annotate", str(corpus), "-o", out, "--model", nowhere, *extra], capsys
        )
        assert code == 1 and message in err, err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": nope}\n{"text": "fine"}\n')
    notext = tmp_path / "notext.jsonl"
    notext.write_text('{"body": "x"}\n')
    for path, message in [
        (empty, "no texts in the corpus"),
        (broken, "broken.jsonl:2: not JSON"),
        (notext, 'a row needs a non-empty "text"'),
        (tmp_path / "missing.jsonl", "no corpus at"),
    ]:
        code, _, err = _run(["annotate", str(path), "-o", out, "--model", nowhere], capsys)
        assert code == 1 and message in err, err
    code, _, err = _run(["finetune", str(empty), "-o", out, "--model", nowhere], capsys)
    assert code == 1 and "no training texts" in err
    missing = str(tmp_path / "missing.jinja")
    code, _, err = _run(["finetune", str(corpus), "-o", out, "--chat-template", missing], capsys)
    assert code == 1 and "cannot read the chat template" in err and "missing.jinja" in err, err
    assert "Traceback" not in err


def test_cli_annotates_with_tools_from_a_file_and_a_module(
    tmp_path, corpus, tool_file, tiny_folder, capsys
):
    out = tmp_path / "out.jsonl"
    argv = [
        "annotate",
        str(corpus),
        "-o",
        str(out),
        "--model",
        str(tiny_folder),
        "--tools",
        f"toolrun.tools.calculator:calculator,{tool_file}:echo",
        "--tau-s",
        "0",
        "--k",
        "4",
        "--m",
        "3",
        "--tau-f",
        "-100",
        "--quiet",
        "--threads",
        "1",
    ]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    stats = json.loads(stdout)
    assert stats["texts"] == 3 and set(stats["kept_per_tool"]) <= {"Calculator", "Echo"}
    lines = load_annotations(out)
    tools = {entry["tool"] for line in lines for entry in line["scored"]}
    assert tools == {"Calculator", "Echo"}
    # Echo's candidates were sampled by the model (m = 3 at each of k = 4 positions) and run.
    echo = [
        c for line in lines for e in line["scored"] if e["tool"] == "Echo" for c in e["candidates"]
    ]
    assert echo and all(args == result for args, result, *_ in echo)


def test_several_tools_merge_one_call_per_position(tiny_model, tool_file, tmp_path):
    registry = toolrun.ToolRegistry(["calculator", f"{tool_file}:echo"])
    records = [Record(id=f"t{i}", text=t, start=11) for i, t in enumerate(TEXTS)]
    common = dict(tau_s=0.0, k=4, m=2, tau_f=-100.0, positions="numbers", max_call_tokens=4)
    for name in ("Calculator", "Echo"):
        config = AnnotateConfig(tools=[name], **common)
        annotate(tiny_model, registry, records, config, tmp_path / f"{name}.jsonl", progress=False)
    merged = merge_annotations([tmp_path / "Calculator.jsonl", tmp_path / "Echo.jsonl"])
    assert [line["id"] for line in merged] == ["t0", "t1", "t2"]
    separate = {
        name: {line["id"]: line for line in load_annotations(tmp_path / f"{name}.jsonl")}
        for name in ("Calculator", "Echo")
    }
    for line in merged:
        positions = [c["position"] for c in line["calls"]]
        assert positions == sorted(set(positions))  # one call per position
        for call in line["calls"]:
            rivals = [
                c
                for runs in separate.values()
                for c in runs[line["id"]]["calls"]
                if c["position"] == call["position"]
            ]
            assert call["gain"] == max(c["gain"] for c in rivals)
    for name, runs in separate.items():
        assert any(line["calls"] for line in runs.values()), name
    for line in merged:
        every = {c["position"] for runs in separate.values() for c in runs[line["id"]]["calls"]}
        assert {c["position"] for c in line["calls"]} == every
    from toolrun.syntax import iter_calls

    assert all(len(list(iter_calls(line["text"]))) == len(line["calls"]) for line in merged)


def test_python_api_annotates_and_finetunes(tiny_llama, tokenizer, tool_file, tmp_path):
    from toolrun.registry import resolve_tool

    model = TransformersModel(closing_llama(tiny_llama, tokenizer), tokenizer, name="tiny")
    echo = resolve_tool(f"{tool_file}:echo")
    with pytest.raises(PipelineError, match="unknown options"):
        annotate_texts(TEXTS, tools=[echo.function], model=model, tau=1)
    done = annotate_texts(
        TEXTS, tools=[echo.function, "calculator"], model=model, progress=False,
        tau_s=0.0, k=2, m=2, tau_f=-100.0, max_call_tokens=4,
    )  # fmt: skip
    assert isinstance(done, Annotated) and len(done.lines) == 3 and done.output is None
    assert done.stats["texts"] == 3 and done.texts[0].startswith("Q: add.")
    summary = finetune_texts(
        done, model=model, output=tmp_path / "adapter", epochs=1, batch_size=2, lora_r=2,
        save_steps=0, progress=False,
    )  # fmt: skip
    assert summary["steps"] == 2 and (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_qlora_trains_a_4bit_base_on_the_cpu(tiny_folder, tmp_path):
    pytest.importorskip("bitsandbytes")
    model = toolrun.load_model(str(tiny_folder), quantize="nf4", device="cpu")
    summary = finetune_texts(
        ["So 48 / 2 = [Calculator(48 / 2) → 24] 24 clips."] * 4,
        model=model, output=tmp_path / "q", epochs=2, batch_size=2, micro_batch_size=1,
        learning_rate=1e-2, lora_r=2, gradient_checkpointing=True, save_steps=0, progress=False,
    )  # fmt: skip
    assert summary["steps"] == 4 and summary["last_loss"] < summary["first_loss"]
    with pytest.raises(PipelineError, match="LoRA only"):
        finetune_texts(["x"], model=model, output=tmp_path / "f", full=True, progress=False)


def test_the_calendar_answers_with_each_texts_own_date(tiny_model, tmp_path):
    corpus = tmp_path / "dated.jsonl"
    rows = [
        {"id": "a", "text": "Today is Friday, so the shop is open.", "date": "2031-03-14"},
        {"id": "b", "text": "Today is Friday, so the shop is open.", "date": "2000-02-29"},
        {"id": "c", "text": "Today is Friday, so the shop is open."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_corpus(corpus)
    assert [r.date for r in records] == [date(2031, 3, 14), date(2000, 2, 29), None]
    config = AnnotateConfig(tools=["Calendar"], tau_s=0.0, k=100, tau_f=-100.0)
    registry = toolrun.ToolRegistry(["calendar"])
    annotate(tiny_model, registry, records, config, tmp_path / "out.jsonl", progress=False)
    lines = {line["id"]: line for line in load_annotations(tmp_path / "out.jsonl")}
    results = {
        key: {c[1] for s in line["scored"] for c in s["candidates"]} for key, line in lines.items()
    }
    # The same call in the same text, three answers: the executor's cache is kept per date.
    assert results["a"] == {"Today is Friday, March 14, 2031."}
    assert results["b"] == {"Today is Tuesday, February 29, 2000."}
    assert results["c"] == {calendar_tool.calendar()}  # no date: the clock
    assert lines["a"]["date"] == "2031-03-14" and "date" not in lines["c"]
    assert "Today is Friday, March 14, 2031." in lines["a"]["text"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "date": "14/03/2031"}) + "\n")
    with pytest.raises(PipelineError, match='"date" must be an ISO date'):
        load_corpus(bad)
