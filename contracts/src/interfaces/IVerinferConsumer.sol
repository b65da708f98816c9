// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IVerinferConsumer
/// @notice What the coordinator calls to deliver a result. Inherit `VerinferConsumer` rather
/// than implementing this directly: it checks the caller and gives `_onInference`.
interface IVerinferConsumer {
    /// @param requestId the id `request` returned
    /// @param output the model's outputs in the verinfer tensor encoding (see TensorCodec)
    function onInference(uint256 requestId, bytes calldata output) external;
}
