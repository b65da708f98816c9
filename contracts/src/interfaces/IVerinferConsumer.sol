// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IVerinferConsumer
/// @notice What the coordinator calls to deliver a result. Inherit `VerinferConsumer` rather
/// than implementing this directly: it checks the caller and gives `_onInference` (and the two
/// early-delivery hooks, empty unless overridden).
interface IVerinferConsumer {
    /// @notice The final result: every mode, once settled (optimistic: at finalization).
    /// @param requestId the id `request` returned
    /// @param output the model's outputs in the verinfer tensor encoding (see TensorCodec)
    function onInference(uint256 requestId, bytes calldata output) external;

    /// @notice Early delivery (optimistic requests with EARLY_DELIVERY): the claimed output, at
    /// the claim, before its challenge window. It may still be overturned: `onCorrection`
    /// follows if a dispute does, `onInference` with the same output if it finalizes.
    /// @param requestId the id `request` returned
    /// @param output the claimed outputs in the verinfer tensor encoding
    function onProvisionalInference(uint256 requestId, bytes calldata output) external;

    /// @notice Early delivery: the provisional output of `requestId` was overturned (its claim
    /// lost); the request is refunded and no `onInference` will follow.
    /// @param requestId the id `request` returned
    function onCorrection(uint256 requestId) external;
}
