"""Latency of the deterministic runtime against onnxruntime (float32), on the same machine,
in one run: every test model at batch 1 and 64, and MiniLM (L=128) at batch 1.

    .venv/bin/python benchmarks/bench_runtime.py [--repeat N] [--skip-minilm]

For each: onnxruntime latency, verinfer execution latency (trace off), trace commitment time
(every step's tensor Merkle root plus trace_root), and the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from verinfer.runtime import Program, compile_model
from verinfer.runtime.executor import Execution
from verinfer.runtime.testmodels import TEST_MODELS


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def commit_ms(execution: Execution, repeat: int) -> float:
    def commit() -> None:
        for attr in ("_roots", "step_roots", "trace_root"):
            execution.__dict__.pop(attr, None)
        _ = execution.trace_root

    return median_ms(commit, repeat)


def batched(feed: dict[str, Any], batch: int) -> dict[str, Any]:
    out = {}
    for name, value in feed.items():
        reps = -(-batch // value.shape[0])
        out[name] = np.concatenate([value] * reps)[:batch]
    return out


def measure(
    label: str, onnx_path: Any, program: Program, feed: dict[str, Any], repeat: int
) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    session = ort.InferenceSession(str(onnx_path), options, ["CPUExecutionProvider"])
    ort_ms = median_ms(lambda: session.run(None, feed), repeat)
    run_ms = median_ms(lambda: program.run(feed, trace=False), repeat)
    execution = program.run(feed, trace=False)
    trace_ms = commit_ms(execution, repeat)
    print(
        f"| {label} | {ort_ms:.3f} | {run_ms:.3f} | {run_ms / ort_ms:.2f}x | {trace_ms:.3f} | "
        f"{100 * trace_ms / run_ms:.0f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, onnxruntime {ort.__version__}"
    )
    print("| model, batch | onnxruntime ms | verinfer ms | ratio | trace commit ms | commit/exec |")
    print("|---|---|---|---|---|---|")
    for name, model in TEST_MODELS.items():
        for batch in (1, 64):
            feed = batched(dict(model.feed()), batch)
            program = compile_model(model.onnx, model.inputs(), batch=batch)
            measure(f"{name}, {batch}", model.onnx, program, feed, args.repeat)
    if not args.skip_minilm:
        from verinfer.models.minilm import SENTENCES, Tokenizer, cached_minilm_onnx

        path = cached_minilm_onnx(128, 17)
        tok = Tokenizer()
        feeds = [tok.encode(s, 128) for s in SENTENCES]
        program = compile_model(path, feeds[:4])
        measure("MiniLM L=128, 1", path, program, feeds[0], max(args.repeat // 10, 3))


if __name__ == "__main__":
    main()
