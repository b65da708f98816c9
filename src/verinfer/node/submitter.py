"""Sign and send the node's transactions, exactly once per request and phase.

The rules that make restarts safe:

* A transaction is signed locally with an explicit nonce, and the job is marked
  ``submitted`` with its hash, nonce and raw bytes *before* it is sent. A crash after that
  point leaves everything needed to find (receipt by hash) or re-send (the same raw bytes,
  same hash) that transaction; it is never signed twice with different content.
* Before signing, the call is simulated (``eth_estimateGas``): if the request was already
  settled on-chain, by us or anyone, the revert says so and the job is closed, not sent.
* A submitted job without a receipt is re-broadcast (identical bytes) while its nonce is
  still unused; once the account's nonce moved past it without a receipt, the transaction
  can never be mined, so the job goes back one state and is simulated afresh.
* A reverted transaction is data: the job is failed with the decoded custom error.
* Consensus: the salt is stored with the output (state ``computed``) before the commit is
  signed, so a restarted node reveals with the salt it committed to.
* Consensus: a node that committed keeps the job open (``committed`` or ``revealed``) until
  the ballot closes; past the reveal deadline with the ballot still open (another node never
  revealed) it calls ``finalize``. Several nodes may race to do so: "already closed" is the
  expected answer for all but one, recorded, never an error.
* Optimistic: ``claim`` carries the game's bond as value; ``settle`` (finalizeOptimistic) is
  sent once the challenge window passed (node/optimistic.py), and is idempotent: a request
  already delivered by anyone closes the job as confirmed.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)

from verinfer.chain.contract_errors import decode_revert
from verinfer.chain.inference import (
    CoordinatorClient,
    InferenceMode,
    RequestInfo,
    RequestStatus,
    commitment,
)
from verinfer.node.config import GasConfig
from verinfer.node.jobs import Job, JobLog, JobState, Phase
from verinfer.node.optimistic import ClaimTracker
from verinfer.node.rpc import with_retries

__all__ = ["Submitter"]

log = structlog.get_logger(__name__)

GWEI = 10**9
MAX_SEND_ATTEMPTS = 5  # per job: refused sends (not reverts) before the job is failed
RESEND_AFTER_S = 3.0  # a submitted tx unseen this long is checked for being dropped
# A commit or reveal may become the one that settles the ballot (delivery with its callback,
# payments, slashes) after it was estimated, when other nodes' txs land first. Gas not used is
# not paid for, so these phases get this much extra on top of the estimate and the callback.
SETTLE_HEADROOM = 400_000
_REPLAY_SUCCEEDS = "reverted, but the replayed call succeeds"


def _revert_data(exc: BaseException) -> bytes | None:
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return None


def _describe(exc: BaseException) -> str:
    data = _revert_data(exc)
    if data is not None:
        return str(decode_revert(data))
    return f"{type(exc).__name__}: {exc}"[:300]


class Submitter:
    """Turns computed jobs into transactions and receipts into job states."""

    def __init__(
        self,
        coordinator: CoordinatorClient,
        account: LocalAccount,
        jobs: JobLog,
        gas: GasConfig,
        *,
        confirmations: int = 1,
    ) -> None:
        self.coordinator = coordinator
        self.w3: Web3 = coordinator.chain.w3
        self.chain_id = coordinator.chain.chain_id
        self.account = account
        self.address: Any = account.address
        self.jobs = jobs
        self.gas = gas
        self.confirmations = confirmations
        self.next_nonce: int | None = None
        self.base_fee = GWEI
        self.claims = ClaimTracker(coordinator, jobs)

    # -- start-up ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Resolve every job left ``submitted`` by a previous run, then take the nonce."""
        head = self._rpc(lambda: self.w3.eth.block_number, "block number")
        for job in self.jobs.in_state(JobState.SUBMITTED):
            self.check(job, head, force=True)
        self.sync_nonce()

    def sync_nonce(self) -> None:
        pending = self._rpc(
            lambda: self.w3.eth.get_transaction_count(self.address, "pending"), "nonce"
        )
        self.next_nonce = int(pending)
        log.info("nonce.synced", address=self.address, nonce=self.next_nonce)

    # -- one tick ---------------------------------------------------------------------------

    def fees(self) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas): twice the base fee plus the tip, capped."""
        tip = int(self.gas.priority_fee_gwei * GWEI)
        cap = int(self.gas.max_fee_gwei * GWEI)
        return min(2 * self.base_fee + tip, cap), tip

    def request_info(self, job: Job, head: int) -> RequestInfo:
        """The job's request, read at the block the node trails the head at."""
        return self._request(job, head)

    def submit(self, job: Job, now: int, head: int) -> None:
        """Send the next transaction a ``computed``, ``committed`` or ``revealed`` job needs."""
        if job.state == JobState.COMPUTED:
            if job.deadline and now >= job.deadline:
                self._close(job, JobState.EXPIRED, "deadline_passed")
                return
            phases: dict[int, Phase] = {
                InferenceMode.CONSENSUS: Phase.COMMIT,
                InferenceMode.OPTIMISTIC: Phase.CLAIM,
            }
            phase = phases.get(job.mode, Phase.FULFIL)
            callback_gas = 0
        elif job.state == JobState.CLAIMED:
            if not self.claims.ready(job, now, self._block(head)):
                return
            phase, callback_gas = Phase.SETTLE, 0
        elif job.state == JobState.COMMITTED:
            # Reveals open when all k committed (Revealing), or after the assignment window
            # with a strict majority committed; a delivered output (Fulfilled) still takes
            # the remaining reveals until the ballot closes.
            info = self._request(job, head)
            if info.status == RequestStatus.REFUNDED or self._ballot_closed(job, head):
                self._close_settled(job, info, before="reveal")
                return
            if info.status == RequestStatus.PENDING and now < info.assigned_until:
                return  # other nodes have not all committed yet
            if info.reveal_deadline and now > info.reveal_deadline:
                phase, callback_gas = Phase.FINALIZE, 0  # too late to reveal; close the ballot
            else:
                phase, callback_gas = Phase.REVEAL, info.callback_gas_limit
        elif job.state == JobState.REVEALED:
            if job.reveal_deadline and now <= job.reveal_deadline:
                return  # others may still reveal; the watcher closes the job when the last does
            info = self._request(job, head)
            if info.status == RequestStatus.REFUNDED or self._ballot_closed(job, head):
                self._close(job, JobState.CONFIRMED, "revealed")
                return
            if now <= info.reveal_deadline:
                self.jobs.transition(
                    job.request_id, JobState.REVEALED, reveal_deadline=info.reveal_deadline
                )
                return
            phase, callback_gas = Phase.FINALIZE, 0
        else:
            return
        data = self._calldata(job, phase)
        value = self.claims.bond() if phase == Phase.CLAIM else 0
        call: Any = {
            "from": self.address,
            "to": self.coordinator.address,
            "data": data,
            "value": value,
        }
        try:
            estimate = self._rpc(lambda: self.w3.eth.estimate_gas(call), "estimate gas")
        except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
            self._refused(job, phase, exc, head)
            return
        if self.next_nonce is None:
            self.sync_nonce()
        nonce = int(self.next_nonce or 0)
        max_fee, tip = self.fees()
        tx: dict[str, Any] = {
            "to": self.coordinator.address,
            "data": data,
            "value": value,
            "gas": self._gas_limit(estimate, phase, job.attempts, callback_gas),
            "nonce": nonce,
            "chainId": self.chain_id,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "type": 2,
        }
        signed = self.account.sign_transaction(tx)
        tx_hash = HexBytes(signed.hash).to_0x_hex()
        raw = bytes(signed.raw_transaction)
        # Recorded before sending: a crash from here on can always find or re-send this tx.
        self.jobs.transition(
            job.request_id,
            JobState.SUBMITTED,
            expect=(job.state,),
            phase=phase,
            tx_hash=tx_hash,
            nonce=nonce,
            raw_tx=raw,
            error=None,
        )
        self.next_nonce = nonce + 1
        self.jobs.bump("tx_sent")
        log.info(
            "job.submitted", request_id=job.request_id, phase=str(phase), tx=tx_hash, nonce=nonce
        )
        self._broadcast(job.request_id, raw, tx_hash, nonce)

    def check_submitted(self, head: int) -> None:
        for job in self.jobs.in_state(JobState.SUBMITTED):
            self.check(job, head)

    def check(self, job: Job, head: int, *, force: bool = False) -> None:
        """Resolve a ``submitted`` job from its receipt; re-send or roll back a lost tx."""
        if job.tx_hash is None or job.nonce is None:
            self._rollback(job, "submitted without a transaction")
            return
        receipt = self._receipt(job.tx_hash)
        if receipt is not None:
            if head >= int(receipt["blockNumber"]) + self.confirmations - 1 or force:
                self._resolve(job, receipt, head)
            return
        if not force and time.time() - job.updated_at < RESEND_AFTER_S:
            return
        mined_nonce = self._rpc(
            lambda: self.w3.eth.get_transaction_count(self.address, "latest"), "nonce"
        )
        if job.nonce < mined_nonce:
            receipt = self._receipt(job.tx_hash)  # it may have been mined since we looked
            if receipt is not None:
                self._resolve(job, receipt, head)
            else:
                self._rollback(job, f"tx {job.tx_hash} was replaced (nonce {job.nonce} used)")
            return
        if self._known(job.tx_hash):
            return
        log.info("job.rebroadcast", request_id=job.request_id, tx=job.tx_hash, nonce=job.nonce)
        if job.raw_tx is not None:
            self._broadcast(job.request_id, job.raw_tx, job.tx_hash, job.nonce)

    # -- helpers ----------------------------------------------------------------------------

    def _gas_limit(self, estimate: int, phase: Phase, attempts: int, callback_gas: int) -> int:
        """The estimate with the margin, growing with each retry of an out-of-gas revert."""
        gas = int(estimate * self.gas.margin * (1 + 0.5 * attempts))
        if phase == Phase.REVEAL:
            gas += SETTLE_HEADROOM + callback_gas * 64 // 63
        return gas

    def _call(self, job: Job, phase: Phase) -> tuple[str, list[Any]]:
        """The coordinator function and arguments ``phase`` of ``job`` calls."""
        rid = job.request_int
        output = job.output or b""
        if phase == Phase.FULFIL and job.mode == InferenceMode.ZK:
            return "fulfilZk", [rid, job.input, output, job.proof or b""]
        if phase == Phase.FULFIL:
            return "fulfil", [rid, output]
        if phase == Phase.CLAIM:
            return "claim", [rid, output, job.trace_root or b"\0" * 32]
        if phase == Phase.SETTLE:
            return "finalizeOptimistic", [rid, output]
        if phase == Phase.FINALIZE:
            return "finalize", [rid]
        salt = job.salt or b""
        if phase == Phase.COMMIT:
            return "commit", [rid, commitment(rid, self.address, output, salt)]
        return "reveal", [rid, output, salt]

    def _calldata(self, job: Job, phase: Phase) -> str:
        name, args = self._call(job, phase)
        return str(self.coordinator.contract.encode_abi(name, args=args))

    def _function(self, job: Job, phase: Phase) -> ContractFunction:
        name, args = self._call(job, phase)
        return getattr(self.coordinator.contract.functions, name)(*args)  # type: ignore[no-any-return]

    def _broadcast(self, request_id: str, raw: bytes, tx_hash: str, nonce: int) -> None:
        try:
            self._rpc(lambda: self.w3.eth.send_raw_transaction(raw), "send transaction")
        except (Web3RPCError, ValueError) as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text:
                return
            log.warning(
                "tx.refused", request_id=request_id, tx=tx_hash, nonce=nonce, error=str(exc)[:200]
            )
            self.jobs.bump("tx_refused")
            # The nonce was not used: take the chain's view again so no gap stalls later txs.
            self.sync_nonce()
            job = self.jobs.get(request_id)
            if job is not None and job.state == JobState.SUBMITTED:
                if job.attempts >= MAX_SEND_ATTEMPTS:
                    self._close(job, JobState.FAILED, "send_refused", error=str(exc)[:300])
                else:
                    self._rollback(job, f"send refused: {exc}"[:300])

    def _receipt(self, tx_hash: str) -> Any:
        def get() -> Any:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

        return self._rpc(get, "receipt")

    def _known(self, tx_hash: str) -> bool:
        def get() -> bool:
            try:
                return self.w3.eth.get_transaction(tx_hash) is not None  # type: ignore[arg-type]
            except TransactionNotFound:
                return False

        return bool(self._rpc(get, "transaction"))

    def _resolve(self, job: Job, receipt: Any, head: int) -> None:
        tx = HexBytes(receipt["transactionHash"]).to_0x_hex()
        if int(receipt["status"]) == 1:
            if job.phase == Phase.COMMIT:
                self.jobs.transition(
                    job.request_id, JobState.COMMITTED, expect=(JobState.SUBMITTED,)
                )
                log.info("job.committed", request_id=job.request_id, tx=tx)
                return
            if job.phase == Phase.CLAIM:
                self.claims.claimed(job, self._block(head))
                return
            if job.phase == Phase.FINALIZE:
                state, outcome = self._after_finalize(job, by_us=True)
                self.jobs.transition(
                    job.request_id, state, expect=(JobState.SUBMITTED,), outcome=outcome
                )
                log.info("job.finalized", request_id=job.request_id, tx=tx, outcome=outcome)
                return
            if job.phase == Phase.REVEAL and not self._ballot_closed(job, head):
                # Others have yet to reveal: wait for the ballot to close (or finalize it).
                info = self._request(job, head)
                self.jobs.transition(
                    job.request_id, JobState.REVEALED, expect=(JobState.SUBMITTED,),
                    outcome="revealed", reveal_deadline=info.reveal_deadline,
                )  # fmt: skip
                self.jobs.bump("requests_handled")
                log.info("job.revealed", request_id=job.request_id, tx=tx)
                return
            outcome = "revealed" if job.phase == Phase.REVEAL else "fulfilled"
            if job.phase == Phase.SETTLE:
                outcome = "finalized"
            if job.phase == Phase.FULFIL and job.takeover:
                outcome = "took_over"
            self.jobs.transition(
                job.request_id, JobState.CONFIRMED, expect=(JobState.SUBMITTED,), outcome=outcome
            )
            self.jobs.bump("requests_handled")
            log.info("job.confirmed", request_id=job.request_id, tx=tx, outcome=outcome)
            return
        self.jobs.bump("tx_failed")
        reason = self._replay_reason(job, int(receipt["blockNumber"]))
        log.warning("tx.reverted", request_id=job.request_id, tx=tx, reason=reason)
        info = self._request(job, head)
        phase = job.phase or Phase.FULFIL
        if phase == Phase.SETTLE and job.attempts < MAX_SEND_ATTEMPTS:
            self._rollback(job, reason)  # back to claimed: the next tick reads the claim
        elif self._settled(job, phase, info, head):
            self._close_settled(job, info, before=str(job.phase), error=reason)
        elif reason.startswith(_REPLAY_SUCCEEDS) and job.attempts < MAX_SEND_ATTEMPTS:
            self._rollback(job, reason)  # out of gas (or raced): simulate and send again
        else:
            self._close(job, JobState.FAILED, "reverted", error=reason)

    def _replay_reason(self, job: Job, block: int) -> str:
        """Why a mined transaction reverted: the call replayed on the state before its block."""
        fn = self._function(job, job.phase or Phase.FULFIL)
        try:
            value = self.claims.bond() if job.phase == Phase.CLAIM else 0
            tx: Any = {"from": self.address, "value": value}
            fn.call(tx, block_identifier=max(block - 1, 0))
        except Exception as exc:  # noqa: BLE001 - whatever it was, it is the reason we report
            return _describe(exc)
        return f"{_REPLAY_SUCCEEDS} (out of gas, or a state change in its block)"

    def _refused(self, job: Job, phase: Phase, exc: BaseException, head: int) -> None:
        """The simulation reverted: settled already, not yet possible, or a real failure."""
        reason = _describe(exc)
        if phase == Phase.REVEAL and "VerinferRevealNotOpen" in reason:
            return  # try again next tick
        if phase == Phase.FINALIZE and "VerinferDeadlineNotPassed" in reason:
            return  # the next block's timestamp will be past the reveal deadline
        if phase == Phase.SETTLE and self.claims.retry_settle(reason):
            return
        info = self._request(job, head)
        if phase == Phase.CLAIM and self.claims.landed(job, info, self._block(head)):
            return
        settled = self._settled(job, phase, info, head)
        if settled or (phase == Phase.COMMIT and info.status != RequestStatus.PENDING):
            self._close_settled(job, info, before=str(phase), error=reason)
            return
        if "VerinferWrongStatus" in reason:
            # Settled in a block newer than the one we read at (another node's fulfil or
            # finalize just landed): a state that never reverts, so look again next tick.
            return
        log.warning("job.refused", request_id=job.request_id, phase=str(phase), error=reason)
        self._close(job, JobState.FAILED, "refused", error=reason)

    def _block(self, head: int) -> int:
        return max(head - (self.confirmations - 1), 0)

    def _request(self, job: Job, head: int) -> RequestInfo:
        block = self._block(head)
        info: RequestInfo = self._rpc(
            lambda: self.coordinator.get_request(job.request_int, block), "request"
        )
        return info

    def _ballot_closed(self, job: Job, head: int) -> bool:
        block = max(head - (self.confirmations - 1), 0)
        ballot = self._rpc(lambda: self.coordinator.get_ballot(job.request_int, block), "ballot")
        return bool(ballot.closed)

    def _settled(self, job: Job, phase: Phase, info: RequestInfo, head: int) -> bool:
        """Whether ``phase`` of ``job`` has nothing left to do on-chain."""
        if phase == Phase.REVEAL:
            return self._ballot_closed(job, head)
        if phase == Phase.FINALIZE:
            return info.status == RequestStatus.REFUNDED or self._ballot_closed(job, head)
        return info.status.settled

    @staticmethod
    def _after_finalize(job: Job, *, by_us: bool) -> tuple[JobState, str]:
        """Where a job ends once its ballot is closed, by our ``finalize`` or anyone's."""
        if job.outcome == "revealed":  # set when the job entered ``revealed``
            return JobState.CONFIRMED, "revealed_finalized" if by_us else "revealed"
        return JobState.EXPIRED, "reveal_missed_finalized" if by_us else "reveal_deadline_passed"

    def _close_settled(
        self, job: Job, info: RequestInfo, *, before: str, error: str | None = None
    ) -> None:
        if before == str(Phase.FINALIZE):
            state, outcome = self._after_finalize(job, by_us=False)
            self._close(job, state, outcome, error=error)
        elif info.status == RequestStatus.REFUNDED:
            self._close(job, JobState.EXPIRED, "refunded", error=error)
        else:
            self._close(job, JobState.CONFIRMED, f"settled_before_{before}", error=error)

    def _close(self, job: Job, state: JobState, outcome: str, *, error: str | None = None) -> None:
        if self.jobs.transition(job.request_id, state, outcome=outcome, error=error):
            log.info("job.closed", request_id=job.request_id, state=str(state), outcome=outcome)

    def _rollback(self, job: Job, reason: str) -> None:
        back = JobState.COMPUTED
        if job.phase == Phase.REVEAL:
            back = JobState.COMMITTED
        elif job.phase == Phase.SETTLE:
            back = JobState.CLAIMED
        elif job.phase == Phase.FINALIZE:
            back = JobState.REVEALED if job.outcome == "revealed" else JobState.COMMITTED
        self.jobs.transition(
            job.request_id, back, expect=(JobState.SUBMITTED,), tx_hash=None, raw_tx=None,
            nonce=None, error=reason,
        )  # fmt: skip
        log.warning("job.rolled_back", request_id=job.request_id, to=str(back), reason=reason)

    def _rpc(self, call: Any, what: str) -> Any:
        return with_retries(call, what)
