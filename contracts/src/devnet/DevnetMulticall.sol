// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DevnetMulticall
/// @notice Batch reads at the address every public EVM chain has a Multicall3 deployment
/// (0xcA11bde05977b3631167028862bE2a173976CA11), for a devnet, which has none. Off-chain tools
/// rely on it there: the x402 SDK's facilitator, for one, explains a refused EIP-3009 transfer
/// (spent nonce, balance, token name or version) with one batched `tryAggregate` eth_call.
/// verinfer installs this contract's runtime code at that address on chain 31337 only
/// (`anvil_setCode`, see verinfer/chain/deploy.py); it offers only the call those tools make.
contract DevnetMulticall {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice A call of the batch failed while `requireSuccess` was set.
    error DevnetMulticallCallFailed(uint256 index);

    /// @notice Calls each target in order; each result says whether its call succeeded and
    /// what it returned (revert data on failure).
    /// @param requireSuccess revert the whole batch when any call fails
    /// @param calls the targets and their calldata
    /// @return returnData one result per call, in order
    function tryAggregate(bool requireSuccess, Call[] calldata calls)
        external
        returns (Result[] memory returnData)
    {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool success, bytes memory data) = calls[i].target.call(calls[i].callData);
            if (requireSuccess && !success) revert DevnetMulticallCallFailed(i);
            returnData[i] = Result(success, data);
        }
    }
}
