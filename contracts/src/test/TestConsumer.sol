// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title TestConsumer (tests and benchmarks only)
/// @notice A consumer that stores the last output it received.
contract TestConsumer is VerinferConsumer {
    uint256 public lastRequestId;
    bytes public lastOutput;
    uint256 public deliveries;

    /// @param coordinator_ The InferenceCoordinator.
    constructor(address coordinator_) VerinferConsumer(coordinator_) {}

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

    function _onInference(uint256 requestId, bytes calldata output) internal override {
        lastRequestId = requestId;
        lastOutput = output;
        ++deliveries;
    }
}
