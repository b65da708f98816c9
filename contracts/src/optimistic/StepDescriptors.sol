// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title StepDescriptors
/// @notice What the dispute game knows about one program step (docs/optimistic.md, "Step
/// descriptors"): the op, its operands (request input, earlier step output or constant, each
/// with its shape and scale), the output's shape and scale and the op's integer attributes.
/// `stepsRoot = commit_list([keccak256(abi.encode(descriptor_i)) ...])`; the Python twin is
/// `verinfer.optimistic.descriptors`. Also the Merkle helpers the game needs (list proofs,
/// roots of packed values, tensor leaves), with the semantics of docs/runtime-commitments.md.
library StepDescriptors {
    /// @notice One operand of a step.
    struct Operand {
        uint8 kind; // KIND_INPUT, KIND_STEP or KIND_CONST
        uint32 index; // request input t, step t (< this step) or constant t (weightsRoot order)
        uint32[] shape;
        int32 scale;
    }

    /// @notice One program step, ABI-encoded into its leaf of `stepsRoot`.
    struct Descriptor {
        uint8 op; // OP_*; OP_UNSUPPORTED has no on-chain rule
        bool relu; // fused Relu (dense, matmul, conv2d)
        bool intOut; // the output is an integer tensor (saturates at 2^31 - 1)
        int32 output; // index of this step's output among the program's outputs, or -1
        uint32[] shape; // output shape
        int32 scale; // output scale
        Operand[] operands;
        int256[] attrs; // the op's integers, see docs/optimistic.md
    }

    uint8 internal constant KIND_INPUT = 0;
    uint8 internal constant KIND_STEP = 1;
    uint8 internal constant KIND_CONST = 2;

    uint8 internal constant OP_UNSUPPORTED = 0;
    uint8 internal constant OP_DENSE = 1;
    uint8 internal constant OP_MATMUL = 2;
    uint8 internal constant OP_CONV2D = 3;
    uint8 internal constant OP_ADD = 4;
    uint8 internal constant OP_MUL = 5;
    uint8 internal constant OP_RELU = 6;
    uint8 internal constant OP_POOL2D = 7;
    uint8 internal constant OP_REDUCE = 8;
    uint8 internal constant OP_RESHAPE = 9;
    // Ops 10 and above are recomputed by OneStepVerifierExt from the descriptor itself.
    uint8 internal constant OP_LUT = 10;
    uint8 internal constant OP_LEAKY_RELU = 11;
    uint8 internal constant OP_CLIP = 12;
    uint8 internal constant OP_CAST = 13;
    uint8 internal constant OP_WHERE = 14;
    uint8 internal constant OP_ARGMAX = 15;
    uint8 internal constant OP_REDUCE_AXES = 16;
    uint8 internal constant OP_SOFTMAX = 17;
    uint8 internal constant OP_LAYERNORM = 18;
    uint8 internal constant OP_CONCAT = 19;
    uint8 internal constant OP_GATHER = 20;
    uint8 internal constant OP_TRANSPOSE = 21;
    uint8 internal constant OP_SLICE = 22;
    uint8 internal constant OP_EXPAND = 23;
    uint8 internal constant OP_TILE = 24;

    uint256 internal constant CHUNK_BYTES = 512;

    /// @notice A shape of more than 255 dimensions has no tensor leaf.
    error VerinferBadRank(uint256 rank);

    /// @notice The descriptor's leaf in `stepsRoot`.
    function leaf(Descriptor calldata d) internal pure returns (bytes32) {
        return keccak256(abi.encode(d));
    }

    /// @notice Number of values of a tensor of shape `s` (1 for a scalar).
    function size(uint32[] calldata s) internal pure returns (uint256 n) {
        n = 1;
        for (uint256 i; i < s.length; ++i) {
            n *= s[i];
        }
    }

    /// @notice What tensor_leaf hashes after the root: `uint8 r ‖ uint32 d_i … ‖ int32 scale`.
    function leafSuffix(uint32[] calldata s, int32 scale) internal pure returns (bytes memory out) {
        if (s.length > type(uint8).max) revert VerinferBadRank(s.length);
        out = abi.encodePacked(uint8(s.length));
        for (uint256 i; i < s.length; ++i) {
            out = abi.encodePacked(out, s[i]);
        }
        out = abi.encodePacked(out, scale);
    }

    /// @notice `ceil(log2(k))` for `k >= 1`.
    function depth(uint256 k) internal pure returns (uint256 d) {
        while ((uint256(1) << d) < k) ++d;
    }

    /// @notice True iff `leaf_` is leaf `index` of the committed list (`root`, `k` leaves).
    function verifyList(
        bytes32 root,
        uint256 k,
        uint256 index,
        bytes32 leaf_,
        bytes32[] calldata siblings
    ) internal pure returns (bool) {
        if (index >= k || siblings.length != depth(k)) return false;
        bytes32 node = leaf_;
        for (uint256 i; i < siblings.length; ++i) {
            node = index & 1 == 1
                ? keccak256(abi.encodePacked(siblings[i], node))
                : keccak256(abi.encodePacked(node, siblings[i]));
            index >>= 1;
        }
        return node == root;
    }

    /// @notice Root of the zero-padded keccak tree over `nodes` (overwritten): commit_list.
    function merkleRoot(bytes32[] memory nodes) internal pure returns (bytes32) {
        uint256 m = nodes.length;
        bytes32 zero; // Z[level]
        while (m > 1) {
            uint256 half = (m + 1) / 2;
            for (uint256 i; i < half; ++i) {
                bytes32 right = 2 * i + 1 < m ? nodes[2 * i + 1] : zero;
                nodes[i] = keccak256(abi.encodePacked(nodes[2 * i], right));
            }
            m = half;
            zero = keccak256(abi.encodePacked(zero, zero));
        }
        return nodes[0];
    }

    /// @notice Tensor root of `count >= 1` int32 values packed big-endian in `vals`
    /// (`4 * count` bytes, the value bytes of the inline tensor encoding).
    function packedRoot(bytes calldata vals, uint256 count) internal pure returns (bytes32) {
        uint256 k = (count + 127) / 128;
        uint256 words = (count + 7) / 8;
        bytes32[] memory leaves = new bytes32[](k);
        for (uint256 c; c < k; ++c) {
            uint256 start = CHUNK_BYTES * c;
            uint256 end = start + CHUNK_BYTES < vals.length ? start + CHUNK_BYTES : vals.length;
            uint256 w = words - 16 * c;
            if (w > 16) w = 16;
            // The last word's padding slots are zero: append them.
            leaves[c] = keccak256(abi.encodePacked(vals[start:end], new bytes(32 * w - (end - start))));
        }
        return merkleRoot(leaves);
    }

    /// @notice Tensor `t` of inline-encoded tensors `data` (docs/solidity.md, TensorCodec):
    /// its scale, its value count and its value bytes; `ok` is false if `data` is not inline
    /// or is malformed before the end of tensor `t`.
    function inlineTensor(bytes calldata data, uint256 t)
        internal
        pure
        returns (bool ok, int8 scale, uint256 count, bytes calldata vals)
    {
        vals = data[0:0];
        if (data.length == 0 || uint8(data[0]) != 0x01) return (false, 0, 0, vals);
        uint256 offset = 1;
        for (uint256 i;; ++i) {
            if (offset + 5 > data.length) return (false, 0, 0, vals);
            count = uint32(bytes4(data[offset + 1:offset + 5]));
            uint256 end = offset + 5 + 4 * count;
            if (end > data.length) return (false, 0, 0, vals);
            if (i == t) {
                return (true, int8(uint8(data[offset])), count, data[offset + 5:end]);
            }
            offset = end;
        }
    }
}
