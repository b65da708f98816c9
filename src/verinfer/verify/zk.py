"""zk mode: the EZKL (Halo2/KZG) ``ProofBackend``.

Setup binds three things into one circuit and its keys: the model (weights are ``fixed``
circuit constants, so the verifying key changes with any weight), the request's input and
the delivered output (both ``public`` instances, checked by the verifier). Every EZKL call
runs in a worker subprocess (``verinfer.verify.zk_jobs``) under a time and address-space
limit derived from the estimate; every artifact goes into the content-addressed store.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import onnx
import structlog

from verinfer.errors import ModelError, ProofError
from verinfer.home import home_dir
from verinfer.runtime.commit import keccak256
from verinfer.store import Store, open_store
from verinfer.verify.backend import (
    Estimate,
    Proof,
    VerifierArtifact,
    VerifierKind,
    ZkArtifacts,
    ZkLimits,
    ZkModel,
)
from verinfer.verify.errors import ZkInputError, ZkLimitError, ZkStepError
from verinfer.verify.zk_chain import encode_calldata, vka_digest
from verinfer.verify.zk_estimate import estimate_from_settings
from verinfer.verify.zk_jobs import JobResult, run_job
from verinfer.verify.zk_solc import EIP170_MAX_RUNTIME, compile_contract
from verinfer.verify.zk_srs import Srs, development_srs, trusted_srs

log = structlog.get_logger(__name__)

VerifierChoice = Literal["auto", "dedicated", "reusable"]
SetupProgress = Callable[[str, float], None]  # (stage that just ended, its seconds)
CONTRACT_NAMES: dict[VerifierKind, str] = {
    "dedicated": "Halo2Verifier",
    "reusable": "Halo2VerifierReusable",
}
SETTINGS_TIMEOUT_S = 900.0
MIN_TIMEOUT_S = 120.0
TIMEOUT_FACTOR = 5.0  # a worker may take this many times its estimate before it is killed
# RLIMIT_AS for a worker limits address space, not resident memory. Measured: VmPeak is
# ~250 MB above VmHWM (Python, EZKL's code, thread stacks), and glibc may reserve a 64 MiB
# malloc arena per thread; the estimate's own margin comes on top (it is already the largest
# per-row rate seen). A worker over this limit fails with ZkOutOfMemoryError, not the machine.
AS_FACTOR = 2
AS_BASE_BYTES = 2**30
AS_PER_CPU_BYTES = 128 * 2**20
CALIBRATION_NOISE_ROWS = 8


@dataclass(frozen=True)
class ZkOptions:
    """How setup builds circuits; all optional.

    ``verifier``: ``auto`` deploys EZKL's dedicated verifier when it fits EIP-170's 24,576
    bytes (measured ~180k gas cheaper per proof than the reusable one) and else the reusable
    verifier with a per-model VKA; ``reusable`` prefers the reusable one and falls back to the
    dedicated one; ``dedicated`` never uses the reusable one.
    ``trusted_srs``: an SRS file from a public ceremony, for exactly the circuit's logrows.
    Without one, a locally generated development SRS is used (and a warning logged).
    """

    verifier: VerifierChoice = "auto"
    calibration_target: Literal["resources", "accuracy"] = "resources"
    trusted_srs: Path | None = None
    srs_dir: Path | None = None
    limits: ZkLimits = field(default_factory=ZkLimits)


@dataclass(frozen=True)
class _ModelIO:
    input_size: int
    batch_dims: tuple[str, ...]


def _model_io(path: Path) -> _ModelIO:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...: a bad or missing file
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelError(
            f"zk mode supports models with one input and one output; {path.name} has "
            f"{len(inputs)} and {len(model.graph.output)}"
        )
    size, batch = 1, []
    for dim in inputs[0].type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            size *= dim.dim_value
        else:
            batch.append(dim.dim_param)  # a symbolic (batch) dimension: proved with size 1
    return _ModelIO(input_size=size, batch_dims=tuple(batch))


def _felts(instances: Any) -> tuple[int, ...]:
    if not isinstance(instances, list) or len(instances) != 1:
        raise ProofError(f"expected one column of public instances, got {instances!r:.80}")
    return tuple(int.from_bytes(bytes.fromhex(h), "little") for h in instances[0])


def _hash(data: bytes) -> str:
    return "0x" + keccak256(data).hex()


class EzklBackend:
    """``ProofBackend`` over EZKL; artifacts in ``store``, scratch files in ``work_dir``."""

    def __init__(
        self,
        store: Store | None = None,
        options: ZkOptions | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.store = store if store is not None else open_store()
        self.options = options or ZkOptions()
        self.work_dir = Path(work_dir) if work_dir is not None else home_dir() / "zk"
        self._cache = self.work_dir / "cache"
        # The latest worker run of each step ("setup", "prove", ...): timings and peak memory,
        # for benchmarks and for calibrating ``zk_estimate``.
        self.last_jobs: dict[str, JobResult] = {}

    # -- cost before work ------------------------------------------------------------------

    def estimate(self, model: ZkModel) -> Estimate:
        with self._scratch() as work:
            _, _, estimate = self._settings(model, work)
        return estimate

    def check_limits(self, estimate: Estimate) -> None:
        reasons = self.options.limits.exceeded(estimate)
        if reasons:
            raise ZkLimitError(
                f"refusing zk setup at logrows {estimate.logrows}: " + "; ".join(reasons),
                hint="raise the node's zk limits, use a machine with more memory, or serve this "
                "model in optimistic or consensus mode",
            )

    # -- setup -----------------------------------------------------------------------------

    def setup(self, model: ZkModel, progress: SetupProgress | None = None) -> ZkArtifacts:
        """Circuit, keys and verifier for ``model``; ``progress(stage, seconds)`` is called as
        each stage ends: settings (calibration), compile, srs, keys, verifier."""
        stage = _Stages(progress)
        with self._scratch() as work:
            settings_path, settings, estimate = self._settings(model, work)
            stage.done("settings")
            self.check_limits(estimate)  # before keys, SRS or anything else that costs
            model_cid = str(self.store.put(Path(model.onnx_path).read_bytes()))
            log.info("zk.setup.start", model=str(model.onnx_path), **_est_fields(estimate))
            files = {n: work / n for n in ("model.compiled", "vk.key", "pk.key")}
            args = {
                "model": str(model.onnx_path),
                "settings": str(settings_path),
                "compiled": str(files["model.compiled"]),
                "vk": str(files["vk.key"]),
                "pk": str(files["pk.key"]),
            }
            self._run("compile", args, workdir=work, timeout=SETTINGS_TIMEOUT_S)
            stage.done("compile")
            srs = self._srs(estimate.logrows)
            stage.done("srs")
            result = self._run(
                "setup",
                {**args, "srs": str(srs.path), "compiled_ready": True},
                workdir=work,
                timeout=max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * estimate.setup_seconds),
                memory_limit=_as_limit(estimate),
            )
            stage.done("keys")
            log.info("zk.setup.keys", seconds=round(result.wall_seconds, 2), **result.usage)
            cids = {name: self._keep(path) for name, path in files.items()}
            settings_bytes = settings_path.read_bytes()
            settings_cid = self._keep(settings_path)
            vk_bytes = (self._cache / cids["vk.key"]).read_bytes()
            shapes = settings["model_instance_shapes"]
            partial = ZkArtifacts(
                ezkl_version=str(settings.get("version", "")),
                model_cid=model_cid,
                logrows=estimate.logrows,
                input_shape=tuple(int(d) for d in shapes[0]),
                output_shape=tuple(int(d) for d in shapes[-1]),
                input_scale=int(settings["model_input_scales"][0]),
                output_scale=int(settings["model_output_scales"][0]),
                settings_cid=settings_cid,
                settings_hash=_hash(settings_bytes),
                compiled_cid=cids["model.compiled"],
                vk_cid=cids["vk.key"],
                vk_hash=_hash(vk_bytes),
                pk_cid=cids["pk.key"],
                pk_bytes=(self._cache / cids["pk.key"]).stat().st_size,
                srs_kind=srs.kind,
                srs_hash=srs.sha256,
                verifier=VerifierArtifact("dedicated", "", "", 0),  # replaced just below
            )
            verifier = self._verifier(partial, srs, work)
            stage.done("verifier")
        artifacts = replace(partial, verifier=verifier)
        log.info("zk.setup.done", vk_hash=artifacts.vk_hash, verifier=verifier.kind)
        return artifacts

    def build_verifier(self, artifacts: ZkArtifacts, choice: VerifierChoice) -> ZkArtifacts:
        """The same circuit and keys with another verifier kind (e.g. reusable + VKA)."""
        srs = self._srs_for(artifacts)
        with self._scratch() as work:
            verifier = self._verifier(artifacts, srs, work, choice)
        return replace(artifacts, verifier=verifier)

    # -- prove and verify --------------------------------------------------------------------

    def prove(self, artifacts: ZkArtifacts, input: Sequence[float]) -> Proof:
        values = [float(v) for v in input]
        if len(values) != artifacts.n_inputs:
            raise ZkInputError(
                f"the circuit takes {artifacts.n_inputs} input values, got {len(values)}"
            )
        if not all(math.isfinite(v) for v in values):
            raise ZkInputError("the input holds NaN or infinity")
        settings = json.loads(self._file(artifacts.settings_cid).read_bytes())
        estimate = estimate_from_settings(settings)
        srs = self._srs_for(artifacts)
        vka = self._vka(artifacts)
        with self._scratch() as work:
            data = work / "input.json"
            data.write_text(json.dumps({"input_data": [values]}))
            proof_path, calldata_path = work / "proof.json", work / "calldata.bin"
            args = {
                "data": str(data),
                "compiled": str(self._file(artifacts.compiled_cid)),
                "pk": str(self._file(artifacts.pk_cid)),
                "srs": str(srs.path),
                "witness": str(work / "witness.json"),
                "proof": str(proof_path),
                "calldata": str(calldata_path),
            }
            if vka is not None:
                args["vka"] = str(self._vka_file(vka, work))
            result = self._run(
                "prove",
                args,
                workdir=work,
                timeout=max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * estimate.prove_seconds),
                memory_limit=_as_limit(estimate),
            )
            raw = json.loads(proof_path.read_text())
            ezkl_calldata = calldata_path.read_bytes()
        proof_bytes = bytes(raw["proof"])
        instances = _felts(raw["instances"])
        ours = encode_calldata(artifacts.verifier.kind, proof_bytes, instances, vka)
        if ezkl_calldata[: len(ours)] != ours or any(ezkl_calldata[len(ours) :]):
            raise ZkStepError(
                "encode_evm_calldata", "EZKL's calldata differs from verinfer's encoding"
            )
        log.info(
            "zk.proved",
            seconds=round(result.wall_seconds, 2),
            prove_s=round(result.timings.get("prove", 0.0), 2),
            proof_bytes=len(proof_bytes),
            **result.usage,
        )
        return Proof(proof=proof_bytes, instances=instances, calldata=ezkl_calldata)

    def verify(self, artifacts: ZkArtifacts, proof: Proof) -> bool:
        if len(proof.instances) != artifacts.n_instances:
            raise ZkInputError(
                f"the proof has {len(proof.instances)} public instances; the circuit has "
                f"{artifacts.n_instances}"
            )
        srs = self._srs_for(artifacts)
        with self._scratch() as work:
            path = work / "proof.json"
            path.write_text(json.dumps(_proof_json(proof, artifacts.ezkl_version)))
            result = self._run(
                "verify",
                {
                    "proof": str(path),
                    "settings": str(self._file(artifacts.settings_cid)),
                    "vk": str(self._file(artifacts.vk_cid)),
                    "srs": str(srs.path),
                },
                workdir=work,
                timeout=MIN_TIMEOUT_S,
            )
        if not result.data["valid"]:
            log.info("zk.verify.rejected", reason=result.data["reason"][:200])
        return bool(result.data["valid"])

    # -- internals ---------------------------------------------------------------------------

    def _run(self, step: str, args: dict[str, Any], **kwargs: Any) -> JobResult:
        result = run_job(step, args, **kwargs)
        self.last_jobs[step] = result
        return result

    def _scratch(self) -> _PathTempDir:
        tmp = self.work_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return _PathTempDir(prefix="job-", dir=tmp)

    def _settings(self, model: ZkModel, work: Path) -> tuple[Path, dict[str, Any], Estimate]:
        io = _model_io(Path(model.onnx_path))
        rows = model.samples or _noise(io.input_size)
        for row in rows:
            if len(row) != io.input_size:
                raise ZkInputError(
                    f"a calibration sample has {len(row)} values; the model takes {io.input_size}"
                )
        data = work / "calibration.json"
        data.write_text(json.dumps({"input_data": [[float(v) for r in rows for v in r]]}))
        settings_path = work / "settings.json"
        self._run(
            "settings",
            {
                "model": str(Path(model.onnx_path).resolve()),
                "settings": str(settings_path),
                "data": str(data),
                "target": self.options.calibration_target,
                "batch_dims": list(io.batch_dims),
            },
            workdir=work,
            timeout=SETTINGS_TIMEOUT_S,
        )
        settings: dict[str, Any] = json.loads(settings_path.read_text())
        estimate = estimate_from_settings(settings)
        log.info("zk.estimate", model=str(model.onnx_path), **_est_fields(estimate))
        return settings_path, settings, estimate

    def _srs(self, logrows: int, *, warn: bool = True) -> Srs:
        if self.options.trusted_srs is not None:
            return trusted_srs(self.options.trusted_srs, logrows)
        return development_srs(logrows, cache_dir=self.options.srs_dir, warn=warn)

    def _srs_for(self, artifacts: ZkArtifacts) -> Srs:
        srs = self._srs(artifacts.logrows, warn=False)
        if srs.sha256 != artifacts.srs_hash:
            raise ProofError(
                f"the SRS at {srs.path} is not the one this circuit's keys were made with",
                hint="use the same SRS (trusted_srs or srs_dir) as at setup, or run setup again",
            )
        return srs

    def _verifier(
        self,
        art: ZkArtifacts,
        srs: Srs,
        work: Path,
        choice: VerifierChoice | None = None,
    ) -> VerifierArtifact:
        choice = choice or self.options.verifier
        orders: dict[VerifierChoice, list[VerifierKind]] = {
            "auto": ["dedicated", "reusable"],
            "reusable": ["reusable", "dedicated"],
            "dedicated": ["dedicated"],
        }
        order = orders[choice]
        reasons: list[str] = []
        for kind in order:
            try:
                built = self._build_verifier(art, srs, work, kind)
            except ProofError as exc:
                reasons.append(f"{kind}: {exc}")
                log.warning("zk.verifier.failed", kind=kind, error=str(exc)[:300])
                continue
            if built.runtime_size > EIP170_MAX_RUNTIME:
                reasons.append(
                    f"{kind}: runtime {built.runtime_size} bytes exceeds EIP-170's "
                    f"{EIP170_MAX_RUNTIME}"
                )
                log.warning("zk.verifier.too_large", kind=kind, runtime=built.runtime_size)
                continue
            reason = "; ".join(reasons) or None
            log.info("zk.verifier.built", kind=kind, runtime=built.runtime_size, fallback=reason)
            return replace(built, fallback_reason=reason)
        raise ProofError("no EVM verifier could be built: " + "; ".join(reasons))

    def _build_verifier(
        self, art: ZkArtifacts, srs: Srs, work: Path, kind: VerifierKind
    ) -> VerifierArtifact:
        sol, abi, vka = work / f"{kind}.sol", work / f"{kind}.abi", work / f"{kind}.vka"
        args = {
            "vk": str(self._file(art.vk_cid)),
            "settings": str(self._file(art.settings_cid)),
            "srs": str(srs.path),
            "sol": str(sol),
            "abi": str(abi),
            "reusable": kind == "reusable",
            "vka": str(vka),
        }
        self._run("verifier", args, workdir=work, timeout=SETTINGS_TIMEOUT_S)
        source = sol.read_text()
        compiled = compile_contract(source, CONTRACT_NAMES[kind], work / f"solc-{kind}")
        vka_cid = digest = None
        if kind == "reusable":
            words = _vka_words(vka.read_bytes())
            vka_cid, digest = str(self.store.put(words)), vka_digest(words)
        return VerifierArtifact(
            kind=kind,
            bytecode_cid=str(self.store.put(compiled.bytecode)),
            source_cid=str(self.store.put(source.encode())),
            runtime_size=len(compiled.runtime),
            vka_cid=vka_cid,
            vka_digest=digest,
        )

    def _vka(self, artifacts: ZkArtifacts) -> bytes | None:
        if artifacts.verifier.kind != "reusable" or artifacts.verifier.vka_cid is None:
            return None
        return self.store.get(artifacts.verifier.vka_cid)

    @staticmethod
    def _vka_file(words: bytes, work: Path) -> Path:
        """EZKL's VKA file format: a u64 little-endian word count, then the words."""
        path = work / "model.vka"
        path.write_bytes((len(words) // 32).to_bytes(8, "little") + words)
        return path

    def _keep(self, path: Path) -> str:
        """Store ``path``; keep the file as this CID's local copy for later steps."""
        cid = str(self.store.put_file(path))
        self._cache.mkdir(parents=True, exist_ok=True)
        target = self._cache / cid
        if target.exists():
            path.unlink()
        else:
            os.replace(path, target)
        return cid

    def _file(self, cid: str) -> Path:
        """A local file with the bytes of ``cid``, fetched (and verified) from the store once."""
        path = self._cache / cid
        if not path.is_file():
            self._cache.mkdir(parents=True, exist_ok=True)
            self.store.get_to_file(cid, path)
        return path


class _Stages:
    """Calls ``progress(stage, seconds since the previous stage ended)``."""

    def __init__(self, progress: SetupProgress | None) -> None:
        self.progress = progress
        self.last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        if self.progress is not None:
            self.progress(stage, now - self.last)
        self.last = now


class _PathTempDir(tempfile.TemporaryDirectory[str]):
    """A TemporaryDirectory whose context value is a Path."""

    def __enter__(self) -> Path:  # type: ignore[override]
        return Path(self.name)


def _vka_words(raw: bytes) -> bytes:
    if len(raw) < 8:
        raise ProofError("EZKL wrote an empty VKA")
    n = int.from_bytes(raw[:8], "little")
    if len(raw) != 8 + 32 * n:
        raise ProofError(f"unexpected VKA layout: {len(raw)} bytes for {n} words")
    return raw[8:]


def _noise(size: int) -> tuple[tuple[float, ...], ...]:
    rng = random.Random(0)
    return tuple(tuple(rng.random() for _ in range(size)) for _ in range(CALIBRATION_NOISE_ROWS))


def _proof_json(proof: Proof, version: str) -> dict[str, Any]:
    """EZKL's proof file, rebuilt from the fields (so what is checked is what is held)."""
    return {
        "protocol": None,
        "instances": [[v.to_bytes(32, "little").hex() for v in proof.instances]],
        "proof": list(proof.proof),
        "hex_proof": "0x" + proof.proof.hex(),
        "split": None,
        "pretty_public_inputs": None,
        "timestamp": None,
        "version": version,
    }


def _as_limit(estimate: Estimate) -> int:
    cpus = os.cpu_count() or 1
    return AS_FACTOR * estimate.peak_memory_bytes + AS_BASE_BYTES + AS_PER_CPU_BYTES * cpus


def _est_fields(e: Estimate) -> dict[str, Any]:
    return {
        "logrows": e.logrows,
        "setup_s": e.setup_seconds,
        "prove_s": e.prove_seconds,
        "peak_gib": round(e.peak_memory_bytes / 2**30, 2),
        "pk_mib": round(e.pk_bytes / 2**20),
        "verify_gas": e.verify_gas,
        "circuit_class": e.circuit_class,
    }


__all__ = ["EzklBackend", "SetupProgress", "ZkOptions"]
