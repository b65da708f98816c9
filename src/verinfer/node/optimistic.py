"""Mode optimistic (4): claim the output with its trace root, finalize after the window.

The job's path is ``computed -> submitted(claim) -> claimed -> submitted(settle) ->
confirmed``. The output and trace root are stored before the claim is signed, so a restarted
node claims (or re-sends) exactly what it computed. A ``claimed`` job keeps the end of its
claim's challenge window in ``reveal_deadline``: no RPC is made before it. Past it, the node
reads the request and the claim: delivered by anyone (finalizeOptimistic is open to all) ->
confirmed; lost its dispute (the requester is refunded, the node slashed) -> failed; still
disputed -> wait; otherwise it sends ``finalizeOptimistic(requestId, output)``.

Forced errors (node/forced_errors.py, opt-in): when this node's active seed forces a request,
the claim carries a deliberately wrong output; the watchtower concedes it, and the job ends
``failed`` with outcome ``forced_error`` once the requester is refunded. Such a claim is never
finalized.

Not done here: playing a dispute. The node's watchtower (node/watchtower.py) defends a
challenged claim; the job only waits for the outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from verinfer.chain.inference import CoordinatorClient, InferenceMode, RequestInfo, RequestStatus
from verinfer.errors import ModelError
from verinfer.node.executor import Executor, InvalidRequestInputError
from verinfer.node.jobs import Job, JobLog, JobState
from verinfer.node.rpc import with_retries

if TYPE_CHECKING:
    from verinfer.node.forced_errors import ForcedErrors

__all__ = ["ClaimTracker", "compute_claim"]

log = structlog.get_logger(__name__)

CLAIM_OPEN, CLAIM_DISPUTED, CLAIM_FINALIZED, CLAIMER_WON, CHALLENGER_WON = 1, 2, 3, 4, 5
CLAIM_FORCED = 6


def compute_claim(
    executor: Executor, jobs: JobLog, job: Job, forced: ForcedErrors | None = None
) -> None:
    """Run ``job`` with the trace; store the output and trace root (state ``computed``).
    When ``forced`` says our active seed forces this input, the stored output is wrong on
    purpose (one value off; the trace root stays honest)."""
    assert job.mode == InferenceMode.OPTIMISTIC
    try:
        output, trace_root = executor.run_traced(job.model_id, job.input)
    except InvalidRequestInputError as exc:
        # No claim on an input the runtime refuses: there would be no trace to defend.
        jobs.transition(
            job.request_id, JobState.FAILED, outcome="invalid_input", error=str(exc)[:500]
        )
        log.warning("job.invalid_input", request_id=job.request_id, error=str(exc)[:200])
        return
    except ModelError as exc:
        jobs.transition(
            job.request_id, JobState.FAILED, outcome="cannot_compute", error=str(exc)[:500]
        )
        log.warning("job.failed", request_id=job.request_id, error=str(exc)[:200])
        return
    if forced is not None and forced.decide(job.input):
        from verinfer.node.forced_errors import wrong_output

        wrong = wrong_output(output)
        if wrong is not None:
            output = wrong
            jobs.bump("forced_errors")
            log.info("job.forced_error", request_id=job.request_id, detail="wrong on purpose")
    jobs.transition(
        job.request_id, JobState.COMPUTED, expect=(JobState.SEEN,), output=output,
        trace_root=trace_root,
    )  # fmt: skip
    log.info("job.computed", request_id=job.request_id, trace_root="0x" + trace_root.hex())


class ClaimTracker:
    """The DisputeGame side of optimistic jobs: the bond, a claim's window and outcome."""

    def __init__(self, coordinator: CoordinatorClient, jobs: JobLog) -> None:
        self.coordinator = coordinator
        self.jobs = jobs
        self._game: Any = None
        self._bond: int | None = None
        self._window: int | None = None
        self.forced: ForcedErrors | None = None  # set by the service when forced errors are on

    @property
    def game(self) -> Any:
        if self._game is None:
            address = with_retries(self.coordinator.dispute_game, "dispute game")
            self._game = self.coordinator.chain.contract("DisputeGame", address)
        return self._game

    def bond(self) -> int:
        """The wei sent with each claim: the game's ``claimDeposit()`` (claim bond plus
        jackpot fee), read once."""
        if self._bond is None:
            fn = self.game.functions.claimDeposit()
            self._bond = int(with_retries(lambda: self.coordinator.chain.call(fn), "claim bond"))
        return self._bond

    def window(self) -> int:
        if self._window is None:
            fn = self.game.functions.window()
            self._window = int(with_retries(lambda: self.coordinator.chain.call(fn), "window"))
        return self._window

    def claim(self, job: Job, block: int) -> tuple[int, int, str]:
        """(status, end of the challenge window, claimer) of ``job``'s claim at ``block``."""
        c = self._claim(job, block)
        return int(c[2]), int(c[1]) + self.window(), str(c[0])

    def _claim(self, job: Job, block: int) -> Any:
        rid = job.request_int

        def read() -> Any:
            claim_id = self.coordinator.contract.functions.claimOf(rid).call(block_identifier=block)
            return self.game.functions.claims(claim_id).call(block_identifier=block)

        return with_retries(read, "claim")

    def claimed(self, job: Job, block: int) -> None:
        """The claim is on-chain: wait for its window (``reveal_deadline``) to pass."""
        _, window_end, _ = self.claim(job, block)
        self.jobs.transition(
            job.request_id, JobState.CLAIMED, outcome="claimed", reveal_deadline=window_end
        )
        self.jobs.bump("claims")
        log.info("job.claimed", request_id=job.request_id, window_end=window_end)

    @staticmethod
    def retry_settle(reason: str) -> bool:
        """Whether a refused finalizeOptimistic is for the next tick to look at again: too
        early, disputed, or settled since (``ready`` then reads the claim)."""
        retry = ("ChallengeWindowOpen", "ClaimNotDeliverable", "VerinferWrongStatus")
        return any(e in reason for e in retry)

    def landed(self, job: Job, info: RequestInfo, block: int) -> bool:
        """A refused claim: True (and the job ``claimed``) when our own claim landed already."""
        if info.status != RequestStatus.CLAIMED:
            return False
        if self.claim(job, block)[2].lower() != self.coordinator.chain.address.lower():
            return False
        self.claimed(job, block)
        return True

    def ready(self, job: Job, now: int, block: int) -> bool:
        """Whether a ``claimed`` job should send finalizeOptimistic now; closes it when it
        needs nothing more (delivered, or its claim lost)."""
        conceded = self.forced is not None and job.request_int in self.forced.conceded
        if now <= job.reveal_deadline and not conceded:
            return False
        info = with_retries(lambda: self.coordinator.get_request(job.request_int, block), "req")
        if info.status == RequestStatus.FULFILLED:
            if self.jobs.transition(job.request_id, JobState.CONFIRMED, outcome="finalized"):
                self.jobs.bump("requests_handled")
                log.info("job.confirmed", request_id=job.request_id, outcome="finalized")
            return False
        claim = self._claim(job, block)
        status, window_end = int(claim[2]), int(claim[1]) + self.window()
        if status == CLAIM_FORCED:
            self._forced_end(job, info)
            return False
        if status == CHALLENGER_WON or info.status == RequestStatus.REFUNDED:
            self.jobs.transition(
                job.request_id, JobState.FAILED, outcome="claim_lost",
                error="the claim lost its dispute: the node's stake is slashed",
            )  # fmt: skip
            log.warning(
                "job.claim_lost", request_id=job.request_id, claim_status=status,
                detail="the claim lost its dispute; the requester is refunded, the node slashed",
            )  # fmt: skip
            return False
        if status == CLAIM_DISPUTED:
            return False  # the game decides; look again next tick
        if self.forced is not None and self.forced.forced_secret(bytes(claim[11]), bytes(claim[9])):
            return False  # a forced error: the watchtower concedes it, never finalize it
        if status == CLAIM_OPEN and now <= window_end:
            if window_end != job.reveal_deadline:
                self.jobs.transition(job.request_id, JobState.CLAIMED, reveal_deadline=window_end)
            return False
        return True

    def _forced_end(self, job: Job, info: RequestInfo) -> None:
        """Our claim was conceded as a forced error: close the job once the requester is
        refunded (the refund is sent by ForcedErrors.poll; anyone's refund counts)."""
        if info.status != RequestStatus.REFUNDED and self.forced is not None:
            self.forced.refunds_due.add(job.request_int)
            return
        # Not an error: the node did what forced errors ask (refunded, nobody slashed).
        if self.jobs.transition(
            job.request_id, JobState.FAILED, outcome="forced_error", error=None
        ):
            log.info("job.forced_error_closed", request_id=job.request_id)
