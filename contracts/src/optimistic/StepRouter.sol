// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {OneStepVerifier} from "./OneStepVerifier.sol";
import {OneStepVerifierExt} from "./OneStepVerifierExt.sol";
import {StepDescriptors} from "./StepDescriptors.sol";
import {TensorProofs} from "./TensorProofs.sol";

/// @title StepRouter
/// @notice Recomputes element `j` of a step from its descriptor: builds the
/// OneStepVerifier parameters from the descriptor alone (never from the prover) and calls
/// the verifier's function for the descriptor's op; ops from OP_LUT on go, descriptor and
/// all, to OneStepVerifierExt. `openings[i]` opens operand `i`; the
/// caller (DisputeGame) has bound each opening's root and size to the operand.
/// @dev A separate contract so that DisputeGame and it each stay under EIP-170's 24,576 bytes.
contract StepRouter {
    /// @notice The one-step verifier this router calls.
    OneStepVerifier public immutable verifier;
    /// @notice The verifier of lookup tables, rows (softmax, layer norm) and shape ops.
    OneStepVerifierExt public immutable ext;

    /// @notice The descriptor's op has no on-chain rule (or its attributes are malformed).
    error VerinferUnsupportedStep(uint8 op);

    /// @param verifier_ the deployed OneStepVerifier
    /// @param ext_ the deployed OneStepVerifierExt
    constructor(OneStepVerifier verifier_, OneStepVerifierExt ext_) {
        verifier = verifier_;
        ext = ext_;
    }

    /// @notice Element `j` (flat, C order) of the step described by `d`, recomputed from the
    /// operand values that `openings` prove.
    /// @param d the step's descriptor (checked against stepsRoot by the caller)
    /// @param j flat index of the output element
    /// @param o one opening per operand of `d`, in operand order
    /// @return y the recomputed element
    function recompute(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) external view returns (int256 y) {
        uint8 op = d.op;
        if (op == StepDescriptors.OP_DENSE) return _dense(d, j, o);
        if (op == StepDescriptors.OP_MATMUL) return _matmul(d, j, o);
        if (op == StepDescriptors.OP_CONV2D) return _conv(d, j, o);
        if (op == StepDescriptors.OP_ADD) {
            _need(d, 2, 3);
            return verifier.add(_ew(d, d.attrs[0], d.attrs[1]), d.attrs[2], j, o[0], o[1]);
        }
        if (op == StepDescriptors.OP_MUL) {
            _need(d, 2, 1);
            return verifier.mul(_ew(d, d.attrs[0], 0), j, o[0], o[1]);
        }
        if (op == StepDescriptors.OP_RELU) {
            _need(d, 1, 0);
            return verifier.relu(j, o[0], d.intOut);
        }
        if (op == StepDescriptors.OP_POOL2D) return _pool(d, j, o);
        if (op == StepDescriptors.OP_REDUCE) {
            // attrs: [number of trailing axes reduced, mean (1) or sum (0)]
            _need(d, 1, 2);
            uint32[] calldata xs = d.operands[0].shape;
            uint256 axes = uint256(d.attrs[0]);
            if (axes > xs.length) revert VerinferUnsupportedStep(op);
            uint256 n = 1;
            for (uint256 i = xs.length - axes; i < xs.length; ++i) {
                n *= xs[i];
            }
            return verifier.reduceTrailing(n, d.attrs[1] != 0, j, o[0], d.intOut);
        }
        if (op == StepDescriptors.OP_RESHAPE) {
            _need(d, 1, 0);
            return verifier.reshape(j, o[0]);
        }
        if (op >= StepDescriptors.OP_LUT && op <= StepDescriptors.OP_TILE) {
            return ext.recompute(d, j, o);
        }
        revert VerinferUnsupportedStep(op);
    }

    /// @dev Reverts unless `d` has `operands` operands (or one more, an optional bias, for
    /// dense and conv) and `attrs` attributes.
    function _need(StepDescriptors.Descriptor calldata d, uint256 operands, uint256 attrs)
        private
        pure
    {
        if (d.operands.length != operands || d.attrs.length != attrs) {
            revert VerinferUnsupportedStep(d.op);
        }
    }

    /// @dev attrs: [shift, biasShift]; operands x, w [n, k], optional bias [n].
    function _dense(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private view returns (int256) {
        bool hasBias = d.operands.length == 3;
        if (!hasBias) _need(d, 2, 2);
        if (d.attrs.length != 2 || d.operands[1].shape.length != 2) {
            revert VerinferUnsupportedStep(d.op);
        }
        uint32[] calldata ws = d.operands[1].shape;
        OneStepVerifier.DenseParams memory p = OneStepVerifier.DenseParams({
            k: ws[1],
            n: ws[0],
            shift: d.attrs[0],
            biasShift: uint256(d.attrs[1]),
            hasBias: hasBias,
            relu: d.relu
        });
        TensorProofs.Opening memory none;
        if (hasBias) return verifier.dense(p, j, o[0], o[1], o[2]);
        return verifier.dense(p, j, o[0], o[1], none);
    }

    /// @dev attrs: [shift]; operands a [.., m, k], b [.., k, n] or [k, n].
    function _matmul(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private view returns (int256) {
        _need(d, 2, 1);
        uint32[] calldata a = d.operands[0].shape;
        uint32[] calldata b = d.operands[1].shape;
        if (a.length < 2 || b.length < 2) revert VerinferUnsupportedStep(d.op);
        OneStepVerifier.MatmulParams memory p = OneStepVerifier.MatmulParams({
            m: a[a.length - 2],
            k: a[a.length - 1],
            n: b[b.length - 1],
            bBatched: b.length > 2,
            shift: d.attrs[0],
            relu: d.relu
        });
        return verifier.matmul(p, j, o[0], o[1]);
    }

    /// @dev attrs: [strideH, strideW, dilationH, dilationW, padTop, padLeft, group, shift,
    /// biasShift]; operands x [N, c, h, w], w [m, c/group, kh, kw], optional bias [m].
    function _conv(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private view returns (int256) {
        bool hasBias = d.operands.length == 3;
        if (!hasBias) _need(d, 2, 9);
        if (d.attrs.length != 9 || d.operands[0].shape.length != 4) {
            revert VerinferUnsupportedStep(d.op);
        }
        if (d.operands[1].shape.length != 4 || d.shape.length != 4) {
            revert VerinferUnsupportedStep(d.op);
        }
        OneStepVerifier.ConvParams memory p;
        {
            uint32[] calldata xs = d.operands[0].shape;
            uint32[] calldata ws = d.operands[1].shape;
            (p.c, p.h, p.w) = (xs[1], xs[2], xs[3]);
            (p.m, p.kh, p.kw) = (ws[0], ws[2], ws[3]);
            (p.oh, p.ow) = (d.shape[2], d.shape[3]);
        }
        int256[] calldata a = d.attrs;
        p.strides = [uint256(a[0]), uint256(a[1])];
        p.dilations = [uint256(a[2]), uint256(a[3])];
        p.pads = [uint256(a[4]), uint256(a[5])];
        p.group = uint256(a[6]);
        p.shift = a[7];
        p.biasShift = uint256(a[8]);
        p.hasBias = hasBias;
        p.relu = d.relu;
        TensorProofs.Opening memory none;
        if (hasBias) return verifier.conv2d(p, j, o[0], o[1], o[2]);
        return verifier.conv2d(p, j, o[0], o[1], none);
    }

    /// @dev attrs: [kh, kw, strideH, strideW, dilationH, dilationW, padTop, padLeft, mode];
    /// operand x [N, c, h, w] or [N, c, l] (read as h = 1).
    function _pool(
        StepDescriptors.Descriptor calldata d,
        uint256 j,
        TensorProofs.Opening[] calldata o
    ) private view returns (int256) {
        _need(d, 1, 9);
        uint32[] calldata xs = d.operands[0].shape;
        uint32[] calldata os = d.shape;
        if (xs.length < 3 || xs.length > 4 || os.length != xs.length) {
            revert VerinferUnsupportedStep(d.op);
        }
        int256[] calldata a = d.attrs;
        OneStepVerifier.PoolParams memory p;
        (p.c, p.h, p.w) = (xs[1], xs.length == 4 ? xs[2] : 1, xs[xs.length - 1]);
        (p.oh, p.ow) = (os.length == 4 ? os[2] : 1, os[os.length - 1]);
        p.kernel = [uint256(a[0]), uint256(a[1])];
        p.strides = [uint256(a[2]), uint256(a[3])];
        p.dilations = [uint256(a[4]), uint256(a[5])];
        p.pads = [uint256(a[6]), uint256(a[7])];
        p.mode = uint8(uint256(a[8]));
        p.intOut = d.intOut;
        return verifier.pool2d(p, j, o[0]);
    }

    /// @dev Element-wise parameters: operand shapes right-aligned to the output's rank.
    function _ew(StepDescriptors.Descriptor calldata d, int256 shiftA, int256 shiftB)
        private
        pure
        returns (OneStepVerifier.EwParams memory p)
    {
        uint256 r = d.shape.length;
        p.outShape = new uint256[](r);
        for (uint256 i; i < r; ++i) {
            p.outShape[i] = d.shape[i];
        }
        p.aShape = _aligned(d, d.operands[0].shape, r);
        p.bShape = _aligned(d, d.operands[1].shape, r);
        p.shiftA = shiftA;
        p.shiftB = shiftB;
        p.intOut = d.intOut;
    }

    /// @dev `s` with leading 1s up to rank `r`.
    function _aligned(StepDescriptors.Descriptor calldata d, uint32[] calldata s, uint256 r)
        private
        pure
        returns (uint256[] memory out)
    {
        if (s.length > r) revert VerinferUnsupportedStep(d.op);
        out = new uint256[](r);
        for (uint256 i; i < r; ++i) {
            out[i] = i < r - s.length ? 1 : s[i - (r - s.length)];
        }
    }
}
