// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {IERC3009, IERC3009Cancel} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title TestUSD: the devnet's stand-in for USDC
/// @notice A 6-decimal ERC-20 with EIP-2612 permit and EIP-3009 transfer authorizations (the
/// parts of USDC v2.2 that x402 payments use), plus a faucet that mints only on the devnet
/// (chain id 31337). Its EIP-712 domain is name "Test USD", version "1".
/// @dev EIP-3009 is written here rather than inherited from OpenZeppelin 5.7's draft `ERC3009`:
/// that draft's random-nonce base has no `bytes signature` (ERC-1271) overloads, and its
/// `ERC20TransferAuthorization` variant, which has them, uses keyed *sequential* nonces, so the
/// random 32-byte nonces that x402 clients sign would be rejected. The draft also keeps the
/// typehashes internal and adds a block-number clock mode that USDC does not have. Only OZ's
/// draft interfaces are used, so the events and selectors match OZ's `IERC3009`.
/// A faucet mint emits OpenZeppelin's `Transfer(0, to, amount)` and then `FaucetUsed(to, amount)`,
/// so indexers can tell faucet mints apart from any other mint.
contract TestUSD is ERC20, ERC20Permit, IERC3009, IERC3009Cancel {
    /// @notice The only chain on which `faucet` mints (anvil's default chain id).
    uint256 public constant DEVNET_CHAIN_ID = 31337;

    /// @notice The most one `faucet` call mints: 1,000,000 TUSD in 6-decimal units.
    uint256 public constant FAUCET_CAP = 1_000_000 * 10 ** 6;

    /// @notice The EIP-712 typehash of EIP-3009's `TransferWithAuthorization` message.
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
        "uint256 validBefore,bytes32 nonce)"
    );

    /// @notice The EIP-712 typehash of EIP-3009's `ReceiveWithAuthorization` message.
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
        "uint256 validBefore,bytes32 nonce)"
    );

    /// @notice The EIP-712 typehash of EIP-3009's `CancelAuthorization` message.
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    /// @dev authorizer => nonce => used or canceled.
    mapping(address authorizer => mapping(bytes32 nonce => bool used)) private _authorizationStates;

    /// @notice The faucet minted `amount` units to `to` (after the matching `Transfer`).
    event FaucetUsed(address indexed to, uint256 amount);

    /// @notice `faucet` was called on a chain other than the devnet.
    error VerinferFaucetDisabled(uint256 chainId);
    /// @notice `faucet` was asked for more than `FAUCET_CAP` units in one call.
    error VerinferFaucetCapExceeded(uint256 amount, uint256 cap);
    /// @notice The authorization's `validAfter` has not passed yet at block time `currentTime`.
    error VerinferAuthorizationNotYetValid(uint256 validAfter, uint256 currentTime);
    /// @notice The authorization's `validBefore` has passed at block time `currentTime`.
    error VerinferAuthorizationExpired(uint256 validBefore, uint256 currentTime);
    /// @notice The nonce was already used or canceled by `authorizer`.
    error VerinferAuthorizationUsed(address authorizer, bytes32 nonce);
    /// @notice The signature is not the authorizer's (neither ECDSA nor ERC-1271).
    error VerinferInvalidSignature();
    /// @notice `receiveWithAuthorization` was sent by `caller`, not by the payee `payee`.
    error VerinferCallerNotPayee(address caller, address payee);

    /// @notice Deploy with a zero supply: tokens come only from the faucet, on the devnet.
    constructor() ERC20("Test USD", "TUSD") ERC20Permit("Test USD") {}

    /// @notice Token units per TUSD: 10^6, as USDC.
    /// @return Always 6.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice The EIP-712 domain version, as USDC exposes it (x402 facilitators read it).
    /// @return Always "1".
    function version() external view returns (string memory) {
        return _EIP712Version();
    }

    /// @notice Mint test tokens; anyone may call, but only on the devnet.
    /// @param to The receiver of the new tokens.
    /// @param amount Units to mint (at most `FAUCET_CAP`).
    function faucet(address to, uint256 amount) external {
        if (block.chainid != DEVNET_CHAIN_ID) revert VerinferFaucetDisabled(block.chainid);
        if (amount > FAUCET_CAP) revert VerinferFaucetCapExceeded(amount, FAUCET_CAP);
        _mint(to, amount);
        emit FaucetUsed(to, amount);
    }

    /// @notice Whether `authorizer` already used or canceled `nonce`.
    /// @param authorizer The signer of the authorization.
    /// @param nonce The authorization's unique 32-byte nonce.
    /// @return True once the nonce can no longer be used.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /// @notice Execute a transfer that `from` signed (EIP-3009); anyone may relay it.
    /// @param from The payer (the signer).
    /// @param to The payee.
    /// @param value Units to transfer.
    /// @param validAfter The authorization is valid only after this Unix time.
    /// @param validBefore The authorization is valid only before this Unix time.
    /// @param nonce A unique random 32-byte nonce chosen by the payer.
    /// @param v The signature's recovery byte.
    /// @param r The signature's r.
    /// @param s The signature's s.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            abi.encodePacked(r, s, v)
        );
    }

    /// @notice Same as the v/r/s form, with a `bytes` signature: 65-byte ECDSA for an account
    /// without code, anything its `isValidSignature` accepts for an ERC-1271 smart wallet.
    /// @param from The payer (the signer).
    /// @param to The payee.
    /// @param value Units to transfer.
    /// @param validAfter The authorization is valid only after this Unix time.
    /// @param validBefore The authorization is valid only before this Unix time.
    /// @param nonce A unique random 32-byte nonce chosen by the payer.
    /// @param signature The payer's signature over the EIP-712 message.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /// @notice Execute a transfer that `from` signed, sent by the payee itself, so that nobody
    /// can front-run the payee's own call (e.g. a contract pulling a deposit).
    /// @param from The payer (the signer).
    /// @param to The payee, who must be the caller.
    /// @param value Units to transfer.
    /// @param validAfter The authorization is valid only after this Unix time.
    /// @param validBefore The authorization is valid only before this Unix time.
    /// @param nonce A unique random 32-byte nonce chosen by the payer.
    /// @param v The signature's recovery byte.
    /// @param r The signature's r.
    /// @param s The signature's s.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (to != msg.sender) revert VerinferCallerNotPayee(msg.sender, to);
        _transferWithAuthorization(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            abi.encodePacked(r, s, v)
        );
    }

    /// @notice Same as the v/r/s form of `receiveWithAuthorization`, with a `bytes` signature
    /// (ECDSA or ERC-1271).
    /// @param from The payer (the signer).
    /// @param to The payee, who must be the caller.
    /// @param value Units to transfer.
    /// @param validAfter The authorization is valid only after this Unix time.
    /// @param validBefore The authorization is valid only before this Unix time.
    /// @param nonce A unique random 32-byte nonce chosen by the payer.
    /// @param signature The payer's signature over the EIP-712 message.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        if (to != msg.sender) revert VerinferCallerNotPayee(msg.sender, to);
        _transferWithAuthorization(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /// @notice Cancel an unused authorization, so that nobody can execute it any more.
    /// @param authorizer The signer of the authorization (and of this cancellation).
    /// @param nonce The nonce of the authorization to cancel.
    /// @param v The signature's recovery byte.
    /// @param r The signature's r.
    /// @param s The signature's s.
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        _cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    /// @notice Same as the v/r/s form of `cancelAuthorization`, with a `bytes` signature
    /// (ECDSA or ERC-1271).
    /// @param authorizer The signer of the authorization (and of this cancellation).
    /// @param nonce The nonce of the authorization to cancel.
    /// @param signature The authorizer's signature over the EIP-712 cancellation.
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external {
        _cancelAuthorization(authorizer, nonce, signature);
    }

    /// @dev Checks (time window, unused nonce, signature), then effects (nonce, balances), then
    /// the event. The only external call is ERC-1271's `isValidSignature`, a staticcall made
    /// before any state changes.
    function _transferWithAuthorization(
        bytes32 typehash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        if (block.timestamp <= validAfter) revert VerinferAuthorizationNotYetValid(validAfter, block.timestamp);
        if (block.timestamp >= validBefore) revert VerinferAuthorizationExpired(validBefore, block.timestamp);
        _requireUnused(from, nonce);
        bytes32 structHash = keccak256(abi.encode(typehash, from, to, value, validAfter, validBefore, nonce));
        _requireSignedBy(from, structHash, signature);

        _authorizationStates[from][nonce] = true;
        _transfer(from, to, value);
        emit AuthorizationUsed(from, nonce);
    }

    function _cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) private {
        _requireUnused(authorizer, nonce);
        bytes32 structHash = keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce));
        _requireSignedBy(authorizer, structHash, signature);

        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    function _requireUnused(address authorizer, bytes32 nonce) private view {
        if (_authorizationStates[authorizer][nonce]) revert VerinferAuthorizationUsed(authorizer, nonce);
    }

    function _requireSignedBy(address signer, bytes32 structHash, bytes memory signature) private view {
        if (!SignatureChecker.isValidSignatureNow(signer, _hashTypedDataV4(structHash), signature)) {
            revert VerinferInvalidSignature();
        }
    }
}
