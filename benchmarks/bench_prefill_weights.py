"""Does the weights' number format limit llama.cpp's prefill here? Same-run ratios.

    python benchmarks/bench_prefill_weights.py [--threads 1] [--repeats 3] [--context 1000]

The default model's merged GGUF (Q8_0 layers) is rewritten with every matrix in F16, BF16 and
F32 (written once under build/prefill_weights/); each file then re-encodes the same
``--context`` tokens of GSM8K-train text in a fresh session and decodes 32 single tokens at that
context, on toolrun's llama.cpp engine, same threads. Files are interleaved in every repeat;
medians, ranges and ratios to Q8_0 go to benchmarks/results/prefill_weights.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from toolrun.backends.gguf_merge import writer_like
from toolrun.backends.llamacpp import LlamaCppModel, load_llamacpp
from toolrun.models import default_adapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llamacpp import context_ids, spread, timed

RESULTS = Path(__file__).resolve().parent / "results" / "prefill_weights.json"
WORK = Path(__file__).resolve().parents[1] / "build" / "prefill_weights"
FORMATS = ("F16", "BF16", "F32")


def rewrite(source: Path, kind: str) -> Path:
    """``source`` with every matrix stored as ``kind`` (vectors stay F32), written once."""
    import gguf

    out = WORK / f"{source.stem}.{kind}.gguf"
    if out.is_file():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(source)
    writer = writer_like(reader, out)
    target = gguf.GGMLQuantizationType[kind]
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if values.ndim == 2 and kind != "F32":
            writer.add_tensor(tensor.name, gguf.quants.quantize(values, target), raw_dtype=target)
        else:
            writer.add_tensor(tensor.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def measure(model: LlamaCppModel, ids: list[int], steps: int = 32) -> tuple[float, float]:
    """Seconds to re-encode ``ids`` in a fresh session, then tokens/s decoding one at a time."""
    session = model.new_session()
    prefill, _ = timed(lambda: session.feed(ids))
    seconds, _ = timed(lambda: [session.feed([token]) for token in ids[:steps]])
    session.close()
    return prefill, steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context", type=int, default=1000)
    args = parser.parse_args()

    default = load_llamacpp(adapter=default_adapter(), n_threads=args.threads)
    source = Path(default.llama.model_path)
    models = {"Q8_0 (default)": default}
    for kind in FORMATS:
        models[kind] = load_llamacpp(rewrite(source, kind), n_threads=args.threads)
    ids = context_ids(default, args.context)
    load = os.getloadavg()[0]
    prefill: dict[str, list[float]] = {k: [] for k in models}
    decode: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for key, model in models.items():
            seconds, rate = measure(model, ids)
            prefill[key].append(seconds)
            decode[key].append(rate)
    base = "Q8_0 (default)"
    report = {
        "command": "python benchmarks/bench_prefill_weights.py "
        f"--threads {args.threads} --repeats {args.repeats} --context {args.context}",
        "backend": "llama.cpp",
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        "arms": {
            key: {
                "prefill_s": spread(prefill[key]),
                "decode_tok_s": spread(decode[key]),
                "prefill_over_q8_0": statistics.median(prefill[key])
                / statistics.median(prefill[base]),
                "decode_over_q8_0": statistics.median(decode[key])
                / statistics.median(decode[base]),
            }
            for key in models
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
