// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title TestConsumer (tests and benchmarks only)
/// @notice A consumer that stores the last output it received.
contract TestConsumer is VerinferConsumer {
    bytes public lastOutput;
    /// @dev The last request id and the delivery count, one slot (ids fit 64 bits).
    uint128 private _lastRequestId;
    uint128 private _deliveries;

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

    /// @notice The id of the last delivered request.
    function lastRequestId() external view returns (uint256) {
        return _lastRequestId;
    }

    /// @notice How many outputs were delivered.
    function deliveries() external view returns (uint256) {
        return _deliveries;
    }

    function _onInference(uint256 requestId, bytes calldata output) internal override {
        lastOutput = output;
        (_lastRequestId, _deliveries) = (SafeCast.toUint128(requestId), _deliveries + 1);
    }
}
