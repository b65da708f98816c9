// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken: a plain 18-decimal ERC-20 for the example dApps (devnet only)
/// @notice Anyone may `mint` to anyone, but only on the devnet (chain id 31337): it exists so the
/// examples have a second asset next to TestUSD (the AMM's other side, the lending collateral).
contract TestToken is ERC20 {
    /// @notice The only chain on which `mint` works (anvil's default chain id).
    uint256 public constant DEVNET_CHAIN_ID = 31337;

    /// @notice `mint` was called off the devnet.
    error VerinferMintDisabled(uint256 chainId);

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) {}

    /// @notice Mint `amount` (18-decimal units) to `to`; devnet only.
    function mint(address to, uint256 amount) external {
        if (block.chainid != DEVNET_CHAIN_ID) revert VerinferMintDisabled(block.chainid);
        _mint(to, amount);
    }
}
