"""The ``ProofBackend`` seam and the plain data that crosses it.

A proof backend turns a model into proving artifacts once (``setup``), proves one inference
(``prove``), checks a proof (``verify``) and says what all that will cost before any of it
runs (``estimate``). EZKL (``verinfer.verify.zk``) is the real implementation; tests of code
that only needs *a* backend may swap in a fake here, never for the chain itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

VerifierKind = Literal["dedicated", "reusable"]
SrsKind = Literal["development", "trusted"]

# BN254 scalar field: the public instances of a proof are elements of it.
FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617


@dataclass(frozen=True)
class ZkModel:
    """A model to prove: one ONNX file with one float input, and samples to calibrate on.

    ``samples`` are flat input vectors (one per row); without them calibration runs on seeded
    uniform noise in [0, 1), which gives coarser scale choices than real inputs do.
    """

    onnx_path: Path
    samples: tuple[tuple[float, ...], ...] | None = None


@dataclass(frozen=True)
class Estimate:
    """What setting up and proving a model is expected to cost, before any of it runs."""

    logrows: int
    setup_seconds: float
    prove_seconds: float
    peak_memory_bytes: int
    pk_bytes: int
    verify_gas: int
    n_instances: int
    circuit_class: str  # which calibration points the figures were extrapolated from


@dataclass(frozen=True)
class ZkLimits:
    """A node's resource limits; ``check`` refuses an estimate that exceeds any of them."""

    max_memory_bytes: int | None = None
    max_prove_seconds: float | None = None

    def exceeded(self, estimate: Estimate) -> list[str]:
        """The reasons ``estimate`` does not fit (empty when it fits)."""
        reasons = []
        if self.max_memory_bytes is not None and estimate.peak_memory_bytes > self.max_memory_bytes:
            reasons.append(
                f"peak memory ~{estimate.peak_memory_bytes / 2**30:.2f} GiB exceeds the limit of "
                f"{self.max_memory_bytes / 2**30:.2f} GiB"
            )
        if self.max_prove_seconds is not None and estimate.prove_seconds > self.max_prove_seconds:
            reasons.append(
                f"proving ~{estimate.prove_seconds:.0f} s exceeds the limit of "
                f"{self.max_prove_seconds:.0f} s"
            )
        return reasons


@dataclass(frozen=True)
class VerifierArtifact:
    """The EVM verifier of a circuit, as stored (CIDs) and as it will deploy."""

    kind: VerifierKind
    bytecode_cid: str  # creation bytecode
    source_cid: str  # the Solidity EZKL rendered, for explorers and audits
    runtime_size: int  # deployed bytes; EIP-170 caps this at 24,576
    # Reusable verifier only: the verifying-key artifact (32-byte words) and its digest,
    # keccak256 of the words, which is what the verifier checks was registered.
    vka_cid: str | None = None
    vka_digest: str | None = None
    fallback_reason: str | None = None  # why the preferred kind was not used, if it was not


@dataclass(frozen=True)
class ZkArtifacts:
    """Everything a prover and a verifier need, by content address, and what binds them.

    ``vk_hash`` and ``settings_hash`` are keccak256 of the stored bytes: with the verifier
    address they are what a registry entry records, so anyone can check which circuit a
    model's proofs come from. The weights are fixed in the circuit, so the vk binds the model.
    """

    ezkl_version: str
    model_cid: str
    logrows: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: int
    output_scale: int
    settings_cid: str
    settings_hash: str
    compiled_cid: str
    vk_cid: str
    vk_hash: str
    pk_cid: str
    pk_bytes: int
    srs_kind: SrsKind
    srs_hash: str  # sha256 of the SRS file the keys and verifier were made with
    verifier: VerifierArtifact

    @property
    def n_inputs(self) -> int:
        return _prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        return _prod(self.output_shape)

    @property
    def n_instances(self) -> int:
        return self.n_inputs + self.n_outputs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ZkArtifacts:
        fields = dict(data)
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["output_shape"] = tuple(fields["output_shape"])
        fields["verifier"] = VerifierArtifact(**fields["verifier"])
        return cls(**fields)


@dataclass(frozen=True)
class Proof:
    """One proof: the raw proof bytes, its public instances, and EVM calldata for the verifier.

    ``instances`` are field elements: the quantized input, then the quantized output
    (inputs and outputs are public, so the proof binds both). ``calldata`` is what
    ``ezkl.encode_evm_calldata`` produced at proving time, checked equal to verinfer's own
    encoding of ``proof`` and ``instances``; on-chain helpers re-encode from the fields.
    """

    proof: bytes
    instances: tuple[int, ...]
    calldata: bytes = field(repr=False)

    def public_inputs(self, artifacts: ZkArtifacts) -> tuple[float, ...]:
        return tuple(
            felt_to_float(v, artifacts.input_scale) for v in self.instances[: artifacts.n_inputs]
        )

    def public_outputs(self, artifacts: ZkArtifacts) -> tuple[float, ...]:
        return tuple(
            felt_to_float(v, artifacts.output_scale)
            for v in self.instances[artifacts.n_inputs : artifacts.n_instances]
        )


def felt_to_int(felt: int) -> int:
    """A field element as a signed integer (the upper half of the field is negative)."""
    return felt - FIELD_MODULUS if felt > FIELD_MODULUS // 2 else felt


def int_to_felt(value: int) -> int:
    return value % FIELD_MODULUS


def felt_to_float(felt: int, scale: int) -> float:
    """A fixed-point instance (value = q / 2^scale) as a float."""
    return felt_to_int(felt) / (1 << scale)


@runtime_checkable
class ProofBackend(Protocol):
    """Make, prove and verify circuits for models; say what it costs first."""

    def estimate(self, model: ZkModel) -> Estimate:
        """Cost of ``setup`` and ``prove`` for ``model``, from a calibrated rule (cheap)."""
        ...

    def setup(self, model: ZkModel) -> ZkArtifacts:
        """Circuit, keys and verifier for ``model``, all in the content-addressed store."""
        ...

    def prove(self, artifacts: ZkArtifacts, input: Sequence[float]) -> Proof:
        """Run the model on ``input`` inside the circuit and prove it."""
        ...

    def verify(self, artifacts: ZkArtifacts, proof: Proof) -> bool:
        """Check ``proof`` locally; False for a proof that does not verify."""
        ...


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
