"""Typed exceptions for the NodeRegistry, InferenceCoordinator, consumer and TensorCodec errors.

Importing this module registers every custom error of those contracts with
``verinfer.chain.contract_errors``, so a revert surfaces as one of the classes below: each is a
``ContractRevertError`` (decoded ``name`` and ``args_by_name``) and also belongs to the domain
base that fits (``PaymentError`` for money, ``ModelError`` for models and tensors, ``ChainError``
for the request protocol). ``VerinferInvalidModes`` is shared with the ModelRegistry (same
selector) and stays registered there.
"""

from __future__ import annotations

from verinfer.chain.contract_errors import register_error
from verinfer.errors import ChainError, ContractRevertError, ModelError, PaymentError, ProofError

__all__ = [
    "AlreadyCommittedError",
    "AlreadyRegisteredError",
    "AlreadyRevealedError",
    "CallbackGasTooHighError",
    "ClaimNotDeliverableError",
    "CoordinatorError",
    "DeadlineNotPassedError",
    "DeadlinePassedError",
    "DeadlineTooFarError",
    "DeadlineTooSoonError",
    "EarlyDeliveryNotOptimisticError",
    "EmptyInputError",
    "FeeAboveMaxError",
    "FeeTooHighError",
    "InputTooLargeError",
    "InputMismatchError",
    "InsufficientGasError",
    "InsufficientStakeError",
    "InvalidConfigError",
    "InvalidProofError",
    "InvalidRedundancyError",
    "InvalidRequestError",
    "MalformedTensorsError",
    "ModelNotServableError",
    "NoEligibleNodeError",
    "NodeRegistryError",
    "NotAssignedError",
    "NotAuthorizedModuleError",
    "NotCommittedError",
    "NotEligibleError",
    "NotRegisteredError",
    "NothingToWithdrawError",
    "OnlyCoordinatorError",
    "OnlyOwnerError",
    "OutputMismatchError",
    "RevealMismatchError",
    "RevealNotOpenError",
    "TensorCodecError",
    "TooManyNodesError",
    "UnbondingNotReadyError",
    "UnknownRequestError",
    "UnsupportedModeError",
    "WindowClosedError",
    "WrongModeError",
    "WrongStatusError",
    "ZeroAddressError",
    "ZeroAmountError",
    "ZkInputNotInlineError",
    "ZkMalformedTensorError",
    "ZkScaleMismatchError",
]


# ---------------------------------------------------------------- NodeRegistry


class NodeRegistryError(ContractRevertError, PaymentError):
    """The NodeRegistry refused a staking or service change."""


class NotRegisteredError(NodeRegistryError):
    """The address is not a registered node."""


class AlreadyRegisteredError(NodeRegistryError):
    """The node is already registered."""


class ZeroAmountError(NodeRegistryError):
    """An amount was zero (stake, unstake, or nothing to withdraw)."""


class InsufficientStakeError(NodeRegistryError):
    """More was asked to unstake than is staked."""


class UnbondingNotReadyError(NodeRegistryError):
    """The unbonding delay has not passed yet."""


class NotAuthorizedModuleError(NodeRegistryError):
    """Only a module the admin authorized may slash."""


class TooManyNodesError(NodeRegistryError):
    """The model's node list is full of staked nodes."""


class FeeTooHighError(NodeRegistryError):
    """A node's fee quote is above NodeRegistry.MAX_FEE (2^88 - 1)."""


class ZeroAddressError(ContractRevertError, ChainError):
    """An address parameter was zero."""


class OnlyOwnerError(ContractRevertError, ChainError):
    """Only the contract's owner (admin) may do this (OpenZeppelin Ownable)."""


# ---------------------------------------------------------------- InferenceCoordinator


class CoordinatorError(ContractRevertError, ChainError):
    """The InferenceCoordinator refused a request-protocol step."""


class InvalidRequestError(CoordinatorError):
    """A request's parameters are invalid (mode, redundancy, input, deadline, callback gas)."""


class UnsupportedModeError(InvalidRequestError):
    """The coordinator serves modes 1 (none), 2 (consensus) and 8 (zk) only."""


class EarlyDeliveryNotOptimisticError(InvalidRequestError):
    """The early-delivery flag (0x10) was set on a mode other than optimistic (4)."""


class InvalidRedundancyError(InvalidRequestError):
    """Mode none takes redundancy 1; consensus an odd k in 3..7."""


