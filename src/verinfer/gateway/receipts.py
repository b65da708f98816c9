"""Signed receipts for paid inference: what the node answered, to whom, for how much.

A receipt is an EIP-712 message signed by the node's account, so anyone can check it with
any EIP-712 library (or ``verinfer receipt verify``) and a contract could check it with
``ecrecover``. It binds the model, the exact input and output bytes (by keccak256, the
hashes the coordinator and the dispute game use), the guarantee asked for (the coordinator's
mode byte), the amount paid, the payer, the x402 payment (the EIP-3009 nonce, which the
token's ``AuthorizationUsed`` event names on-chain) and, for a request relayed on-chain
(zk, optimistic), its request id. The domain names the chain and the model registry, so a
receipt cannot be replayed as one from another deployment.

The receipt says what the node *claims*; for mode none, ``verify --rerun`` re-executes the
input with the deterministic runtime and so checks the output itself.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from verinfer.chain.inference import InferenceMode
from verinfer.errors import VerinferError
from verinfer.hexstr import is_address, is_bytes32

DOMAIN_NAME = "verinfer receipt"
DOMAIN_VERSION = "1"
RECEIPT_FIELDS = [
    {"name": "modelId", "type": "uint256"},
    {"name": "inputHash", "type": "bytes32"},
    {"name": "outputHash", "type": "bytes32"},
    {"name": "mode", "type": "uint8"},
    {"name": "price", "type": "uint256"},
    {"name": "payer", "type": "address"},
    {"name": "payment", "type": "bytes32"},
    {"name": "requestId", "type": "uint256"},
    {"name": "issuedAt", "type": "uint64"},
]


class ReceiptError(VerinferError):
    """A receipt is malformed, its signature does not hold, or it does not match the data."""


def digest(data: bytes) -> str:
    """keccak256 of ``data`` as 0x-hex: the input and output hashes a receipt signs."""
    return "0x" + bytes(keccak(data)).hex()


@dataclass(frozen=True)
class Receipt:
    """The signed fields, plus the EIP-712 domain they were signed under."""

    chain_id: int
    registry: str  # the ModelRegistry address: the domain's verifyingContract
    model_id: int
    input_hash: str
    output_hash: str
    mode: int  # InferenceMode byte: 1 none, 4 optimistic, 8 zk
    price: int  # token units paid
    payer: str
    payment: str  # the EIP-3009 authorization nonce of the x402 payment
    request_id: int  # the coordinator request that anchored the result; 0 in mode none
    issued_at: int  # unix seconds

    def typed_data(self) -> dict[str, Any]:
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "InferenceReceipt": RECEIPT_FIELDS,
            },
            "primaryType": "InferenceReceipt",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": self.chain_id,
                "verifyingContract": self.registry,
            },
            "message": {
                "modelId": self.model_id,
                "inputHash": self.input_hash,
                "outputHash": self.output_hash,
                "mode": self.mode,
                "price": self.price,
                "payer": self.payer,
                "payment": self.payment,
                "requestId": self.request_id,
                "issuedAt": self.issued_at,
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        """A receipt from its JSON object; every field is checked, so a bad one is named."""
        if not isinstance(data, dict):
            raise ReceiptError("a receipt is a JSON object")
        known = set(cls.__dataclass_fields__)
        if missing := sorted(known - set(data)):
            raise ReceiptError(f"the receipt lacks {', '.join(missing)}")
        if extra := sorted(set(data) - known):
            raise ReceiptError(f"the receipt has unknown fields {', '.join(extra)}")
        for name in ("input_hash", "output_hash", "payment"):
            if not is_bytes32(data[name]):
                raise ReceiptError(f"{name} must be 0x and 32 bytes of hex")
        for name in ("registry", "payer"):
            if not is_address(data[name]):
                raise ReceiptError(f"{name} must be a 0x-prefixed 20-byte address")
        for name in ("chain_id", "model_id", "mode", "price", "request_id", "issued_at"):
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ReceiptError(f"{name} must be a non-negative integer")
        if data["mode"] not in {int(m) for m in InferenceMode}:
            raise ReceiptError(f"mode {data['mode']} is not an inference mode (1, 2, 4, 8)")
        return cls(**data)


@dataclass(frozen=True)
class SignedReceipt:
    receipt: Receipt
    signer: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        return {"receipt": asdict(self.receipt), "signer": self.signer, "signature": self.signature}

    @classmethod
    def from_json(cls, data: Any) -> SignedReceipt:
        if not isinstance(data, dict) or not {"receipt", "signer", "signature"} <= set(data):
            raise ReceiptError("a signed receipt is {receipt, signer, signature}")
        signer, signature = data["signer"], data["signature"]
        if not is_address(signer):
            raise ReceiptError("signer must be a 0x-prefixed 20-byte address")
        if not isinstance(signature, str) or not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
            raise ReceiptError("signature must be 0x and 65 bytes of hex")
        return cls(Receipt.from_json(data["receipt"]), signer, signature)


def sign_receipt(account: LocalAccount, receipt: Receipt) -> SignedReceipt:
    signed = account.sign_message(encode_typed_data(full_message=receipt.typed_data()))
    return SignedReceipt(receipt, account.address, "0x" + bytes(signed.signature).hex())


def new_receipt(**fields: Any) -> Receipt:
    """A receipt issued now (``issued_at`` from the clock)."""
    return Receipt(issued_at=int(time.time()), **fields)


def recover_signer(signed: SignedReceipt) -> str:
    message = encode_typed_data(full_message=signed.receipt.typed_data())
    try:
        return str(Account.recover_message(message, signature=bytes.fromhex(signed.signature[2:])))
    except Exception as exc:  # noqa: BLE001 - eth_keys raises several types on a bad signature
        raise ReceiptError(f"the signature cannot be recovered: {exc}") from exc


def verify_receipt(
    signed: SignedReceipt,
    *,
    node: str | None = None,
    input: bytes | None = None,
    output: bytes | None = None,
) -> Receipt:
    """The receipt, once its signature is the signer's (and ``node``'s, when given) and the
    given input/output bytes are the ones it signs; ``ReceiptError`` saying what fails."""
    recovered = recover_signer(signed)
    if recovered.lower() != signed.signer.lower():
        raise ReceiptError(f"the signature is by {recovered}, not by {signed.signer}")
    if node is not None and recovered.lower() != node.lower():
        raise ReceiptError(f"the receipt is signed by {recovered}, not by the node {node}")
    receipt = signed.receipt
    if input is not None and digest(input) != receipt.input_hash.lower():
        raise ReceiptError("the input is not the one the receipt signs (input hash differs)")
    if output is not None and digest(output) != receipt.output_hash.lower():
        raise ReceiptError("the output is not the one the receipt signs (output hash differs)")
    return receipt
