// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IntMath} from "./IntMath.sol";
import {StepDescriptors} from "./StepDescriptors.sol";
import {TensorProofs} from "./TensorProofs.sol";

/// @title OneStepVerifierExt
/// @notice Recomputes ONE element `j` (flat, C order) of a step whose op is a lookup table,
/// leaky_relu, clip, where, cast, argmax, softmax, layernorm, a reduce over inner axes, or a
/// shape op (transpose, slice, gather, concat, expand, tile), with exactly the integer rules of
/// docs/runtime-spec.md and the runtime's kernels. Unlike OneStepVerifier it reads its
/// parameters from the step descriptor itself (docs/optimistic.md, "Step descriptors"), so
/// StepRouter only forwards. The caller (DisputeGame) binds every opening's `root` and `n` to
/// the descriptor's operands; openings of operands the element does not read may carry no chunks.
/// @dev Stateless: every function is pure. A separate contract so that each stays under
/// EIP-170's 24,576 bytes. int256 arithmetic; `>>` on int256 is the floor.
contract OneStepVerifierExt {
    using TensorProofs for TensorProofs.Opening;

    /// @notice LeakyRelu's slope is `alpha / 2^16`.
    uint256 internal constant ALPHA_SCALE = 16;
    /// @notice Layer norm's normalized values are `q / 2^16`.
    uint256 internal constant NORM_SCALE = 16;

    /// @notice Cast modes (attrs[0] of OP_CAST): copy, truncate toward zero, to bool.
    uint256 internal constant CAST_COPY = 0;
    uint256 internal constant CAST_TRUNCATE = 1;
    uint256 internal constant CAST_BOOL = 2;

    /// @notice The descriptor's shapes, attributes or openings are inconsistent, or `j` is
    /// out of range.
    error VerinferBadStepShape();
    /// @notice The descriptor's op is not one this contract recomputes.
    error VerinferUnsupportedStep(uint8 op);
    /// @notice A gather index is outside the gathered axis.
    error VerinferIndexOutOfRange(int256 index);

    /// @notice Element `j` of the step described by `d`, recomputed from the operand values
    /// that `o` proves, then saturated as the runtime saturates every step output.
    /// @param d the step's descriptor (op 10 and above)
    /// @param j flat index of the output element
    /// @param o one opening per operand of `d`, in operand order (root and size bound by the
    /// caller; only the openings of operands element `j` reads are verified)
    /// @return y the recomputed element
    function recompute(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) external pure returns (int256 y) {
        uint256 nOps = d.operands.length;
        if (o.length != nOps || j >= StepDescriptors.size(d.shape)) revert VerinferBadStepShape();
        for (uint256 i; i < nOps; ++i) {
            if (o[i].n != StepDescriptors.size(d.operands[i].shape)) revert VerinferBadStepShape();
        }
        uint8 op = d.op;
        if (op == StepDescriptors.OP_LUT) {
            _need(d, 2, 3);
            o[1].verify();
            y = _lookup(o[1], _same(d, o[0], j), d.attrs[0], d.attrs[1], d.attrs[2]);
        } else if (op <= StepDescriptors.OP_CAST && op >= StepDescriptors.OP_LEAKY_RELU) {
            y = _unary(d, j, o);
        } else if (op == StepDescriptors.OP_WHERE) {
            _need(d, 3, 2);
            int256 a = _at(o[1], _source(d.shape, d.operands[1].shape, j, false));
            int256 b = _at(o[2], _source(d.shape, d.operands[2].shape, j, false));
            bool cond = _at(o[0], _source(d.shape, d.operands[0].shape, j, false)) != 0;
            y = cond ? IntMath.shrRound(a, d.attrs[0]) : IntMath.shrRound(b, d.attrs[1]);
        } else if (op == StepDescriptors.OP_ARGMAX || op == StepDescriptors.OP_REDUCE_AXES) {
            y = _reduce(d, j, o[0]);
        } else if (op == StepDescriptors.OP_SOFTMAX) {
            y = _softmax(d, j, o);
        } else if (op == StepDescriptors.OP_LAYERNORM) {
            y = _layernorm(d, j, o);
        } else if (op == StepDescriptors.OP_CONCAT) {
            y = _concat(d, j, o);
        } else if (op == StepDescriptors.OP_GATHER) {
            y = _gather(d, j, o);
        } else if (op >= StepDescriptors.OP_TRANSPOSE && op <= StepDescriptors.OP_TILE) {
            y = _at(o[0], _copySource(d, j));
        } else {
            revert VerinferUnsupportedStep(op);
        }
        return IntMath.sat(y, d.intOut);
    }

    // ---- element-wise ------------------------------------------------------------------

    /// @dev leaky_relu [alpha], clip [lo, hi], cast [mode, shift] of x[j].
    function _unary(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private pure returns (int256 y) {
        uint8 op = d.op;
        _need(d, 1, op == StepDescriptors.OP_LEAKY_RELU ? 1 : 2);
        int256 x = _same(d, o[0], j);
        int256[] calldata a = d.attrs;
        if (op == StepDescriptors.OP_LEAKY_RELU) {
            return x >= 0 ? x : IntMath.shrRound(x * a[0], int256(ALPHA_SCALE));
        }
        if (op == StepDescriptors.OP_CLIP) {
            y = x < a[0] ? a[0] : x;
            return y > a[1] ? a[1] : y;
        }
        uint256 mode = uint256(a[0]);
        if (mode == CAST_COPY) return x;
        if (mode == CAST_BOOL) return x != 0 ? int256(1) : int256(0);
        if (mode != CAST_TRUNCATE) revert VerinferUnsupportedStep(op);
        if (a[1] <= 0) return x << uint256(-a[1]);
        y = (x < 0 ? -x : x) >> uint256(a[1]);
        return x < 0 ? -y : y;
    }

    /// @dev Table lookup with linear interpolation (tables.lookup): T[i] + shr_round((T[i+1]
    /// - T[i]) * frac, shift), clamped to T[0] / T[intervals] outside the grid. `t` verified.
    function _lookup(
        TensorProofs.Opening calldata t,
        int256 x,
        int256 lo,
        int256 shift,
        int256 intervals
    ) private pure returns (int256) {
        if (shift < 0 || shift > 64 || intervals < 1 || t.n != uint256(intervals) + 1) {
            revert VerinferBadStepShape();
        }
        int256 u = x - lo;
        if (u < 0) return _find(t, 0);
        if (u >= intervals << uint256(shift)) return _find(t, uint256(intervals));
        uint256 i = uint256(u >> uint256(shift));
        int256 left = _find(t, i);
        int256 right = _find(t, i + 1);
        return left + IntMath.shrRound((right - left) * (u - (int256(i) << uint256(shift))), shift);
    }

    // ---- rows: argmax, reduce, softmax, layer norm -------------------------------------

    /// @dev For axes [a, b) of shape `s`: their size n and the size `inner` of the axes
    /// after them. Row `q` of a reduction over them (output element q) holds the values
    /// x[(q / inner) * n * inner + q % inner + t * inner], t < n.
    function _row(uint32[] calldata s, uint256 a, uint256 b)
        private
        pure
        returns (uint256 n, uint256 inner)
    {
        if (a >= b || b > s.length) revert VerinferBadStepShape();
        n = 1;
        inner = 1;
        for (uint256 i = a; i < s.length; ++i) {
            if (i < b) n *= s[i];
            else inner *= s[i];
        }
    }

    /// @dev argmax [axis, selectLast] (an integer index) or reduce [firstAxis, count, mean].
    function _reduce(StepDescriptors.Descriptor calldata d, uint256 j, TensorProofs.Opening calldata x)
        private
        pure
        returns (int256 y)
    {
        bool argmax = d.op == StepDescriptors.OP_ARGMAX;
        _need(d, 1, argmax ? 2 : 3);
        int256[] calldata a = d.attrs;
        uint256 first = uint256(a[0]);
        uint256 last = argmax ? first + 1 : first + uint256(a[1]);
        (uint256 n, uint256 inner) = _row(d.operands[0].shape, first, last);
        x.verify();
        int256[] memory v = x.gather((j / inner) * n * inner + j % inner, inner, n);
        if (!argmax) {
            for (uint256 t; t < n; ++t) {
                y += v[t];
            }
            return a[2] != 0 ? IntMath.divRound(y, int256(n)) : y;
        }
        bool lastIndex = a[1] != 0;
        int256 best = v[0];
        for (uint256 t = 1; t < n; ++t) {
            if (v[t] > best || (lastIndex && v[t] == best)) (best, y) = (v[t], int256(t));
        }
    }

    /// @dev softmax [lo, shift, intervals, axis, outScale]; operands x, exp table:
    /// e = exp_table(x - max); y = div_round(e_j << outScale, sum e) along the axis.
    function _softmax(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private pure returns (int256 y) {
        _need(d, 2, 5);
        int256[] calldata a = d.attrs;
        uint256 axis = uint256(a[3]);
        (uint256 n, uint256 inner) = _row(d.operands[0].shape, axis, axis + 1);
        o[0].verify();
        o[1].verify();
        // j's row along the axis: same outer and inner coordinates, every position t
        int256[] memory v = o[0].gather((j / (n * inner)) * n * inner + j % inner, inner, n);
        int256 m = v[0];
        for (uint256 t = 1; t < n; ++t) {
            if (v[t] > m) m = v[t];
        }
        int256 total;
        uint256 own = (j / inner) % n;
        for (uint256 t; t < n; ++t) {
            int256 e = _lookup(o[1], v[t] - m, a[0], a[1], a[2]);
            total += e;
            if (t == own) y = e;
        }
        return IntMath.divRound(y << uint256(a[4]), total);
    }

    /// @dev layernorm [axis, eps, betaShift, shift]; operands x, gamma [n], beta [n]:
    /// mean, variance (div_round), r = max(isqrt(var + eps), 1), norm = div_round((x - mean)
    /// << 16, r), y = shr_round(norm * gamma + (beta << betaShift), shift).
    function _layernorm(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private pure returns (int256) {
        _need(d, 3, 4);
        int256[] calldata a = d.attrs;
        uint32[] calldata s = d.operands[0].shape;
        (uint256 n,) = _row(s, uint256(a[0]), s.length);
        if (o[1].n != n || o[2].n != n) revert VerinferBadStepShape();
        o[0].verify();
        int256 norm = _normalized(o[0].gather((j / n) * n, 1, n), j % n, a[1]);
        uint256 c = j % n;
        return IntMath.shrRound(norm * _at(o[1], c) + (_at(o[2], c) << uint256(a[2])), a[3]);
    }

    /// @dev Layer norm's normalized value c of row `v`: div_round((v[c] - mean) << 16, r),
    /// mean = div_round(sum, n), r = max(isqrt(div_round(sum (x - mean)^2, n) + eps), 1).
    function _normalized(int256[] memory v, uint256 c, int256 eps) private pure returns (int256) {
        int256 mean;
        uint256 n = v.length;
        for (uint256 t; t < n; ++t) {
            mean += v[t];
        }
        mean = IntMath.divRound(mean, int256(n));
        int256 var_;
        for (uint256 t; t < n; ++t) {
            var_ += (v[t] - mean) * (v[t] - mean);
        }
        var_ = IntMath.divRound(var_, int256(n)) + eps;
        if (var_ < 0) revert VerinferBadStepShape();
        int256 r = int256(Math.sqrt(uint256(var_)));
        if (r < 1) r = 1;
        return IntMath.divRound((v[c] - mean) << NORM_SCALE, r);
    }

    // ---- shape ops ---------------------------------------------------------------------

    /// @dev concat [axis, shift_0 .. shift_{k-1}]: the operand holding output j's position
    /// along the axis, shifted by its shift.
    function _concat(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private pure returns (int256) {
        uint256 k = d.operands.length;
        if (k == 0 || d.attrs.length != k + 1) revert VerinferUnsupportedStep(d.op);
        uint256 axis = uint256(d.attrs[0]);
        (uint256 total, uint256 inner) = _row(d.shape, axis, axis + 1);
        uint256 outer = j / (total * inner);
        uint256 pos = (j / inner) % total; // then relative to operand p
        for (uint256 p; p < k; ++p) {
            if (d.operands[p].shape.length != d.shape.length) revert VerinferBadStepShape();
            uint256 dim = d.operands[p].shape[axis];
            if (pos < dim) {
                return IntMath.shrRound(
                    _at(o[p], (outer * dim + pos) * inner + j % inner), d.attrs[p + 1]
                );
            }
            pos -= dim;
        }
        revert VerinferBadStepShape();
    }

    /// @dev gather [axis]; operands data, indices: out = data[.., indices[t], ..].
    function _gather(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private pure returns (int256) {
        _need(d, 2, 1);
        uint32[] calldata s = d.operands[0].shape;
        uint256 axis = uint256(d.attrs[0]);
        (uint256 dim, uint256 inner) = _row(s, axis, axis + 1);
        uint256 nIdx = o[1].n;
        uint256 rest = j / inner;
        int256 idx = _at(o[1], rest % nIdx);
        if (idx < 0) idx += int256(dim);
        if (idx < 0 || idx >= int256(dim)) revert VerinferIndexOutOfRange(idx);
        return _at(o[0], ((rest / nIdx) * dim + uint256(idx)) * inner + j % inner);
    }

    /// @dev Flat index in the input of output j for transpose [perm], slice [starts, steps],
    /// expand [] and tile [].
    function _copySource(StepDescriptors.Descriptor calldata d, uint256 j)
        private
        pure
        returns (uint256)
    {
        uint8 op = d.op;
        if (op == StepDescriptors.OP_EXPAND || op == StepDescriptors.OP_TILE) {
            _need(d, 1, 0);
            return _source(d.shape, d.operands[0].shape, j, op == StepDescriptors.OP_TILE);
        }
        uint256 r = d.operands[0].shape.length;
        _need(d, 1, op == StepDescriptors.OP_SLICE ? 2 * r : r);
        if (d.shape.length != r) revert VerinferBadStepShape();
        return _permuted(d, j, _strides(d.operands[0].shape), op == StepDescriptors.OP_SLICE);
    }

    /// @dev Input index of output j: transpose (input axis perm[k] takes output coordinate k)
    /// or slice (input coordinate k is starts[k] + c_k * steps[k], in range).
    function _permuted(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        uint256[] memory stride,
        bool slice
    ) private pure returns (uint256 idx) {
        uint256 r = stride.length;
        for (uint256 k = r; k > 0; --k) {
            uint256 c = j % d.shape[k - 1];
            j /= d.shape[k - 1];
            if (slice) {
                int256 coord = d.attrs[k - 1] + int256(c) * d.attrs[r + k - 1];
                if (coord < 0 || coord >= int256(uint256(d.operands[0].shape[k - 1]))) {
                    revert VerinferBadStepShape();
                }
                idx += uint256(coord) * stride[k - 1];
            } else {
                uint256 p = uint256(d.attrs[k - 1]);
                if (p >= r || d.operands[0].shape[p] != d.shape[k - 1]) revert VerinferBadStepShape();
                idx += c * stride[p];
            }
        }
    }

    /// @dev C-order strides of shape `s`.
    function _strides(uint32[] calldata s) private pure returns (uint256[] memory stride) {
        stride = new uint256[](s.length);
        uint256 acc = 1;
        for (uint256 k = s.length; k > 0; --k) {
            stride[k - 1] = acc;
            acc *= s[k - 1];
        }
    }

    // ---- helpers -----------------------------------------------------------------------

    /// @dev Flat index in an operand of shape `s` (right-aligned to `out`) of output j, with
    /// numpy broadcasting (dimensions of 1), or tiling (`tile`: coordinate mod dimension).
    function _source(uint32[] calldata out, uint32[] calldata s, uint256 j, bool tile)
        private
        pure
        returns (uint256 idx)
    {
        uint256 r = out.length;
        if (s.length > r) revert VerinferBadStepShape();
        uint256 lead = r - s.length;
        uint256 rem = j;
        uint256 stride = 1;
        for (uint256 k = r; k > lead; --k) {
            uint256 od = out[k - 1];
            uint256 sd = s[k - 1 - lead];
            uint256 c = rem % od;
            rem /= od;
            if (tile) {
                if (sd == 0 || od % sd != 0) revert VerinferBadStepShape();
                idx += (c % sd) * stride;
            } else if (sd != 1) {
                if (sd != od) revert VerinferBadStepShape();
                idx += c * stride;
            }
            stride *= sd;
        }
    }

    /// @dev Value j of an operand of the output's own size (element-wise ops).
    function _same(
        StepDescriptors.Descriptor calldata d,
        TensorProofs.Opening calldata x,
        uint256 j
    ) private pure returns (int256) {
        if (x.n != StepDescriptors.size(d.shape)) revert VerinferBadStepShape();
        return _at(x, j);
    }

    /// @dev Value i of opening `x`, after verifying it.
    function _at(TensorProofs.Opening calldata x, uint256 i) private pure returns (int256 v) {
        x.verify();
        (v,) = x.read(0, i);
    }

    /// @dev Value i of an already verified opening, its chunk found by binary search: a
    /// softmax row reads table entries in no particular order, from up to ~50 chunks.
    function _find(TensorProofs.Opening calldata x, uint256 i) private pure returns (int256) {
        if (i >= x.n) revert TensorProofs.VerinferValueNotOpened(i);
        uint256 c = i >> 7; // i / VALUES_PER_CHUNK
        uint256 m = x.chunkIds.length;
        uint256 lo;
        uint256 hi = m;
        while (lo < hi) {
            uint256 mid = (lo + hi) >> 1;
            if (x.chunkIds[mid] < c) lo = mid + 1;
            else hi = mid;
        }
        if (lo == m || x.chunkIds[lo] != c) revert TensorProofs.VerinferValueNotOpened(i);
        uint256 off = (i & 127) << 2; // 4 * (i % VALUES_PER_CHUNK)
        return int256(int32(uint32(bytes4(x.chunks[lo][off:off + 4]))));
    }

    /// @dev Reverts unless `d` has `operands` operands and `attrs` attributes.
    function _need(StepDescriptors.Descriptor calldata d, uint256 operands, uint256 attrs)
        private
        pure
    {
        if (d.operands.length != operands || d.attrs.length != attrs) {
            revert VerinferUnsupportedStep(d.op);
        }
    }
}
