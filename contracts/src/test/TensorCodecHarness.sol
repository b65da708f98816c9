// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TensorCodec} from "../TensorCodec.sol";

/// @title TensorCodecHarness (tests only)
/// @notice Exposes the TensorCodec library so tests can check it against the Python codec.
contract TensorCodecHarness {
    /// @notice TensorCodec.kind
    function kind(bytes memory data) external pure returns (uint8) {
        return TensorCodec.kind(data);
    }

    /// @notice TensorCodec.tensorCount
    function tensorCount(bytes memory data) external pure returns (uint256) {
        return TensorCodec.tensorCount(data);
    }

    /// @notice TensorCodec.count
    function count(bytes memory data, uint256 t) external pure returns (uint256) {
        return TensorCodec.count(data, t);
    }

    /// @notice TensorCodec.scale
    function scale(bytes memory data, uint256 t) external pure returns (int8) {
        return TensorCodec.scale(data, t);
    }

    /// @notice TensorCodec.valueAt
    function valueAt(bytes memory data, uint256 t, uint256 i) external pure returns (int256) {
        return TensorCodec.valueAt(data, t, i);
    }

    /// @notice TensorCodec.decode
    function decode(bytes memory data) external pure returns (int8[] memory, int32[][] memory) {
        return TensorCodec.decode(data);
    }

    /// @notice TensorCodec.encodeOne
    function encodeOne(int8 scale_, int256[] memory values) external pure returns (bytes memory) {
        return TensorCodec.encodeOne(scale_, values);
    }

    /// @notice TensorCodec.encode
    function encode(int8[] memory scales, int256[][] memory values) external pure returns (bytes memory) {
        return TensorCodec.encode(scales, values);
    }

    /// @notice TensorCodec.cid
    function cid(bytes memory data) external pure returns (bytes memory) {
        return TensorCodec.cid(data);
    }
}