class DeadlineTooSoonError(InvalidRequestError):
    """The deadline is closer than the minimum (or, for consensus, than the reveal deadline)."""


class DeadlineTooFarError(InvalidRequestError):
    """The deadline is more than 30 days away."""


class EmptyInputError(InvalidRequestError):
    """The input is empty."""


class InputTooLargeError(InvalidRequestError):
    """The input exceeds 16 KiB; store it and send a CID reference (kind 0x02) instead."""


class CallbackGasTooHighError(InvalidRequestError):
    """The callback gas limit exceeds the coordinator's maximum."""


class ModelNotServableError(ContractRevertError, ModelError):
    """The model is deprecated or does not allow this mode."""


class NoEligibleNodeError(CoordinatorError):
    """Fewer eligible staked nodes serve the model in this mode than the redundancy needs."""


class FeeAboveMaxError(ContractRevertError, PaymentError):
    """The request costs more than maxFee."""


class UnknownRequestError(CoordinatorError):
    """No request has this id."""


class WrongModeError(CoordinatorError):
    """The call does not fit the request's mode (fulfil is mode none, fulfilZk zk,
    commit/reveal consensus)."""


class WrongStatusError(CoordinatorError):
    """The request is not in a state that allows this (e.g. already fulfilled or refunded)."""


class NotAssignedError(CoordinatorError):
    """The caller is not assigned to the request (or the assignment window is still open)."""


class NotEligibleError(CoordinatorError):
    """The caller is not an eligible staked node for the model and mode."""


class AlreadyCommittedError(CoordinatorError):
    """The node already committed."""


class NotCommittedError(CoordinatorError):
    """The node did not commit, so it cannot reveal."""


class AlreadyRevealedError(CoordinatorError):
    """The node already revealed."""


class RevealNotOpenError(CoordinatorError):
    """Reveals open once all nodes committed, or after the assignment window with a majority."""


class WindowClosedError(CoordinatorError):
    """The commit or reveal window has closed."""


class RevealMismatchError(CoordinatorError):
    """The revealed output and salt do not match the node's commitment."""


class DeadlinePassedError(CoordinatorError):
    """The request's deadline has passed."""


class DeadlineNotPassedError(CoordinatorError):
    """Too early: the deadline (or reveal deadline) has not passed yet."""


class InsufficientGasError(CoordinatorError):
    """The transaction's gas cannot cover the requester's callback gas limit."""


class NothingToWithdrawError(ContractRevertError, PaymentError):
    """The coordinator owes this account nothing."""


class InvalidConfigError(CoordinatorError):
    """An admin parameter is out of range."""


class ZkInputNotInlineError(InvalidRequestError):
    """Zk and optimistic modes: the input must be inline (kind 0x01): its values are the
    proof's instances (zk) or what a dispute's one-step proof reads (optimistic)."""


class InputMismatchError(CoordinatorError):
    """Zk mode: the input given to fulfilZk is not the request's (keccak256 differs)."""


class ZkMalformedTensorError(ContractRevertError, ModelError):
    """Zk mode: the input or output is not inline with exactly one tensor."""


class ZkScaleMismatchError(ContractRevertError, ModelError):
    """Zk mode: the input or output tensor's scale is not the circuit's."""


class OutputMismatchError(CoordinatorError):
    """Optimistic mode: finalizeOptimistic's output is not the claimed one (keccak256 differs)."""


class ClaimNotDeliverableError(CoordinatorError):
    """Optimistic mode: the claim is still disputed (2) or lost its dispute (5)."""


class InvalidProofError(ContractRevertError, ProofError):
    """Zk mode: the model's verifier rejected the proof; nothing was paid."""


class OnlyCoordinatorError(ContractRevertError, ChainError):
    """A consumer's onInference was called by someone other than the coordinator."""


class TensorCodecError(ContractRevertError, ModelError):
    """The tensor bytes are malformed for the on-chain TensorCodec."""


MalformedTensorsError = TensorCodecError

