"""Typed exceptions for the reverts of ``TensorProofs.sol``, ``IntMath.sol``,
``OneStepVerifier.sol``, ``OneStepVerifierExt.sol``, ``StepRouter.sol`` and
``DisputeGame.sol``.

Importing this module registers their custom errors with the chain client's decoder, so a
reverted call raises :class:`OneStepRevertError` (a ``ContractRevertError`` and a
``ProofError``) whose ``name`` is the Solidity error's.
"""

from __future__ import annotations

from verinfer.chain.contract_errors import register_error
from verinfer.errors import ContractRevertError, ProofError


class OneStepRevertError(ContractRevertError, ProofError):
    """A tensor opening or a one-step recomputation was rejected on-chain."""


_ERRORS = {
    "VerinferBadTensorSize": "a tensor holds 1 to 2**64 - 1 values",
    "VerinferBadChunkSet": "open at least one chunk, in strictly increasing order",
    "VerinferBadChunkLength": "a chunk is 512 bytes, except the tensor's last",
    "VerinferNonZeroPadding": "the slots after the last value must be zero",
    "VerinferBadSiblingCount": "send exactly the siblings the chunk set and size call for",
    "VerinferRootMismatch": "the chunks or siblings are not those of this tensor root",
    "VerinferValueNotOpened": "open every value the element reads",
    "VerinferBadStepShape": "the step parameters disagree with the operand sizes or j",
    "VerinferBadDivisor": "div_round divides by a positive count",
    "VerinferIndexOutOfRange": "a gather index must lie within the gathered axis",
}
for _name, _hint in _ERRORS.items():
    register_error(_name, OneStepRevertError, _hint)


class DisputeRevertError(ContractRevertError, ProofError):
    """A dispute-game move was refused on-chain (out of turn, late, or with a bad proof)."""


_GAME_ERRORS = {
    "VerinferBadRank": "a tensor has at most 255 dimensions",
    "VerinferUnsupportedStep": "this step's op has no on-chain rule: it cannot be disputed",
    "VerinferBadGameParams": "bonds, window and move time are positive; fee at most 50%",
    "VerinferNotCoordinator": "only the coordinator opens claims on behalf of nodes",
    "VerinferWrongBond": "send exactly the bond",
    "VerinferBadClaim": "a claim has a claimer, at least one step and a trace root",
    "VerinferUnknownClaim": "no claim has this id",
    "VerinferClaimNotOpen": "the claim is already disputed or settled",
    "VerinferChallengeWindowClosed": "the claim's challenge window has closed",
    "VerinferChallengeWindowOpen": "the claim can be finalized after its challenge window",
    "VerinferWrongPhase": "the dispute waits for another move",
    "VerinferNotYourTurn": "the other party moves now",
    "VerinferMoveDeadlinePassed": "the move's deadline has passed: call timeout",
    "VerinferMoveDeadlineNotPassed": "the waiting party still has time to move",
    "VerinferBadLeaves": "reveal one leaf per step, committing to the trace root",
    "VerinferBadStepProof": "the descriptor or leaf is not the committed one",
    "VerinferBadRoot": "the root with the step's shape and scale must hash to its leaf",
    "VerinferBadChildren": "the children must hash to the disputed node",
    "VerinferPaddingNode": "padding nodes equal the zero subtree and cannot be disputed",
    "VerinferBadChunk": "the chunk must hash to the leaf, with its exact length and padding",
    "VerinferBadElement": "name a value of the disputed chunk",
    "VerinferBadOperand": "open each operand against its committed root and size",
    "VerinferBadInput": "the input or output bytes are not the claim's",
    "VerinferNotAnOutput": "this step's output is not a program output",
    "VerinferOutputMatches": "the claimed output is the committed one",
    "VerinferNoCredit": "nothing is credited to this account",
    "VerinferTransferFailed": "the account refused the payment",
    "VerinferBadSeed": "commit keccak256(abi.encode(secret)) of a fresh secret, not zero",
    "VerinferNotClaimer": "only the claim's claimer may concede it",
    "VerinferWrongSecret": "the secret does not hash to the seed the claim recorded",
    "VerinferNotForced": "the secret does not make this claim's input a forced error",
}
for _name, _hint in _GAME_ERRORS.items():
    register_error(_name, DisputeRevertError, _hint)

__all__ = ["DisputeRevertError", "OneStepRevertError"]
