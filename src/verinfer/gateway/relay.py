"""Guarantees the gateway cannot give alone: zk, optimistic and consensus, relayed on-chain.

A gateway answering by itself can only sign what it computed (mode none). For the other
modes it sends the paid call to the coordinator as an on-chain request, paid from the
gateway's own account (the x402 payment covers the coordinator's quote plus the gateway's
fee), and answers with what anchors the result there: in mode zk the proof the coordinator
verified in ``fulfilZk``; in mode optimistic the staked node's claim in the DisputeGame
(challengeable by any watchtower until its window ends: the answer is provisional until
then); in mode consensus the agreed output. The model owner's price and royalty are paid by
the coordinator as for any request.

Requests are sent one at a time (one account, one nonce sequence); the waits run in
parallel. A request the chain refunds, or that does not come back in ``timeout`` seconds,
fails the call, so the x402 payment is not settled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from verinfer.chain.inference import InferenceMode, RequestStatus
from verinfer.client import InferenceClient, RequestResult, RequestTimeoutError
from verinfer.errors import VerinferError

CLAIMED_STATUSES = (RequestStatus.CLAIMED, RequestStatus.FULFILLED, RequestStatus.REFUNDED)


class RelayError(VerinferError):
    """The on-chain request did not deliver (refunded, timed out): the call is not charged."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status  # the HTTP status to answer


@dataclass(frozen=True)
class Relayed:
    """An on-chain answer: the bytes, and the evidence that anchors them."""

    request_id: int
    input: bytes
    output: bytes
    anchor: dict[str, Any]


class Relay:
    """Sends relayed calls as coordinator requests from ``client``'s account."""

    def __init__(
        self,
        client: InferenceClient,
        *,
        timeout: float = 120.0,
        tx_lock: threading.Lock | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self._send = tx_lock or threading.Lock()  # the account's transactions, one at a time

    def quote(self, model_id: int, mode: InferenceMode) -> int:
        """What the coordinator charges for one request in ``mode``."""
        k = 3 if mode == InferenceMode.CONSENSUS else 1
        return self.client.coordinator.quote(model_id, mode, k)

    def encode(self, model_id: int, inputs: Any, mode: InferenceMode) -> bytes:
        return self.client.encode_inputs(model_id, inputs, mode)

    def run(self, model_id: int, inputs: Any, mode: InferenceMode) -> Relayed:
        data = self.encode(model_id, inputs, mode)
        with self._send:
            sent = self.client.request(model_id, inputs, mode)
        if mode == InferenceMode.OPTIMISTIC:
            return self._claimed(sent, data)
        result = self._wait(sent.request_id)
        if mode == InferenceMode.ZK:
            return self._proved(sent, data)
        assert result.output is not None
        anchor = {"request_id": sent.request_id, "request_tx": sent.tx, "block": result.block}
        return Relayed(sent.request_id, data, result.output, anchor)

    def _wait(self, request_id: int) -> RequestResult:
        try:
            result = self.client.wait(request_id, timeout=self.timeout)
        except RequestTimeoutError as exc:
            raise RelayError(str(exc), status=504) from exc
        if result.refunded is not None or result.output is None:
            raise RelayError(f"request {request_id} was refunded: no node delivered", status=502)
        if result.invalid_input:
            raise RelayError(f"the nodes refuse the input of request {request_id}", status=422)
        return result

    def _proved(self, sent: RequestResult, data: bytes) -> Relayed:
        from verinfer.verify.cli import find_fulfilment

        found = find_fulfilment(self.client.chain, sent.request_id)
        verifier, _, _ = self.client.registry.zk_config(found.model_id)
        anchor = {
            "request_id": sent.request_id, "request_tx": sent.tx, "fulfil_tx": found.tx,
            "node": found.node, "proof": "0x" + found.proof.hex(), "verifier": verifier,
        }  # fmt: skip
        return Relayed(sent.request_id, data, found.output, anchor)

    def _claimed(self, sent: RequestResult, data: bytes) -> Relayed:
        """The request once a node has claimed it (or it settled first)."""
        coordinator = self.client.coordinator
        deadline = time.monotonic() + self.timeout
        while (info := coordinator.get_request(sent.request_id)).status not in CLAIMED_STATUSES:
            if time.monotonic() > deadline:
                raise RelayError(
                    f"no node claimed request {sent.request_id} in {self.timeout:.0f}s", status=504
                )
            time.sleep(0.2)
        if info.status == RequestStatus.REFUNDED:
            raise RelayError(f"request {sent.request_id} was refunded: no claim held", status=502)
        claim_id = coordinator.claim_of(sent.request_id)
        game = self.client.chain.contract("DisputeGame", coordinator.dispute_game())
        claim = game.functions.claims(claim_id).call()
        opened = game.events.ClaimOpened().get_logs(
            from_block=sent.block or 0, argument_filters={"claimId": claim_id}
        )
        if not opened:
            raise RelayError(f"claim {claim_id} has no ClaimOpened event", status=502)
        window = int(game.functions.window().call())
        anchor = {
            "request_id": sent.request_id, "request_tx": sent.tx, "claim_id": claim_id,
            "game": game.address, "claimer": str(claim[0]),
            "trace_root": "0x" + bytes(claim[6]).hex(),
            "output_hash": "0x" + bytes(claim[10]).hex(),
            "window_ends_at": int(claim[1]) + window,
            "status": "delivered" if info.status == RequestStatus.FULFILLED else "claimed",
        }  # fmt: skip
        return Relayed(sent.request_id, data, bytes(opened[0]["args"]["output"]), anchor)
