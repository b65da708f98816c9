"""Typed exceptions for the reverts of ``TensorProofs.sol``, ``IntMath.sol`` and
``OneStepVerifier.sol``.

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
}
for _name, _hint in _ERRORS.items():
    register_error(_name, OneStepRevertError, _hint)

__all__ = ["OneStepRevertError"]
