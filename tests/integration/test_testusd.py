"""TestUSD against a real anvil: metadata, faucet, EIP-2612 permit, EIP-3009 authorizations.

Every revert must surface as the typed exception from ``verinfer.chain.token`` with its
arguments decoded, and must leave every balance as it was.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.datastructures import SignedMessage
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import HOST, find_anvil, free_port, rpc_chain_id
from verinfer.chain.token import (
    FAUCET_CAP_UNITS,
    AuthorizationExpiredError,
    AuthorizationNotYetValidError,
    AuthorizationUsedError,
    CallerNotPayeeError,
    FaucetCapExceededError,
    FaucetDisabledError,
    InsufficientAllowanceError,
    InsufficientBalanceError,
    InvalidSignatureError,
    PermitExpiredError,
    PermitInvalidSignerError,
    Token,
    TokenRevertError,
)
from verinfer.errors import ConfigError, ContractRevertError, PaymentError

pytestmark = pytest.mark.integration

TUSD = 10**6
PAYER, PAYEE, OTHER = 1, 2, 3  # dev account indexes; account 0 deploys and relays

AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
TYPES: dict[str, list[dict[str, str]]] = {
    "TransferWithAuthorization": AUTH_FIELDS,
    "ReceiveWithAuthorization": AUTH_FIELDS,
    "CancelAuthorization": [
        {"name": "authorizer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
    ],
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
# Runtime code of a stand-in ERC-1271 wallet: returns `magic` (left-aligned in one word) for
# any call. PUSH4 magic, PUSH1 224, SHL, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN.
WALLET_CODE = "0x63{magic}60e01b60005260206000f3"
ERC1271_MAGIC = "1626ba7e"


# ---------------------------------------------------------------- helpers


@pytest.fixture
def token(chain: Chain, book: AddressBook) -> Token:
    return Token(chain, book.address("TestUSD"))


def as_account(token: Token, index: int) -> Token:
    """The same token, signing as anvil dev account ``index``."""
    return Token(Chain(token.chain.rpc_url, dev_account(index)), token.address)


def addr(index: int) -> str:
    return str(dev_account(index).address)


def now(token: Token) -> int:
    return int(token.chain.w3.eth.get_block("latest")["timestamp"])


def domain(token: Token) -> dict[str, Any]:
    return {
        "name": "Test USD",
        "version": "1",
        "chainId": token.chain.chain_id,
        "verifyingContract": token.address,
    }


def sign(
    token: Token, signer: LocalAccount, primary: str, message: dict[str, Any]
) -> SignedMessage:
    """Sign an EIP-712 message of type ``primary`` over TestUSD's domain, as wallets do."""
    signed: SignedMessage = Account.sign_typed_data(
        signer.key,
        domain_data=domain(token),
        message_types={primary: TYPES[primary]},
        message_data=message,
    )
    return signed


