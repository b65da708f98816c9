"""ERC-20 payment tokens: a small typed client, exact unit conversion, and TestUSD's errors.

``Token`` binds any ERC-20 through TestUSD's ABI (ERC-20 + EIP-2612 + EIP-3009 + the devnet
faucet), so the same client reads USDC on a real chain; only ``faucet`` is TestUSD-specific.

Importing this module registers the token's custom errors with
``verinfer.chain.contract_errors``, so its reverts surface as the typed exceptions below, each
both a ``ContractRevertError`` (decoded ``name`` and ``args_by_name``) and a ``PaymentError``.
"""

from __future__ import annotations

import re
from typing import Any

from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import BadFunctionCallOutput
from web3.types import TxReceipt

from verinfer.chain.client import Chain
from verinfer.chain.contract_errors import register_error
from verinfer.errors import ConfigError, ContractRevertError, PaymentError

__all__ = [
    "FAUCET_CAP_UNITS",
    "TEST_USD_DECIMALS",
    "AuthorizationExpiredError",
    "AuthorizationNotYetValidError",
    "AuthorizationUsedError",
    "CallerNotPayeeError",
    "FaucetCapExceededError",
    "FaucetDisabledError",
    "InsufficientAllowanceError",
    "InsufficientBalanceError",
    "InvalidSignatureError",
    "PermitExpiredError",
    "PermitInvalidSignerError",
    "Token",
    "TokenRevertError",
    "format_units",
    "parse_units",
]

ARTIFACT = "TestUSD"
TEST_USD_DECIMALS = 6
FAUCET_CAP_UNITS = 1_000_000 * 10**TEST_USD_DECIMALS  # TestUSD.FAUCET_CAP
MAX_UINT256 = 2**256 - 1
MAX_DECIMALS = 255  # ERC-20 decimals is a uint8
# Plain decimal notation only: ASCII digits and at most one point, with a digit on at least
# one side ("12", "12.5", ".5", "12."). No sign, exponent, separators, NaN or infinity, which
# Decimal and float would accept, and no non-ASCII digits, which int() would accept.
_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]*))?|\.([0-9]+)")
_MAX_AMOUNT_CHARS = 2 + 78 + MAX_DECIMALS  # uint256 has 78 digits


class TokenRevertError(ContractRevertError, PaymentError):
    """A payment token reverted with one of its known custom errors."""


class FaucetDisabledError(TokenRevertError):
    """TestUSD's faucet was called on a chain other than the devnet (args: chainId)."""


class FaucetCapExceededError(TokenRevertError):
    """The faucet was asked for more than 1,000,000 TUSD at once (args: amount, cap)."""


class AuthorizationNotYetValidError(TokenRevertError):
    """An EIP-3009 authorization was used before validAfter (args: validAfter, currentTime)."""


class AuthorizationExpiredError(TokenRevertError):
    """An EIP-3009 authorization was used at or after validBefore (args: validBefore,
    currentTime)."""


class AuthorizationUsedError(TokenRevertError):
    """An EIP-3009 nonce was already used or canceled (args: authorizer, nonce)."""


class InvalidSignatureError(TokenRevertError):
    """An EIP-3009 signature is not the authorizer's, by ECDSA or ERC-1271."""


class CallerNotPayeeError(TokenRevertError):
    """receiveWithAuthorization was sent by someone other than the payee (args: caller, payee)."""


class InsufficientBalanceError(TokenRevertError):
    """A transfer exceeds the sender's balance (args: sender, balance, needed)."""


class InsufficientAllowanceError(TokenRevertError):
    """A transferFrom exceeds the allowance (args: spender, allowance, needed)."""


class PermitExpiredError(TokenRevertError):
    """An EIP-2612 permit was used after its deadline (args: deadline)."""


class PermitInvalidSignerError(TokenRevertError):
    """An EIP-2612 permit was not signed by the owner (args: signer, owner)."""


