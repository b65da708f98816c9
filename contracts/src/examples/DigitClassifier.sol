// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VerinferConsumer} from "../VerinferConsumer.sol";
import {TensorCodec} from "../TensorCodec.sol";

/// @title DigitClassifier (the demo's consumer)
/// @notice Asks the registered digits model to classify an 8x8 image and keeps the answer:
/// the smallest contract that uses verinfer end to end.
contract DigitClassifier is VerinferConsumer {
    /// @notice No answer (yet) for this request.
    uint8 public constant UNKNOWN = type(uint8).max;

    uint256 public immutable MODEL_ID;
    /// @notice The digit (argmax of the model's 10 logits) per request, UNKNOWN until answered.
    mapping(uint256 requestId => uint8 digit) public digitOf;

    event ClassificationRequested(uint256 indexed requestId, address indexed by);
    event DigitClassified(uint256 indexed requestId, uint8 digit);

    error VerinferUnexpectedOutput(uint256 values);

    /// @param coordinator_ The InferenceCoordinator.
    /// @param modelId_ The digits model in the ModelRegistry.
    constructor(address coordinator_, uint256 modelId_) VerinferConsumer(coordinator_) {
        MODEL_ID = modelId_;
    }

    /// @notice Request a classification of `image` (the model's input in the verinfer tensor
    /// encoding: 64 pixels in [0, 1] at the program's input scale), paid from this contract's
    /// token balance, answered by one staked node (mode none).
    /// @param image The encoded input.
    /// @param maxFee The most this contract pays (see IInferenceCoordinator.quote).
    /// @return requestId The coordinator's request id.
    function classify(bytes calldata image, uint256 maxFee) external returns (uint256 requestId) {
        requestId = _requestInference(MODEL_ID, image, 1, maxFee, uint64(block.timestamp + 1 hours), 200_000, 1);
        digitOf[requestId] = UNKNOWN;
        emit ClassificationRequested(requestId, msg.sender);
    }

    /// @dev Argmax over the 10 logits; the encoding's scale is shared, so integers compare.
    function _onInference(uint256 requestId, bytes calldata output) internal override {
        bytes memory data = output;
        uint256 n = TensorCodec.count(data, 0);
        if (n != 10) revert VerinferUnexpectedOutput(n);
        uint8 best = 0;
        int256 bestValue = TensorCodec.valueAt(data, 0, 0);
        for (uint256 i = 1; i < n; ++i) {
            int256 v = TensorCodec.valueAt(data, 0, i);
            if (v > bestValue) {
                bestValue = v;
                best = uint8(i);
            }
        }
        digitOf[requestId] = best;
        emit DigitClassified(requestId, best);
    }
}
