// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IntMath} from "./IntMath.sol";
import {TensorProofs} from "./TensorProofs.sol";

/// @title OneStepVerifier
/// @notice Recomputes ONE element `j` (flat, C order) of one step's output from the operand
/// values it reads, proven against the operands' tensor roots, with exactly the integer
/// semantics of docs/runtime-spec.md (dense, matmul, conv2d, add/sub, mul, relu). The dispute
/// game compares the result with the claimer's value; it must bind every opening's `root` and
/// `n`, and the step parameters, to the trace root, the weights root and the program.
/// @dev Stateless: every function is pure. int256 arithmetic; `>>` on int256 is the floor.
contract OneStepVerifier {
    using TensorProofs for TensorProofs.Opening;

    /// @notice Dense (Gemm, MatMul by a constant): input [.., k], weight [n, k], bias [n].
    struct DenseParams {
        uint256 k; // reduction length
        uint256 n; // output features
        int256 shift; // s_x + s_w - s_o
        uint256 biasShift; // s_x + s_w - s_b
        bool hasBias;
        bool relu; // fused Relu
    }

    /// @notice MatMul of two activations: a [.., m, k] times b [.., k, n] (or b [k, n]).
    struct MatmulParams {
        uint256 m;
        uint256 k;
        uint256 n;
        bool bBatched; // b has a's batch dimensions (else b is one [k, n] matrix)
        int256 shift; // s_a + s_b - s_o
        bool relu;
    }

    /// @notice Conv (2-D): input [N, c, h, w], weight [m, c/group, kh, kw], bias [m].
    struct ConvParams {
        uint256 c;
        uint256 h;
        uint256 w;
        uint256 m;
        uint256 kh;
        uint256 kw;
        uint256 oh;
        uint256 ow;
        uint256[2] strides;
        uint256[2] dilations;
        uint256[2] pads; // top, left (bottom and right only shape oh, ow)
        uint256 group;
        int256 shift;
        uint256 biasShift;
        bool hasBias;
        bool relu;
    }

    /// @notice Element-wise with numpy broadcasting: shapes right-aligned to the output's
    /// rank (missing leading dimensions given as 1).
    struct EwParams {
        uint256[] outShape;
        uint256[] aShape;
        uint256[] bShape;
        int256 shiftA; // add: rescale of a; mul: the product's shift
        int256 shiftB; // add: rescale of b
        bool intOut; // the output is an integer tensor (saturates at 2^31 - 1)
    }

    /// @notice Pooling (2-D; a 1-D input [N, c, l] is read as [N, c, 1, l]): x [N, c, h, w].
    struct PoolParams {
        uint256 c;
        uint256 h;
        uint256 w;
        uint256 oh;
        uint256 ow;
        uint256[2] kernel;
        uint256[2] strides;
        uint256[2] dilations;
        uint256[2] pads; // top, left
        uint8 mode; // POOL_MAX, POOL_AVG (real positions) or POOL_AVG_INCLUDE_PAD
        bool intOut;
    }

    /// @notice PoolParams.mode of max_pool: the maximum of the real positions.
    uint8 public constant POOL_MAX = 0;
    /// @notice PoolParams.mode of avg_pool with count_include_pad = 0: divide by the real count.
    uint8 public constant POOL_AVG = 1;
    /// @notice PoolParams.mode of avg_pool with count_include_pad = 1: divide by kh * kw.
    uint8 public constant POOL_AVG_INCLUDE_PAD = 2;

    /// @notice The step parameters do not match the operand sizes, or `j` is out of range.
    error VerinferBadStepShape();

    /// @notice Recomputes element `j` of a dense step:
    /// `max?(sat(shr_round(sum_k x[r,k] w[o,k] + (b[o] << biasShift), shift)), 0)`,
    /// `r = j / n`, `o = j % n`.
    /// @param p the step's parameters
    /// @param j flat index of the output element
    /// @param x opening of input row r (values r*k .. r*k+k-1)
    /// @param w opening of weight row o (values o*k .. o*k+k-1)
    /// @param bias opening of bias value o (ignored unless `p.hasBias`)
    /// @return y the output element
    function dense(
        DenseParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata x,
        TensorProofs.Opening calldata w,
        TensorProofs.Opening calldata bias
    ) external pure returns (int256 y) {
        if (p.k == 0 || p.n == 0 || x.n % p.k != 0 || w.n != p.n * p.k) {
            revert VerinferBadStepShape();
        }
        if (j >= (x.n / p.k) * p.n) revert VerinferBadStepShape();
        x.verify();
        w.verify();
        int256 acc = IntMath.dot(x, (j / p.n) * p.k, 1, w, (j % p.n) * p.k, p.k);
        if (p.hasBias) acc += _bias(bias, j % p.n, p.n, p.biasShift);
        return _finish(acc, p.shift, p.relu, false);
    }

    /// @notice Recomputes element `j` of a matmul of activations:
    /// `max?(sat(shr_round(sum_t a[.., i, t] b[.., t, c], shift)), 0)`.
    /// @param p the step's parameters
    /// @param j flat index of the output element ([.., m, n])
    /// @param a opening of a's row i of j's batch
    /// @param b opening of b's column c (of j's batch when `p.bBatched`)
    /// @return y the output element
    function matmul(
        MatmulParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata a,
        TensorProofs.Opening calldata b
    ) external pure returns (int256 y) {
        uint256 mk = p.m * p.k;
        if (mk == 0 || p.n == 0 || a.n % mk != 0) revert VerinferBadStepShape();
        uint256 batch = j / (p.m * p.n);
        if (batch >= a.n / mk) revert VerinferBadStepShape();
        if (b.n != (p.bBatched ? a.n / mk : 1) * p.k * p.n) revert VerinferBadStepShape();
        a.verify();
        b.verify();
        uint256 aStart = batch * mk + ((j / p.n) % p.m) * p.k;
        uint256 bStart = (p.bBatched ? batch * p.k * p.n : 0) + j % p.n;
        int256 acc = IntMath.dot(b, bStart, p.n, a, aStart, p.k);
        return _finish(acc, p.shift, p.relu, false);
    }

    /// @notice Recomputes element `j` of a conv2d step ([N, m, oh, ow]): the dot product of
    /// its zero-padded window with output channel `mo`'s weights, then bias, shift,
    /// saturation and the fused Relu.
    /// @param p the step's parameters
    /// @param j flat index of the output element
    /// @param x opening of the in-bounds window values (increasing flat order)
    /// @param w opening of weights mo*K .. mo*K+K-1, K = c/group * kh * kw
    /// @param bias opening of bias value mo (ignored unless `p.hasBias`)
    /// @return y the output element
    function conv2d(
        ConvParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata x,
        TensorProofs.Opening calldata w,
        TensorProofs.Opening calldata bias
    ) external pure returns (int256 y) {
        uint256 chw = p.c * p.h * p.w;
        uint256 cg = p.group == 0 ? 0 : p.c / p.group;
        uint256 kk = cg * p.kh * p.kw;
        if (chw == 0 || kk == 0 || p.c % p.group != 0 || p.m % p.group != 0) {
            revert VerinferBadStepShape();
        }
        if (x.n % chw != 0 || w.n != p.m * kk) revert VerinferBadStepShape();
        if (j >= (x.n / chw) * p.m * p.oh * p.ow) revert VerinferBadStepShape();
        x.verify();
        w.verify();
        uint256 mo = (j / (p.oh * p.ow)) % p.m;
        int256 acc = _window(p, j, x, w);
        if (p.hasBias) acc += _bias(bias, mo, p.m, p.biasShift);
        return _finish(acc, p.shift, p.relu, false);
    }

    /// @notice Recomputes element `j` of add (`sign = 1`) or sub (`sign = -1`):
    /// `sat(shr_round(a, shiftA) + sign * shr_round(b, shiftB))`, operands broadcast.
    /// @param p shapes and shifts
    /// @param sign 1 for Add, -1 for Sub
    /// @param j flat index of the output element
    /// @param a opening of a's broadcast source of j
    /// @param b opening of b's broadcast source of j
    /// @return y the output element
    function add(
        EwParams calldata p,
        int256 sign,
        uint256 j,
        TensorProofs.Opening calldata a,
        TensorProofs.Opening calldata b
    ) external pure returns (int256 y) {
        if (sign != 1 && sign != -1) revert VerinferBadStepShape();
        (int256 va, int256 vb) = _operands(p, j, a, b);
        int256 sum = IntMath.shrRound(va, p.shiftA) + sign * IntMath.shrRound(vb, p.shiftB);
        return IntMath.sat(sum, p.intOut);
    }

    /// @notice Recomputes element `j` of mul: `sat(shr_round(a * b, shiftA))`, broadcast.
    /// @param p shapes and the shift (`shiftA`; `shiftB` is unused)
    /// @param j flat index of the output element
    /// @param a opening of a's broadcast source of j
    /// @param b opening of b's broadcast source of j (a constant factor or an activation)
    /// @return y the output element
    function mul(
        EwParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata a,
        TensorProofs.Opening calldata b
    ) external pure returns (int256 y) {
        (int256 va, int256 vb) = _operands(p, j, a, b);
        return IntMath.sat(IntMath.shrRound(va * vb, p.shiftA), p.intOut);
    }

    /// @notice Recomputes element `j` of relu: `sat(max(x[j], 0))`.
    /// @param j flat index of the output element (= of the input)
    /// @param x opening of value j of the input
    /// @param intOut the output is an integer tensor
    /// @return y the output element
    function relu(uint256 j, TensorProofs.Opening calldata x, bool intOut)
        external
        pure
        returns (int256 y)
    {
        x.verify();
        (int256 v,) = x.read(0, j);
        return IntMath.sat(v > 0 ? v : int256(0), intOut);
    }

    /// @notice Recomputes element `j` of max_pool / avg_pool ([N, c, oh, ow]): the maximum,
    /// or `div_round(sum, count)`, over the window's real (non-padding) positions.
    /// @param p the step's parameters
    /// @param j flat index of the output element
    /// @param x opening of the window's real positions (increasing flat order)
    /// @return y the output element
    function pool2d(PoolParams calldata p, uint256 j, TensorProofs.Opening calldata x)
        external
        pure
        returns (int256 y)
    {
        uint256 hw = p.h * p.w;
        if (hw == 0 || p.c == 0 || x.n % (p.c * hw) != 0 || p.mode > POOL_AVG_INCLUDE_PAD) {
            revert VerinferBadStepShape();
        }
        if (j >= (x.n / hw) * p.oh * p.ow) revert VerinferBadStepShape();
        x.verify();
        (int256 acc, uint256 count) = _pool(p, j, x);
        if (count == 0) revert VerinferBadStepShape(); // the compiler never emits such windows
        if (p.mode == POOL_MAX) return IntMath.sat(acc, p.intOut);
        if (p.mode == POOL_AVG_INCLUDE_PAD) count = p.kernel[0] * p.kernel[1];
        return IntMath.sat(IntMath.divRound(acc, int256(count)), p.intOut);
    }

    /// @notice Recomputes element `j` of reduce_sum / reduce_mean over the trailing axes
    /// (GlobalAveragePool's case): the sum, or `div_round(sum, n)`, of x[j*n .. j*n+n).
    /// @param n the number of values reduced into one output (product of the reduced axes)
    /// @param mean reduce_mean (else reduce_sum)
    /// @param j flat index of the output element
    /// @param x opening of values j*n .. j*n+n-1
    /// @param intOut the output is an integer tensor
    /// @return y the output element
    function reduceTrailing(
        uint256 n,
        bool mean,
        uint256 j,
        TensorProofs.Opening calldata x,
        bool intOut
    ) external pure returns (int256 y) {
        if (n == 0 || x.n % n != 0 || j >= x.n / n) revert VerinferBadStepShape();
        x.verify();
        int256[] memory v = x.gather(j * n, 1, n);
        int256 acc;
        for (uint256 t; t < n; ++t) {
            acc += v[t];
        }
        return IntMath.sat(mean ? IntMath.divRound(acc, int256(n)) : acc, intOut);
    }

    /// @notice Recomputes element `j` of a reshape (a copy: C order keeps the flat index).
    /// @param j flat index of the output element (= of the input)
    /// @param x opening of value j of the input
    /// @return y the output element
    function reshape(uint256 j, TensorProofs.Opening calldata x) external pure returns (int256 y) {
        x.verify();
        (y,) = x.read(0, j);
    }

    // ---- helpers ---------------------------------------------------------------------

    /// @dev The bias value o shifted up by `shift`, after checking its opening.
    function _bias(TensorProofs.Opening calldata bias, uint256 o, uint256 n, uint256 shift)
        private
        pure
        returns (int256)
    {
        if (bias.n != n) revert VerinferBadStepShape();
        bias.verify();
        (int256 b,) = bias.read(0, o);
        return b << shift;
    }

    /// @dev Loop state of a conv window (in memory: the stack cannot hold it all).
    struct Window {
        uint256 base; // flat index of x[batch, first channel of mo's group, 0, 0]
        uint256 y0; // padded row of the window's top-left tap
        uint256 x0; // padded column of the window's top-left tap
        uint256 row; // flat index of x[.., ih, 0] for the current kernel row
        uint256 wi; // index in `weights` of the next weight
        uint256 px; // read cursor into x
        int256[] weights; // output channel mo's weights, [c/group, kh, kw]
        int256 acc;
    }

    /// @dev Conv window sum of output j: input channels of mo's group, kernel rows, columns.
    function _window(
        ConvParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata x,
        TensorProofs.Opening calldata w
    ) private pure returns (int256) {
        Window memory s;
        uint256 cg = p.c / p.group;
        {
            uint256 mo = (j / (p.oh * p.ow)) % p.m;
            s.base = ((j / (p.m * p.oh * p.ow)) * p.c + (mo / (p.m / p.group)) * cg) * p.h * p.w;
            s.weights = w.gather(mo * cg * p.kh * p.kw, 1, cg * p.kh * p.kw);
        }
        s.y0 = ((j / p.ow) % p.oh) * p.strides[0];
        s.x0 = (j % p.ow) * p.strides[1];
        for (uint256 t; t < cg * p.kh; ++t) {
            // t = ci * kh + a: input channel ci of the group, kernel row a
            uint256 ih = s.y0 + (t % p.kh) * p.dilations[0]; // padded coordinate
            if (ih >= p.pads[0] && ih - p.pads[0] < p.h) {
                s.row = s.base + ((t / p.kh) * p.h + ih - p.pads[0]) * p.w;
                _row(p, x, s);
            } else {
                s.wi += p.kw; // a padding row: its taps read zeros
            }
        }
        return s.acc;
    }

    /// @dev One kernel row of a conv window (its input row starts at `s.row`).
    function _row(
        ConvParams calldata p,
        TensorProofs.Opening calldata x,
        Window memory s
    ) private pure {
        for (uint256 b; b < p.kw; ++b) {
            uint256 iw = s.x0 + b * p.dilations[1];
            if (iw >= p.pads[1] && iw - p.pads[1] < p.w) {
                int256 xv;
                (xv, s.px) = x.read(s.px, s.row + iw - p.pads[1]);
                s.acc += xv * s.weights[s.wi];
            }
            ++s.wi;
        }
    }

    /// @dev The two broadcast operands of output element j, after checking their openings.
    function _operands(
        EwParams calldata p,
        uint256 j,
        TensorProofs.Opening calldata a,
        TensorProofs.Opening calldata b
    ) private pure returns (int256 va, int256 vb) {
        uint256 ia = _source(p.outShape, p.aShape, j, a.n);
        uint256 ib = _source(p.outShape, p.bShape, j, b.n);
        a.verify();
        b.verify();
        (va,) = a.read(0, ia);
        (vb,) = b.read(0, ib);
    }

    /// @dev Flat index in an operand of shape `s` (broadcast to `out`) of output element j;
    /// checks that the shapes broadcast, that `s` has `n` values and that j is in range.
    function _source(uint256[] calldata out, uint256[] calldata s, uint256 j, uint256 n)
        private
        pure
        returns (uint256 idx)
    {
        if (s.length != out.length) revert VerinferBadStepShape();
        uint256 rem = j;
        uint256 stride = 1;
        for (uint256 d = out.length; d > 0; --d) {
            uint256 od = out[d - 1];
            uint256 sd = s[d - 1];
            if (od == 0 || (sd != od && sd != 1)) revert VerinferBadStepShape();
            if (sd != 1) idx += (rem % od) * stride;
            rem /= od;
            stride *= sd;
        }
        if (rem != 0 || stride != n) revert VerinferBadStepShape();
    }

    /// @dev shr_round, saturation, then the fused Relu.
    function _finish(int256 acc, int256 shift, bool withRelu, bool intOut)
        private
        pure
        returns (int256 y)
    {
        y = IntMath.sat(IntMath.shrRound(acc, shift), intOut);
        if (withRelu && y < 0) y = 0;
    }

    /// @dev Max (mode POOL_MAX) or sum of the real positions of output j's pooling window,
    /// and how many there are.
    function _pool(PoolParams calldata p, uint256 j, TensorProofs.Opening calldata x)
        private
        pure
        returns (int256 acc, uint256 count)
    {
        uint256 pos;
        acc = p.mode == POOL_MAX ? type(int256).min : int256(0);
        for (uint256 t; t < p.kernel[0] * p.kernel[1]; ++t) {
            (bool real, uint256 i) = _tap(p, j, t);
            if (!real) continue;
            int256 v;
            (v, pos) = x.read(pos, i);
            if (p.mode == POOL_MAX) {
                if (v > acc) acc = v;
            } else {
                acc += v;
            }
            ++count;
        }
    }

    /// @dev Tap t (row-major in the kernel) of output j's pooling window: whether it is a
    /// real position, and then its flat index in x.
    function _tap(PoolParams calldata p, uint256 j, uint256 t)
        private
        pure
        returns (bool real, uint256 index)
    {
        uint256 ih = ((j / p.ow) % p.oh) * p.strides[0] + (t / p.kernel[1]) * p.dilations[0];
        uint256 iw = (j % p.ow) * p.strides[1] + (t % p.kernel[1]) * p.dilations[1];
        if (ih < p.pads[0] || ih - p.pads[0] >= p.h || iw < p.pads[1] || iw - p.pads[1] >= p.w) {
            return (false, 0);
        }
        // x[batch, channel, ih - top, iw - left]; (batch, channel) = j / (oh * ow)
        index = ((j / (p.oh * p.ow)) * p.h + ih - p.pads[0]) * p.w + iw - p.pads[1];
        return (true, index);
    }
}