_ERRORS: tuple[tuple[str, type[ContractRevertError], str], ...] = (
    (
        "VerinferFaucetDisabled",
        FaucetDisabledError,
        "the TestUSD faucet mints only on the devnet (chain id 31337); elsewhere get the "
        "chain's real payment token",
    ),
    (
        "VerinferFaucetCapExceeded",
        FaucetCapExceededError,
        "ask for at most 1,000,000 TUSD per call, and call again for more",
    ),
    (
        "VerinferAuthorizationNotYetValid",
        AuthorizationNotYetValidError,
        "wait until validAfter has passed, or sign a new authorization with an earlier validAfter",
    ),
    (
        "VerinferAuthorizationExpired",
        AuthorizationExpiredError,
        "sign a new authorization with a later validBefore",
    ),
    (
        "VerinferAuthorizationUsed",
        AuthorizationUsedError,
        "each nonce works once and canceled nonces never: sign a new authorization with a fresh "
        "random 32-byte nonce",
    ),
    (
        "VerinferInvalidSignature",
        InvalidSignatureError,
        "sign the EIP-712 message with the payer's key over this token's domain (name, version, "
        "chainId, verifyingContract), and check every field matches the call",
    ),
    (
        "VerinferCallerNotPayee",
        CallerNotPayeeError,
        "receiveWithAuthorization must be sent by the payee (`to`); relayers use "
        "transferWithAuthorization",
    ),
    (
        "ERC20InsufficientBalance",
        InsufficientBalanceError,
        "fund the sender first (on the devnet: `faucet`)",
    ),
    (
        "ERC20InsufficientAllowance",
        InsufficientAllowanceError,
        "approve (or permit) the spender for at least the amount first",
    ),
    ("ERC2612ExpiredSignature", PermitExpiredError, "sign a new permit with a later deadline"),
    (
        "ERC2612InvalidSigner",
        PermitInvalidSignerError,
        "the owner must sign the permit, with its current nonce (`nonces(owner)`)",
    ),
)

for _name, _exc_class, _hint in _ERRORS:
    register_error(_name, _exc_class, _hint)


def _check_decimals(decimals: int) -> int:
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise ConfigError(
            f"token decimals must be an integer, got {decimals!r}",
            hint="read them from the token (`decimals()`)",
        )
    if not 0 <= decimals <= MAX_DECIMALS:
        raise ConfigError(
            f"token decimals {decimals} is outside 0..{MAX_DECIMALS}",
            hint="ERC-20 decimals is a uint8; read it from the token (`decimals()`)",
        )
    return decimals


def _check_units(units: int, what: str = "amount") -> int:
    if isinstance(units, bool) or not isinstance(units, int):
        raise ConfigError(
            f"{what} must be an integer number of token units, got {units!r}",
            hint="convert a decimal amount with parse_units(text, decimals)",
        )
    if not 0 <= units <= MAX_UINT256:
        raise ConfigError(
            f"{what} {units} is outside 0..2**256-1",
            hint="token amounts are unsigned 256-bit integers",
        )
    return units


def parse_units(text: str, decimals: int, *, what: str = "amount") -> int:
    """The exact number of token units in a decimal amount: ``parse_units("1.5", 6) == 1500000``.

    Only plain decimal notation is accepted ("12", "12.5", ".5"; surrounding whitespace is
    ignored). Zeros beyond ``decimals`` are fine ("1.0" with 0 decimals), any other digit there
    would be rounded away, so it is an error ("1.5" with 0 decimals), as are signs, exponents,
    NaN, separators and values above 2**256-1 units. Never goes through float. ``what`` names
    the value in error messages (e.g. ``what="price"``).
    """
    _check_decimals(decimals)
    if not isinstance(text, str):
        raise ConfigError(
            f"{what} must be given as text, got {type(text).__name__}",
            hint='write it as a decimal string such as "12.5" (floats are inexact)',
        )
    raw = text.strip()
    if len(raw) > _MAX_AMOUNT_CHARS:
        raise ConfigError(
            f"{what} {text[:20]!r}... has {len(raw)} characters, more than any token amount",
            hint="token amounts are unsigned 256-bit integers",
        )
    match = _DECIMAL.fullmatch(raw)
    if match is None and raw.startswith("-") and _DECIMAL.fullmatch(raw[1:]):
        raise ConfigError(f"{what} {text!r} is negative", hint="token amounts are zero or more")
    if match is None:
        raise ConfigError(
            f"{what} {text!r} is not a plain decimal number",
            hint='write digits with at most one decimal point, such as "12.5"; signs, exponents, '
            "separators and NaN are not allowed",
        )
    whole = match.group(1) or "0"
    fraction = (match.group(2) or match.group(3) or "").rstrip("0")
    if len(fraction) > decimals:
        raise ConfigError(
            f"{what} {text!r} has {len(fraction)} decimal places but the token has {decimals} "
            "decimals",
            hint=f"round it to at most {decimals} decimal places",
        )
    scale: int = 10**decimals
    units = int(whole) * scale + int(fraction.ljust(decimals, "0") or "0")
    if units > MAX_UINT256:
        raise ConfigError(
            f"{what} {text!r} is too large for a token ({units} units > 2**256-1)",
            hint="token amounts are unsigned 256-bit integers",
        )
    return units


