"""The node's job log: one SQLite row per request id, a small state machine, crash-safe.

SQLite in WAL mode with ``synchronous=FULL``: a committed transition survives a SIGKILL or a
power cut, and readers (``verinfer node status``) never block the daemon. Every write is an
idempotent upsert keyed by request id, so replaying the same events or restarting halfway
through a step never creates a second job or moves one backwards.

States::

    standby -> seen -> computed -> submitted(fulfil) -> confirmed      (modes none and zk)
                       computed -> submitted(claim) -> claimed                (optimistic)
                        claimed -> submitted(settle) -> confirmed   (finalizeOptimistic)
                       computed -> submitted(commit) -> committed              (consensus)
                      committed -> submitted(reveal) -> revealed | confirmed
           committed | revealed -> submitted(finalize) -> confirmed | expired
       any non-terminal state -> failed | expired    (terminal, like confirmed)

``standby`` is a mode-none request assigned to another node that this node may take over if
the assignee lets its assignment window pass (``takeover`` = 1); it becomes ``seen`` when it
does, and the row is dropped when the request settles without it. ``revealed``: this node
revealed, the ballot is still open (another node has not revealed yet); past the reveal
deadline the node calls ``finalize``. ``submitted`` may fall back to ``computed``,
``committed`` or ``revealed`` when its transaction was dropped before being mined; ``phase``
says which call the transaction makes (fulfil, commit, reveal, finalize). The watcher's block
cursor lives in the same database and moves in the same transaction as the jobs it discovered.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from verinfer.errors import VerinferError

__all__ = ["Close", "Job", "JobLog", "JobState", "NewJob", "Phase", "TransitionError"]

SCHEMA_VERSION = 2


class JobState(StrEnum):
    STANDBY = "standby"
    SEEN = "seen"
    COMPUTED = "computed"
    SUBMITTED = "submitted"
    COMMITTED = "committed"
    REVEALED = "revealed"
    CLAIMED = "claimed"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.CONFIRMED, JobState.FAILED, JobState.EXPIRED})

# Which transitions the state machine allows; anything else is a bug and raises.
_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.STANDBY: frozenset({JobState.SEEN, *TERMINAL}),
    JobState.SEEN: frozenset({JobState.COMPUTED, *TERMINAL}),
    JobState.COMPUTED: frozenset({JobState.SUBMITTED, JobState.CLAIMED, *TERMINAL}),
    JobState.SUBMITTED: frozenset(
        {
            JobState.COMPUTED,
            JobState.COMMITTED,
            JobState.REVEALED,
            JobState.CLAIMED,
            JobState.SUBMITTED,
            *TERMINAL,
        }
    ),  # fmt: skip
    JobState.CLAIMED: frozenset({JobState.SUBMITTED, *TERMINAL}),
    JobState.COMMITTED: frozenset({JobState.SUBMITTED, *TERMINAL}),
    JobState.REVEALED: frozenset({JobState.SUBMITTED, *TERMINAL}),
    JobState.CONFIRMED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.EXPIRED: frozenset(),
}


class Phase(StrEnum):
    FULFIL = "fulfil"
    COMMIT = "commit"
    REVEAL = "reveal"
    FINALIZE = "finalize"
    CLAIM = "claim"  # optimistic: claim(output, traceRoot) with the game's claim bond
    SETTLE = "settle"  # optimistic: finalizeOptimistic(output) after the challenge window


class TransitionError(VerinferError):
    """A job was asked to move along an edge the state machine does not have."""


@dataclass(frozen=True)
class NewJob:
    """What the watcher learns from an InferenceRequested event (or a malformed one)."""

    request_id: str
    model_id: int
    mode: int
    block: int
    deadline: int
    input: bytes
    fee: int = 0
    error: str | None = None  # set: record the job as failed right away
    standby: bool = False  # assigned to another node: record it to take over if orphaned


@dataclass(frozen=True)
class Close:
    """A request settled on-chain: jobs still in one of ``when`` move to ``state``."""

    request_id: str
    state: JobState
    outcome: str
    when: tuple[JobState, ...] = (JobState.SEEN, JobState.COMPUTED)


@dataclass(frozen=True)
class Job:
    request_id: str
    model_id: int
    mode: int
    block: int
    deadline: int
    fee: int
    input: bytes
    state: JobState
    phase: Phase | None
    output: bytes | None
    salt: bytes | None
    tx_hash: str | None
    nonce: int | None
    raw_tx: bytes | None
    outcome: str | None
    error: str | None
    attempts: int
    created_at: float
    updated_at: float
    takeover: bool = False  # recorded on standby: another node was assigned
    assigned_until: int = 0  # the end of the assignment window, once read (0 = unknown)
    reveal_deadline: int = 0  # consensus: once read; optimistic: the challenge window's end
    input_error: str | None = None  # why the input was answered with the empty output
    proof: bytes | None = None  # mode zk: the proof of ``output``, kept so a restart resends it
    trace_root: bytes | None = None  # optimistic: the claimed execution's trace root

    @property
    def request_int(self) -> int:
        return int(self.request_id)


_COLUMNS = (
    "request_id, model_id, mode, block, deadline, fee, input, state, phase, output, salt, "
    "tx_hash, nonce, raw_tx, outcome, error, attempts, created_at, updated_at, takeover, "
    "assigned_until, reveal_deadline, input_error, proof, trace_root"
)
# Columns added after schema 1, with their SQL type: added to an older database on open.
_ADDED_COLUMNS = {
    "takeover": "INTEGER NOT NULL DEFAULT 0",
    "assigned_until": "INTEGER NOT NULL DEFAULT 0",
    "reveal_deadline": "INTEGER NOT NULL DEFAULT 0",
    "input_error": "TEXT",
    "proof": "BLOB",
    "trace_root": "BLOB",
}


def _row(row: sqlite3.Row) -> Job:
    return Job(
        request_id=row["request_id"],
        model_id=row["model_id"],
        mode=row["mode"],
        block=row["block"],
        deadline=row["deadline"],
        fee=int(row["fee"]),
        input=bytes(row["input"]),
        state=JobState(row["state"]),
        phase=Phase(row["phase"]) if row["phase"] else None,
        output=bytes(row["output"]) if row["output"] is not None else None,
        salt=bytes(row["salt"]) if row["salt"] is not None else None,
        tx_hash=row["tx_hash"],
        nonce=row["nonce"],
        raw_tx=bytes(row["raw_tx"]) if row["raw_tx"] is not None else None,
        outcome=row["outcome"],
        error=row["error"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        takeover=bool(row["takeover"]),
        assigned_until=int(row["assigned_until"]),
        reveal_deadline=int(row["reveal_deadline"]),
        input_error=row["input_error"],
        proof=bytes(row["proof"]) if row["proof"] is not None else None,
        trace_root=bytes(row["trace_root"]) if row["trace_root"] is not None else None,
    )


class JobLog:
    """The SQLite job log in ``data_dir/jobs.sqlite3``; one thread at a time may use an instance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so each write is one
        # explicit transaction and concurrent readers see either all of it or none.
        self.db = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    @classmethod
    def in_dir(cls, data_dir: Path) -> JobLog:
        return cls(Path(data_dir) / "jobs.sqlite3")

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        with self.transaction():
            self.db.execute(
                """CREATE TABLE IF NOT EXISTS jobs (
                    request_id TEXT PRIMARY KEY,
                    model_id INTEGER NOT NULL,
                    mode INTEGER NOT NULL,
                    block INTEGER NOT NULL,
                    deadline INTEGER NOT NULL,
                    fee TEXT NOT NULL DEFAULT '0',
                    input BLOB NOT NULL,
                    state TEXT NOT NULL,
                    phase TEXT,
                    output BLOB,
                    salt BLOB,
                    tx_hash TEXT,
                    nonce INTEGER,
                    raw_tx BLOB,
                    outcome TEXT,
                    error TEXT,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL
                )"""
            )
            have = {str(r["name"]) for r in self.db.execute("PRAGMA table_info(jobs)")}
            for name, sql_type in _ADDED_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}")
            self.db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)"
            )
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the watcher's cursor -------------------------------------------------------------

    def cursor(self) -> int | None:
        """The last block whose events were fully recorded, or None before the first poll."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        return int(row["value"]) if row else None

    def record_range(
        self,
        new_jobs: Iterable[NewJob],
        closes: Iterable[Close],
        cursor: int,
    ) -> list[str]:
        """Record what one block range held and move the cursor, atomically.

        ``new_jobs`` are inserted unless their request id is already known (idempotent);
        ``closes`` are requests settled on-chain, applied to jobs in the states they name
        (never to a job with a transaction in flight: its own receipt resolves it); a
        ``standby`` row of a settled request is dropped (it was never this node's work).
        Returns the newly inserted request ids.
        """
        inserted: list[str] = []
        now = time.time()
        with self.transaction():
            for job in new_jobs:
                state = JobState.FAILED if job.error else JobState.SEEN
                if job.standby and not job.error:
                    state = JobState.STANDBY
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO jobs (request_id, model_id, mode, block, deadline, "
                    "fee, input, state, error, created_at, updated_at, takeover) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.request_id, job.model_id, job.mode, job.block, job.deadline,
                        str(job.fee), job.input, state.value, job.error, now, now,
                        int(job.standby),
                    ),
                )  # fmt: skip
                if cur.rowcount:
                    inserted.append(job.request_id)
            for close in closes:
                self.db.execute(
                    "DELETE FROM jobs WHERE request_id = ? AND state = 'standby'",
                    (close.request_id,),
                )
                when = [s.value for s in close.when if s != JobState.SUBMITTED]
                marks = ",".join("?" for _ in when)
                self.db.execute(
                    "UPDATE jobs SET state = ?, outcome = ?, updated_at = ? WHERE request_id = ? "
                    f"AND state IN ({marks})",
                    (close.state.value, close.outcome, now, close.request_id, *when),
                )
            previous = self.cursor()
            if previous is not None and cursor < previous:
                raise TransitionError(f"the cursor may not move back ({previous} -> {cursor})")
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES ('cursor', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(cursor),),
            )
        return inserted

    # -- jobs -----------------------------------------------------------------------------

    def get(self, request_id: str) -> Job | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE request_id = ?", (request_id,)
        ).fetchone()
        return _row(row) if row else None

    def in_state(self, *states: JobState, limit: int = 1000) -> list[Job]:
        marks = ",".join("?" for _ in states)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) "
            "ORDER BY block, CAST(request_id AS INTEGER) LIMIT ?",
            (*[s.value for s in states], limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def all(self) -> list[Job]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY block").fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        found = dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        return {s.value: int(found.get(s.value, 0)) for s in JobState}

    def max_pending_nonce(self) -> int | None:
        row = self.db.execute(
            "SELECT MAX(nonce) AS n FROM jobs WHERE state = 'submitted'"
        ).fetchone()
        return int(row["n"]) if row and row["n"] is not None else None

    def transition(
        self,
        request_id: str,
        to: JobState,
        *,
        expect: Iterable[JobState] | None = None,
        **fields: object,
    ) -> bool:
        """Move a job to ``to`` and set ``fields``; idempotent and checked.

        Returns False (and changes nothing) when the job is already in ``to`` with nothing to
        set, or is terminal; raises TransitionError for an edge the machine does not have, or
        when ``expect`` is given and the job is in none of those states.
        """
        allowed = {
            "phase", "output", "salt", "tx_hash", "nonce", "raw_tx", "outcome", "error",
            "assigned_until", "reveal_deadline", "input_error", "proof", "trace_root",
        }  # fmt: skip
        unknown = set(fields) - allowed
        if unknown:
            raise TransitionError(f"unknown job field(s): {sorted(unknown)}")
        with self.transaction():
            row = self.db.execute(
                "SELECT state FROM jobs WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise TransitionError(f"no job for request {request_id}")
            current = JobState(row["state"])
            if current.terminal or (to == current and not fields):
                return False
            if expect is not None and current not in set(expect):
                raise TransitionError(
                    f"request {request_id} is {current}, expected one of "
                    f"{sorted(s.value for s in expect)}"
                )
            if to not in _ALLOWED[current] and to != current:
                raise TransitionError(f"request {request_id}: no transition {current} -> {to}")
            values: dict[str, object] = {**fields, "state": to.value, "updated_at": time.time()}
            if "phase" in values and values["phase"] is not None:
                values["phase"] = str(values["phase"])
            sets = ", ".join(f"{k} = ?" for k in values)
            self.db.execute(
                f"UPDATE jobs SET {sets}, attempts = attempts + ? WHERE request_id = ?",
                (*values.values(), 1 if to == JobState.SUBMITTED else 0, request_id),
            )
        return True

    def drop_standby(self, request_id: str) -> bool:
        """Forget a ``standby`` row (the request settled, or this node may not take it over)."""
        with self.transaction():
            cur = self.db.execute(
                "DELETE FROM jobs WHERE request_id = ? AND state = 'standby'", (request_id,)
            )
        return bool(cur.rowcount)

    # -- counters for /metrics ----------------------------------------------------------------

    def bump(self, name: str, by: int = 1) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self.db.execute("SELECT name, value FROM counters")}
