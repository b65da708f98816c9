// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title EarlyConsumer (tests only)
/// @notice A consumer of early delivery: records each request's provisional output, final output
/// and correction, and the order of the hooks. `setFailing(true)` makes the provisional and
/// correction hooks revert (settlement must not mind).
contract EarlyConsumer is VerinferConsumer {
    uint8 public constant PROVISIONAL = 1;
    uint8 public constant FINAL = 2;
    uint8 public constant CORRECTION = 3;

    bool public failing;
    mapping(uint256 requestId => bytes) public provisionalOf;
    mapping(uint256 requestId => bytes) public finalOf;
    mapping(uint256 requestId => bool) public corrected;
    /// @notice The hooks called for a request, in order (PROVISIONAL, FINAL, CORRECTION).
    mapping(uint256 requestId => uint8[]) private _hooks;

    error EarlyHookFailed(uint256 requestId);

    /// @param coordinator_ The InferenceCoordinator.
    constructor(address coordinator_) VerinferConsumer(coordinator_) {}

    /// @notice Make the provisional and correction hooks revert (or not).
    function setFailing(bool failing_) external {
        failing = failing_;
    }

    /// @notice Submit a request paid from this contract's token balance.
    function requestInference(
        uint256 modelId,
        bytes calldata input,
        uint8 mode,
        uint256 maxFee,
        uint64 deadline,
        uint32 callbackGasLimit,
        uint8 redundancy
    ) external returns (uint256) {
        return _requestInference(modelId, input, mode, maxFee, deadline, callbackGasLimit, redundancy);
    }

    /// @notice Pull refunds owed by the coordinator into this contract.
    function withdrawRefunds() external returns (uint256) {
        return _withdrawRefunds();
    }

    /// @notice The hooks called for `requestId`, in order.
    function hooksOf(uint256 requestId) external view returns (uint8[] memory) {
        return _hooks[requestId];
    }

    function _onProvisionalInference(uint256 requestId, bytes calldata output) internal override {
        if (failing) revert EarlyHookFailed(requestId);
        provisionalOf[requestId] = output;
        _hooks[requestId].push(PROVISIONAL);
    }

    function _onInference(uint256 requestId, bytes calldata output) internal override {
        finalOf[requestId] = output;
        _hooks[requestId].push(FINAL);
    }

    function _onCorrection(uint256 requestId) internal override {
        if (failing) revert EarlyHookFailed(requestId);
        corrected[requestId] = true;
        _hooks[requestId].push(CORRECTION);
    }
}
