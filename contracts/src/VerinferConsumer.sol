// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IInferenceCoordinator} from "./interfaces/IInferenceCoordinator.sol";
import {IVerinferConsumer} from "./interfaces/IVerinferConsumer.sol";

/// @title VerinferConsumer
/// @notice Base for a dApp that asks verinfer for inferences: inherit it, call
/// `_requestInference`, and override `_onInference` to receive the output. Optimistic requests
/// with early delivery (mode `4 | 0x10`) also call `_onProvisionalInference` at the claim and
/// `_onCorrection` if the claim loses: override them to act on provisional results.
/// @dev The contract pays the fee from its own token balance: fund it with the payment token.
/// Refunds (unanswered requests, unpaid node fees, slashed stake) accrue to this contract's
/// balance in the coordinator; `_withdrawRefunds` pulls them.
abstract contract VerinferConsumer is IVerinferConsumer {
    using SafeERC20 for IERC20;

    /// @notice The coordinator that this consumer trusts for callbacks.
    IInferenceCoordinator public immutable COORDINATOR;
    /// @notice The coordinator's payment token.
    IERC20 public immutable PAYMENT_TOKEN;

    /// @notice A hook (`onInference`, ...) was called by `caller`, not by the COORDINATOR.
    error VerinferOnlyCoordinator(address caller);

    /// @param coordinator_ The InferenceCoordinator.
    constructor(address coordinator_) {
        COORDINATOR = IInferenceCoordinator(coordinator_);
        PAYMENT_TOKEN = IERC20(IInferenceCoordinator(coordinator_).paymentToken());
    }

    /// @notice Called by the coordinator with the delivered output; forwards to `_onInference`.
    /// @param requestId The id `_requestInference` returned.
    /// @param output The output tensors in the verinfer tensor encoding (see TensorCodec).
    function onInference(uint256 requestId, bytes calldata output) external {
        if (msg.sender != address(COORDINATOR)) revert VerinferOnlyCoordinator(msg.sender);
        _onInference(requestId, output);
    }

    /// @notice Early delivery: called by the coordinator with the claimed, not yet final,
    /// output; forwards to `_onProvisionalInference`.
    /// @param requestId The id `_requestInference` returned.
    /// @param output The claimed output tensors (see TensorCodec).
    function onProvisionalInference(uint256 requestId, bytes calldata output) external {
        if (msg.sender != address(COORDINATOR)) revert VerinferOnlyCoordinator(msg.sender);
        _onProvisionalInference(requestId, output);
    }

    /// @notice Early delivery: called by the coordinator when the provisional output of
    /// `requestId` was overturned; forwards to `_onCorrection`.
    /// @param requestId The id `_requestInference` returned.
    function onCorrection(uint256 requestId) external {
        if (msg.sender != address(COORDINATOR)) revert VerinferOnlyCoordinator(msg.sender);
        _onCorrection(requestId);
    }

    /// @dev Submits the request; the coordinator pulls the actual fee (at most `maxFee`). See
    /// IInferenceCoordinator.request for the parameters. When the coordinator's allowance does
    /// not cover `maxFee`, this approves it for the maximum first, so a steady stream of requests
    /// pays for one approval, not one per request (an approval costs a fresh storage slot each
    /// time, because each request spends the allowance back to zero). That allowance is safe to
    /// give: the COORDINATOR is immutable and trusted for callbacks already, and it pulls only
    /// inside `request`, only from its caller (this contract, via this function), and only the
    /// fee, which is at most the `maxFee` this contract passes.
    function _requestInference(
        uint256 modelId,
        bytes memory input,
        uint8 mode,
        uint256 maxFee,
        uint64 deadline,
        uint32 callbackGasLimit,
        uint8 redundancy
    ) internal returns (uint256 requestId) {
        if (PAYMENT_TOKEN.allowance(address(this), address(COORDINATOR)) < maxFee) {
            PAYMENT_TOKEN.forceApprove(address(COORDINATOR), type(uint256).max);
        }
        return COORDINATOR.request(modelId, input, mode, maxFee, deadline, callbackGasLimit, redundancy);
    }

    /// @dev Pulls what the coordinator owes this contract (refunds), if anything.
    function _withdrawRefunds() internal returns (uint256 amount) {
        amount = COORDINATOR.balanceOf(address(this));
        if (amount != 0) COORDINATOR.withdraw();
    }

    /// @dev Override to use the output. Runs with the request's callbackGasLimit; a revert here
    /// does not undo the delivery (the coordinator emits CallbackFailed).
    function _onInference(uint256 requestId, bytes calldata output) internal virtual;

    /// @dev Early delivery only (mode `4 | 0x10`): override to use the claimed output before its
    /// challenge window ends. It is provisional: `_onInference` confirms it (same bytes) at
    /// finalization, or `_onCorrection` withdraws it. Same gas limit and failure rule as
    /// `_onInference`. Does nothing by default.
    function _onProvisionalInference(uint256 requestId, bytes calldata output) internal virtual {}

    /// @dev Early delivery only: the provisional output of `requestId` lost its dispute; undo
    /// what `_onProvisionalInference` did. The request is refunded (to `_withdrawRefunds`), and
    /// `_onInference` never comes for it. Same gas limit and failure rule. Does nothing by default.
    function _onCorrection(uint256 requestId) internal virtual {}
}
