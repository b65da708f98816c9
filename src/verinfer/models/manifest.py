"""The model manifest: a small JSON model card stored next to the ONNX file.

The registry keeps only hashes and terms on-chain; the manifest says, in one content-addressed
document, what the file is (inputs, outputs, opset, ops) so anyone can check a node serves it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from verinfer import __version__
from verinfer.models.onnx_check import OnnxSpec

MANIFEST_SCHEMA = "verinfer.model/1"


@dataclass(frozen=True)
class Manifest:
    name: str
    onnx_cid: str
    spec: OnnxSpec
    license: str
    parent: int
    program_cid: str = ""
    program_hash: str = ""
    weights_root: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "name": self.name,
            "onnx": {
                "cid": self.onnx_cid,
                "size": self.spec.size_bytes,
                "opset": self.spec.opset,
                "ir_version": self.spec.ir_version,
                "ops": sorted(self.spec.op_types),
            },
            "program": {
                "cid": self.program_cid,
                "program_hash": self.program_hash,
                "weights_root": self.weights_root,
            },
            "inputs": [_tensor(t) for t in self.spec.inputs],
            "outputs": [_tensor(t) for t in self.spec.outputs],
            "license": self.license,
            "parent": self.parent,
            "created_with": f"verinfer {__version__}",
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces), so equal manifests have equal CIDs."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def _tensor(t: Any) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}
