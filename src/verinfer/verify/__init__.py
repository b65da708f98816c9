"""Verification modes. zk: EZKL proofs of inference behind the ``ProofBackend`` seam.

``EzklBackend`` (in ``verinfer.verify.zk``) imports nothing heavy at import time; EZKL itself
is only ever imported inside worker subprocesses.
"""

from verinfer.verify.backend import (
    Estimate,
    Proof,
    ProofBackend,
    VerifierArtifact,
    ZkArtifacts,
    ZkLimits,
    ZkModel,
)
from verinfer.verify.errors import (
    ProofRejectedError,
    SrsError,
    ZkInputError,
    ZkLimitError,
    ZkOutOfMemoryError,
    ZkStepError,
    ZkTimeoutError,
    ZkToolError,
    ZkUnsupportedModelError,
    ZkWorkerCrashedError,
)

__all__ = [
    "Estimate",
    "Proof",
    "ProofBackend",
    "ProofRejectedError",
    "SrsError",
    "VerifierArtifact",
    "ZkArtifacts",
    "ZkInputError",
    "ZkLimitError",
    "ZkLimits",
    "ZkModel",
    "ZkOutOfMemoryError",
    "ZkStepError",
    "ZkTimeoutError",
    "ZkToolError",
    "ZkUnsupportedModelError",
    "ZkWorkerCrashedError",
]
