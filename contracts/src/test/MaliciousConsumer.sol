// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title MaliciousConsumer (tests only)
/// @notice A consumer whose callback misbehaves in a chosen way, to show that settlement
/// survives it: 1 reverts, 2 re-enters the coordinator, 3 burns all its gas, 4 reverts with a
/// huge revert string (a returndata bomb).
contract MaliciousConsumer is VerinferConsumer {
    uint8 public constant REVERT = 1;
    uint8 public constant REENTER = 2;
    uint8 public constant BURN_GAS = 3;
    uint8 public constant HUGE_REVERT = 4;

    uint8 public behaviour;
    uint256 public pendingRequest;

    error MaliciousRevert(uint256 requestId);

    /// @param coordinator_ The InferenceCoordinator.
    constructor(address coordinator_) VerinferConsumer(coordinator_) {}

    /// @notice Choose how the next callback misbehaves.
    function setBehaviour(uint8 behaviour_) external {
        behaviour = behaviour_;
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
    ) external returns (uint256 id) {
        id = _requestInference(modelId, input, mode, maxFee, deadline, callbackGasLimit, redundancy);
        pendingRequest = id;
    }

    function _onInference(uint256 requestId, bytes calldata output) internal override {
        uint8 b = behaviour;
        if (b == REVERT) revert MaliciousRevert(requestId);
        if (b == REENTER) {
            // Try to settle again and to steal the escrow; the coordinator's guard must refuse.
            COORDINATOR.fulfil(requestId, output);
        } else if (b == BURN_GAS) {
            uint256 x;
            while (true) {
                x = uint256(keccak256(abi.encode(x)));
            }
        } else if (b == HUGE_REVERT) {
            bytes memory huge = new bytes(200_000);
            // Assembly to revert with raw bytes (a returndata bomb): Solidity has no statement for it.
            assembly ("memory-safe") {
                revert(add(huge, 0x20), mload(huge))
            }
        }
    }
}
