"""Run one EZKL job in this process, then leave with ``os._exit``.

Usage: ``python -m verinfer.verify.ezkl_worker '<json job>'``. The job names a ``step``,
its ``args`` (file paths), a ``result`` path and an optional ``memory_limit`` (bytes of
address space, applied with ``RLIMIT_AS`` before EZKL is imported). The worker writes
``{"ok": true, "data": ..., "usage": ...}`` or ``{"ok": false, "step": ..., "error": ...}``
to the result path and prints ``verinfer-zk-step: NAME`` to stderr as each EZKL call starts,
so a crash can be pinned on a call.

Why a subprocess: EZKL's memory use is large and its interpreter sometimes crashes at exit
after async calls (PyGILState_Release, exit 134/139) once the work is done; ``os._exit(0)``
after the result is written skips that teardown, and a separate process isolates memory.
EZKL's bundled ``.pyi`` has wrong names and orders for several functions, so every call
passes keywords checked against the compiled signatures of ezkl 23.0.5.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

STEP_MARKER = "verinfer-zk-step:"


def _mark(step: str) -> None:
    sys.stderr.write(f"{STEP_MARKER} {step}\n")
    sys.stderr.flush()


def _usage() -> dict[str, int]:
    """Peak memory of this worker. ``ru_maxrss`` survives exec on Linux, so it also counts the
    parent's pages copied at fork (a big parent inflates it): VmHWM, which is this process
    image's own high-water mark, is preferred where /proc has it."""
    usage = {"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmPeak:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    usage[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    if "VmHWM" in usage:
        usage["max_rss_bytes"] = usage["VmHWM"]
    return usage


def _run(ezkl: Any, step: str, a: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    def call(name: str, fn: Callable[[], Any]) -> Any:
        _mark(name)
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        return out

    if step == "settings":
        run_args = ezkl.PyRunArgs()
        run_args.input_visibility = "public"  # the proof binds the request's input
        run_args.output_visibility = "public"  # ... and the output delivered on-chain
        run_args.param_visibility = "fixed"  # weights are circuit constants: the vk binds them
        run_args.variables = [(name, 1) for name in a["batch_dims"]]
        call(
            "gen_settings",
            lambda: ezkl.gen_settings(model=a["model"], output=a["settings"], py_run_args=run_args),
        )
        call(
            "calibrate_settings",
            lambda: ezkl.calibrate_settings(
                data=a["data"],
                model=a["model"],
                settings=a["settings"],
                target=a["target"],
                lookup_safety_margin=2.0,
                scales=None,
                scale_rebase_multiplier=[1],
                max_logrows=a.get("max_logrows"),
            ),
        )
        return {}
    if step == "gen_srs":
        call("gen_srs", lambda: ezkl.gen_srs(a["srs"], a["logrows"]))
        return {}
    if step in ("compile", "setup") and not a.get("compiled_ready"):
        call(
            "compile_circuit",
            lambda: ezkl.compile_circuit(
                model=a["model"], compiled_circuit=a["compiled"], settings_path=a["settings"]
            ),
        )
    if step == "compile":
        return {}
    if step == "setup":
        ok = call(
            "setup",
            lambda: ezkl.setup(
                model=a["compiled"],
                vk_path=a["vk"],
                pk_path=a["pk"],
                srs_path=a["srs"],
                witness_path=None,
                disable_selector_compression=False,
            ),
        )
        if not ok:
            raise RuntimeError("ezkl.setup returned False")
        return {}
    if step == "verifier":
        reusable = bool(a["reusable"])

        async def render() -> None:
            await ezkl.create_evm_verifier(
                vk_path=a["vk"],
                settings_path=a["settings"],
                sol_code_path=a["sol"],
                abi_path=a["abi"],
                srs_path=a["srs"],
                reusable=reusable,
            )
            if reusable:
                _mark("create_evm_vka")
                await ezkl.create_evm_vka(
                    vk_path=a["vk"],
                    settings_path=a["settings"],
                    vka_path=a["vka"],
                    srs_path=a["srs"],
                )

        call("create_evm_verifier", lambda: asyncio.run(render()))
        return {}
    if step == "prove":
        call(
            "gen_witness",
            lambda: ezkl.gen_witness(
                data=a["data"],
                model=a["compiled"],
                output=a["witness"],
                vk_path=None,
                srs_path=None,
            ),
        )
        call(
            "prove",
            lambda: ezkl.prove(
                witness=a["witness"],
                model=a["compiled"],
                pk_path=a["pk"],
                proof_path=a["proof"],
                srs_path=a["srs"],
            ),
        )
        calldata = call(
            "encode_evm_calldata",
            lambda: ezkl.encode_evm_calldata(
                proof=a["proof"], calldata=a["calldata"], vka_path=a.get("vka")
            ),
        )
        return {"calldata_len": len(calldata)}
    if step == "verify":
        _mark("verify")
        t0 = time.perf_counter()
        try:
            valid = bool(
                ezkl.verify(
                    proof_path=a["proof"],
                    settings_path=a["settings"],
                    vk_path=a["vk"],
                    srs_path=a["srs"],
                    reduced_srs=False,
                )
            )
            reason = "" if valid else "ezkl.verify returned False"
        except Exception as exc:  # EZKL raises on a proof that fails its checks
            valid, reason = False, f"{type(exc).__name__}: {exc}"
        timings["verify"] = time.perf_counter() - t0
        return {"valid": valid, "reason": reason}
    raise ValueError(f"unknown step {step!r}")


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    result_path = job["result"]
    step = job["step"]
    timings: dict[str, float] = {}
    try:
        limit = job.get("memory_limit")
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
        _mark(f"import ezkl ({step})")
        import ezkl

        data = _run(ezkl, step, job["args"], timings)
        result: dict[str, Any] = {"ok": True, "data": data}
    except BaseException as exc:  # report every failure, MemoryError included, as data
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "memory_error": isinstance(exc, MemoryError),
            "traceback": traceback.format_exc(limit=5),
        }
    result["timings"] = timings
    result["usage"] = _usage()
    with open(result_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(result_path + ".tmp", result_path)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main(sys.argv)
