"""Store a validated, compiled model with its manifest, and describe it for the registry.

One place for what `verinfer model add`, the demo and the examples all do between
"the ONNX file compiles" and "register it": the ONNX file, the compiled program and the
manifest go into the content-addressed store, and the registration carries their hashes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from verinfer.chain.client import Chain
from verinfer.errors import ModelError
from verinfer.models.manifest import Manifest
from verinfer.models.onnx_check import OnnxSpec
from verinfer.models.registry import Mode, ModelInput, ZkCircuit
from verinfer.optimistic.descriptors import build_descriptors, steps_root, unsupported_steps
from verinfer.runtime import Program
from verinfer.store.local import Store
from verinfer.verify.backend import ZkArtifacts, ZkModel
from verinfer.verify.zk import EzklBackend, SetupProgress
from verinfer.verify.zk_artifacts import put_artifacts
from verinfer.verify.zk_chain import deploy_bytecode


@dataclass(frozen=True)
class StoredModel:
    spec: OnnxSpec
    program: Program
    cid: str  # the ONNX file
    program_cid: str
    manifest_cid: str


def draft_input(spec: OnnxSpec, program: Program, *, name: str, **terms: object) -> ModelInput:
    """The registration before anything is stored (cid "pending"), for validating first.

    It carries the program's commitments for optimistic mode (programHash, weightsRoot,
    stepsRoot and the step and constant counts) whatever the modes; a model with steps that no
    dispute can decide (``unsupported_steps``) is refused for mode optimistic."""
    descriptors = build_descriptors(program)
    draft = ModelInput(
        name=name,
        cid="pending",
        input_shapes=[list(t.shape) for t in spec.inputs],
        output_shapes=[list(t.shape) for t in spec.outputs],
        program_hash=program.program_hash,
        weights_root=program.weights_root,
        steps_root="0x" + steps_root(descriptors).hex(),
        n_steps=len(program.steps),
        n_constants=len(program.constants),
        **terms,  # type: ignore[arg-type]
    )
    unsupported = unsupported_steps(descriptors)
    if Mode.OPTIMISTIC in draft.modes and unsupported:
        raise ModelError(
            f"mode optimistic cannot dispute steps {unsupported} of this model "
            "(ops without an on-chain rule)",
            hint="register it without mode optimistic (see docs/optimistic.md)",
        )
    return draft


def store_model(
    store: Store, spec: OnnxSpec, program: Program, *, name: str, license: str, parent: int
) -> StoredModel:
    cid = str(store.put(spec.data))
    program_cid = str(store.put(program.to_bytes()))
    manifest = Manifest(
        name=name, onnx_cid=cid, spec=spec, license=license, parent=parent,
        program_cid=program_cid, program_hash=program.program_hash,
        weights_root=program.weights_root,
    )  # fmt: skip
    return StoredModel(spec, program, cid, program_cid, str(store.put(manifest.to_bytes())))


def final_input(
    draft: ModelInput,
    stored: StoredModel,
    metadata_uri: str | None,
    zk: ZkCircuit | None = None,
) -> ModelInput:
    """The draft with the stored CIDs (and the zk circuit): the default model card is the
    manifest."""
    return replace(
        draft,
        cid=stored.cid,
        metadata_uri=metadata_uri or f"ipfs://{stored.manifest_cid}",
        zk=zk or draft.zk,
    )


def precheck(draft: ModelInput) -> None:
    """``draft.validate()`` before the zk circuit exists (it is built after these checks)."""
    if Mode.ZK in draft.modes and draft.zk.empty:
        draft = replace(draft, modes=(draft.modes & ~Mode.ZK) or Mode.NONE)
    draft.validate()


@dataclass(frozen=True)
class ZkPublished:
    """A model's circuit, set up, stored and with its dedicated verifier deployed."""

    artifacts: ZkArtifacts
    artifacts_cid: str
    verifier: str
    deploy_gas: int

    @property
    def circuit(self) -> ZkCircuit:
        return ZkCircuit.from_artifacts(self.verifier, self.artifacts, self.artifacts_cid)

    def to_json(self) -> dict[str, object]:
        a = self.artifacts
        return {
            "verifier": self.verifier, "artifacts_cid": self.artifacts_cid,
            "vk_hash": a.vk_hash, "settings_hash": a.settings_hash, "logrows": a.logrows,
            "input_scale": a.input_scale, "output_scale": a.output_scale,
            "srs_kind": a.srs_kind, "verifier_runtime_bytes": a.verifier.runtime_size,
            "deploy_gas": self.deploy_gas,
        }  # fmt: skip


def publish_zk(
    backend: EzklBackend,
    chain: Chain,
    onnx_path: Path,
    samples: tuple[tuple[float, ...], ...] | None,
    progress: SetupProgress | None = None,
) -> ZkPublished:
    """EZKL setup (refused before any work when over the backend's limits), the artifacts'
    JSON into the store, and the circuit's dedicated verifier deployed (EIP-170 checked)."""
    artifacts = backend.setup(ZkModel(onnx_path, samples), progress)
    if artifacts.verifier.kind != "dedicated":  # the coordinator calls verifyProof(proof, inst)
        raise ModelError(
            f"the circuit got a {artifacts.verifier.kind} verifier; the coordinator needs a "
            "dedicated one",
            hint="a smaller model (fewer logrows) gives a dedicated verifier within EIP-170",
        )
    artifacts_cid = put_artifacts(backend.store, artifacts)
    started = time.perf_counter()
    deployed = deploy_bytecode(chain, backend.store.get(artifacts.verifier.bytecode_cid))
    if progress is not None:
        progress("deploy", time.perf_counter() - started)
    return ZkPublished(artifacts, artifacts_cid, deployed.address, deployed.gas_used)


__all__ = [
    "StoredModel",
    "ZkPublished",
    "draft_input",
    "final_input",
    "precheck",
    "publish_zk",
    "store_model",
]