_ERRORS: list[tuple[str, type[ContractRevertError], str | None]] = [
    ("VerinferNotRegistered", NotRegisteredError, "register the node first"),
    ("VerinferAlreadyRegistered", AlreadyRegisteredError, None),
    ("VerinferZeroAmount", ZeroAmountError, None),
    ("VerinferInsufficientStake", InsufficientStakeError, None),
    ("VerinferUnbondingNotReady", UnbondingNotReadyError, "wait until the unbonding delay ends"),
    ("VerinferNotAuthorizedModule", NotAuthorizedModuleError, None),
    ("VerinferTooManyNodes", TooManyNodesError, None),
    ("VerinferFeeTooHigh", FeeTooHighError, "quote at most 2^88 - 1 token units"),
    ("VerinferZeroAddress", ZeroAddressError, None),
    ("OwnableUnauthorizedAccount", OnlyOwnerError, "sign with the admin's key"),
    ("VerinferUnsupportedMode", UnsupportedModeError, "use mode none (1), consensus (2) or zk (8)"),
    (
        "VerinferEarlyDeliveryNotOptimistic",
        EarlyDeliveryNotOptimisticError,
        "early delivery is for mode optimistic only",
    ),
    ("VerinferInvalidRedundancy", InvalidRedundancyError, "none and zk: 1; consensus: 3, 5 or 7"),
    ("VerinferDeadlineTooSoon", DeadlineTooSoonError, "give the nodes more time"),
    ("VerinferDeadlineTooFar", DeadlineTooFarError, "deadlines are at most 30 days away"),
    ("VerinferEmptyInput", EmptyInputError, None),
    ("VerinferInputTooLarge", InputTooLargeError, "store the input and send a CID reference"),
    ("VerinferCallbackGasTooHigh", CallbackGasTooHighError, None),
    ("VerinferModelNotServable", ModelNotServableError, "check the model's modes"),
    ("VerinferNoEligibleNode", NoEligibleNodeError, "no staked node serves this model/mode"),
    ("VerinferFeeAboveMax", FeeAboveMaxError, "raise maxFee to what quote returns"),
    ("VerinferUnknownRequest", UnknownRequestError, None),
    ("VerinferWrongMode", WrongModeError, None),
    ("VerinferWrongStatus", WrongStatusError, None),
    ("VerinferNotAssigned", NotAssignedError, None),
    ("VerinferNotEligible", NotEligibleError, "stake and serve the model in this mode"),
    ("VerinferAlreadyCommitted", AlreadyCommittedError, None),
    ("VerinferNotCommitted", NotCommittedError, None),
    ("VerinferAlreadyRevealed", AlreadyRevealedError, None),
    ("VerinferRevealNotOpen", RevealNotOpenError, None),
    ("VerinferWindowClosed", WindowClosedError, None),
    ("VerinferRevealMismatch", RevealMismatchError, "reveal the output and salt you committed"),
    ("VerinferDeadlinePassed", DeadlinePassedError, None),
    ("VerinferDeadlineNotPassed", DeadlineNotPassedError, None),
    ("VerinferInsufficientGas", InsufficientGasError, "send the transaction with more gas"),
    ("VerinferNothingToWithdraw", NothingToWithdrawError, None),
    ("VerinferInvalidConfig", InvalidConfigError, None),
    (
        "VerinferZkInputNotInline",
        ZkInputNotInlineError,
        "send zk and optimistic inputs inline, not by CID",
    ),
    (
        "VerinferOutputMismatch",
        OutputMismatchError,
        "pass the claimed output bytes unchanged (the game's ClaimOpened event has them)",
    ),
    (
        "VerinferClaimNotDeliverable",
        ClaimNotDeliverableError,
        "a disputed claim finalizes when its dispute ends; a lost one is settled by `refund`",
    ),
    ("VerinferInputMismatch", InputMismatchError, "pass the request's input bytes unchanged"),
    (
        "VerinferZkMalformedTensor",
        ZkMalformedTensorError,
        "encode exactly one inline tensor (verinfer.chain.codec)",
    ),
    (
        "VerinferZkScaleMismatch",
        ZkScaleMismatchError,
        "use the circuit's scale (ModelRegistry.zkConfig)",
    ),
    (
        "VerinferInvalidProof",
        InvalidProofError,
        "prove this request's input and submit the proof's output unchanged",
    ),
    ("VerinferOnlyCoordinator", OnlyCoordinatorError, None),
    ("VerinferMalformedTensors", TensorCodecError, None),
    ("VerinferNotInline", TensorCodecError, None),
    ("VerinferNotCidReference", TensorCodecError, None),
    ("VerinferTensorIndexOutOfRange", TensorCodecError, None),
    ("VerinferValueOutOfRange", TensorCodecError, None),
]

for _name, _cls, _hint in _ERRORS:
    register_error(_name, _cls, _hint)
