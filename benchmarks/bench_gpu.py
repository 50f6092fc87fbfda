"""The GPU benchmarks in one go: a randomly initialised 8B-shaped Llama in bf16 and nf4 on CUDA.

    python benchmarks/bench_gpu.py            # CUDA: the 8B shape; writes results/gpu.json
    python benchmarks/bench_gpu.py --tiny     # a tiny Llama on the CPU (also without CUDA)

Nothing is downloaded: the weights are random (speed and memory do not depend on their values)
and the tokenizer is built here (a word-level vocabulary padded to the model's size), so the
model writes calls only where a logits processor plans them, as in ``bench_batch.py``.
For each of bf16 and bitsandbytes nf4:

1. decode tokens/s at batch 1 (toolrun.generate, no call) against the memory-bandwidth bound
   (bytes of weights read per token / the GPU's bandwidth), and toolrun / ``model.generate()``
   on the same prompt (same tokens: end of sequence is banned in both);
2. resume after a 10-token result at 1k and 8k tokens of context / re-encoding that context;
3. ``generate_batch`` with 16 and 64 rows, each making one or two calls to a 50 ms tool:
   tokens/s, and that over batch-1 tokens/s;
4. peak GPU memory of each phase;

and one QLoRA training step (peft LoRA r16 on every projection of the nf4 base, gradient
checkpointing, 1 x 1024 tokens, AdamW): peak memory (issue 16's goal: <= 20 GB).

A time guard skips what is left after ``--budget`` seconds (default 450, inside the 8 minutes a
run may take) and says so in the results.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import torch

import toolrun
from toolrun._quiet import quiet
from toolrun.backends.transformers import TransformersModel
from toolrun.testing import PlannedCalls

RESULTS = Path(__file__).parent / "results"


class Shape(TypedDict):
    """LlamaConfig's keywords for a model's size."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: NotRequired[float]


SHAPES = {
    # Llama-3-8B: 32 layers, 4096 wide, 32 query / 8 key-value heads, 14336 FFN, 128k vocabulary.
    "8b": Shape(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=16384,
        rope_theta=500000.0,
    ),
    "tiny": Shape(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=4096,
        max_position_embeddings=4096,
    ),
}
# Peak memory bandwidth of common GPUs (vendor figures, bytes/s); otherwise a measured copy.
BANDWIDTH = {
    "H200": 4.8e12,
    "H100 SXM": 3.35e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,
    "A100-SXM4-80GB": 2.039e12,
    "A100": 1.555e12,
    "L40S": 0.864e12,
    "RTX 4090": 1.008e12,
    "L4": 0.3e12,
}
PROBLEMS = [
    ("Tom has {a} apples and buys {b} more. How many apples does he have?", "+"),
    ("A box holds {a} pens. How many pens are in {b} boxes?", "*"),
    ("Sara had {a} dollars and spent {b}. How much is left?", "-"),
    ("A train travels {a} km each hour for {b} hours. How far does it go?", "*"),
]
PROSE = "Question: The history of the city of Lyon in France goes back to Roman times when\nAnswer:"


@toolrun.tool(name="Calculator")
def calculator(expression: str) -> str:
    """Integer arithmetic after a fixed latency (a 50 ms tool; set by --latency)."""
    time.sleep(calculator_latency[0])
    left, op, right = expression.split()[:3]
    a, b = int(left), int(right)
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


calculator_latency = [0.05]


def workload(count: int) -> tuple[list[str], dict[str, list[tuple[int, str]]]]:
    """``count`` word problems, each with one or two planned calls (as bench_batch.py)."""
    prompts, plans = [], {}
    for i in range(count):
        template, op = PROBLEMS[i % len(PROBLEMS)]
        a, b = 12 + 7 * i, 3 + i % 9
        prompt = f"Question: {template.format(a=a, b=b)}\nAnswer:"
        plan = [(2 + i % 4, f" [Calculator({a} {op} {b}) →")]
        if i % 2:
            plan.append((3 + i % 3, f" [Calculator({a + 1} {op} {b}) →"))
        prompts.append(prompt)
        plans[prompt] = plan
    return prompts, plans


