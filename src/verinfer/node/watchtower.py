"""The watchtower: checks optimistic claims by re-executing them, disputes the wrong ones,
and defends its own account's claims move by move (docs/optimistic.md, section 4).

It follows the coordinator's ``Claimed`` events (claims opened through a request, so the
input and model are known; claims opened directly on the game are not followed). For each:

* a claim by this account is **defended**: whenever its dispute waits for the claimer, the
  watchtower re-executes the request (the runtime is deterministic, so it rebuilds exactly
  the trace it claimed) and sends the move;
* a claim by another node on a watched model is **checked**: re-executed with the trace; if
  its trace root or output differs, the watchtower challenges it (within its budget of
  challenge bonds at risk) and plays every challenger move. A claim already disputed by
  someone else is watched until that dispute ends: if the claim survives it (a careless or
  colluding challenger), it reopens and the watchtower challenges it then;
* a dispute whose other party missed its deadline is ended with ``timeout``;
* a claim by this account that its forced-error seed forces (node/forced_errors.py) is
  **conceded**, never defended: at once when disputed (the challenger wins the jackpot),
  else a margin before its window ends (so the wrong output is never delivered).

State lives on-chain: after a restart the watchtower rescans from its start block and
takes every open dispute up where it stands. Credits won are withdrawn at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from verinfer.chain.client import Chain
from verinfer.chain.inference import CoordinatorClient
from verinfer.errors import ModelError
from verinfer.node.executor import Executor, decode_for_program, encode_outputs
from verinfer.optimistic.descriptors import StepDescriptor, build_descriptors
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    DisputePlayer,
    execution_roots,
)
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program

if TYPE_CHECKING:
    from verinfer.node.forced_errors import ForcedErrors

__all__ = ["ClaimWatch", "Watchtower"]

log = structlog.get_logger(__name__)

OPEN, DISPUTED = 1, 2
FORCED = 6  # conceded as a forced error (the catcher wins the jackpot)
SETTLED = {3, 4, 5, FORCED}  # Finalized, ClaimerWon, ChallengerWon, Forced
MAX_LOOKBACK_BLOCKS = 1_000_000  # how far back a claim's request and events are looked for


@dataclass
class ClaimWatch:
    """One followed claim: whose it is, what it answers, and what we make of it."""

    claim_id: int
    request_id: int
    claimer: str
    model_id: int
    input: bytes
    output: bytes  # the claimed output
    trace_root: bytes
    own: bool
    wrong: bool | None = None  # our verdict once re-executed (None: not yet)
    challenged: bool = False  # we opened a dispute on it that has not ended yet
    lost_once: bool = False  # we disputed it and lost: never again
    execution: Execution | None = None
    party: ClaimerParty | ChallengerParty | None = None  # built at our first move, then kept


class Watchtower:
    """Follows claims from ``start_block`` on; call :meth:`poll` on every tick."""

    def __init__(
        self,
        chain: Chain,
        coordinator: CoordinatorClient,
        executor: Executor,
        *,
        models: Collection[int],
        max_at_risk: int,
        challenge: bool = True,
        start_block: int = 0,
        max_block_range: int = 1000,
        forced: ForcedErrors | None = None,
    ) -> None:
        self.chain = chain
        self.me = chain.address.lower()
        self.coordinator = coordinator
        self.executor = executor
        self.models = set(models)
        self.max_at_risk = max_at_risk
        self.may_challenge = challenge
        self.cursor = start_block  # next block to scan
        self.max_block_range = max_block_range
        self.forced = forced
        self.claims: dict[int, ClaimWatch] = {}
        self.stats = {"checked": 0, "wrong": 0, "challenged": 0, "won": 0, "lost": 0}
        address = coordinator.dispute_game()
        self.player = DisputePlayer(chain, address, from_block=start_block)
        self.game = self.player.game
        self.window = int(self.game.functions.window().call())
        self.bond = int(self.game.functions.challengeBond().call())
        self._descriptors: dict[int, list[StepDescriptor]] = {}

    @property
    def at_risk(self) -> int:
        """Challenge bonds of our disputes that have not ended."""
        return self.bond * sum(1 for w in self.claims.values() if w.challenged)

    def poll(self) -> bool:
        """Scan new claims, advance every followed one; True when a transaction was sent."""
        head = int(self.chain.w3.eth.block_number)
        self._scan(head)
        now = int(self.chain.w3.eth.get_block("latest")["timestamp"])
        acted = False
        for watch in list(self.claims.values()):
            try:
                acted |= self._advance(watch, now)
            except Exception as exc:  # noqa: BLE001 - a lost race, a refused move, the RPC:
                # one claim's trouble must not stop the others; it is looked at again next tick
                log.warning(
                    "watch.move_failed", claim_id=watch.claim_id,
                    error=f"{type(exc).__name__}: {str(exc)[:300]}",
                )  # fmt: skip
        credit = int(self.game.functions.credits(self.chain.address).call())
        if credit:
            self.chain.transact(self.game.functions.withdraw())
            log.info("watch.withdrawn", wei=credit)
            acted = True
        return acted

    # ---- following claims ----------------------------------------------------------------

    def _scan(self, head: int) -> None:
        while self.cursor <= head:
            end = min(head, self.cursor + self.max_block_range - 1)
            events = self.coordinator.contract.events.Claimed().get_logs(
                from_block=self.cursor, to_block=end
            )
            for event in events:
                args = event["args"]
                block = int(event["blockNumber"])
                self.follow(
                    int(args["requestId"]), int(args["claimId"]), str(args["node"]), block=block
                )
            self.cursor = end + 1

    def _find(self, event: Any, filters: dict[str, int], until: int) -> list[Any]:
        """The newest logs of ``event`` matching ``filters`` at or before block ``until``,
        searched backwards ``max_block_range`` blocks at a time (RPCs limit log ranges; a
        request precedes its claim by at most its deadline, so the search stays short)."""
        end = until
        while end >= 0 and until - end < MAX_LOOKBACK_BLOCKS:
            start = max(0, end - self.max_block_range + 1)
            logs = event().get_logs(argument_filters=filters, from_block=start, to_block=end)
            if logs:
                return list(logs)
            end = start - 1
        return []

    def follow(
        self,
        request_id: int,
        claim_id: int,
        claimer: str,
        *,
        block: int | None = None,
        force: bool = False,
    ) -> None:
        """Follow ``claim_id`` (the claim of ``request_id`` by ``claimer``, made in ``block``,
        default: look back from the head): always when it is ours or ``force``, else when
        its model is watched."""
        own = claimer.lower() == self.me
        if claim_id in self.claims:
            return
        info = self.coordinator.get_request(request_id)
        if not own and not force and info.model_id not in self.models:
            return
        until = int(self.chain.w3.eth.block_number) if block is None else block
        requested = self._find(
            self.coordinator.contract.events.InferenceRequested, {"requestId": request_id}, until
        )
        opened = self._find(self.game.events.ClaimOpened, {"claimId": claim_id}, until)
        if not requested or not opened:
            log.warning("watch.claim_unreadable", claim_id=claim_id, request_id=request_id)
            return
        self.claims[claim_id] = ClaimWatch(
            claim_id=claim_id,
            request_id=request_id,
            claimer=claimer,
            model_id=info.model_id,
            input=bytes(requested[0]["args"]["input"]),
            output=bytes(opened[0]["args"]["output"]),
            trace_root=bytes(opened[0]["args"]["traceRoot"]),
            own=own,
        )
        log.info("watch.claim", claim_id=claim_id, request_id=request_id, own=own)

    def _advance(self, w: ClaimWatch, now: int) -> bool:
        claim = self.game.functions.claims(w.claim_id).call()
        status, opened_at = int(claim[2]), int(claim[1])
        phase, mover, deadline = self.game.functions.turn(w.claim_id).call()
        if w.own and self.forced is not None and status in (OPEN, DISPUTED):
            secret = self.forced.forced_secret(bytes(claim[11]), bytes(claim[9]))
            if secret is not None:
                return self._concede(w, status, opened_at, now, secret)
        ours = w.own or (w.challenged and self._challenger(w.claim_id) == self.me)
        if w.challenged and (status != DISPUTED or not ours):
            self._ended(w, forced=status == FORCED)  # our dispute is over
        if w.own and status == FORCED and self.forced is not None:
            self.forced.settled(w.request_id)  # after a restart too: the refund is still due
        if status in SETTLED or (not w.own and status == OPEN and now > opened_at + self.window):
            del self.claims[w.claim_id]  # settled, or another's claim past its window
            return False
        if status == DISPUTED:
            if str(mover).lower() == self.me:
                return self._move(w)
            if now > int(deadline) and (w.own or w.challenged):
                self.chain.transact(self.game.functions.timeout(w.claim_id))
                log.info("watch.timeout", claim_id=w.claim_id, phase=phase)
                return True
            if not w.own and not w.challenged and w.wrong is None:
                self._check(w)  # disputed by someone else: know our verdict for a reopening
            return False
        if w.own:
            return False  # undisputed: the node finalizes its own claim after the window
        if w.wrong is None:
            self._check(w)
            if not w.wrong:
                del self.claims[w.claim_id]  # correct: nothing more to do
                return False
        if not w.wrong or w.lost_once or not self.may_challenge:
            return False
        if self.at_risk + self.bond > self.max_at_risk:
            log.warning(
                "watch.budget_exhausted", claim_id=w.claim_id, at_risk=self.at_risk,
                max_at_risk=self.max_at_risk,
            )  # fmt: skip
            return False
        self.chain.transact(self.game.functions.challenge(w.claim_id), value=self.bond)
        w.challenged = True
        self.stats["challenged"] += 1
        log.info("watch.challenged", claim_id=w.claim_id, request_id=w.request_id)
        return True

    def _challenger(self, claim_id: int) -> str:
        return str(self.game.functions.disputes(claim_id).call()[0]).lower()

    # ---- verdicts and moves --------------------------------------------------------------

    def verdict(self, claim_id: int) -> bool:
        """Whether the followed claim ``claim_id`` is wrong by our re-execution."""
        w = self.claims[claim_id]
        if w.wrong is None:
            self._check(w)
        return bool(w.wrong)

    def _execute(self, w: ClaimWatch) -> tuple[Program, Execution]:
        program = self.executor.program(w.model_id)
        if w.execution is None:
            feeds = decode_for_program(program, self.executor.inline(w.input))
            w.execution = program.run(feeds, trace=True)
        return program, w.execution

    def _check(self, w: ClaimWatch) -> None:
        try:
            program, execution = self._execute(w)
        except ModelError as exc:
            log.warning("watch.cannot_execute", claim_id=w.claim_id, error=str(exc)[:200])
            w.wrong = False  # nothing we can prove
            return
        ours = encode_outputs(program, execution.outputs_q)
        w.wrong = execution.trace_root != "0x" + w.trace_root.hex() or ours != w.output
        self.stats["checked"] += 1
        if w.wrong:
            self.stats["wrong"] += 1
            log.warning("watch.wrong_claim", claim_id=w.claim_id, claimer=w.claimer)
        else:
            w.execution = None  # correct: keep no tensors around

    def _party(self, w: ClaimWatch) -> ClaimerParty | ChallengerParty:
        """Our side of the claim's dispute, from our execution: built once per claim (its
        step roots come from the execution; its tensor trees are built as moves need them)."""
        if w.party is None:
            program, execution = self._execute(w)
            descriptors = self._descriptors.get(w.model_id)
            if descriptors is None:
                descriptors = self._descriptors[w.model_id] = build_descriptors(program)
            w.party = (
                ClaimerParty(program, execution.values, descriptors, execution_roots(execution))
                if w.own
                else ChallengerParty(program, execution, descriptors)
            )
        return w.party

    def _move(self, w: ClaimWatch) -> bool:
        party = self._party(w)
        if isinstance(party, ChallengerParty):
            moved = self.player.move(w.claim_id, challenger=party, claimed_output=w.output)
        else:
            moved = self.player.move(w.claim_id, claimer=party)
        if moved:
            log.info("watch.move", claim_id=w.claim_id, move=moved, own=w.own)
        return moved is not None

    def _concede(self, w: ClaimWatch, status: int, opened_at: int, now: int, secret: bytes) -> bool:
        """Concede our forced claim when due: disputed, or within the margin of its window's
        end (chain time); only while no claim of ours is in flight (ForcedErrors.quiet)."""
        assert self.forced is not None
        due = status == DISPUTED or now >= opened_at + self.window - self.forced.margin
        if not due or not self.forced.quiet():
            return False
        self.forced.concede(w.claim_id, w.request_id, secret)
        return True

    def _ended(self, w: ClaimWatch, *, forced: bool) -> None:
        w.challenged = False
        head = int(self.chain.w3.eth.block_number)
        resolved = self._find(self.game.events.DisputeResolved, {"claimId": w.claim_id}, head)
        won = forced or any(str(e["args"]["winner"]).lower() == self.me for e in resolved)
        self.stats["won" if won else "lost"] += 1
        if not won:
            w.lost_once = True
            log.error(
                "watch.dispute_lost", claim_id=w.claim_id,
                detail="our re-execution disagreed with a claim the game upheld: check the node",
            )  # fmt: skip
        else:
            log.info("watch.dispute_won", claim_id=w.claim_id)
