"""A circuit's ``ZkArtifacts`` in the content-addressed store, and the public instances.

The artifacts' JSON (sorted keys, so equal artifacts have one CID) is what a registry entry's
``artifacts_cid`` names: nodes load it to prove, anyone loads it to re-check a proof.
``instances_of`` rebuilds the public instances from the delivered input and output tensors
exactly as ``InferenceCoordinator._callVerifier`` does.
"""

from __future__ import annotations

import json
import threading

from verinfer.chain.codec import decode_tensors
from verinfer.errors import ModelError, StoreError
from verinfer.store.local import Store
from verinfer.verify.backend import ZkArtifacts, int_to_felt
from verinfer.verify.errors import ZkInputError

__all__ = ["ArtifactsCache", "instances_of", "load_artifacts", "put_artifacts", "single_tensor"]


def put_artifacts(store: Store, artifacts: ZkArtifacts) -> str:
    """Store the artifacts' JSON; returns its CID."""
    return str(store.put(json.dumps(artifacts.to_json(), sort_keys=True).encode()))


def load_artifacts(store: Store, cid: str) -> ZkArtifacts:
    """The artifacts stored at ``cid`` (the bytes are checked against the CID by the store)."""
    try:
        data = json.loads(store.get(cid))
        return ZkArtifacts.from_json(data)
    except StoreError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{cid} does not hold zk artifacts: {exc}") from exc


def single_tensor(data: bytes, scale: int, what: str) -> list[int]:
    """The values of ``data``, which must be inline with exactly one tensor at ``scale``."""
    try:
        tensors = decode_tensors(data)
    except ModelError as exc:
        raise ZkInputError(f"the {what} is not an inline tensor: {exc}") from exc
    if len(tensors) != 1:
        raise ZkInputError(f"the {what} holds {len(tensors)} tensors; zk mode takes exactly one")
    values, got = tensors[0]
    if got != scale:
        raise ZkInputError(f"the {what} is at scale {got}; the circuit's is {scale}")
    return [int(v) for v in values]


def instances_of(artifacts: ZkArtifacts, input_bytes: bytes, output: bytes) -> tuple[int, ...]:
    """The proof's public instances for this input and output: the input values, then the
    output values, each as a BN254 field element (as the coordinator builds them)."""
    values = single_tensor(input_bytes, artifacts.input_scale, "input")
    values += single_tensor(output, artifacts.output_scale, "output")
    return tuple(int_to_felt(v) for v in values)


class ArtifactsCache:
    """Artifacts per CID, loaded once (they never change for a CID)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, ZkArtifacts] = {}
        self._lock = threading.Lock()

    def get(self, cid: str) -> ZkArtifacts:
        with self._lock:
            if cid not in self._cache:
                self._cache[cid] = load_artifacts(self.store, cid)
            return self._cache[cid]
