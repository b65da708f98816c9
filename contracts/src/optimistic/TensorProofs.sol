// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TensorProofs
/// @notice Opens values of a committed int32 tensor (docs/runtime-commitments.md, sections 2
/// and 5): 16-word chunks (128 big-endian int32 values, 512 bytes) are the leaves of a keccak
/// tree padded with zero subtrees Z[k]. An `Opening` proves an arbitrary sorted set of chunks
/// with one sparse multiproof: at each level, bottom-up and left to right, one sibling for every
/// known node whose sibling the known set does not already supply (padding siblings, Z[level],
/// are sent like any other). For a contiguous run this is exactly the range proof of section
/// 5.2, and for one chunk the element proof of 5.1.
library TensorProofs {
    /// @notice The chunks and multiproof that open some values of the tensor (`root`, `n`).
    /// @dev `root` and `n` are what the caller must bind (trace root, weights root, shapes).
    struct Opening {
        bytes32 root; // the tensor root
        uint256 n; // number of values of the tensor
        uint256[] chunkIds; // strictly increasing chunk indices
        bytes[] chunks; // chunk chunkIds[i], exactly the length its position implies
        bytes32[] siblings; // sparse multiproof, bottom-up, left to right per level
    }

    uint256 internal constant VALUES_PER_CHUNK = 128;

    /// @notice The tensor size is zero or absurd.
    error VerinferBadTensorSize(uint256 n);
    /// @notice The chunk set is empty, unsorted, out of range, or does not match the chunks.
    error VerinferBadChunkSet();
    /// @notice A chunk is not exactly as long as its position in the tensor implies.
    error VerinferBadChunkLength(uint256 chunkId, uint256 length);
    /// @notice The padding after the tensor's last value is not zero.
    error VerinferNonZeroPadding(uint256 chunkId);
    /// @notice The proof has too few or too many siblings for this size and chunk set.
    error VerinferBadSiblingCount(uint256 given);
    /// @notice The chunks and siblings fold to another root.
    error VerinferRootMismatch(bytes32 computed, bytes32 expected);
    /// @notice A value outside the tensor, or in a chunk the opening does not hold, was read.
    error VerinferValueNotOpened(uint256 index);

    /// @notice `ceil(log2(k))` for `k >= 1`: the depth of the tree over `k` leaves.
    function depth(uint256 k) internal pure returns (uint256 d) {
        while ((uint256(1) << d) < k) ++d;
    }

    /// @notice Reverts unless every chunk of `o` belongs to the tensor (`o.root`, `o.n`).
    function verify(Opening calldata o) internal pure {
        uint256 n = o.n;
        if (n == 0 || n > type(uint64).max) revert VerinferBadTensorSize(n);
        uint256 m = o.chunkIds.length;
        if (m == 0 || m != o.chunks.length) revert VerinferBadChunkSet();
        uint256 k = (n + VALUES_PER_CHUNK - 1) / VALUES_PER_CHUNK;
        uint256 words = (n + 7) / 8;
        uint256[] memory idx = new uint256[](m);
        bytes32[] memory h = new bytes32[](m);
        for (uint256 i; i < m; ++i) {
            uint256 c = o.chunkIds[i];
            if (c >= k || (i > 0 && c <= idx[i - 1])) revert VerinferBadChunkSet();
            bytes calldata chunk = o.chunks[i];
            uint256 w = words - 16 * c;
            if (w > 16) w = 16;
            if (chunk.length != 32 * w) revert VerinferBadChunkLength(c, chunk.length);
            if (c == k - 1) {
                // The last word holds n - 8 (words - 1) values (1..8); a shift by 256 gives 0.
                uint256 used = n - 8 * (words - 1);
                uint256 last = uint256(bytes32(chunk[chunk.length - 32:]));
                if (last << (32 * used) != 0) revert VerinferNonZeroPadding(c);
            }
            idx[i] = c;
            h[i] = keccak256(chunk);
        }
        bytes32 top = fold(idx, h, depth(k), o.siblings);
        if (top != o.root) revert VerinferRootMismatch(top, o.root);
    }

    /// @notice Folds the known nodes (`idx` strictly increasing, hashes `h`) up `d` levels,
    /// consuming every sibling of `sib` in order; returns the root.
    /// @dev Works in place: at each level the write position never passes the read position.
    function fold(uint256[] memory idx, bytes32[] memory h, uint256 d, bytes32[] calldata sib)
        internal
        pure
        returns (bytes32)
    {
        uint256 m = idx.length;
        uint256 used;
        for (uint256 level; level < d; ++level) {
            uint256 w;
            for (uint256 r; r < m; ++w) {
                uint256 i = idx[r];
                bytes32 left;
                bytes32 right;
                if (i & 1 == 1) {
                    // A right child whose left sibling is not known (else it was paired).
                    if (used == sib.length) revert VerinferBadSiblingCount(sib.length);
                    (left, right) = (sib[used++], h[r]);
                    r += 1;
                } else if (r + 1 < m && idx[r + 1] == i + 1) {
                    (left, right) = (h[r], h[r + 1]);
                    r += 2;
                } else {
                    if (used == sib.length) revert VerinferBadSiblingCount(sib.length);
                    (left, right) = (h[r], sib[used++]);
                    r += 1;
                }
                idx[w] = i >> 1;
                h[w] = keccak256(abi.encodePacked(left, right));
            }
            m = w;
        }
        // After `d` levels every index is 0 (all were below 2^d), so one node is left.
        if (used != sib.length) revert VerinferBadSiblingCount(sib.length);
        return h[0];
    }

    /// @notice Value `i` (flat, C order) of a verified opening, searching the chunks from
    /// position `pos` on; returns the value and the position of its chunk (a cursor for reads
    /// in increasing order).
    function read(Opening calldata o, uint256 pos, uint256 i)
        internal
        pure
        returns (int256 value, uint256 chunkPos)
    {
        if (i >= o.n) revert VerinferValueNotOpened(i);
        uint256 m = o.chunkIds.length;
        uint256 off;
        // Unchecked: i < n < 2^64 and pos < m, so nothing here can overflow.
        unchecked {
            uint256 c = i >> 7; // i / VALUES_PER_CHUNK
            while (pos < m && o.chunkIds[pos] < c) ++pos;
            if (pos == m || o.chunkIds[pos] != c) revert VerinferValueNotOpened(i);
            off = (i & 127) << 2; // 4 * (i % VALUES_PER_CHUNK)
        }
        return (int256(int32(uint32(bytes4(o.chunks[pos][off:off + 4])))), pos);
    }

    /// @notice Chunk `c` of a verified opening, searching from position `pos` on; returns
    /// the chunk and its position (a cursor for reads in increasing order).
    function chunkAt(Opening calldata o, uint256 pos, uint256 c)
        internal
        pure
        returns (bytes calldata chunk, uint256 chunkPos)
    {
        uint256 m = o.chunkIds.length;
        while (pos < m && o.chunkIds[pos] < c) ++pos;
        if (pos == m || o.chunkIds[pos] != c) revert VerinferValueNotOpened(c * VALUES_PER_CHUNK);
        return (o.chunks[pos], pos);
    }

    /// @notice The `count` values at flat indices `start + t * stride` (t < count) of a
    /// verified opening, read chunk by chunk (each chunk is located once, not per value).
    function gather(Opening calldata o, uint256 start, uint256 stride, uint256 count)
        internal
        pure
        returns (int256[] memory out)
    {
        out = new int256[](count);
        if (count == 0) return out;
        if (start + (count - 1) * stride >= o.n) {
            revert VerinferValueNotOpened(start + (count - 1) * stride);
        }
        if (stride == 1) {
            _gatherRange(o, start, out);
            return out;
        }
        uint256 m = o.chunkIds.length;
        uint256 pos;
        uint256 cur = type(uint256).max; // chunk id of `chunk`
        bytes calldata chunk = o.chunks[0];
        // Unchecked: every index is below n < 2^64 (checked above and in `verify`), so no
        // arithmetic here can overflow; this loop runs once per value of a dot product.
        unchecked {
            for (uint256 t; t < count; ++t) {
                uint256 i = start + t * stride;
                uint256 c = i >> 7; // i / VALUES_PER_CHUNK
                if (c != cur) {
                    while (pos < m && o.chunkIds[pos] < c) ++pos;
                    if (pos == m || o.chunkIds[pos] != c) revert VerinferValueNotOpened(i);
                    chunk = o.chunks[pos];
                    cur = c;
                }
                uint256 off = (i & 127) << 2; // 4 * (i % VALUES_PER_CHUNK)
                out[t] = int256(int32(uint32(bytes4(chunk[off:off + 4]))));
            }
        }
    }

    /// @dev `out.length` contiguous values from `start` (in range), unpacked a word at a time.
    function _gatherRange(Opening calldata o, uint256 start, int256[] memory out) private pure {
        uint256 m = o.chunkIds.length;
        uint256 pos;
        // Unchecked: every index is below n < 2^64 (checked by the caller and `verify`).
        unchecked {
            uint256 end = start + out.length;
            uint256 t;
            for (uint256 i = start; i < end;) {
                uint256 c = i >> 7; // the chunk of value i
                while (pos < m && o.chunkIds[pos] < c) ++pos;
                if (pos == m || o.chunkIds[pos] != c) revert VerinferValueNotOpened(i);
                bytes calldata chunk = o.chunks[pos];
                uint256 stop = (c + 1) << 7;
                if (stop > end) stop = end;
                while (i < stop) {
                    uint256 wordStart = i & ~uint256(7); // first value of i's word
                    uint256 off = (wordStart & 127) << 2;
                    uint256 word = uint256(bytes32(chunk[off:off + 32]));
                    uint256 slotEnd = stop - wordStart;
                    if (slotEnd > 8) slotEnd = 8;
                    for (uint256 slot = i - wordStart; slot < slotEnd; ++slot) {
                        out[t++] = int256(int32(uint32(word >> (224 - 32 * slot))));
                    }
                    i = wordStart + slotEnd;
                }
            }
        }
    }
}
