"""Store a validated, compiled model with its manifest, and describe it for the registry.

One place for what `verinfer model add`, the demo and the examples all do between
"the ONNX file compiles" and "register it": the ONNX file, the compiled program and the
manifest go into the content-addressed store, and the registration carries their hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from verinfer.models.manifest import Manifest
from verinfer.models.onnx_check import OnnxSpec
from verinfer.models.registry import ModelInput
from verinfer.runtime import Program
from verinfer.store.local import Store


@dataclass(frozen=True)
class StoredModel:
    spec: OnnxSpec
    program: Program
    cid: str  # the ONNX file
    program_cid: str
    manifest_cid: str


def draft_input(spec: OnnxSpec, program: Program, *, name: str, **terms: object) -> ModelInput:
    """The registration before anything is stored (cid "pending"), for validating first."""
    return ModelInput(
        name=name,
        cid="pending",
        input_shapes=[list(t.shape) for t in spec.inputs],
        output_shapes=[list(t.shape) for t in spec.outputs],
        program_hash=program.program_hash,
        weights_root=program.weights_root,
        **terms,  # type: ignore[arg-type]
    )


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


def final_input(draft: ModelInput, stored: StoredModel, metadata_uri: str | None) -> ModelInput:
    """The draft with the stored CIDs: the default model card is the manifest."""
    from dataclasses import replace

    return replace(
        draft, cid=stored.cid, metadata_uri=metadata_uri or f"ipfs://{stored.manifest_cid}"
    )


__all__ = ["StoredModel", "draft_input", "final_input", "store_model"]
