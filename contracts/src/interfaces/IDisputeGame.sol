// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IDisputeGame
/// @notice What the InferenceCoordinator uses of the optimistic DisputeGame
/// (contracts/src/optimistic/DisputeGame.sol): opening a claim for the assigned node, closing
/// an undisputed one after its window, and reading a claim's status and output hash.
interface IDisputeGame {
    /// @notice What a claim commits to (DisputeGame takes it as is); the model fields come from
    /// the registry, inputHash is keccak256 of the request's inline input.
    struct ClaimParams {
        bytes32 traceRoot;
        bytes32 weightsRoot;
        bytes32 stepsRoot;
        uint32 nSteps;
        uint32 nConstants;
        bytes32 inputHash;
    }

    /// @notice Opens a claim on behalf of `claimer` with the claim bond (`msg.value`); only the
    /// game's coordinator may call it.
    function open(address claimer, ClaimParams calldata p, bytes calldata output)
        external
        payable
        returns (uint256 claimId);

    /// @notice Closes an undisputed claim after its window (reverts while it is open).
    function finalize(uint256 claimId) external;

    /// @notice The claim bond in wei.
    function claimBond() external view returns (uint256);

    /// @notice The wei `open` takes: the claim bond plus the jackpot fee.
    function claimDeposit() external view returns (uint256);

    /// @notice DisputeGame.claims: claimer, openedAt, status (0 None, 1 Open, 2 Disputed,
    /// 3 Finalized, 4 ClaimerWon, 5 ChallengerWon, 6 Forced: the claimer conceded a forced
    /// error, so the claim is void and nobody is slashed), nSteps, nConstants, bond, traceRoot,
    /// weightsRoot, stepsRoot, inputHash, outputHash; the game returns one more field after
    /// these (seedHash, the claimer's forced-error seed), which this declaration leaves out.
    function claims(uint256 claimId)
        external
        view
        returns (
            address claimer,
            uint64 openedAt,
            uint8 status,
            uint32 nSteps,
            uint32 nConstants,
            uint256 bond,
            bytes32 traceRoot,
            bytes32 weightsRoot,
            bytes32 stepsRoot,
            bytes32 inputHash,
            bytes32 outputHash
        );
}
