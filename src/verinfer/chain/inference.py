"""Typed clients for the NodeRegistry (stake, serve) and the InferenceCoordinator (requests).

Both sit on ``Chain``: every transaction is simulated first, so a revert surfaces as the
typed exception registered in ``verinfer.chain.coordinator_errors`` before anything is sent.
Amounts are integer token units (convert with ``verinfer.chain.token.parse_units``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.logs import DISCARD
from web3.types import TxReceipt

import verinfer.chain.coordinator_errors  # noqa: F401 - registers the contracts' typed errors
import verinfer.optimistic.errors  # noqa: F401 - the DisputeGame's errors surface through claims
from verinfer.chain.client import Chain
from verinfer.chain.token import Token
from verinfer.errors import ChainError, ConfigError

__all__ = [
    "MAX_NODE_FEE",
    "MAX_UINT96",
    "Ballot",
    "EARLY_DELIVERY",
    "CoordinatorClient",
    "InferenceMode",
    "NodeInfo",
    "NodeRegistryClient",
    "RequestInfo",
    "RequestReceipt",
    "RequestStatus",
    "ServiceInfo",
    "commitment",
]

NODE_REGISTRY = "NodeRegistry"
COORDINATOR = "InferenceCoordinator"
MAX_UINT96 = 2**96 - 1
MAX_NODE_FEE = 2**88 - 1  # NodeRegistry.MAX_FEE: a request's node fee is 88 bits
MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1
EARLY_DELIVERY = 0x10
"""A flag of the mode byte (``InferenceMode.OPTIMISTIC | EARLY_DELIVERY``): the consumer contract
also gets the claimed output at the claim (``onProvisionalInference``) and ``onCorrection`` if
the claim loses. Optimistic requests only (``VerinferEarlyDeliveryNotOptimistic``)."""


class InferenceMode(IntEnum):
    """The coordinator's ``mode`` byte (the same value as the registry's mode bit)."""

    NONE = 1
    CONSENSUS = 2
    OPTIMISTIC = 4
    ZK = 8

    def byte(self, *, early: bool = False) -> int:
        """The ``mode`` byte of a request: the mode, plus ``EARLY_DELIVERY`` when ``early``
        (mode optimistic only: ``ConfigError`` otherwise)."""
        if early and self != InferenceMode.OPTIMISTIC:
            raise ConfigError(
                f"early delivery is for mode optimistic, not {self.name.lower()}",
                hint="drop --early, or use --mode optimistic",
            )
        return int(self) | (EARLY_DELIVERY if early else 0)

    @classmethod
    def parse(cls, text: str | int | InferenceMode) -> InferenceMode:
        if isinstance(text, InferenceMode):
            return text
        if isinstance(text, int):
            try:
                return cls(text)
            except ValueError:
                raise ConfigError(
                    f"unknown inference mode {text}", hint="use 1, 2, 4 or 8"
                ) from None
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(
                f"unknown inference mode {text!r}",
                hint="choose none, consensus, optimistic or zk",
            ) from None


class RequestStatus(IntEnum):
    NONE = 0
    PENDING = 1
    REVEALING = 2
    FULFILLED = 3
    REFUNDED = 4
    CLAIMED = 5  # optimistic: claimed, waiting for finalizeOptimistic (or refund if it lost)

    @property
    def settled(self) -> bool:
        return self in (RequestStatus.FULFILLED, RequestStatus.REFUNDED)


@dataclass(frozen=True)
class NodeInfo:
    address: str
    stake: int
    unbonding: int
    unbonding_ready_at: int
    registered: bool


@dataclass(frozen=True)
class ServiceInfo:
    modes: int
    fee: int


@dataclass(frozen=True)
class RequestInfo:
    """IInferenceCoordinator.Request as read from the chain."""

    request_id: int
    requester: str
    deadline: int
    callback_gas_limit: int
    mode: int
    redundancy: int
    status: RequestStatus
    escrow: int
    node_fee: int
    assigned_until: int
    reveal_deadline: int
    model_id: int
    input_hash: str  # zk, optimistic; zero in modes none and consensus: the input is in the event
    # Optimistic: the requester asked for early delivery (the EARLY_DELIVERY bit of the mode
    # byte, which ``mode`` leaves out).
    early: bool = False

    @classmethod
    def from_tuple(cls, request_id: int, t: Any) -> RequestInfo:
        mode = int(t[3])
        return cls(
            request_id=request_id, requester=str(t[0]), deadline=int(t[1]),
            callback_gas_limit=int(t[2]), mode=mode & ~EARLY_DELIVERY, redundancy=int(t[4]),
            status=RequestStatus(int(t[5])), escrow=int(t[6]), node_fee=int(t[7]),
            assigned_until=int(t[8]), reveal_deadline=int(t[9]), model_id=int(t[10]),
            input_hash="0x" + bytes(t[11]).hex(), early=bool(mode & EARLY_DELIVERY),
        )  # fmt: skip


@dataclass(frozen=True)
class Ballot:
    committed: int
    revealed: int
    majority: int
    closed: bool


@dataclass(frozen=True)
class RequestReceipt:
    """What ``request`` returns: the id, the nodes assigned, the fee paid and the receipt."""

    request_id: int
    assigned: list[str]
    fee: int
    deadline: int
    block: int
    tx: str
    receipt: TxReceipt


def commitment(request_id: int, node: str, output: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(requestId, node, output, salt)): what a consensus node commits."""
    if len(salt) != 32:
        raise ConfigError(f"a commit salt is 32 bytes, got {len(salt)}")
    encoded = encode(
        ["uint256", "address", "bytes", "bytes32"],
        [request_id, Web3.to_checksum_address(node), output, salt],
    )
    return bytes(keccak(encoded))