def format_units(units: int, decimals: int) -> str:
    """The shortest exact decimal text of ``units``: ``format_units(1500000, 6) == "1.5"``.

    ``parse_units(format_units(u, d), d) == u`` for every valid ``u`` and ``d``.
    """
    _check_units(units)
    _check_decimals(decimals)
    scale: int = 10**decimals
    whole, fraction = divmod(units, scale)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{whole}.{digits}" if digits else str(whole)


def _address(value: str, what: str) -> str:
    try:
        return str(Web3.to_checksum_address(value))
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{what} {value!r} is not an address", hint="give 20 bytes of hex, e.g. 0xAbC...123"
        ) from exc


class Token:
    """An ERC-20 payment token at ``address`` on ``chain``; amounts are integer token units."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = _address(address, "token address")
        self.contract = chain.contract(ARTIFACT, self.address)
        self._decimals: int | None = None

    def _call(self, fn: ContractFunction) -> Any:
        try:
            return self.chain.call(fn)
        except BadFunctionCallOutput as exc:  # no code, or not this kind of contract
            raise ConfigError(
                f"no ERC-20 token answers at {self.address} on chain {self.chain.chain_id}",
                hint="check the token address and that --rpc-url points at the right chain",
            ) from exc

    def name(self) -> str:
        return str(self._call(self.contract.functions.name()))

    def symbol(self) -> str:
        return str(self._call(self.contract.functions.symbol()))

    def decimals(self) -> int:
        """The token's decimals, read once (ERC-20 tokens never change them)."""
        if self._decimals is None:
            self._decimals = int(self._call(self.contract.functions.decimals()))
        return self._decimals

    def balance_of(self, owner: str) -> int:
        owner = _address(owner, "owner")
        return int(self._call(self.contract.functions.balanceOf(owner)))

    def allowance(self, owner: str, spender: str) -> int:
        owner, spender = _address(owner, "owner"), _address(spender, "spender")
        return int(self._call(self.contract.functions.allowance(owner, spender)))

    def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        """Whether an EIP-3009 ``nonce`` (32 bytes) of ``authorizer`` is used or canceled."""
        authorizer = _address(authorizer, "authorizer")
        if len(nonce) != 32:
            raise ConfigError(f"an EIP-3009 nonce is 32 bytes, got {len(nonce)}")
        return bool(self._call(self.contract.functions.authorizationState(authorizer, nonce)))

    def parse(self, text: str) -> int:
        """``parse_units`` with this token's decimals."""
        return parse_units(text, self.decimals())

    def format(self, units: int) -> str:
        """``format_units`` with this token's decimals."""
        return format_units(units, self.decimals())

    def transfer(self, to: str, units: int) -> TxReceipt:
        """Send ``units`` from the chain's signer to ``to``."""
        to, units = _address(to, "recipient"), _check_units(units)
        return self.chain.transact(self.contract.functions.transfer(to, units))

    def approve(self, spender: str, units: int) -> TxReceipt:
        """Let ``spender`` move up to ``units`` of the signer's tokens."""
        spender, units = _address(spender, "spender"), _check_units(units)
        return self.chain.transact(self.contract.functions.approve(spender, units))

    def faucet(self, to: str, units: int) -> TxReceipt:
        """Mint test tokens to ``to`` (TestUSD on the devnet only, at most 1,000,000 TUSD)."""
        to, units = _address(to, "recipient"), _check_units(units)
        return self.chain.transact(self.contract.functions.faucet(to, units))
