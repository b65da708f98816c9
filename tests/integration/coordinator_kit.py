"""Helpers for the contract tests of NodeRegistry, InferenceCoordinator and the consumers.

Not a test module (no ``test_`` prefix); the gas benchmark imports it by path. Raw contract
calls through ``Chain`` (simulated first, so reverts raise the typed errors registered in
``verinfer.chain.coordinator_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.contract.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

import verinfer.chain.coordinator_errors  # noqa: F401 - registers the typed errors
import verinfer.chain.token  # noqa: F401 - registers the token's typed errors
from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.models.registry import Mode, ModelInput, RegistryClient

TUSD = 10**6
MIN_STAKE = 100 * TUSD
NO_SHOW_SLASH = 10 * TUSD
DISSENT_SLASH = 20 * TUSD
PROTOCOL_FEE_BPS = 200
ASSIGNMENT_WINDOW = 60
REVEAL_WINDOW = 120
MIN_DEADLINE = 300
MODE_NONE, MODE_CONSENSUS = 1, 2
PRICE = 10_000
ROYALTY_BPS = 500
INPUT = bytes.fromhex("01" + "04" + "00000002" + "00000010" + "fffffff0")
OUTPUT = bytes.fromhex("01" + "00" + "00000001" + "0000002a")
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
STATUS_PENDING, STATUS_REVEALING, STATUS_FULFILLED, STATUS_REFUNDED = 1, 2, 3, 4


def account(index: int) -> LocalAccount:
    """A deterministic test account (anvil's dev accounts are too few for k nodes + users)."""
    key: LocalAccount = Account.from_key(keccak(f"verinfer-test-account-{index}".encode()))
    return key


def commitment(request_id: int, node: str, output: bytes, salt: bytes) -> bytes:
    return keccak(
        encode(["uint256", "address", "bytes", "bytes32"], [request_id, node, output, salt])
    )


@dataclass
class Kit:
    """The deployed suite plus helpers; ``chain`` signs as anvil account 0 (the deployer)."""

    chain: Chain
    book: AddressBook
    funded: set[str] = field(default_factory=set)

    def as_(self, who: LocalAccount) -> Chain:
        if who.address not in self.funded:
            self.chain.w3.provider.make_request("anvil_setBalance", [who.address, hex(10**20)])
            self.funded.add(who.address)
        return Chain(self.chain.rpc_url, who)

    def contract(self, name: str, chain: Chain | None = None) -> Contract:
        book_name = "TestUSD" if name == "TestUSD" else name
        return (chain or self.chain).contract(name, self.book.address(book_name))

    @property
    def coordinator(self) -> Contract:
        return self.contract("InferenceCoordinator")

    @property
    def nodes(self) -> Contract:
        return self.contract("NodeRegistry")

    @property
    def token(self) -> Contract:
        return self.contract("TestUSD")

    def call(self, name: str, fn: str, *args: Any) -> Any:
        return self.chain.call(getattr(self.contract(name).functions, fn)(*args))

    def send(self, who: LocalAccount | None, name: str, fn: str, *args: Any) -> TxReceipt:
        chain = self.chain if who is None else self.as_(who)
        contract = chain.contract(name, self.contract(name).address)
        return chain.transact(getattr(contract.functions, fn)(*args))

    def mint(self, to: str, amount: int) -> None:
        self.chain.transact(self.token.functions.faucet(to, amount))

    def approve(self, who: LocalAccount, spender: str, amount: int) -> None:
        self.send(who, "TestUSD", "approve", spender, amount)

    def balance(self, address: str) -> int:
        return int(self.call("TestUSD", "balanceOf", address))

    def owed(self, address: str) -> int:
        return int(self.call("InferenceCoordinator", "balanceOf", address))

    def register_model(
        self, price: int = PRICE, royalty_bps: int = ROYALTY_BPS, modes: Mode | None = None
    ) -> int:
        registry = RegistryClient(self.chain, self.book.address("ModelRegistry"))
        model_id, _ = registry.register(
            ModelInput(
                name="m", cid=CID, input_shapes=[[1, 2]], output_shapes=[[1, 1]], price=price,
                royalty_bps=royalty_bps, modes=modes or (Mode.NONE | Mode.CONSENSUS),
            )
        )  # fmt: skip
        return model_id

    def add_node(
        self,
        who: LocalAccount,
        model_id: int,
        modes: int = MODE_NONE | MODE_CONSENSUS,
        fee: int = 2_000,
        stake: int = MIN_STAKE,
    ) -> None:
        self.mint(who.address, stake)
        self.approve(who, self.nodes.address, stake)
        self.send(who, "NodeRegistry", "register")
        self.send(who, "NodeRegistry", "stake", stake)
        self.send(who, "NodeRegistry", "setService", model_id, modes, fee)

    def now(self) -> int:
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        self.chain.w3.provider.make_request("evm_increaseTime", [seconds])
        self.chain.w3.provider.make_request("evm_mine", [])

    def quote(self, model_id: int, mode: int = MODE_NONE, k: int = 1) -> int:
        return int(self.call("InferenceCoordinator", "quote", model_id, mode, k))

    def request(
        self,
        who: LocalAccount,
        model_id: int,
        mode: int = MODE_NONE,
        k: int = 1,
        *,
        data: bytes = INPUT,
        max_fee: int | None = None,
        deadline: int | None = None,
        callback_gas: int = 200_000,
        fund: bool = True,
    ) -> tuple[int, list[str], TxReceipt]:
        """An EOA request; returns (request id, assigned nodes, receipt)."""
        fee = self.quote(model_id, mode, k) if max_fee is None else max_fee
        if fund:
            self.mint(who.address, fee)
            self.approve(who, self.coordinator.address, fee)
        deadline = deadline or self.now() + 3600
        receipt = self.send(
            who, "InferenceCoordinator", "request", model_id, data, mode, fee, deadline,
            callback_gas, k,
        )  # fmt: skip
        (event,) = self.events("InferenceRequested", receipt)
        return int(event["requestId"]), list(event["assigned"]), receipt

    def events(
        self, name: str, receipt: TxReceipt, contract: str = "InferenceCoordinator"
    ) -> list[dict[str, Any]]:
        c = self.contract(contract)
        return [dict(e["args"]) for e in c.events[name]().process_receipt(receipt, errors=DISCARD)]

    def get_request(self, request_id: int) -> dict[str, Any]:
        fn = self.coordinator.functions.getRequest(request_id)
        values = self.chain.call(fn)
        names = [c["name"] for c in fn.abi["outputs"][0]["components"]]
        return dict(zip(names, values, strict=True))

    def node_stake(self, address: str) -> tuple[int, int]:
        stake, unbonding, _, _ = self.call("NodeRegistry", "getNode", address)
        return int(stake), int(unbonding)


def by_address(accounts: list[LocalAccount]) -> dict[str, LocalAccount]:
    return {a.address: a for a in accounts}


DEPLOYER = dev_account(0)