def synthetic_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer covering ``vocab_size`` ids: the words, digits and marks of the
    prompts here, then filler words; decoding concatenates, so call text round-trips."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "\n", "→"] + [chr(c) for c in range(32, 127)]
    texts = [PROSE, *workload(64)[0], " [Calculator(1 + 2) →"]
    pattern = r"[A-Za-z]+|[0-9]+|\s|[^A-Za-z0-9\s]"
    import re

    for text in texts:
        words += re.findall(pattern, text)
    words += [str(i) for i in range(1000)]
    vocab: dict[str, int] = {}
    for word in words:
        vocab.setdefault(word, len(vocab))
    filler = 0
    while len(vocab) < vocab_size:
        vocab.setdefault(f"w{filler}", len(vocab))
        filler += 1
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def random_llama(shape: str, dtype: torch.dtype, device: str) -> Any:
    """A randomly initialised Llama of ``shape``, built directly on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    # rope_theta: a keyword LlamaConfig still takes (into rope_parameters) but no longer types
    config = LlamaConfig(  # type: ignore[misc]
        **SHAPES[shape], bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    return model.eval()


class Clock:
    """Time since the start, and a guard that skips phases once the budget is spent."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget
        self.skipped: list[str] = []

    def allows(self, phase: str) -> bool:
        if time.perf_counter() - self.start < self.budget:
            return True
        self.skipped.append(phase)
        print(f"  skipped {phase}: the {self.budget:.0f} s budget is spent", flush=True)
        return False


@contextlib.contextmanager
def peak_memory(into: dict[str, Any], key: str) -> Iterator[None]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        into[key] = round(torch.cuda.max_memory_allocated() / 2**30, 2)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class BanEos:
    def __init__(self, eos: int) -> None:
        self.eos = eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.eos] = float("-inf")
        return scores


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    value = function()
    sync()
    return time.perf_counter() - start, value


def weight_bytes_per_token(hf: Any) -> int:
    """Bytes a decoding step reads: every weight but the input embedding (one row of it)."""
    embedding = hf.get_input_embeddings().weight
    total = hf.get_memory_footprint(return_buffers=False)
    return int(total - embedding.nelement() * embedding.element_size())


def bandwidth() -> dict[str, Any]:
    """The GPU's peak bandwidth (vendor figure when known) and a measured device copy."""
    if not torch.cuda.is_available():
        return {"name": platform.processor() or "cpu", "peak_bytes_per_s": None}
    name = torch.cuda.get_device_name(0)
    known = next((v for k, v in BANDWIDTH.items() if k.lower() in name.lower()), None)
    measured = _copy_bandwidth(2 * 2**30)
    torch.cuda.empty_cache()
    return {"name": name, "peak_bytes_per_s": known, "measured_copy_bytes_per_s": measured}


