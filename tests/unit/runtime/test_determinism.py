"""Bit-identical trace roots across repeated runs, fresh processes and BLAS thread counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from verinfer.runtime.testmodels import TEST_MODELS

SCRIPT = """
import json, sys
from verinfer.runtime import executor
from verinfer.runtime.testmodels import TEST_MODELS
out = {"throttled": len(executor._THROTTLED_BLAS)}
for name in sys.argv[1:]:
    model = TEST_MODELS[name]
    program = model.compile()
    out[name] = [program.program_hash, program.run(model.feed()).trace_root]
print(json.dumps(out))
"""


def roots_in_subprocess(threads: int, **env_vars: str) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *sorted(TEST_MODELS)],
        env={**env, **env_vars}, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_same_roots_with_one_and_two_blas_threads_in_fresh_processes() -> None:
    """One BLAS thread; two that traced runs keep (OpenBLAS waits briefly when idle, as
    verinfer sets it); two that traced runs limit to one (OpenBLAS's default long wait). The
    transformer block is large enough for the traced run to take the BLAS path in question."""
    one = roots_in_subprocess(1)
    two_kept = roots_in_subprocess(2)
    two_limited = roots_in_subprocess(2, OPENBLAS_THREAD_TIMEOUT="28")
    assert (two_kept.pop("throttled"), two_limited.pop("throttled")) == (0, 1)
    one.pop("throttled")
    assert one == two_kept == two_limited
    for name, model in TEST_MODELS.items():  # and the same as in this process
        program = model.compile()
        assert one[name] == [program.program_hash, program.run(model.feed()).trace_root]


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_repeated_runs_are_identical(name: str) -> None:
    model = TEST_MODELS[name]
    program = model.compile()
    roots = {program.run(model.feed()).trace_root for _ in range(3)}
    assert len(roots) == 1
    assert model.compile().program_hash == program.program_hash  # compiling is deterministic


def test_trace_root_does_not_depend_on_layout_or_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel output in another memory layout is converted for the native committer, and
    the pure-Python commitment gives the same roots."""
    from verinfer.runtime import executor
    from verinfer.runtime.ops import FUSED, PLANNERS

    model = TEST_MODELS["digits_mlp"]
    feed = dict(model.feed())
    expected = model.compile().run(feed)
    dense = FUSED["dense"]

    def fortran_order(*args: object) -> tuple[np.ndarray, int]:
        out, clamped = dense(*args)
        return np.asfortranarray(out), clamped

    monkeypatch.setitem(FUSED, "dense", fortran_order)
    monkeypatch.delitem(PLANNERS, "dense")  # else the planned kernel runs, not FUSED's
    reordered = model.compile().run(feed)  # a new program plans its steps again
    assert not reordered.values[reordered.trace_tensors()[0].name].flags.c_contiguous
    assert (reordered.step_roots, reordered.trace_root) == (
        expected.step_roots,
        expected.trace_root,
    )
    monkeypatch.setattr(executor, "native_commit", None)
    pure = model.compile().run(feed)
    assert (pure.step_roots, pure.trace_root) == (expected.step_roots, expected.trace_root)
