"""Which BLAS libraries a traced run limits to one thread (executor._waits_long): those whose
idle threads busy-wait long enough to take the trace hasher's core."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from verinfer.runtime import executor

THROTTLED = "from verinfer.runtime import executor; print(len(executor._THROTTLED_BLAS))"


def int_from_subprocess(code: str, timeout: str | None) -> int:
    """Runs ``code`` in a fresh interpreter with OPENBLAS_THREAD_TIMEOUT=timeout (or unset)
    and returns the integer it prints last."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = timeout
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    return int(result.stdout.split()[-1])


@pytest.mark.parametrize(
    ("first", "timeout", "throttled"),
    [
        ("import verinfer", None, 0),  # verinfer sets the short wait before OpenBLAS loads
        ("import numpy", None, 1),  # too late: OpenBLAS read no value (2**28 cycles)
        ("import numpy", "16", 0),  # the user set it
        ("import verinfer", "28", 1),  # the user's value wins, and it is long
        ("import verinfer", "18", 0),
        ("import verinfer", "19", 1),
    ],
)
def test_openblas_idle_wait_decides(first: str, timeout: str | None, throttled: int) -> None:
    assert int_from_subprocess(f"{first}; {THROTTLED}", timeout) == throttled


def test_the_variable_is_set_for_child_processes_but_not_overridden() -> None:
    code = "import os, verinfer; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    for timeout, seen in ((None, 16), ("7", 7)):
        assert int_from_subprocess(code, timeout) == seen


def test_other_blas_libraries_are_limited() -> None:
    """MKL and BLIS keep their threads spinning after a call too; an OpenBLAS without the
    query is assumed to wait long."""
    assert executor._waits_long(SimpleNamespace(internal_api="mkl"))
    assert executor._waits_long(SimpleNamespace(internal_api="blis"))
    assert executor._waits_long(SimpleNamespace(internal_api="openblas", dynlib=object()))
