"""Mode zk jobs: prove the model on the request's input with EZKL, off the node's main loop.

A zk job is ``seen`` like a mode-none one; ``start`` checks its input against the model's
circuit (loaded from the store by the registry's ``artifacts_cid``, cached per model) and hands
the proof to a one-thread pool (EZKL itself runs in a worker subprocess and takes seconds, so
the watcher and the submitter keep running). ``collect``, on the main loop, turns finished
proofs into ``computed`` jobs: the output is the proof's output instances as one inline tensor
at the circuit's output scale, and the proof is stored with it, so a restarted node resends
``fulfilZk`` without proving again. A job still proving when the node stops is proved again
on the next start (it is still ``seen``).

An input the circuit cannot take (not inline, not one tensor, another scale or size) has no
proof and no empty-output answer in mode zk: the job fails as ``invalid_input`` and the
requester is refunded at the deadline.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import structlog

from verinfer.chain.codec import encode_tensors
from verinfer.errors import ModelError, VerinferError
from verinfer.models.registry import RegistryClient
from verinfer.node.jobs import Job, JobLog, JobState
from verinfer.store.local import Store
from verinfer.verify.backend import Proof, ProofBackend, ZkArtifacts, felt_to_int, int_to_felt
from verinfer.verify.errors import ZkInputError
from verinfer.verify.zk_artifacts import ArtifactsCache, single_tensor

__all__ = ["ZkProver", "zk_output"]

log = structlog.get_logger(__name__)


@dataclass
class _Running:
    future: Future[Proof]
    artifacts: ZkArtifacts
    values: list[int]
    started: float


def zk_output(artifacts: ZkArtifacts, proof: Proof) -> bytes:
    """The output the proof's public instances say: one inline tensor at the output scale."""
    n_in, n = artifacts.n_inputs, artifacts.n_instances
    out = np.array([felt_to_int(f) for f in proof.instances[n_in:n]], dtype=np.int64)
    return encode_tensors([(out, artifacts.output_scale)])


class ZkProver:
    """Proves zk jobs in the background; ``start`` and ``collect`` run on the main loop."""

    def __init__(self, registry: RegistryClient, store: Store, backend: ProofBackend) -> None:
        self.registry = registry
        self.backend = backend
        self.cache = ArtifactsCache(store)
        self._cids: dict[int, str] = {}
        self._running: dict[str, _Running] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zk-prove")

    def artifacts(self, model_id: int) -> ZkArtifacts:
        """The model's circuit, by the registry's artifacts CID (both cached)."""
        if model_id not in self._cids:
            circuit = self.registry.get(model_id).zk
            if circuit.empty:
                raise ModelError(
                    f"model {model_id} has no zk circuit",
                    hint="register it with `verinfer model add --modes zk`",
                )
            self._cids[model_id] = circuit.artifacts_cid
        return self.cache.get(self._cids[model_id])

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self, jobs: JobLog, job: Job) -> bool:
        """Begin proving ``job`` unless it already is; True when a proof was started."""
        if job.request_id in self._running:
            return False
        try:
            artifacts = self.artifacts(job.model_id)
        except VerinferError as exc:  # the node's own problem (store, registry): not answered
            jobs.transition(
                job.request_id, JobState.FAILED, outcome="cannot_compute", error=str(exc)[:500]
            )
            log.warning("job.failed", request_id=job.request_id, error=str(exc)[:200])
            return False
        try:
            values = single_tensor(job.input, artifacts.input_scale, "input")
            if len(values) != artifacts.n_inputs:
                raise ZkInputError(
                    f"the input has {len(values)} values; the circuit takes {artifacts.n_inputs}"
                )
        except ZkInputError as exc:
            jobs.transition(
                job.request_id, JobState.FAILED, outcome="invalid_input", error=str(exc)[:500]
            )
            jobs.bump("invalid_inputs")
            log.warning("job.invalid_input", request_id=job.request_id, error=str(exc)[:200])
            return False
        floats = [v / 2**artifacts.input_scale for v in values]  # exact: EZKL gets q back
        future = self._pool.submit(self.backend.prove, artifacts, floats)
        self._running[job.request_id] = _Running(future, artifacts, values, time.perf_counter())
        log.info("job.proving", request_id=job.request_id, model_id=job.model_id)
        return True

    def collect(self, jobs: JobLog) -> bool:
        """Record every finished proof; True when one was."""
        done = [rid for rid, r in self._running.items() if r.future.done()]
        for rid in done:
            self._finish(jobs, rid, self._running.pop(rid))
        return bool(done)

    def _finish(self, jobs: JobLog, request_id: str, run: _Running) -> None:
        error = run.future.exception()
        if error is not None:
            jobs.transition(
                request_id, JobState.FAILED, outcome="cannot_prove", error=str(error)[:500]
            )
            log.warning("job.prove_failed", request_id=request_id, error=str(error)[:300])
            return
        proof = run.future.result()
        a = run.artifacts
        if proof.instances[: a.n_inputs] != tuple(int_to_felt(v) for v in run.values):
            jobs.transition(
                request_id, JobState.FAILED, outcome="cannot_prove",
                error="the proof's input instances differ from the request's input",
            )  # fmt: skip
            log.warning("job.prove_mismatch", request_id=request_id)
            return
        moved = jobs.transition(
            request_id, JobState.COMPUTED, output=zk_output(a, proof), proof=proof.proof,
        )  # fmt: skip
        log.info(
            "job.computed", request_id=request_id, proved=moved, mode="zk",
            seconds=round(time.perf_counter() - run.started, 2),
        )  # fmt: skip

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