def authorization(
    token: Token,
    *,
    payer: int = PAYER,
    payee: int = PAYEE,
    value: int = 10 * TUSD,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    return {
        "from": addr(payer),
        "to": addr(payee),
        "value": value,
        "validAfter": valid_after,
        "validBefore": now(token) + 3600 if valid_before is None else valid_before,
        "nonce": os.urandom(32) if nonce is None else nonce,
    }


def args(auth: dict[str, Any]) -> list[Any]:
    keys = ("from", "to", "value", "validAfter", "validBefore", "nonce")
    return [auth[k] for k in keys]


def vrs(signed: SignedMessage) -> list[Any]:
    return [signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")]


def transfer_with_authorization(
    token: Token, auth: dict[str, Any], signed: SignedMessage
) -> TxReceipt:
    fn = token.contract.functions.transferWithAuthorization(*args(auth), *vrs(signed))
    return token.chain.transact(fn)


def events(token: Token, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    return [
        dict(e["args"])
        for e in token.contract.events[name]().process_receipt(receipt, errors=DISCARD)
    ]


@contextmanager
def unchanged(token: Token, *holders: str) -> Iterator[None]:
    """Assert that the block runs no transaction and changes no balance of ``holders``."""
    before = {h: token.balance_of(h) for h in holders}
    supply = token.chain.call(token.contract.functions.totalSupply())
    block = token.chain.w3.eth.block_number
    yield
    assert {h: token.balance_of(h) for h in holders} == before
    assert token.chain.call(token.contract.functions.totalSupply()) == supply
    assert token.chain.w3.eth.block_number == block


@pytest.fixture
def funded(token: Token) -> Token:
    """The token after the faucet gave the payer 100 TUSD."""
    token.faucet(addr(PAYER), 100 * TUSD)
    return token


# ---------------------------------------------------------------- metadata


def test_metadata_and_eip712_domain(token: Token) -> None:
    assert token.name() == "Test USD"
    assert token.symbol() == "TUSD"
    assert token.decimals() == 6
    fns = token.contract.functions
    assert token.chain.call(fns.version()) == "1"
    fields, name, version, chain_id, contract, salt, extensions = token.chain.call(
        fns.eip712Domain()
    )
    assert fields == b"\x0f"  # name, version, chainId, verifyingContract
    assert (name, version, chain_id, contract) == ("Test USD", "1", 31337, token.address)
    assert (salt, extensions) == (b"\x00" * 32, [])
    cancel = {"authorizer": addr(PAYER), "nonce": b"\x00" * 32}
    encoded = encode_typed_data(
        domain_data=domain(token),
        message_types={"CancelAuthorization": TYPES["CancelAuthorization"]},
        message_data=cancel,
    )
    assert token.chain.call(fns.DOMAIN_SEPARATOR()) == encoded.header  # EIP-712 domain hash


def test_typehashes_are_the_eip3009_ones(token: Token) -> None:
    fns = token.contract.functions
    auth = (
        "(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,"
        "bytes32 nonce)"
    )
    cancel = "CancelAuthorization(address authorizer,bytes32 nonce)"
    expected = {
        fns.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(): "TransferWithAuthorization" + auth,
        fns.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(): "ReceiveWithAuthorization" + auth,
        fns.CANCEL_AUTHORIZATION_TYPEHASH(): cancel,
    }
    for fn, type_string in expected.items():
        assert token.chain.call(fn) == Web3.keccak(text=type_string)


def test_suite_records_testusd_as_the_payment_token(book: AddressBook) -> None:
    assert book.address("PaymentToken") == book.address("TestUSD")


# ---------------------------------------------------------------- faucet and ERC-20


def test_faucet_mints_and_emits_after_the_transfer(token: Token) -> None:
    receipt = as_account(token, OTHER).faucet(addr(PAYER), 250 * TUSD)  # anyone may call it
    assert token.balance_of(addr(PAYER)) == 250 * TUSD
    assert token.chain.call(token.contract.functions.totalSupply()) == 250 * TUSD
    mint = events(token, "Transfer", receipt)
    assert mint == [{"from": "0x" + "00" * 20, "to": addr(PAYER), "value": 250 * TUSD}]
    assert events(token, "FaucetUsed", receipt) == [{"to": addr(PAYER), "amount": 250 * TUSD}]
    kinds = [log["topics"][0] for log in receipt["logs"]]
    assert kinds == [
        Web3.keccak(text="Transfer(address,address,uint256)"),
        Web3.keccak(text="FaucetUsed(address,uint256)"),
    ]


def test_faucet_cap(token: Token) -> None:
    token.faucet(addr(PAYER), FAUCET_CAP_UNITS)
    assert token.balance_of(addr(PAYER)) == FAUCET_CAP_UNITS
    with unchanged(token, addr(PAYER)), pytest.raises(FaucetCapExceededError) as info:
        token.faucet(addr(PAYER), FAUCET_CAP_UNITS + 1)
    assert info.value.name == "VerinferFaucetCapExceeded"
    assert info.value.args_by_name == {"amount": FAUCET_CAP_UNITS + 1, "cap": FAUCET_CAP_UNITS}
    assert isinstance(info.value, PaymentError) and isinstance(info.value, ContractRevertError)
    assert info.value.hint and "1,000,000" in info.value.hint


@pytest.fixture
def foreign_chain(tmp_path: Path) -> Iterator[Chain]:
    """A second anvil that is not the devnet (chain id 1337), stopped after the test."""
    port = free_port()
    with (tmp_path / "anvil-1337.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(find_anvil()),
                "--host",
                HOST,
                "--port",
                str(port),
                "--chain-id",
                "1337",
                "--prune-history",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 15
        while rpc_chain_id(url, timeout=0.5) != 1337:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"anvil --chain-id 1337 did not start: {log.name}")
            time.sleep(0.05)
        yield Chain(url, dev_account(0))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_faucet_is_disabled_off_the_devnet(foreign_chain: Chain) -> None:
    assert foreign_chain.chain_id == 1337
    address, _ = foreign_chain.deploy("TestUSD")
    token = Token(foreign_chain, address)
    with unchanged(token, addr(PAYER)), pytest.raises(FaucetDisabledError) as info:
        token.faucet(addr(PAYER), 1)
    assert info.value.args_by_name == {"chainId": 1337}
    assert info.value.hint and "31337" in info.value.hint
    # Everything else works there: it is a plain ERC-20 with a zero supply.
    assert token.chain.call(token.contract.functions.totalSupply()) == 0
    assert token.symbol() == "TUSD"


def test_transfer_approve_and_transfer_from(funded: Token) -> None:
    payer = as_account(funded, PAYER)
    payer.transfer(addr(PAYEE), 30 * TUSD)
    assert funded.balance_of(addr(PAYEE)) == 30 * TUSD
    payer.approve(addr(OTHER), 5 * TUSD)
    assert funded.allowance(addr(PAYER), addr(OTHER)) == 5 * TUSD
    spender = as_account(funded, OTHER)
    spend = spender.contract.functions.transferFrom(addr(PAYER), addr(OTHER), 5 * TUSD)
    spender.chain.transact(spend)
    assert funded.balance_of(addr(PAYER)) == 65 * TUSD
    with unchanged(funded, addr(PAYER), addr(OTHER)), pytest.raises(InsufficientAllowanceError):
        spender.chain.transact(spend)
    with (
        unchanged(funded, addr(PAYER), addr(PAYEE)),
        pytest.raises(InsufficientBalanceError) as info,
    ):
        payer.transfer(addr(PAYEE), 66 * TUSD)
    assert info.value.args_by_name == {
        "sender": addr(PAYER),
        "balance": 65 * TUSD,
        "needed": 66 * TUSD,
    }


def test_client_rejects_bad_input_before_any_transaction(funded: Token) -> None:
    with unchanged(funded, addr(PAYER)):
        for bad in (-1, 2**256, 1.5, True):
            with pytest.raises(ConfigError):
                funded.transfer(addr(PAYEE), bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not an address"):
            funded.transfer("0x1234", 1)
    with pytest.raises(ConfigError, match="no ERC-20 token answers"):
        Token(funded.chain, addr(OTHER)).decimals()
    assert funded.parse("12.5") == 12_500_000
    assert funded.format(12_500_000) == "12.5"


# ---------------------------------------------------------------- EIP-2612 permit


def test_permit(funded: Token) -> None:
    owner, spender = dev_account(PAYER), addr(OTHER)
    fns = funded.contract.functions
    deadline = now(funded) + 600
    nonce = funded.chain.call(fns.nonces(owner.address))
    message = {
        "owner": owner.address,
        "spender": spender,
        "value": 7 * TUSD,
        "nonce": nonce,
        "deadline": deadline,
    }
    signed = sign(funded, owner, "Permit", message)
    permit = fns.permit(owner.address, spender, 7 * TUSD, deadline, *vrs(signed))
    funded.chain.transact(permit)  # account 0 relays; the owner pays no gas
    assert funded.allowance(owner.address, spender) == 7 * TUSD
    assert funded.chain.call(fns.nonces(owner.address)) == nonce + 1

    with pytest.raises(PermitInvalidSignerError) as info:  # replay: the nonce moved on
        funded.chain.transact(permit)
    assert info.value.args_by_name["owner"] == owner.address
    assert info.value.args_by_name["signer"] != owner.address

    stale = {**message, "nonce": nonce + 1, "deadline": now(funded) - 1}
    late = sign(funded, owner, "Permit", stale)
    with pytest.raises(PermitExpiredError) as expired:
        funded.chain.transact(
            fns.permit(owner.address, spender, 7 * TUSD, stale["deadline"], *vrs(late))
        )
    assert expired.value.args_by_name == {"deadline": stale["deadline"]}
    assert funded.allowance(owner.address, spender) == 7 * TUSD


# ---------------------------------------------------------------- EIP-3009


def test_transfer_with_authorization_relayed_by_anyone(funded: Token) -> None:
    auth = authorization(funded)
    signed = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    assert not funded.authorization_state(addr(PAYER), auth["nonce"])
    receipt = transfer_with_authorization(funded, auth, signed)  # sent by account 0
    assert funded.balance_of(addr(PAYER)) == 90 * TUSD
    assert funded.balance_of(addr(PAYEE)) == 10 * TUSD
    assert funded.authorization_state(addr(PAYER), auth["nonce"])
    assert events(funded, "AuthorizationUsed", receipt) == [
        {"authorizer": addr(PAYER), "nonce": auth["nonce"]}
    ]
    # What an x402 facilitator checks after settling: the Transfer from payer to payee.
    assert events(funded, "Transfer", receipt) == [
        {"from": addr(PAYER), "to": addr(PAYEE), "value": 10 * TUSD}
    ]


def test_replay_is_rejected(funded: Token) -> None:
    auth = authorization(funded)
    signed = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    transfer_with_authorization(funded, auth, signed)
    with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(AuthorizationUsedError) as info:
        transfer_with_authorization(funded, auth, signed)
    assert info.value.args_by_name == {
        "authorizer": addr(PAYER),
        "nonce": "0x" + auth["nonce"].hex(),
    }
    assert isinstance(info.value, TokenRevertError)


def test_expired_and_not_yet_valid_are_rejected(funded: Token) -> None:
    payer = dev_account(PAYER)
    expired = authorization(funded, valid_before=now(funded))
    signed = sign(funded, payer, "TransferWithAuthorization", expired)
    with (
        unchanged(funded, addr(PAYER), addr(PAYEE)),
        pytest.raises(AuthorizationExpiredError) as info,
    ):
        transfer_with_authorization(funded, expired, signed)
    assert info.value.args_by_name["validBefore"] == expired["validBefore"]
    assert info.value.args_by_name["currentTime"] >= expired["validBefore"]

    early = authorization(funded, valid_after=now(funded) + 3600, valid_before=now(funded) + 7200)
    signed = sign(funded, payer, "TransferWithAuthorization", early)
    with unchanged(funded, addr(PAYER), addr(PAYEE)):
        with pytest.raises(AuthorizationNotYetValidError) as early_info:
            transfer_with_authorization(funded, early, signed)
    assert early_info.value.args_by_name["validAfter"] == early["validAfter"]
    assert early_info.value.args_by_name["currentTime"] <= early["validAfter"]
    assert not funded.authorization_state(addr(PAYER), early["nonce"])  # still usable later


def test_wrong_signer_and_tampered_fields_are_rejected(funded: Token) -> None:
    auth = authorization(funded)
    by_stranger = sign(funded, dev_account(OTHER), "TransferWithAuthorization", auth)
    by_payer = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    wrong_domain = Account.sign_typed_data(
        dev_account(PAYER).key,
        domain_data={**domain(funded), "version": "2"},
        message_types={"TransferWithAuthorization": AUTH_FIELDS},
        message_data=auth,
    )
    cases = [
        (auth, by_stranger),
        ({**auth, "value": auth["value"] + 1}, by_payer),
        ({**auth, "to": addr(OTHER)}, by_payer),
        (auth, wrong_domain),
    ]
    for sent, signed in cases:
        with unchanged(funded, addr(PAYER), addr(PAYEE), addr(OTHER)):
            with pytest.raises(InvalidSignatureError) as info:
                transfer_with_authorization(funded, sent, signed)
        assert info.value.args_by_name == {}
    assert not funded.authorization_state(addr(PAYER), auth["nonce"])
    transfer_with_authorization(funded, auth, by_payer)  # the genuine one still works


def test_insufficient_balance_keeps_the_nonce_usable(funded: Token) -> None:
    auth = authorization(funded, value=101 * TUSD)
    signed = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(InsufficientBalanceError):
        transfer_with_authorization(funded, auth, signed)
    assert not funded.authorization_state(addr(PAYER), auth["nonce"])


def test_receive_with_authorization_only_by_the_payee(funded: Token) -> None:
    auth = authorization(funded)
    signed = sign(funded, dev_account(PAYER), "ReceiveWithAuthorization", auth)
    fn = funded.contract.functions.receiveWithAuthorization(*args(auth), *vrs(signed))
    with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(CallerNotPayeeError) as info:
        funded.chain.transact(fn)  # account 0 is not the payee
    assert info.value.args_by_name == {"caller": addr(0), "payee": addr(PAYEE)}

    payee = as_account(funded, PAYEE)
    payee.chain.transact(
        payee.contract.functions.receiveWithAuthorization(*args(auth), *vrs(signed))
    )
    assert funded.balance_of(addr(PAYEE)) == 10 * TUSD

    # A transfer authorization is not a receive authorization (different typehash).
    other = authorization(funded)
    as_transfer = sign(funded, dev_account(PAYER), "TransferWithAuthorization", other)
    receive = payee.contract.functions.receiveWithAuthorization(*args(other), *vrs(as_transfer))
    with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(InvalidSignatureError):
        payee.chain.transact(receive)


def test_cancel_authorization_then_use_is_rejected(funded: Token) -> None:
    payer = dev_account(PAYER)
    auth = authorization(funded)
    signed = sign(funded, payer, "TransferWithAuthorization", auth)
    cancel = sign(
        funded, payer, "CancelAuthorization", {"authorizer": payer.address, "nonce": auth["nonce"]}
    )
    fns = funded.contract.functions

    by_stranger = sign(
        funded,
        dev_account(OTHER),
        "CancelAuthorization",
        {"authorizer": payer.address, "nonce": auth["nonce"]},
    )
    with pytest.raises(InvalidSignatureError):
        funded.chain.transact(
            fns.cancelAuthorization(payer.address, auth["nonce"], *vrs(by_stranger))
        )

    receipt = funded.chain.transact(
        fns.cancelAuthorization(payer.address, auth["nonce"], *vrs(cancel))
    )
    assert events(funded, "AuthorizationCanceled", receipt) == [
        {"authorizer": payer.address, "nonce": auth["nonce"]}
    ]
    assert funded.authorization_state(payer.address, auth["nonce"])
    with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(AuthorizationUsedError):
        transfer_with_authorization(funded, auth, signed)
    with pytest.raises(AuthorizationUsedError):  # a canceled nonce cannot be canceled again
        funded.chain.transact(fns.cancelAuthorization(payer.address, auth["nonce"], *vrs(cancel)))


# ---------------------------------------------------------------- bytes signatures, ERC-1271


def test_bytes_signature_overloads(funded: Token) -> None:
    payer = dev_account(PAYER)
    fns = funded.contract.functions

    auth = authorization(funded)
    signed = sign(funded, payer, "TransferWithAuthorization", auth)
    assert len(signed.signature) == 65
    funded.chain.transact(fns.transferWithAuthorization(*args(auth), bytes(signed.signature)))
    assert funded.balance_of(addr(PAYEE)) == 10 * TUSD
    with pytest.raises(AuthorizationUsedError):  # one nonce, whichever overload used it
        transfer_with_authorization(funded, auth, signed)

    received = authorization(funded)
    signed = sign(funded, payer, "ReceiveWithAuthorization", received)
    payee = as_account(funded, PAYEE)
    call = payee.contract.functions.receiveWithAuthorization(
        *args(received), bytes(signed.signature)
    )
    with pytest.raises(CallerNotPayeeError):
        funded.chain.transact(
            fns.receiveWithAuthorization(*args(received), bytes(signed.signature))
        )
    payee.chain.transact(call)
    assert funded.balance_of(addr(PAYEE)) == 20 * TUSD

    nonce = os.urandom(32)
    cancel = sign(
        funded, payer, "CancelAuthorization", {"authorizer": payer.address, "nonce": nonce}
    )
    funded.chain.transact(fns.cancelAuthorization(payer.address, nonce, bytes(cancel.signature)))
    assert funded.authorization_state(payer.address, nonce)


def test_malformed_and_malleable_signatures_are_rejected(funded: Token) -> None:
    auth = authorization(funded)
    signed = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order
    high_s = (
        signed.r.to_bytes(32, "big") + (n - signed.s).to_bytes(32, "big") + bytes([55 - signed.v])
    )
    fns = funded.contract.functions
    for bad in (b"", bytes(signed.signature)[:64], bytes(signed.signature) + b"\x00", high_s):
        with unchanged(funded, addr(PAYER), addr(PAYEE)), pytest.raises(InvalidSignatureError):
            funded.chain.transact(fns.transferWithAuthorization(*args(auth), bad))
    bad_v = [29, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")]
    with pytest.raises(InvalidSignatureError):
        funded.chain.transact(fns.transferWithAuthorization(*args(auth), *bad_v))
    transfer_with_authorization(funded, auth, signed)


def install_wallet(token: Token, magic: str) -> str:
    """Put a stand-in ERC-1271 smart wallet answering ``magic`` at a fixed address."""
    wallet = Web3.to_checksum_address("0x" + ("c0de" + magic) * 2 + "00" * 8)
    code = WALLET_CODE.format(magic=magic)
    token.chain.w3.provider.make_request(RPCEndpoint("anvil_setCode"), [wallet, code])
    token.faucet(wallet, 50 * TUSD)
    return wallet


def test_erc1271_smart_wallet_signatures(funded: Token) -> None:
    fns = funded.contract.functions
    accepting = install_wallet(funded, ERC1271_MAGIC)
    auth = authorization(funded) | {"from": accepting}
    # The wallet, not ecrecover, decides: any bytes it accepts authorize the transfer.
    funded.chain.transact(fns.transferWithAuthorization(*args(auth), b"wallet-specific proof"))
    assert funded.balance_of(accepting) == 40 * TUSD
    assert funded.authorization_state(accepting, auth["nonce"])

    refusing = install_wallet(funded, "deadbeef")
    auth = authorization(funded) | {"from": refusing}
    # Even a valid ECDSA signature by some key does not speak for a contract account.
    signed = sign(funded, dev_account(PAYER), "TransferWithAuthorization", auth)
    with unchanged(funded, refusing, addr(PAYEE)), pytest.raises(InvalidSignatureError):
        funded.chain.transact(fns.transferWithAuthorization(*args(auth), bytes(signed.signature)))
