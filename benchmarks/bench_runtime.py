"""Latency of the deterministic runtime against onnxruntime (float32), on the same machine,
in one run: every test model at batch 1 and 64, and MiniLM (L=128) at batch 1.

    .venv/bin/python benchmarks/bench_runtime.py [--repeat N] [--skip-minilm]

For each: onnxruntime latency, verinfer latency without and with the trace commitment (every
step's tensor Merkle root and trace_root), and the ratios the targets are stated in; and the
commitment's hashing alone, on one thread, from a finished run's tensors (what a traced run
overlaps with execution on its second core). Medians, each variant sampled in interleaved
blocks.
"""

from __future__ import annotations  # noqa: I001 (verinfer first, as below)

# before numpy, as in the CLI: importing verinfer sets OpenBLAS's idle wait (executor.py)
import verinfer  # noqa: F401

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from verinfer.runtime import Program, compile_model, executor
from verinfer.runtime.commit import native
from verinfer.runtime.testmodels import TEST_MODELS

ROUNDS = 5  # interleaved blocks per measurement


def samples_ms(fn: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(3):  # warm-up: first runs fault in pages and prepare weights
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(samples_ms(fn, repeat))


def batched(feed: dict[str, Any], batch: int) -> dict[str, Any]:
    out = {}
    for name, value in feed.items():
        reps = -(-batch // value.shape[0])
        out[name] = np.concatenate([value] * reps)[:batch]
    return out


def commit_on_one_thread(program: Program, values: dict[str, Any]) -> None:
    """The native committer's work in a traced run (every step's root, the trace root), all
    on this thread: nothing to overlap it with. Mirrors executor._execute's trace path."""
    plan = executor._plan(program)
    committer = native.Committer()
    for position, (step, *_, shares_root) in enumerate(plan.steps):
        if shares_root is None:
            committer.hash(values[step.output], plan.leaf_suffixes[position])
    committer.trace(plan.job_order, plan.leaf_suffixes)


def measure(
    label: str, onnx_path: Any, program: Program, feed: dict[str, Any], repeat: int
) -> None:
    """Medians of onnxruntime, verinfer and verinfer with the trace, each sampled in ROUNDS
    interleaved blocks: this VM's speed drifts by 10-30% over seconds, and timing one after the
    other would put the drift into the ratios."""
    # onnxruntime as a user gets it: default options, its thread pool spinning between runs
    # (turning spinning off makes every run wait for threads to wake, 1.5x-3x slower here).
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_t: list[float] = []
    run_t: list[float] = []
    traced_t: list[float] = []
    hash_t: list[float] = []
    values = program.run(feed, trace=False).values
    block = max(repeat // ROUNDS, 1)
    for _ in range(ROUNDS):
        ort_t += samples_ms(lambda: session.run(None, feed), block)
        time.sleep(0.2)  # its threads stop spinning, and leave both cores to verinfer
        run_t += samples_ms(lambda: program.run(feed, trace=False), block)
        traced_t += samples_ms(lambda: program.run(feed, trace=True).trace_root, block)
        hash_t += samples_ms(lambda: commit_on_one_thread(program, values), block)
    ort_ms, run_ms, traced_ms, hash_ms = (
        statistics.median(t) for t in (ort_t, run_t, traced_t, hash_t)
    )
    extra = traced_ms - run_ms
    print(
        f"| {label} | {ort_ms:.3f} | {run_ms:.3f} | {run_ms / ort_ms:.2f}x | {traced_ms:.3f} | "
        f"{100 * extra / run_ms:+.0f}% | {hash_ms:.3f} ({100 * hash_ms / run_ms:.0f}%) |"
    )


def accuracy() -> None:
    """Max abs error against onnxruntime on each committed sample, next to the tolerance the
    tests assert, and MiniLM's cosine similarity on the 20 test sentences."""
    print("\n| model | outputs max abs | max abs error | tolerance asserted | output scale |")
    print("|---|---|---|---|---|")
    for name, model in TEST_MODELS.items():
        program = model.compile()
        feed = dict(model.feed())
        expected = ort.InferenceSession(str(model.onnx)).run(None, feed)
        ours = program.run(feed, trace=False).outputs
        for tensor, got, want in zip(program.outputs, ours, expected, strict=True):
            err = float(np.max(np.abs(got - want)))
            print(
                f"| {name}/{tensor.name} | {float(np.max(np.abs(want))):.3g} | {err:.2e} | "
                f"{model.tolerance:.0e} | 2^-{tensor.scale} |"
            )


def minilm_cosine(program: Program, path: Any, feeds: list[dict[str, Any]]) -> None:
    session = ort.InferenceSession(str(path))
    cos = []
    for feed in feeds:
        a = program.run(feed, trace=False).outputs[0][0]
        b = session.run(None, feed)[0][0]
        cos.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    print(f"\nMiniLM: cosine similarity with onnxruntime over {len(cos)} sentences: "
          f"min {min(cos):.6f}, mean {statistics.mean(cos):.6f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, onnxruntime {ort.__version__}"
    )
    print(
        "| model, batch | onnxruntime ms | verinfer ms (no trace) | ratio | verinfer ms with "
        "trace_root | trace overhead | hashing alone ms (of the run) |"
    )
    print("|---|---|---|---|---|---|---|")
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
        program = compile_model(path, feeds)
        measure("MiniLM L=128, 1", path, program, feeds[0], max(args.repeat // 10, 3))
    accuracy()
    if not args.skip_minilm:
        minilm_cosine(program, path, feeds)


if __name__ == "__main__":
    main()