def _check_range(value: int, top: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ConfigError(f"{what} {value!r} is outside 0..{top}")
    return value


_PRUNED = "BlockOutOfRange"  # anvil --prune-history: no state but the newest block's
_VIEW_ATTEMPTS = 5


def _view(chain: Chain, fn: ContractFunction, block: Any) -> Any:
    """A view call at ``block``; reverts become typed errors.

    A node pins reads to the block it trails the head at, but a pruning RPC (anvil with
    ``--prune-history``, many public endpoints) may no longer hold that state, and even
    "latest" can race a block being mined. Both are retried at "latest": every field read
    here only moves forward (status, ballot bits), so a newer state never misleads.
    """
    for attempt in range(_VIEW_ATTEMPTS):
        try:
            return fn.call(block_identifier=block)
        except (ContractCustomError, ContractLogicError) as exc:
            raise chain._decoded(exc) from exc
        except Web3RPCError as exc:
            if _PRUNED not in str(exc) or attempt == _VIEW_ATTEMPTS - 1:
                raise
            block = "latest"
    raise ChainError("unreachable")  # pragma: no cover


class NodeRegistryClient:
    """A node's view of the NodeRegistry: register, stake, serve models, unbond."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = Web3.to_checksum_address(address)
        self.contract: Contract = chain.contract(NODE_REGISTRY, self.address)

    def register(self) -> TxReceipt:
        return self.chain.transact(self.contract.functions.register())

    def stake(self, amount: int, token: Token) -> TxReceipt:
        """Approve the registry for ``amount`` (when needed) and stake it."""
        if amount <= 0:
            raise ConfigError("the stake amount must be positive")
        if token.allowance(self.chain.address, self.address) < amount:
            token.approve(self.address, amount)
        return self.chain.transact(self.contract.functions.stake(amount))

    def request_unstake(self, amount: int) -> TxReceipt:
        if amount <= 0:
            raise ConfigError("the unstake amount must be positive")
        return self.chain.transact(self.contract.functions.requestUnstake(amount))

    def withdraw(self) -> TxReceipt:
        return self.chain.transact(self.contract.functions.withdraw())

    def set_service(self, model_id: int, modes: int, fee: int) -> TxReceipt:
        _check_range(modes, 255, "modes")
        _check_range(fee, MAX_NODE_FEE, "fee")
        return self.chain.transact(self.contract.functions.setService(model_id, modes, fee))

    def get_node(self, node: str | None = None) -> NodeInfo:
        address = Web3.to_checksum_address(node or self.chain.address)
        t = self.chain.call(self.contract.functions.getNode(address))
        return NodeInfo(address, int(t[0]), int(t[1]), int(t[2]), bool(t[3]))

    def get_service(self, model_id: int, node: str | None = None) -> ServiceInfo:
        address = Web3.to_checksum_address(node or self.chain.address)
        t = self.chain.call(self.contract.functions.getService(address, model_id))
        return ServiceInfo(int(t[0]), int(t[1]))

    def min_stake(self) -> int:
        return int(self.chain.call(self.contract.functions.minStake()))

    def nodes_of(self, model_id: int) -> list[str]:
        return [str(a) for a in self.chain.call(self.contract.functions.nodesOf(model_id))]


class CoordinatorClient:
    """Requests, answers and payments at the InferenceCoordinator."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = Web3.to_checksum_address(address)
        self.contract: Contract = chain.contract(COORDINATOR, self.address)

    # -- reads ----------------------------------------------------------------------------

    def quote(self, model_id: int, mode: InferenceMode | str, redundancy: int = 1) -> int:
        m = InferenceMode.parse(mode)
        return int(self.chain.call(self.contract.functions.quote(model_id, int(m), redundancy)))

    def get_request(self, request_id: int, block: Any = "latest") -> RequestInfo:
        """The request at ``block`` (see ``_view`` for blocks whose state is pruned)."""
        t = _view(self.chain, self.contract.functions.getRequest(request_id), block)
        return RequestInfo.from_tuple(request_id, t)

    def get_ballot(self, request_id: int, block: Any = "latest") -> Ballot:
        """Consensus bookkeeping: bit i of committed/revealed is the i-th assigned node."""
        t = _view(self.chain, self.contract.functions.getBallot(request_id), block)
        return Ballot(int(t[0]), int(t[1]), int(t[2]), bool(t[3]))

    def assigned_nodes(self, request_id: int) -> list[str]:
        return [str(a) for a in self.chain.call(self.contract.functions.assignedNodes(request_id))]

    def request_count(self) -> int:
        return int(self.chain.call(self.contract.functions.requestCount()))

    def dispute_game(self) -> str:
        """Optimistic mode's DisputeGame (the zero address when none is set)."""
        return str(self.chain.call(self.contract.functions.disputeGame()))

    def claim_of(self, request_id: int) -> int:
        """Optimistic: the DisputeGame claim id of a claimed request (0 before its claim)."""
        return int(self.chain.call(self.contract.functions.claimOf(request_id)))

    def balance_of(self, account: str) -> int:
        address = Web3.to_checksum_address(account)
        return int(self.chain.call(self.contract.functions.balanceOf(address)))

    # -- the requester ----------------------------------------------------------------------

    def request(
        self,
        model_id: int,
        input_bytes: bytes,
        mode: InferenceMode | str = InferenceMode.NONE,
        *,
        max_fee: int,
        deadline: int,
        callback_gas_limit: int = 0,
        redundancy: int = 1,
        token: Token | None = None,
        early: bool = False,
    ) -> RequestReceipt:
        """Pay into escrow and ask for an output. With ``token``, approve ``max_fee`` first
        when the allowance is short. ``early`` (mode optimistic only): the requester contract
        also gets the claimed output at the claim, provisionally (``EARLY_DELIVERY``)."""
        m = InferenceMode.parse(mode)
        mode_byte = m.byte(early=early)
        _check_range(deadline, MAX_UINT64, "deadline")
        _check_range(callback_gas_limit, MAX_UINT32, "callback gas limit")
        _check_range(redundancy, 255, "redundancy")
        if token is not None and token.allowance(self.chain.address, self.address) < max_fee:
            token.approve(self.address, max_fee)
        fn = self.contract.functions.request(
            model_id, bytes(input_bytes), mode_byte, max_fee, deadline, callback_gas_limit,
            redundancy,
        )  # fmt: skip
        receipt = self.chain.transact(fn)
        events = self.contract.events.InferenceRequested().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(
                f"the request transaction emitted {len(events)} InferenceRequested events"
            )
        args = events[0]["args"]
        return RequestReceipt(
            request_id=int(args["requestId"]),
            assigned=[str(a) for a in args["assigned"]],
            fee=int(args["fee"]),
            deadline=int(args["deadline"]),
            block=int(receipt["blockNumber"]),
            tx=receipt["transactionHash"].to_0x_hex(),
            receipt=receipt,
        )

    def refund(self, request_id: int) -> TxReceipt:
        return self.chain.transact(self.contract.functions.refund(request_id))

    def withdraw(self) -> TxReceipt:
        return self.chain.transact(self.contract.functions.withdraw())

    # -- nodes ------------------------------------------------------------------------------

    def fulfil_fn(self, request_id: int, output: bytes) -> ContractFunction:
        return self.contract.functions.fulfil(request_id, output)

    def fulfil_zk_fn(
        self, request_id: int, input_bytes: bytes, output: bytes, proof: bytes
    ) -> ContractFunction:
        """Mode zk: ``output`` with a proof that the model's circuit maps ``input_bytes`` (the
        request's input) to it; the coordinator builds the public instances from both."""
        return self.contract.functions.fulfilZk(
            request_id, bytes(input_bytes), bytes(output), bytes(proof)
        )

    def commit_fn(self, request_id: int, commitment_hash: bytes) -> ContractFunction:
        return self.contract.functions.commit(request_id, commitment_hash)

    def reveal_fn(self, request_id: int, output: bytes, salt: bytes) -> ContractFunction:
        return self.contract.functions.reveal(request_id, output, salt)

    def claim_fn(self, request_id: int, output: bytes, trace_root: bytes) -> ContractFunction:
        """Mode optimistic: the assigned node's claim (send it with the game's claim bond)."""
        return self.contract.functions.claim(request_id, bytes(output), bytes(trace_root))

    def claim(self, request_id: int, output: bytes, trace_root: bytes) -> tuple[int, TxReceipt]:
        """Mode optimistic: claim ``output`` (inline, ``outputs_q`` at the program's output
        scales) with the execution's ``trace_root``, forwarding the DisputeGame's claim deposit.
        Returns the game's claim id and the receipt."""
        if len(trace_root) != 32:
            raise ConfigError(f"a trace root is 32 bytes, got {len(trace_root)}")
        game = self.chain.contract("DisputeGame", self.dispute_game())
        bond = int(self.chain.call(game.functions.claimDeposit()))  # bond + jackpot fee
        receipt = self.chain.transact(self.claim_fn(request_id, output, trace_root), value=bond)
        events = self.contract.events.Claimed().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(f"the claim transaction emitted {len(events)} Claimed events")
        return int(events[0]["args"]["claimId"]), receipt

    def finalize_optimistic(self, request_id: int, output: bytes) -> TxReceipt:
        """Mode optimistic: deliver the claimed ``output`` and pay, once the claim finalized
        (after the challenge window, undisputed) or its claimer won the dispute."""
        return self.chain.transact(
            self.contract.functions.finalizeOptimistic(request_id, bytes(output))
        )

    def fulfil(self, request_id: int, output: bytes) -> TxReceipt:
        return self.chain.transact(self.fulfil_fn(request_id, output))

    def fulfil_zk(
        self, request_id: int, input_bytes: bytes, output: bytes, proof: bytes
    ) -> TxReceipt:
        return self.chain.transact(self.fulfil_zk_fn(request_id, input_bytes, output, proof))

    def commit(self, request_id: int, commitment_hash: bytes) -> TxReceipt:
        return self.chain.transact(self.commit_fn(request_id, commitment_hash))

    def reveal(self, request_id: int, output: bytes, salt: bytes) -> TxReceipt:
        return self.chain.transact(self.reveal_fn(request_id, output, salt))

    def finalize(self, request_id: int) -> TxReceipt:
        return self.chain.transact(self.contract.functions.finalize(request_id))

    # -- events -----------------------------------------------------------------------------

    def settlement(self, request_id: int, from_block: int = 0) -> dict[str, Any] | None:
        """The InferenceFulfilled or Refunded event of ``request_id``, decoded, or None."""
        for name in ("InferenceFulfilled", "Refunded"):
            event = getattr(self.contract.events, name)
            logs = event().get_logs(
                from_block=from_block, argument_filters={"requestId": request_id}
            )
            if logs:
                return {"event": name, **dict(logs[0]["args"]), "block": logs[0]["blockNumber"]}
        return None
