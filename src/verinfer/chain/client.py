"""A web3 connection plus a signing account: deploy, call, and transact with decoded reverts.

Every transaction is simulated first (``eth_estimateGas``), so a revert surfaces as a typed
exception before anything is signed or sent, and a failing command leaves no transaction.
"""

from __future__ import annotations

from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxReceipt

from verinfer.chain.artifacts import abi, load_artifact
from verinfer.chain.contract_errors import decode_revert
from verinfer.errors import ChainError, ConfigError

log = structlog.get_logger(__name__)

GAS_MARGIN_NUM, GAS_MARGIN_DEN = 12, 10  # 20% above the estimate
RECEIPT_TIMEOUT_S = 120
PRUNED_RACE_ATTEMPTS = 5


def _revert_data(exc: Exception) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return None


class Chain:
    """One RPC endpoint and (optionally) the account that signs for us."""

    def __init__(
        self, rpc_url: str, account: LocalAccount | None = None, timeout: float = 30
    ) -> None:
        self.rpc_url = rpc_url
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.account = account
        try:
            self.chain_id: int = self.w3.eth.chain_id
        except Exception as exc:  # requests/urllib3/ValueError: the RPC is down or not an RPC
            raise ChainError(
                f"cannot reach an EVM RPC at {rpc_url}: {type(exc).__name__}",
                hint="start one with `verinfer devnet start`, or pass the right --rpc-url",
            ) from exc

    def signer(self) -> LocalAccount:
        if self.account is None:
            raise ConfigError(
                "this command needs a signing key",
                hint="set VERINFER_PRIVATE_KEY or pass --keystore FILE",
            )
        return self.account

    @property
    def address(self) -> str:
        return str(self.signer().address)

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))

    def has_code(self, address: str) -> bool:
        return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def call(self, fn: ContractFunction) -> Any:
        """A read-only call; reverts become typed exceptions."""
        for attempt in range(PRUNED_RACE_ATTEMPTS):
            try:
                return fn.call()
            except (ContractCustomError, ContractLogicError) as exc:
                raise self._decoded(exc) from exc
            except Web3RPCError as exc:
                # A pruning RPC (anvil --prune-history) resolves "latest" to a block and may
                # drop its state when the next block lands mid-call: read again.
                if "BlockOutOfRange" not in str(exc) or attempt == PRUNED_RACE_ATTEMPTS - 1:
                    raise
        raise ChainError("unreachable")  # pragma: no cover

    def transact(self, fn: ContractFunction, *, value: int = 0) -> TxReceipt:
        """Simulate, sign, send and wait; a revert at any stage raises a typed exception."""
        tx: dict[str, Any] = {"from": self.address, "value": value, "chainId": self.chain_id}
        return self._send(fn.build_transaction, tx)

    def deploy(self, name: str, *args: Any) -> tuple[str, TxReceipt]:
        """Deploy contract ``name`` from its committed artifact; returns (address, receipt)."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx: dict[str, Any] = {"from": self.address, "chainId": self.chain_id}
        receipt = self._send(factory.constructor(*args).build_transaction, tx)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} produced no contract address")
        log.info("contract.deployed", name=name, address=address, gas=receipt["gasUsed"])
        return str(address), receipt

    def _send(self, build: Any, tx: dict[str, Any]) -> TxReceipt:
        account = self.signer()
        try:
            # An explicit gas keeps web3 from estimating inside build(); the probe is then
            # estimated without that cap. (Capped by web3's own earlier estimate, a state that
            # moved in between, e.g. another party's dispute move, failed as "out of gas".)
            probe = dict(build({**tx, "gas": 1}))
            del probe["gas"]
            tx["gas"] = self.w3.eth.estimate_gas(probe) * GAS_MARGIN_NUM // GAS_MARGIN_DEN  # type: ignore[arg-type]
            tx["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            built = build(tx)
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._decoded(exc) from exc
        except Web3RPCError as exc:
            raise ChainError(f"the RPC refused the transaction: {exc}") from exc
        signed = account.sign_transaction(built)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:  # an automining devnet has the receipt at once: skip the 100 ms polling interval
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        if receipt["status"] != 1:
            raise ChainError(f"transaction {HexBytes(tx_hash).to_0x_hex()} reverted on-chain")
        return receipt

    def _decoded(self, exc: Exception) -> ChainError:
        data = _revert_data(exc)
        if data is None:
            return ChainError(f"contract call reverted: {exc}")
        return decode_revert(data)
