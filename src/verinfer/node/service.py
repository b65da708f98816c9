"""The node daemon: a Service with setup / run / stop, and its main loop.

Each tick reads the head once, lets the watcher record new events, takes over orphaned
standby requests, computes outputs for newly seen jobs, sends the transactions computed,
committed and revealed jobs need, and resolves receipts. All
progress lives in the job log, so the loop can stop (SIGTERM, SIGINT, ``stop()``) or die
(SIGKILL) between any two statements and the next start continues where it left off.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import (
    CoordinatorClient,
    InferenceMode,
    NodeRegistryClient,
    RequestStatus,
)
from verinfer.chain.token import Token, parse_units
from verinfer.errors import ConfigError, ModelError, VerinferError
from verinfer.models.registry import RegistryClient
from verinfer.node.config import NodeConfig
from verinfer.node.executor import INVALID_INPUT_OUTPUT, Executor, InvalidRequestInputError
from verinfer.node.forced_errors import ForcedErrors
from verinfer.node.jobs import Job, JobLog, JobState
from verinfer.node.metrics import MetricsServer, Snapshot
from verinfer.node.optimistic import compute_claim
from verinfer.node.rpc import TransientRpcError, with_retries
from verinfer.node.submitter import Submitter
from verinfer.node.watcher import Watcher
from verinfer.node.watchtower import Watchtower
from verinfer.node.zk import ZkProver
from verinfer.store import open_store
from verinfer.store.local import Store

__all__ = ["NodeService"]

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 10.0


class NodeService:
    """One node: ``setup()`` once, ``run()`` until ``stop()`` (or a signal), then ``close()``."""

    def __init__(
        self, config: NodeConfig, *, store: Store | None = None, book_dir: Path | None = None
    ) -> None:
        self.config = config
        self._store = store
        self._book_dir = book_dir
        self._stop = threading.Event()
        self.metrics: MetricsServer | None = None
        self.ready = threading.Event()
        self.ticks = 0

    # -- lifecycle --------------------------------------------------------------------------

    def setup(self) -> None:
        """Connect, check the deployment and the node's registration, load every program,
        and reconcile transactions left in flight by a previous run."""
        config = self.config
        self.account = config.key.load()
        self.chain = Chain(config.rpc_url, self.account)
        book = self._book()
        coordinator = config.coordinator or _need(book, "InferenceCoordinator")
        node_registry = config.node_registry or _need(book, "NodeRegistry")
        model_registry = config.model_registry or _need(book, "ModelRegistry")
        self.coordinator = CoordinatorClient(self.chain, coordinator)
        self.node_registry = NodeRegistryClient(self.chain, node_registry)
        self.registry = RegistryClient(self.chain, model_registry)
        self.jobs = JobLog.in_dir(config.data_dir)
        start = config.start_block
        if start is None:
            start = book.block if book is not None else self.chain.w3.eth.block_number
        self.watcher = Watcher(
            self.chain.w3,
            self.coordinator.contract,
            self.jobs,
            config,
            self.account.address,
            start_block=start,
        )
        store = self._store or open_store()
        self.executor = Executor(self.registry, store)
        self.zk = _zk_prover(config, self.registry, store)
        self.submitter = Submitter(
            self.coordinator,
            self.account,
            self.jobs,
            config.gas,
            confirmations=config.confirmations,
        )
        self.forced = self._forced_errors()
        self.submitter.claims.forced = self.forced
        self.watchtower = self._watchtower(start)
        self._check_registration(book)
        for served in config.models:
            self.executor.program(served.id)  # fail now, not at the first request
            if "zk" in served.modes:
                self.zk.artifacts(served.id)
        self.submitter.reconcile()
        if config.metrics.enabled:
            self.metrics = MetricsServer(config.metrics.port)
            self.metrics.start()
        log.info(
            "node.started",
            node=self.account.address,
            chain_id=self.chain.chain_id,
            coordinator=coordinator,
            cursor=self.jobs.cursor(),
            start_block=start,
            models=[m.id for m in config.models],
            metrics_port=self.metrics.port if self.metrics else None,
        )

    def run(self) -> None:
        """The main loop; returns once ``stop()`` was called (or a signal arrived)."""
        backoff = self.config.poll_interval
        self.ready.set()
        while not self._stop.is_set():
            try:
                busy = self.tick()
                backoff = self.config.poll_interval
            except TransientRpcError as exc:
                log.warning("node.rpc_unavailable", error=exc.message, retry_in=backoff)
                self._publish_error(str(exc))
                busy = False
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception as exc:  # noqa: BLE001 - the daemon logs and carries on
                log.exception("node.tick_failed", error=str(exc)[:300])
                self._publish_error(f"{type(exc).__name__}: {exc}")
                busy = False
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            if not busy:
                self._stop.wait(backoff)
        log.info("node.stopped", node=self.account.address, cursor=self.jobs.cursor())

    def stop(self) -> None:
        """Ask the loop to finish its current step and return (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        if hasattr(self, "zk"):
            self.zk.close()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        self.jobs.close()

    def serve_forever(self) -> None:
        """setup, run until SIGTERM/SIGINT, close: what `verinfer node start` does."""
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info("node.signal", signal=signal.Signals(signum).name)
                self.stop()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        self.setup()
        try:
            self.run()
        finally:
            self.close()

    # -- one tick ---------------------------------------------------------------------------

    def tick(self) -> bool:
        """One pass of the loop; True when it did work (then the loop does not sleep)."""
        self.ticks += 1
        block = with_retries(lambda: self.chain.w3.eth.get_block("latest"), "latest block")
        head, now = int(block["number"]), int(block["timestamp"])
        self.submitter.base_fee = int(block.get("baseFeePerGas", 0) or 0)
        polls = self.watcher.poll(head)
        busy = any(p.new_jobs or p.closed for p in polls)
        for job in self.jobs.in_state(JobState.STANDBY):
            self._guard(job, lambda j, n: self._standby(j, n, head), now)
        for job in self.jobs.in_state(JobState.SEEN):
            if job.mode == InferenceMode.ZK:  # proved in the background (node/zk.py)
                self._guard(job, self._start_zk, now)
                continue
            if job.mode == InferenceMode.OPTIMISTIC:  # with the trace (node/optimistic.py)
                self._guard(job, self._compute_claim, now)
                busy = True
                continue
            self._guard(job, self._compute, now)
            busy = True
        busy = self.zk.collect(self.jobs) or busy
        open_states = (JobState.COMPUTED, JobState.COMMITTED, JobState.REVEALED, JobState.CLAIMED)
        for job in self.jobs.in_state(*open_states):
            before = job.state
            self._guard(job, lambda j, n: self.submitter.submit(j, n, head), now)
            after = self.jobs.get(job.request_id)
            busy = busy or (after is not None and after.state != before)
        self.submitter.check_submitted(head)
        acted = self.watchtower is not None and self.watchtower.poll()
        if self.forced is not None:
            acted = self.forced.poll() or acted  # seed commits and refunds of conceded claims
        if acted:
            self.submitter.sync_nonce()  # the watchtower's moves used nonces too
            busy = True
        self._publish(head, ok=True)
        return busy

    def _watchtower(self, start: int) -> Watchtower | None:
        """Optimistic mode's watchtower: defends this node's claims, checks others'."""
        watch = self.config.watch
        serves = any("optimistic" in m.modes for m in self.config.models)
        if not watch.enabled or not (serves or watch.models):
            return None
        if int(self.coordinator.dispute_game(), 16) == 0:
            raise ConfigError(
                "the coordinator has no DisputeGame, but this node serves mode optimistic",
                hint='remove "optimistic" from the models\' modes, or use a deployment with one',
            )
        return Watchtower(
            self.chain, self.coordinator, self.executor, models=self.config.watched(),
            max_at_risk=parse_units(watch.max_at_risk, 18, what="watch.max_at_risk"),
            challenge=watch.challenge, start_block=start,
            max_block_range=self.config.max_block_range, forced=self.forced,
        )  # fmt: skip

    def _forced_errors(self) -> ForcedErrors | None:
        """Forced errors when enabled; also when disabled while a secrets file exists, to
        concede the claims its seed still forces (no new chain, no wrong claim)."""
        config = self.config.forced_errors
        path = self.config.data_dir / config.secrets_file
        if not config.enabled and not path.exists():
            return None
        if int(self.coordinator.dispute_game(), 16) == 0:
            if not config.enabled:
                return None
            raise ConfigError(
                "forced_errors.enabled, but the coordinator has no DisputeGame",
                hint="use a deployment with one, or set forced_errors.enabled = false",
            )
        forced = ForcedErrors(
            self.coordinator, self.jobs, path, chain_length=config.chain_length,
            inject=config.enabled,
        )  # fmt: skip
        forced.poll()  # commit a chain now when none of ours is usable (and none is in flight)
        if not config.enabled:
            log.warning(
                "forced.retiring", file=str(path),
                detail="forced errors are off: no wrong claims, but claims the committed seed "
                "forces are still conceded",
            )  # fmt: skip
        return forced

    def _compute(self, job: Job, now: int) -> None:
        if job.deadline and now >= job.deadline:
            self.jobs.transition(job.request_id, JobState.EXPIRED, outcome="deadline_passed")
            return
        started = time.perf_counter()
        input_error: str | None = None
        try:
            output = self.executor.run(job.model_id, job.input)
        except InvalidRequestInputError as exc:
            # No node can run this input: answer with the protocol's empty output, so the
            # requester cannot farm no-show slashes with garbage (docs/protocol-requests.md).
            output, input_error = INVALID_INPUT_OUTPUT, str(exc)[:500]
            log.warning("job.invalid_input", request_id=job.request_id, error=input_error[:200])
        except ModelError as exc:  # the node's own problem (program, store): never answered
            self.jobs.transition(
                job.request_id, JobState.FAILED, outcome="cannot_compute", error=str(exc)[:500]
            )
            log.warning("job.failed", request_id=job.request_id, error=str(exc)[:200])
            return
        # The salt is stored with the output, before any commit is signed: a restarted node
        # must reveal with the salt it committed to.
        salt = os.urandom(32) if job.mode == InferenceMode.CONSENSUS else None
        self.jobs.transition(
            job.request_id, JobState.COMPUTED, expect=(JobState.SEEN,), output=output, salt=salt,
            input_error=input_error,
        )  # fmt: skip
        if input_error is not None:
            self.jobs.bump("invalid_inputs")
        log.info(
            "job.computed",
            request_id=job.request_id,
            model_id=job.model_id,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _compute_claim(self, job: Job, now: int) -> None:
        if job.deadline and now >= job.deadline:
            self.jobs.transition(job.request_id, JobState.EXPIRED, outcome="deadline_passed")
            return
        compute_claim(self.executor, self.jobs, job, self.forced)

    def _start_zk(self, job: Job, now: int) -> None:
        if job.deadline and now >= job.deadline:
            self.jobs.transition(job.request_id, JobState.EXPIRED, outcome="deadline_passed")
            return
        self.zk.start(self.jobs, job)

    def _standby(self, job: Job, now: int, head: int) -> None:
        """Take over a mode-none request whose assignee let the assignment window pass.

        Never inside the window (the assignee's time), never after the deadline; only while
        this node is eligible. The contract pays the taker and slashes the no-show.
        """
        if job.deadline and now >= job.deadline:
            self._drop_standby(job, "deadline_passed")
            return
        if job.assigned_until and now < job.assigned_until:
            return  # no RPC while the assignee's window is open
        info = self.submitter.request_info(job, head)
        if info.status != RequestStatus.PENDING:
            self._drop_standby(job, "settled")
            return
        if now < info.assigned_until:
            self.jobs.transition(
                job.request_id, JobState.STANDBY, assigned_until=info.assigned_until
            )
            return
        # At "latest", like the fulfil's own simulation (the check that really counts).
        eligible = with_retries(
            lambda: self.node_registry.contract.functions.isEligible(
                self.account.address, job.model_id, int(InferenceMode.NONE)
            ).call(),
            "eligibility",
        )
        if not eligible:
            self._drop_standby(job, "not_eligible")
            log.info(
                "job.orphan_skipped", request_id=job.request_id, reason="not eligible",
                hint="stake at least minStake and serve the model in mode none",
            )  # fmt: skip
            return
        self.jobs.transition(
            job.request_id, JobState.SEEN, expect=(JobState.STANDBY,),
            assigned_until=info.assigned_until,
        )  # fmt: skip
        log.info("job.taking_over", request_id=job.request_id, assigned_until=info.assigned_until)

    def _drop_standby(self, job: Job, reason: str) -> None:
        if self.jobs.drop_standby(job.request_id):
            log.debug("job.standby_dropped", request_id=job.request_id, reason=reason)

    def _guard(self, job: Job, step: Any, now: int) -> None:
        """Run one job's step; an error other than a transient RPC one fails that job only."""
        try:
            step(job, now)
        except TransientRpcError:
            raise
        except VerinferError as exc:
            log.warning("job.error", request_id=job.request_id, error=str(exc)[:300])
            self.jobs.transition(job.request_id, JobState.FAILED, outcome="error", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug fails one job, never the daemon
            if _transient_cause(exc):
                raise
            log.exception("job.crashed", request_id=job.request_id)
            self.jobs.transition(
                job.request_id, JobState.FAILED, outcome="error", error=f"{type(exc).__name__}"
            )

    # -- status -----------------------------------------------------------------------------

    def snapshot(self, head: int, *, ok: bool, error: str | None = None) -> Snapshot:
        cursor = self.jobs.cursor()
        return Snapshot(
            node=str(self.account.address),
            chain_id=self.chain.chain_id,
            head=head,
            cursor=cursor,
            lag=max(head - (cursor if cursor is not None else head), 0),
            jobs=self.jobs.counts(),
            counters=self.jobs.counters(),
            ok=ok,
            error=error,
            updated_at=time.time(),
        )

    def _publish(self, head: int, *, ok: bool, error: str | None = None) -> None:
        self._last_head = head
        if self.metrics is not None:
            self.metrics.publish(self.snapshot(head, ok=ok, error=error))

    def _publish_error(self, error: str) -> None:
        try:
            self._publish(getattr(self, "_last_head", 0), ok=False, error=error[:300])
        except Exception:  # noqa: BLE001 - reporting must not fail the loop
            log.exception("node.publish_failed")

    def _book(self) -> AddressBook | None:
        needed = (self.config.coordinator, self.config.node_registry, self.config.model_registry)
        if all(needed):
            return None
        return AddressBook.load(self.chain.chain_id, self._book_dir)

    def _check_registration(self, book: AddressBook | None) -> None:
        """Warn (not fail) when the chain will not assign this node what its config serves."""
        node = self.node_registry.get_node()
        if not node.registered:
            log.warning("node.not_registered", hint="run `verinfer node register`")
        elif node.stake < self.node_registry.min_stake():
            log.warning("node.stake_below_minimum", stake=node.stake)
        token_address = book.contracts.get("PaymentToken") if book else None
        decimals = Token(self.chain, token_address).decimals() if token_address else None
        for served in self.config.models:
            service = self.node_registry.get_service(served.id)
            fee = parse_units(served.fee, decimals, what="fee") if decimals is not None else None
            if service.modes != served.mode_mask or (fee is not None and fee != service.fee):
                log.warning(
                    "node.service_mismatch",
                    model_id=served.id,
                    on_chain_modes=service.modes,
                    on_chain_fee=service.fee,
                    config_modes=served.mode_mask,
                    config_fee=fee,
                    hint="run `verinfer node serve` to publish the config's terms",
                )


def _zk_prover(config: NodeConfig, registry: RegistryClient, store: Store) -> ZkProver:
    from verinfer.verify.zk import EzklBackend, ZkOptions

    options = ZkOptions(trusted_srs=config.zk.trusted_srs, srs_dir=config.zk.srs_dir)
    backend = EzklBackend(store, options, work_dir=config.data_dir / "zk")
    return ZkProver(registry, store, backend)


def _need(book: AddressBook | None, name: str) -> str:
    if book is None:
        raise ConfigError(f"no address for {name}", hint="set it in the config or run deploy")
    return book.address(name)


def _transient_cause(exc: BaseException) -> bool:
    from verinfer.node.rpc import is_transient

    return is_transient(exc)
