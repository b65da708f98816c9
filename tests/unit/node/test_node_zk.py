"""Mode zk jobs on the node: input checks, background proving, the output and proof kept.

The proof backend is the ``ProofBackend`` seam: a fake that "proves" by echoing the input
and a fixed output as public instances (real EZKL runs in tests/integration/test_zk_e2e.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.node.jobs import JobLog, JobState, NewJob
from verinfer.node.zk import ZkProver
from verinfer.store import LocalStore
from verinfer.verify.backend import (
    Estimate,
    Proof,
    VerifierArtifact,
    ZkArtifacts,
    ZkModel,
    int_to_felt,
)
from verinfer.verify.zk_artifacts import instances_of, load_artifacts, put_artifacts

OUTPUT = [5, -3, 0]


def artifacts() -> ZkArtifacts:
    h = "0x" + "11" * 32
    return ZkArtifacts(
        ezkl_version="test", model_cid="m", logrows=15, input_shape=(1, 4), output_shape=(1, 3),
        input_scale=7, output_scale=6, settings_cid="s", settings_hash=h, compiled_cid="c",
        vk_cid="v", vk_hash=h, pk_cid="p", pk_bytes=1, srs_kind="development", srs_hash="x",
        verifier=VerifierArtifact("dedicated", "b", "src", 100),
    )  # fmt: skip


class FakeBackend:
    def __init__(self, input_shift: int = 0) -> None:
        self.calls: list[list[float]] = []
        self.input_shift = input_shift

    def estimate(self, model: ZkModel) -> Estimate:
        raise NotImplementedError

    def setup(self, model: ZkModel) -> ZkArtifacts:
        raise NotImplementedError

    def prove(self, artifacts: ZkArtifacts, input: Sequence[float]) -> Proof:
        self.calls.append(list(input))
        q = [round(v * 2**artifacts.input_scale) + self.input_shift for v in input]
        instances = tuple(int_to_felt(v) for v in [*q, *OUTPUT])
        return Proof(b"proof-bytes", instances, calldata=b"")

    def verify(self, artifacts: ZkArtifacts, proof: Proof) -> bool:
        return True


@pytest.fixture
def setup(tmp_path: Path) -> tuple[JobLog, LocalStore, str]:
    store = LocalStore(tmp_path / "store")
    return JobLog.in_dir(tmp_path / "node"), store, put_artifacts(store, artifacts())


def prover(store: LocalStore, cid: str, backend: Any) -> ZkProver:
    p = ZkProver(registry=None, store=store, backend=backend)  # type: ignore[arg-type]
    p._cids[1] = cid  # what the registry's artifacts CID says (read from the chain in service)
    return p


def add(jobs: JobLog, rid: str, data: bytes) -> None:
    jobs.record_range(
        [NewJob(rid, model_id=1, mode=8, block=1, deadline=10**10, input=data)], [], 1
    )


def wait_collect(p: ZkProver, jobs: JobLog) -> None:
    deadline = time.monotonic() + 10
    while p.running and time.monotonic() < deadline:
        p.collect(jobs)
        time.sleep(0.01)


def test_artifacts_round_trip_and_instances(setup: tuple[JobLog, LocalStore, str]) -> None:
    _, store, cid = setup
    assert load_artifacts(store, cid) == artifacts()
    data = encode_tensors([([1, -2, 3, 4], 7)])
    out = encode_tensors([(OUTPUT, 6)])
    assert instances_of(artifacts(), data, out) == tuple(
        int_to_felt(v) for v in [1, -2, 3, 4, *OUTPUT]
    )


def test_proves_in_the_background_and_keeps_output_and_proof(
    setup: tuple[JobLog, LocalStore, str], tmp_path: Path
) -> None:
    jobs, store, cid = setup
    backend = FakeBackend()
    p = prover(store, cid, backend)
    data = encode_tensors([([128, -64, 0, 3], 7)])
    add(jobs, "1", data)
    (job,) = jobs.in_state(JobState.SEEN)
    assert p.start(jobs, job) is True
    assert p.start(jobs, job) is False  # already proving: never twice
    wait_collect(p, jobs)
    assert backend.calls == [[1.0, -0.5, 0.0, 3 / 128]]  # q / 2**scale, exactly
    done = jobs.get("1")
    assert done is not None and done.state == JobState.COMPUTED and done.proof == b"proof-bytes"
    assert done.output is not None
    ((values, scale),) = decode_tensors(done.output)
    assert values.tolist() == OUTPUT and scale == 6
    jobs.close()
    again = JobLog.in_dir(tmp_path / "node").get("1")  # a restart resends, never reproves
    assert again is not None and again.proof == b"proof-bytes" and again.output == done.output
    p.close()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (encode_tensors([([1, 2, 3, 4], 6)]), "scale 6"),
        (encode_tensors([([1, 2, 3], 7)]), "3 values"),
        (encode_tensors([([1, 2, 3, 4], 7), ([1], 7)]), "2 tensors"),
        (b"\x02\x01", "not an inline tensor"),
    ],
)
def test_inputs_the_circuit_cannot_take_are_skipped(
    setup: tuple[JobLog, LocalStore, str], data: bytes, why: str
) -> None:
    jobs, store, cid = setup
    backend = FakeBackend()
    p = prover(store, cid, backend)
    add(jobs, "2", data)
    (job,) = jobs.in_state(JobState.SEEN)
    assert p.start(jobs, job) is False
    failed = jobs.get("2")
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.outcome == "invalid_input" and why in str(failed.error)
    assert backend.calls == [] and jobs.counters()["invalid_inputs"] == 1


def test_a_proof_of_another_input_is_not_submitted(
    setup: tuple[JobLog, LocalStore, str],
) -> None:
    jobs, store, cid = setup
    p = prover(store, cid, FakeBackend(input_shift=1))
    add(jobs, "3", encode_tensors([([1, 2, 3, 4], 7)]))
    (job,) = jobs.in_state(JobState.SEEN)
    p.start(jobs, job)
    wait_collect(p, jobs)
    failed = jobs.get("3")
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.outcome == "cannot_prove" and failed.proof is None