def _copy_bandwidth(size: int) -> float:
    source = torch.empty(size, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    seconds, _ = timed(lambda: [target.copy_(source) for _ in range(10)])
    return 2 * size * 10 / seconds  # each copy reads and writes every byte


def decode_speed(model: TransformersModel, tokens: int, repeats: int) -> dict[str, Any]:
    """toolrun.generate (no call) against model.generate(), interleaved; same tokens."""
    hf = model.model
    ids = torch.tensor([model.encode(PROSE)], device=model.device)
    ban = BanEos(2)
    toolrun.generate(PROSE, model=model, max_new_tokens=4, logits_processor=[ban])  # warm up
    hf.generate(ids, do_sample=False, max_new_tokens=4, min_new_tokens=4)
    ours, theirs = [], []
    for _ in range(repeats):
        seconds, out = timed(
            lambda: hf.generate(
                ids, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=0
            )
        )
        theirs.append((out.shape[1] - ids.shape[1]) / seconds)
        seconds, gen = timed(
            lambda: toolrun.generate(
                PROSE, model=model, max_new_tokens=tokens, logits_processor=[ban]
            )
        )
        ours.append(gen.generated_tokens / seconds)
    return {
        "toolrun_tok_s": statistics.median(ours),
        "toolrun_tok_s_range": [min(ours), max(ours)],
        "hf_generate_tok_s": statistics.median(theirs),
        "no_call_ratio": statistics.median(ours) / statistics.median(theirs),
        "same_tokens": gen.token_ids == out[0, ids.shape[1] :].tolist(),
    }


def resume_ratio(model: TransformersModel, context: int, result: int, repeats: int) -> dict:
    """Feeding a ``result``-token splice onto ``context`` cached tokens / encoding them all."""
    generator = torch.Generator().manual_seed(context)
    ids = torch.randint(200, model.vocab_size, (context + result,), generator=generator).tolist()
    resume, reencode = [], []
    for _ in range(repeats):
        session = model.new_session()
        session.feed(ids[:context])
        # mypy cannot infer a lambda with a default argument (python/mypy#15459), twice here
        resume.append(timed(lambda s=session: s.feed(ids[context:]))[0])  # type: ignore[misc]
        session.close()
        fresh = model.new_session()
        reencode.append(timed(lambda s=fresh: s.feed(ids))[0])  # type: ignore[misc]
        fresh.close()
    return {
        "context": context,
        "resume_s": statistics.median(resume),
        "reencode_s": statistics.median(reencode),
        "ratio": statistics.median(resume) / statistics.median(reencode),
    }


def batch_throughput(model: TransformersModel, rows: int, tokens: int) -> dict[str, Any]:
    prompts, plans = workload(rows)
    options: dict[str, Any] = {  # generate()'s options, as generate_batch() takes them
        "max_new_tokens": tokens,
        "logits_processor": [PlannedCalls(model, plans)],
    }
    toolrun.generate_batch(prompts[:2], model=model, tools=[calculator], **options)  # warm up
    seconds, outs = timed(
        lambda: toolrun.generate_batch(prompts, model=model, tools=[calculator], **options)
    )
    generated = sum(g.generated_tokens for g in outs)
    return {
        "rows": rows,
        "tok_s": generated / seconds,
        "seconds": seconds,
        "calls": sum(len(g.calls) for g in outs),
        "calls_ok": sum(c.error is None for g in outs for c in g.calls),
    }


def measure(model: TransformersModel, label: str, args: Any, clock: Clock) -> dict[str, Any]:
    row: dict[str, Any] = {"weights_gb": round(model.model.get_memory_footprint() / 2**30, 2)}
    memory: dict[str, Any] = {}
    row["peak_memory_gb"] = memory
    if clock.allows(f"{label} decode"):
        print(f"{label}: decode at batch 1", flush=True)
        with peak_memory(memory, "decode"):
            row["decode"] = decode_speed(model, args.tokens, args.repeats)
        per_token = weight_bytes_per_token(model.model)
        row["decode"]["weight_bytes_per_token"] = per_token
        peak = args.bandwidth.get("peak_bytes_per_s") or args.bandwidth.get(
            "measured_copy_bytes_per_s"
        )
        if peak:
            bound = peak / per_token
            row["decode"]["bandwidth_bound_tok_s"] = bound
            row["decode"]["share_of_bound"] = row["decode"]["toolrun_tok_s"] / bound
    for context in args.contexts:
        if clock.allows(f"{label} resume {context}"):
            print(f"{label}: resume at {context} tokens", flush=True)
            with peak_memory(memory, f"resume_{context}"):
                row[f"resume_{context}"] = resume_ratio(model, context, 10, args.resume_repeats)
    for rows in args.rows:
        if clock.allows(f"{label} batch {rows}"):
            print(f"{label}: generate_batch, {rows} rows", flush=True)
            with peak_memory(memory, f"batch_{rows}"):
                row[f"batch_{rows}"] = batch_throughput(model, rows, args.batch_tokens)
            if "decode" in row:
                base = row["decode"]["toolrun_tok_s"]
                row[f"batch_{rows}"]["over_batch_1"] = row[f"batch_{rows}"]["tok_s"] / base
    return row


def qlora_step(folder: Path, device: str, length: int) -> dict[str, Any]:
    """One training step of LoRA on the nf4 base, as peft documents QLoRA."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    with quiet():
        model = toolrun.load_model(folder, quantize="nf4", device=device, backend="transformers")
        hf = prepare_model_for_kbit_training(
            model.model,  # type: ignore[attr-defined]
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM")
    with quiet():
        lora = get_peft_model(hf, config)
    trainable = [p for p in lora.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(200, hf.config.vocab_size, (1, length), device=device)
    memory: dict[str, Any] = {}
    with peak_memory(memory, "qlora_step"), quiet():
        seconds, loss = timed(lambda: _train_step(lora, optimizer, ids))
    return {
        "sequence": length,
        "lora_rank": 16,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "loss": loss,
        "step_s": seconds,
        "peak_memory_gb": memory.get("qlora_step"),
        "goal_peak_memory_gb": 20,
    }


def _train_step(model: Any, optimizer: Any, ids: torch.Tensor) -> float:
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny Llama on the CPU")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds before skipping")
    parser.add_argument("--latency", type=float, default=0.05, help="the tool's latency (s)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    shape = "8b" if cuda else "tiny"
    args.tokens, args.repeats = (128, 3) if cuda else (16, 2)
    args.contexts = [1024, 8192] if cuda else [256, 1024]
    args.resume_repeats = 3 if cuda else 2
    args.rows = [16, 64]
    args.batch_tokens = 48 if cuda else 40  # room for two planned calls
    calculator_latency[0] = args.latency
    if not cuda:
        torch.set_num_threads(1)  # small forwards on a shared CPU: see bench_batch.py
    clock = Clock(args.budget)
    args.bandwidth = bandwidth()
    report: dict[str, Any] = {
        "setup": {
            "shape": shape,
            "config": SHAPES[shape],
            "device": args.bandwidth["name"],
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "decode_tokens": args.tokens,
            "repeats": args.repeats,
            "batch_tokens": args.batch_tokens,
            "tool_latency_s": args.latency,
        },
        "bandwidth": args.bandwidth,
    }
    dense = torch.bfloat16 if cuda else torch.float32
    tokenizer = synthetic_tokenizer(SHAPES[shape]["vocab_size"])
    print(f"building a random {shape} Llama on {device}", flush=True)
    hf = random_llama(shape, dense, device)
    report["setup"]["parameters"] = sum(p.numel() for p in hf.parameters())
    model = TransformersModel(hf, tokenizer, name=f"random-{shape}")
    report[str(dense).removeprefix("torch.")] = measure(model, "dense", args, clock)
    with tempfile.TemporaryDirectory(prefix="toolrun-bench-gpu-") as tmp:
        folder = Path(tmp)
        if clock.allows("nf4"):
            print("saving and reloading in nf4", flush=True)
            hf.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            del model, hf
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            with quiet():
                quantized = toolrun.load_model(
                    folder, quantize="nf4", device=device, backend="transformers"
                )
            report["nf4"] = measure(quantized, "nf4", args, clock)  # type: ignore[arg-type]
            del quantized
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            if clock.allows("qlora"):
                print("one QLoRA step", flush=True)
                report["qlora"] = qlora_step(folder, device, 1024 if cuda else 64)
    report["skipped"] = clock.skipped
    report["seconds"] = time.perf_counter() - clock.start
    out = args.out or RESULTS / ("gpu.json" if cuda else "gpu_tiny.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(_summary(report), indent=2))
    print(f"wrote {out} in {report['seconds']:.0f} s")
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures."""
    summary: dict[str, Any] = {}
    for arm in ("bfloat16", "float32", "nf4"):
        row = report.get(arm)
        if not row:
            continue
        decode = row.get("decode", {})
        summary[arm] = {
            "tok_s": decode.get("toolrun_tok_s"),
            "share_of_bandwidth_bound": decode.get("share_of_bound"),
            "no_call_ratio": decode.get("no_call_ratio"),
            **{
                f"resume_ratio_{k.removeprefix('resume_')}": v["ratio"]
                for k, v in row.items()
                if k.startswith("resume_")
            },
            **{
                f"batch_{v['rows']}_over_batch_1": v.get("over_batch_1")
                for k, v in row.items()
                if k.startswith("batch_")
            },
            "peak_memory_gb": row.get("peak_memory_gb"),
        }
    if "qlora" in report:
        summary["qlora_peak_memory_gb"] = report["qlora"]["peak_memory_gb"]
    return summary


if __name__ == "__main__":
    main()
