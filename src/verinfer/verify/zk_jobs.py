"""Run one EZKL step in a worker subprocess, with a time limit and an address-space limit.

Each job gets a throwaway HOME holding the solc shim (EZKL writes under ``~`` and looks for
solc in ``~/.svm``; the user's real home is never touched). The worker's stdout and stderr go
to a log file beside the job; on failure its tail, and the EZKL call that was running, end up
in a typed ``ZkStepError``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog

from verinfer.verify.errors import (
    ZkOutOfMemoryError,
    ZkStepError,
    ZkTimeoutError,
    ZkUnsupportedModelError,
    ZkWorkerCrashedError,
)
from verinfer.verify.ezkl_worker import STEP_MARKER
from verinfer.verify.zk_solc import install_shim

log = structlog.get_logger(__name__)

LOG_TAIL_CHARS = 1500
_OOM_PATTERNS = ("memory allocation of", "Cannot allocate memory", "MemoryError", "out of memory")
_UNSUPPORTED = re.compile(r"unsupported[^\n]*", re.IGNORECASE)
# tract (EZKL's ONNX loader): 'Translating node #1 "y" Unimplemented(Gelu) ToTypedTranslator'
_UNIMPLEMENTED = re.compile(r'node #\d+ "([^"]*)" Unimplemented\((\w+)\)')


@dataclass(frozen=True)
class JobResult:
    data: dict[str, Any]
    timings: dict[str, float]
    usage: dict[str, int]
    wall_seconds: float


def run_job(
    step: str,
    args: dict[str, Any],
    *,
    workdir: Path,
    timeout: float,
    memory_limit: int | None = None,
) -> JobResult:
    """Run ``step`` in ``python -m verinfer.verify.ezkl_worker``; raise a typed error on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"zk-{step}-", dir=workdir) as tmp:
        job_dir = Path(tmp)
        home = job_dir / "home"
        env = {**os.environ, **install_shim(home)}
        result_path = job_dir / "result.json"
        log_path = job_dir / "worker.log"
        job = {"step": step, "args": args, "result": str(result_path), "memory_limit": memory_limit}
        cmd = [sys.executable, "-m", "verinfer.verify.ezkl_worker", json.dumps(job)]
        started = time.perf_counter()
        with log_path.open("wb") as logf:
            proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=job_dir, start_new_session=True,
            )  # fmt: skip
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and any solc shim it started
                proc.wait()
                tail = _tail(log_path)
                raise ZkTimeoutError(
                    _current_call(tail, step),
                    f"no result after {timeout:.0f} s; the worker was killed",
                    log_tail=tail,
                    hint="raise the node's time limit or use a smaller model",
                ) from None
        wall = time.perf_counter() - started
        tail = _tail(log_path)
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = None
        if result is None:
            _raise_crash(step, returncode, tail, memory_limit)
        if not result["ok"]:
            _raise_failure(step, result, tail, memory_limit)
        if returncode != 0:
            log.warning("zk.worker.exit_nonzero_after_result", step=step, returncode=returncode)
        log.debug("zk.worker.done", step=step, seconds=round(wall, 2), **result["usage"])
        return JobResult(result["data"], result["timings"], result["usage"], wall)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _current_call(tail: str, default: str) -> str:
    marks = [line for line in tail.splitlines() if line.startswith(STEP_MARKER)]
    return marks[-1][len(STEP_MARKER) :].strip() if marks else default


def _oom_hint(memory_limit: int | None) -> str:
    limit = f"{memory_limit / 2**30:.1f} GiB" if memory_limit else "the machine's memory"
    return f"the worker needed more than {limit}: use a machine with more memory or a smaller model"


def _raise_crash(step: str, returncode: int, tail: str, memory_limit: int | None) -> NoReturn:
    call = _current_call(tail, step)
    how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    if any(p in tail for p in _OOM_PATTERNS) or returncode == -signal.SIGKILL:
        raise ZkOutOfMemoryError(
            call,
            f"the worker ran out of memory ({how})",
            log_tail=tail,
            hint=_oom_hint(memory_limit),
        )
    last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
    raise ZkWorkerCrashedError(call, f"the worker died ({how}): {last}", log_tail=tail)


def _raise_failure(
    step: str, result: dict[str, Any], tail: str, memory_limit: int | None
) -> NoReturn:
    call = _current_call(tail, step)
    error = str(result.get("error", "unknown error"))
    if result.get("memory_error") or any(p in error for p in _OOM_PATTERNS):
        raise ZkOutOfMemoryError(call, error, log_tail=tail, hint=_oom_hint(memory_limit))
    unimplemented = _UNIMPLEMENTED.search(error)
    if unimplemented:
        node, op = unimplemented.groups()
        raise ZkUnsupportedModelError(
            call,
            f"EZKL does not support the ONNX op {op} (node {node!r})",
            log_tail=tail,
            hint=f"replace {op} with ops EZKL supports, or serve the model in optimistic or "
            "consensus mode",
        )
    unsupported = _UNSUPPORTED.search(error)
    if unsupported or "Undetermined symbol" in error:
        raise ZkUnsupportedModelError(
            call,
            error,
            log_tail=tail,
            hint="EZKL cannot build a circuit for this model: replace the named op or fix "
            "its shapes, or serve the model in optimistic or consensus mode",
        )
    raise ZkStepError(call, error, log_tail=tail)
