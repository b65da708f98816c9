"""Optimistic mode groundwork: one-step proofs that a contract recomputes one element of one
step (``contracts/src/optimistic/OneStepVerifier.sol``) from operand values opened with
sparse multiproofs against their tensor roots."""

from verinfer.optimistic.errors import OneStepRevertError
from verinfer.optimistic.multiproof import (
    CommittedTensor,
    SparseProof,
    chunk_ids_for,
    sparse_siblings,
    verify_sparse,
)
from verinfer.optimistic.onestep import (
    NO_OPERAND,
    SUPPORTED_OPS,
    ElementIndexError,
    OneStepCall,
    OneStepError,
    OneStepProver,
    Opening,
    UnsupportedStepError,
)

__all__ = [
    "NO_OPERAND",
    "SUPPORTED_OPS",
    "CommittedTensor",
    "ElementIndexError",
    "OneStepCall",
    "OneStepError",
    "OneStepProver",
    "OneStepRevertError",
    "Opening",
    "SparseProof",
    "UnsupportedStepError",
    "chunk_ids_for",
    "sparse_siblings",
    "verify_sparse",
]
