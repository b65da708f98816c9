// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TensorProofs} from "./TensorProofs.sol";

/// @title IntMath
/// @notice The integer primitives of docs/runtime-spec.md ("Primitives": shr_round, sat,
/// div_round) and exact dot products over opened tensor values, for OneStepVerifier.
library IntMath {
    using TensorProofs for TensorProofs.Opening;

    int256 internal constant FX_MAX = 2 ** 23 - 1; // saturation of fixed-point tensors
    int256 internal constant INT_MAX = 2 ** 31 - 1; // saturation of integer tensors

    /// @notice div_round was asked to divide by a non-positive number.
    error VerinferBadDivisor(int256 divisor);

    /// @dev sum_t u[uStart + t * uStride] * v[vStart + t] for t < len (reads in increasing order).
    function dot(
        TensorProofs.Opening calldata u,
        uint256 uStart,
        uint256 uStride,
        TensorProofs.Opening calldata v,
        uint256 vStart,
        uint256 len
    ) internal pure returns (int256 acc) {
        if (uStride == 1 && (uStart & 7) == (vStart & 7)) {
            return _dotWords(u, uStart, v, vStart, len);
        }
        int256[] memory a = u.gather(uStart, uStride, len);
        int256[] memory b = v.gather(vStart, 1, len);
        // Unchecked: |a[t] * b[t]| < 2^62 and len < 2^64, so the sum stays far inside int256.
        unchecked {
            for (uint256 t; t < len; ++t) {
                acc += a[t] * b[t];
            }
        }
    }

    /// @dev Progress of `_dotWords` (in memory: the stack cannot hold it all).
    struct Run {
        uint256 uw; // next word of u
        uint256 vw; // next word of v
        uint256 slot; // first slot to use in the next words (only the first words: start & 7)
        uint256 left; // products still to add
        uint256 pu; // chunk cursor into u
        uint256 pv; // chunk cursor into v
    }

    /// @dev sum_t u[uStart + t] * v[vStart + t] for t < len when both runs start at the same
    /// slot of a word (a dense step whose K is a multiple of 8): a word of each operand, 8
    /// products at a time, chunk by chunk, with no memory arrays.
    function _dotWords(
        TensorProofs.Opening calldata u,
        uint256 uStart,
        TensorProofs.Opening calldata v,
        uint256 vStart,
        uint256 len
    ) private pure returns (int256 acc) {
        if (uStart + len > u.n) revert TensorProofs.VerinferValueNotOpened(uStart + len - 1);
        if (vStart + len > v.n) revert TensorProofs.VerinferValueNotOpened(vStart + len - 1);
        Run memory r = Run(uStart >> 3, vStart >> 3, uStart & 7, len, 0, 0);
        while (r.left > 0) {
            bytes calldata cu;
            bytes calldata cv;
            (cu, r.pu) = u.chunkAt(r.pu, r.uw >> 4);
            (cv, r.pv) = v.chunkAt(r.pv, r.vw >> 4);
            acc += _dotSegment(cu, cv, r);
        }
    }

    /// @dev Adds the products of words r.uw.. of chunk `cu` and r.vw.. of chunk `cv`, up to
    /// the first chunk boundary of either (or the end of the run), and advances `r`.
    function _dotSegment(bytes calldata cu, bytes calldata cv, Run memory r)
        private
        pure
        returns (int256 acc)
    {
        // Unchecked: indices are below n < 2^64 and |products| < 2^62 (see `dot`).
        unchecked {
            uint256 iu = (r.uw & 15) << 5; // byte offsets in the chunks
            uint256 iv = (r.vw & 15) << 5;
            uint256 words = 16 - (r.uw & 15);
            if (16 - (r.vw & 15) < words) words = 16 - (r.vw & 15);
            uint256 slot = r.slot;
            uint256 left = r.left;
            for (uint256 k; k < words && left > 0; ++k) {
                uint256 a = uint256(bytes32(cu[iu:iu + 32]));
                uint256 b = uint256(bytes32(cv[iv:iv + 32]));
                uint256 stop = slot + left < 8 ? slot + left : 8;
                left -= stop - slot;
                for (; slot < stop; ++slot) {
                    uint256 shift = 224 - 32 * slot;
                    acc += int256(int32(uint32(a >> shift))) * int256(int32(uint32(b >> shift)));
                }
                slot = 0;
                iu += 32;
                iv += 32;
                ++r.uw;
                ++r.vw;
            }
            r.slot = 0;
            r.left = left;
        }
    }

    /// @dev shr_round(x, k): `(x + 2^(k-1)) >> k` for k > 0, `x` for 0, `x * 2^-k` for k < 0.
    function shrRound(int256 x, int256 k) internal pure returns (int256) {
        if (k > 0) return (x + (int256(1) << uint256(k - 1))) >> uint256(k);
        if (k < 0) return x * (int256(1) << uint256(-k));
        return x;
    }

    /// @dev Clamp to +-(2^23 - 1) (fixed point) or +-(2^31 - 1) (integers).
    function sat(int256 x, bool intOut) internal pure returns (int256) {
        int256 lim = intOut ? INT_MAX : FX_MAX;
        return x > lim ? lim : (x < -lim ? -lim : x);
    }

    /// @dev div_round(a, b) for b > 0: floor((a + floor(b / 2)) / b) (Solidity's `/`
    /// truncates toward zero, so negative numerators are floored explicitly).
    function divRound(int256 a, int256 b) internal pure returns (int256 q) {
        if (b <= 0) revert VerinferBadDivisor(b);
        int256 num = a + b / 2;
        q = num / b;
        if (num % b != 0 && num < 0) q -= 1;
    }
}
