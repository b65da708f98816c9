// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TensorCodec
/// @notice The verinfer tensor encoding of model inputs and outputs, ABI-friendly and compact.
/// Byte 0 is the kind: 0x01 inline, 0x02 CID reference.
///   0x01 inline: then, per tensor, `int8 scale`, `uint32 count` (big-endian) and `count` int32
///        values (big-endian, two's complement); tensors follow each other to the end. The real
///        value of q is q / 2^scale. Zero tensors, and tensors with zero values, are valid.
///   0x02 CID reference: then the binary CIDv1 of a file in the content-addressed store that
///        holds the inline (0x01) encoding, for inputs too large for calldata.
/// Shapes are not encoded: the ModelRegistry records each model's input and output shapes.
/// The Python twin is `verinfer.chain.codec`. Plain Solidity (byte indexing) rather than
/// assembly: outputs are small and reading them is not the hot path of a request.
library TensorCodec {
    uint8 internal constant INLINE = 0x01;
    uint8 internal constant CID_REFERENCE = 0x02;

    /// @notice The bytes end, or a tensor's header or values overrun them, at `offset`.
    error VerinferMalformedTensors(uint256 offset);
    /// @notice The data is not of the inline kind (0x01).
    error VerinferNotInline(uint8 kind);
    /// @notice The data is not of the CID-reference kind (0x02).
    error VerinferNotCidReference(uint8 kind);
    /// @notice No tensor `tensorIndex`, or no value `valueIndex` in it.
    error VerinferTensorIndexOutOfRange(uint256 tensorIndex, uint256 valueIndex);
    /// @notice A value does not fit int32.
    error VerinferValueOutOfRange(int256 value);

    /// @notice The kind byte (0x01 inline, 0x02 CID reference).
    function kind(bytes memory data) internal pure returns (uint8) {
        if (data.length == 0) revert VerinferMalformedTensors(0);
        return uint8(data[0]);
    }

    /// @notice How many tensors inline `data` holds (validates every tensor).
    function tensorCount(bytes memory data) internal pure returns (uint256 n) {
        uint256 offset = _start(data);
        while (offset < data.length) {
            offset = _skip(data, offset);
            ++n;
        }
    }

    /// @notice How many values tensor `t` holds.
    function count(bytes memory data, uint256 t) internal pure returns (uint256) {
        return _u32(data, _seek(data, t) + 1);
    }

    /// @notice The scale of tensor `t` (value = q / 2^scale).
    function scale(bytes memory data, uint256 t) internal pure returns (int8) {
        return int8(uint8(data[_seek(data, t)]));
    }

    /// @notice Value `i` of tensor `t`, as the integer q.
    function valueAt(bytes memory data, uint256 t, uint256 i) internal pure returns (int256) {
        uint256 offset = _seek(data, t);
        if (i >= _u32(data, offset + 1)) revert VerinferTensorIndexOutOfRange(t, i);
        return int256(int32(uint32(_u32(data, offset + 5 + 4 * i))));
    }

    /// @notice Every tensor of inline `data`: their scales and values.
    function decode(bytes memory data) internal pure returns (int8[] memory scales, int32[][] memory values) {
        uint256 n = tensorCount(data);
        scales = new int8[](n);
        values = new int32[][](n);
        uint256 offset = 1;
        for (uint256 t = 0; t < n; ++t) {
            scales[t] = int8(uint8(data[offset]));
            uint256 c = _u32(data, offset + 1);
            int32[] memory v = new int32[](c);
            for (uint256 i = 0; i < c; ++i) {
                v[i] = int32(uint32(_u32(data, offset + 5 + 4 * i)));
            }
            values[t] = v;
            offset += 5 + 4 * c;
        }
    }

    /// @notice The inline encoding of one tensor; every value must fit int32.
    function encodeOne(int8 scale_, int256[] memory values) internal pure returns (bytes memory out) {
        out = new bytes(1 + 5 + 4 * values.length);
        out[0] = bytes1(INLINE);
        _write(out, 1, scale_, values);
    }

    /// @notice The inline encoding of several tensors (`scales[i]` with `values[i]`).
    function encode(int8[] memory scales, int256[][] memory values) internal pure returns (bytes memory out) {
        if (scales.length != values.length) revert VerinferTensorIndexOutOfRange(scales.length, values.length);
        uint256 size = 1;
        for (uint256 t = 0; t < values.length; ++t) {
            size += 5 + 4 * values[t].length;
        }
        out = new bytes(size);
        out[0] = bytes1(INLINE);
        uint256 offset = 1;
        for (uint256 t = 0; t < values.length; ++t) {
            offset = _write(out, offset, scales[t], values[t]);
        }
    }

    /// @notice The binary CIDv1 that a CID-reference (0x02) payload points at.
    function cid(bytes memory data) internal pure returns (bytes memory out) {
        uint8 k = kind(data);
        if (k != CID_REFERENCE) revert VerinferNotCidReference(k);
        if (data.length < 2) revert VerinferMalformedTensors(1);
        out = new bytes(data.length - 1);
        for (uint256 i = 0; i < out.length; ++i) {
            out[i] = data[i + 1];
        }
    }

    function _write(bytes memory out, uint256 offset, int8 scale_, int256[] memory values)
        private
        pure
        returns (uint256)
    {
        out[offset] = bytes1(uint8(scale_));
        _putU32(out, offset + 1, values.length);
        offset += 5;
        for (uint256 i = 0; i < values.length; ++i) {
            int256 v = values[i];
            if (v < type(int32).min || v > type(int32).max) revert VerinferValueOutOfRange(v);
            _putU32(out, offset, uint32(int32(v)));
            offset += 4;
        }
        return offset;
    }

    /// @dev The offset of the first tensor; reverts unless `data` is inline.
    function _start(bytes memory data) private pure returns (uint256) {
        uint8 k = kind(data);
        if (k != INLINE) revert VerinferNotInline(k);
        return 1;
    }

    /// @dev The offset of tensor `t`, checking that it lies wholly inside `data`.
    function _seek(bytes memory data, uint256 t) private pure returns (uint256 offset) {
        offset = _start(data);
        for (uint256 i = 0; i < t; ++i) {
            if (offset >= data.length) revert VerinferTensorIndexOutOfRange(t, 0);
            offset = _skip(data, offset);
        }
        if (offset >= data.length) revert VerinferTensorIndexOutOfRange(t, 0);
        _skip(data, offset);
    }

    /// @dev The offset after the tensor at `offset`; reverts if it overruns `data`.
    function _skip(bytes memory data, uint256 offset) private pure returns (uint256 next) {
        if (offset + 5 > data.length) revert VerinferMalformedTensors(offset);
        next = offset + 5 + 4 * _u32(data, offset + 1);
        if (next > data.length) revert VerinferMalformedTensors(offset);
    }

    function _u32(bytes memory data, uint256 offset) private pure returns (uint256) {
        return (uint256(uint8(data[offset])) << 24) | (uint256(uint8(data[offset + 1])) << 16)
            | (uint256(uint8(data[offset + 2])) << 8) | uint256(uint8(data[offset + 3]));
    }

    function _putU32(bytes memory out, uint256 offset, uint256 v) private pure {
        out[offset] = bytes1(uint8(v >> 24));
        out[offset + 1] = bytes1(uint8(v >> 16));
        out[offset + 2] = bytes1(uint8(v >> 8));
        out[offset + 3] = bytes1(uint8(v));
    }
}
