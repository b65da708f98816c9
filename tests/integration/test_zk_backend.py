"""zk mode's EZKL backend on the digits MLP: setup, prove, verify locally and on anvil.

One setup per session (the SRS is generated once; set VERINFER_SRS_DIR to a folder to keep
it between runs), one proof per session; tests that tamper work on copies of that proof.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.devnet import DevnetInfo
from verinfer.store import LocalStore
from verinfer.verify import (
    Estimate,
    Proof,
    ProofRejectedError,
    SrsError,
    ZkArtifacts,
    ZkInputError,
    ZkLimitError,
    ZkLimits,
    ZkModel,
)
from verinfer.verify.backend import FIELD_MODULUS
from verinfer.verify.zk import EzklBackend, ZkOptions
from verinfer.verify.zk_chain import deploy_bytecode, register_vka, verify_onchain
from verinfer.verify.zk_solc import EIP170_MAX_RUNTIME
from verinfer.verify.zk_srs import SRS_DIR_ENV

pytestmark = [pytest.mark.integration, pytest.mark.zk]

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
MLP = MODELS / "digits_mlp.onnx"


@dataclass(frozen=True)
class ZkSession:
    backend: EzklBackend
    store: LocalStore
    model: ZkModel
    samples: np.ndarray
    artifacts: ZkArtifacts
    proof: Proof
    prove_seconds: float
    prove_peak_rss: int


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory) -> ZkSession:
    root = tmp_path_factory.mktemp("zk")
    srs_dir = Path(os.environ.get(SRS_DIR_ENV) or root / "srs")
    store = LocalStore(root / "store")
    backend = EzklBackend(store, ZkOptions(srs_dir=srs_dir), work_dir=root / "work")
    samples = np.load(MODELS / "digits_sample.npy").astype(np.float64)
    model = ZkModel(MLP, tuple(tuple(map(float, row)) for row in samples))
    artifacts = backend.setup(model)
    started = time.perf_counter()
    proof = backend.prove(artifacts, samples[0].tolist())
    seconds = time.perf_counter() - started
    rss = backend.last_jobs["prove"].usage["max_rss_bytes"]
    return ZkSession(backend, store, model, samples, artifacts, proof, seconds, rss)


@pytest.fixture
def evm(anvil: DevnetInfo, snapshot: None) -> Chain:
    """anvil account 0 on an isolated chain state (no contract suite: verifiers only)."""
    return Chain(anvil.rpc_url, dev_account(0))


def _flip_proof_byte(proof: Proof, index: int = 100) -> Proof:
    b = bytearray(proof.proof)
    b[index] ^= 0x01
    return dataclasses.replace(proof, proof=bytes(b))


def _change_instance(proof: Proof, index: int) -> Proof:
    instances = list(proof.instances)
    instances[index] = (instances[index] + 1) % FIELD_MODULUS
    return dataclasses.replace(proof, instances=tuple(instances))


def test_setup_prove_verify_locally_and_on_anvil(zk: ZkSession, evm: Chain) -> None:
    a = zk.artifacts
    assert (a.logrows, a.input_shape, a.output_shape) == (15, (1, 64), (1, 10))
    assert a.srs_kind == "development" and a.vk_hash.startswith("0x") and len(a.vk_hash) == 66
    for cid in (a.model_cid, a.settings_cid, a.compiled_cid, a.vk_cid, a.pk_cid):
        assert zk.store.has(cid)
    assert zk.store.get(a.model_cid) == MLP.read_bytes()
    assert a.verifier.kind == "dedicated" and a.verifier.runtime_size <= EIP170_MAX_RUNTIME
    assert len(zk.proof.instances) == a.n_instances == 74

    # The public instances are the request's input and the model's output, quantized.
    np.testing.assert_allclose(zk.proof.public_inputs(a), zk.samples[0], atol=2**-12)
    session = ort.InferenceSession(str(MLP), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": zk.samples[:1].astype(np.float32)})[0][0]
    np.testing.assert_allclose(zk.proof.public_outputs(a), logits, atol=0.02)

    assert zk.backend.verify(a, zk.proof) is True

    deployed = deploy_bytecode(evm, zk.store.get(a.verifier.bytecode_cid))
    assert deployed.runtime_size == a.verifier.runtime_size
    gas = verify_onchain(evm, deployed.address, a, zk.proof, send=True)
    assert 400_000 < gas < 700_000


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: _flip_proof_byte(p), id="proof-byte"),
        pytest.param(lambda p: _change_instance(p, 64), id="output-instance"),
        pytest.param(lambda p: _change_instance(p, 2), id="input-instance"),
    ],
)
def test_tampered_proofs_fail_locally_and_revert_on_chain(
    zk: ZkSession, evm: Chain, tamper: object
) -> None:
    assert callable(tamper)
    bad: Proof = tamper(zk.proof)
    assert zk.backend.verify(zk.artifacts, bad) is False
    deployed = deploy_bytecode(evm, zk.store.get(zk.artifacts.verifier.bytecode_cid))
    with pytest.raises(ProofRejectedError, match="reverted"):
        verify_onchain(evm, deployed.address, zk.artifacts, bad)
    verify_onchain(evm, deployed.address, zk.artifacts, zk.proof)  # the original still passes


def test_reusable_verifier_with_registered_vka(zk: ZkSession, evm: Chain) -> None:
    reusable = zk.backend.build_verifier(zk.artifacts, "reusable")
    v = reusable.verifier
    assert v.kind == "reusable" and v.vka_cid and v.vka_digest
    assert v.runtime_size <= EIP170_MAX_RUNTIME
    assert (reusable.vk_hash, reusable.pk_cid) == (zk.artifacts.vk_hash, zk.artifacts.pk_cid)
    vka = zk.store.get(v.vka_cid)
    deployed = deploy_bytecode(evm, zk.store.get(v.bytecode_cid))
    with pytest.raises(ProofRejectedError):  # "VKA not registered"
        verify_onchain(evm, deployed.address, reusable, zk.proof, vka=vka)
    register_vka(evm, deployed.address, vka)
    gas = verify_onchain(evm, deployed.address, reusable, zk.proof, vka=vka, send=True)
    assert 400_000 < gas < 1_000_000
    with pytest.raises(ProofRejectedError):
        verify_onchain(evm, deployed.address, reusable, _flip_proof_byte(zk.proof), vka=vka)


def test_estimate_is_within_2x_of_measured(zk: ZkSession) -> None:
    """Sizes only: proving time varies ~3x run to run on a shared VM, and a test must not
    assert timings (benchmarks/ measure them)."""
    est: Estimate = zk.backend.estimate(zk.model)
    assert est.logrows == zk.artifacts.logrows
    assert est.prove_seconds > 0
    for name, estimated, measured in [
        ("peak memory", est.peak_memory_bytes, zk.prove_peak_rss),
        ("pk bytes", est.pk_bytes, zk.artifacts.pk_bytes),
    ]:
        assert measured / 2 <= estimated <= measured * 2, (name, estimated, measured)


def test_too_small_memory_limit_is_refused_before_any_work(tmp_path: Path) -> None:
    srs_dir, store_dir = tmp_path / "srs", tmp_path / "store"
    backend = EzklBackend(
        LocalStore(store_dir),
        ZkOptions(srs_dir=srs_dir, limits=ZkLimits(max_memory_bytes=64 * 2**20)),
        work_dir=tmp_path / "work",
    )
    started = time.perf_counter()
    with pytest.raises(ZkLimitError, match=r"peak memory ~0\.\d+ GiB exceeds the limit"):
        backend.setup(ZkModel(MLP))
    assert time.perf_counter() - started < 30
    assert not srs_dir.exists()  # no SRS, no keys, nothing stored
    assert not any(p.is_file() for p in store_dir.rglob("*")) if store_dir.exists() else True
    assert "setup" not in backend.last_jobs


def test_wrong_sizes_are_clear_errors(zk: ZkSession) -> None:
    with pytest.raises(ZkInputError, match="takes 64 input values, got 63"):
        zk.backend.prove(zk.artifacts, [0.0] * 63)
    short = dataclasses.replace(zk.proof, instances=zk.proof.instances[:-1])
    with pytest.raises(ZkInputError, match="73 public instances"):
        zk.backend.verify(zk.artifacts, short)


def test_trusted_srs_for_other_logrows_is_refused(zk: ZkSession, tmp_path: Path) -> None:
    fake = tmp_path / "k14.srs"
    fake.write_bytes((14).to_bytes(4, "little") + bytes(64))
    backend = EzklBackend(zk.store, ZkOptions(trusted_srs=fake), work_dir=tmp_path / "w")
    with pytest.raises(SrsError, match="logrows 14, but this circuit needs logrows 15"):
        backend.prove(zk.artifacts, zk.samples[0].tolist())


@pytest.fixture(autouse=True)
def _no_real_home_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """EZKL workers get a throwaway HOME; make sure nothing lands in ~/.ezkl or ~/.svm."""
    home = Path.home()
    before = {p: p.exists() for p in (home / ".ezkl", home / ".svm")}
    yield
    assert {p: p.exists() for p in before} == before
