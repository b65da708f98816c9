"""Optimistic mode: one-step proofs that a contract recomputes one element of one step
(``contracts/src/optimistic/OneStepVerifier.sol``) from operand values opened with sparse
multiproofs against their tensor roots; step descriptors and their ``stepsRoot``; and the
parties of the tensor-level dispute game (``DisputeGame.sol``); the forced-error rule and
seed chains (``forced``)."""

from verinfer.optimistic.descriptors import (
    Operand,
    StepDescriptor,
    build_descriptors,
    steps_root,
    unsupported_steps,
)
from verinfer.optimistic.errors import DisputeRevertError, OneStepRevertError
from verinfer.optimistic.forced import is_forced, preimage, seed_chain, seed_hash
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    DisputeDriver,
    DisputePlayer,
    DisputeRecord,
    claim_params,
    input_bytes,
    output_bytes,
)
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
    "ChallengerParty",
    "ClaimerParty",
    "CommittedTensor",
    "DisputeDriver",
    "DisputePlayer",
    "DisputeRecord",
    "DisputeRevertError",
    "ElementIndexError",
    "OneStepCall",
    "OneStepError",
    "OneStepProver",
    "OneStepRevertError",
    "Opening",
    "Operand",
    "SparseProof",
    "StepDescriptor",
    "UnsupportedStepError",
    "build_descriptors",
    "chunk_ids_for",
    "claim_params",
    "input_bytes",
    "is_forced",
    "output_bytes",
    "preimage",
    "seed_chain",
    "seed_hash",
    "sparse_siblings",
    "steps_root",
    "unsupported_steps",
    "verify_sparse",
]
