// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TensorProofs} from "../optimistic/TensorProofs.sol";

/// @title TensorProofsHarness (tests only)
/// @notice Exposes the TensorProofs library so tests can check it against the Python prover.
contract TensorProofsHarness {
    using TensorProofs for TensorProofs.Opening;

    /// @notice Verifies `o` (reverts if invalid) and returns the values at `indices`.
    /// @param o the opening
    /// @param indices flat indices of opened values, in increasing order
    /// @return values the values read from the opening
    function open(TensorProofs.Opening calldata o, uint256[] calldata indices)
        external
        pure
        returns (int256[] memory values)
    {
        o.verify();
        values = new int256[](indices.length);
        uint256 pos;
        for (uint256 i; i < indices.length; ++i) {
            (values[i], pos) = o.read(pos, indices[i]);
        }
    }

    /// @notice TensorProofs.depth
    /// @param k number of leaves
    /// @return the tree depth
    function depth(uint256 k) external pure returns (uint256) {
        return TensorProofs.depth(k);
    }
}
