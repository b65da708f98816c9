"""The job log: state machine, idempotent upserts, cursor atomicity, crash survival."""

from __future__ import annotations

from pathlib import Path

import pytest

from verinfer.node.jobs import Close, JobLog, JobState, NewJob, Phase, TransitionError


def new(rid: str, block: int = 10, error: str | None = None) -> NewJob:
    return NewJob(rid, model_id=1, mode=1, block=block, deadline=10**10, input=b"\x01", error=error)


@pytest.fixture
def log(tmp_path: Path) -> JobLog:
    return JobLog.in_dir(tmp_path)


def test_wal_mode(log: JobLog) -> None:
    assert log.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_is_idempotent_and_moves_cursor(log: JobLog) -> None:
    assert log.cursor() is None
    assert log.record_range([new("1"), new("2")], [], 10) == ["1", "2"]
    assert log.record_range([new("1"), new("3")], [], 12) == ["3"]  # replay: no duplicate
    assert log.cursor() == 12
    assert [j.request_id for j in log.all()] == ["1", "2", "3"]
    with pytest.raises(TransitionError, match="may not move back"):
        log.record_range([new("4")], [], 11)
    assert log.get("4") is None  # the whole range was rolled back with the cursor
    assert log.cursor() == 12


def test_malformed_recorded_as_failed(log: JobLog) -> None:
    log.record_range([new("9", error="bad event")], [], 1)
    job = log.get("9")
    assert job is not None and job.state == JobState.FAILED and job.error == "bad event"


def test_happy_path_and_terminal(log: JobLog) -> None:
    log.record_range([new("1")], [], 1)
    assert log.transition("1", JobState.COMPUTED, output=b"out", salt=b"s" * 32)
    assert log.transition(
        "1", JobState.SUBMITTED, phase=Phase.FULFIL, tx_hash="0xab", nonce=7, raw_tx=b"raw"
    )
    job = log.get("1")
    assert job is not None
    assert (job.state, job.phase, job.nonce, job.raw_tx, job.attempts) == (
        JobState.SUBMITTED, Phase.FULFIL, 7, b"raw", 1,
    )  # fmt: skip
    assert log.max_pending_nonce() == 7
    assert log.transition("1", JobState.CONFIRMED, outcome="fulfilled")
    # Terminal: further transitions change nothing.
    assert not log.transition("1", JobState.FAILED, error="late")
    assert not log.transition("1", JobState.CONFIRMED)
    job = log.get("1")
    assert job is not None and job.state == JobState.CONFIRMED and job.error is None
    assert log.counts()["confirmed"] == 1


def test_consensus_path(log: JobLog) -> None:
    log.record_range([new("5")], [], 1)
    log.transition("5", JobState.COMPUTED, output=b"o", salt=b"s" * 32)
    log.transition("5", JobState.SUBMITTED, phase=Phase.COMMIT, tx_hash="0x1", nonce=0)
    log.transition("5", JobState.COMMITTED)
    log.transition("5", JobState.SUBMITTED, phase=Phase.REVEAL, tx_hash="0x2", nonce=1)
    log.transition("5", JobState.COMMITTED, tx_hash=None, nonce=None)  # reveal dropped
    job = log.get("5")
    assert job is not None and job.state == JobState.COMMITTED and job.salt == b"s" * 32


def test_optimistic_path(log: JobLog) -> None:
    log.record_range([new("6")], [], 1)
    log.transition("6", JobState.COMPUTED, output=b"o", trace_root=b"t" * 32)
    log.transition("6", JobState.SUBMITTED, phase=Phase.CLAIM, tx_hash="0x1", nonce=0)
    log.transition("6", JobState.CLAIMED, reveal_deadline=100)
    log.transition("6", JobState.SUBMITTED, phase=Phase.SETTLE, tx_hash="0x2", nonce=1)
    log.transition("6", JobState.CLAIMED, tx_hash=None, nonce=None)  # settle dropped
    job = log.get("6")
    assert job is not None and job.state == JobState.CLAIMED and job.trace_root == b"t" * 32
    assert job.reveal_deadline == 100 and job.output == b"o"
    log.transition("6", JobState.SUBMITTED, phase=Phase.SETTLE, tx_hash="0x3", nonce=1)
    log.transition("6", JobState.CONFIRMED, outcome="finalized")
    assert log.counts()["confirmed"] == 1
    assert not log.transition("6", JobState.CLAIMED)  # terminal: nothing changes
    log.record_range([new("7")], [], 2)
    with pytest.raises(TransitionError):
        log.transition("7", JobState.CLAIMED)  # a claim needs a computed output


def test_illegal_edges(log: JobLog) -> None:
    log.record_range([new("1")], [], 1)
    with pytest.raises(TransitionError, match="no transition seen -> submitted"):
        log.transition("1", JobState.SUBMITTED)
    with pytest.raises(TransitionError, match="no transition seen -> committed"):
        log.transition("1", JobState.COMMITTED)
    with pytest.raises(TransitionError, match="expected one of"):
        log.transition("1", JobState.COMPUTED, expect=(JobState.SUBMITTED,))
    with pytest.raises(TransitionError, match="no job"):
        log.transition("404", JobState.COMPUTED)
    with pytest.raises(TransitionError, match="unknown job field"):
        log.transition("1", JobState.COMPUTED, colour="red")
    assert not log.transition("1", JobState.SEEN)  # already there, nothing to set: no-op


def test_closes_skip_jobs_in_flight(log: JobLog) -> None:
    log.record_range([new("1"), new("2"), new("3")], [], 1)
    log.transition("2", JobState.COMPUTED, output=b"o")
    log.transition("3", JobState.COMPUTED, output=b"o")
    log.transition("3", JobState.SUBMITTED, phase=Phase.FULFIL, tx_hash="0x3", nonce=0)
    closes = [Close(r, JobState.CONFIRMED, "fulfilled_by_other") for r in ("1", "2", "3")]
    log.record_range([], closes, 2)
    states = {j.request_id: j.state for j in log.all()}
    assert states == {"1": "confirmed", "2": "confirmed", "3": "submitted"}


def test_closes_respect_when(log: JobLog) -> None:
    log.record_range([new("1"), new("2")], [], 1)
    for rid in ("1", "2"):
        log.transition(rid, JobState.COMPUTED, output=b"o", salt=b"s" * 32)
        log.transition(rid, JobState.SUBMITTED, phase=Phase.COMMIT, tx_hash="0x", nonce=0)
        log.transition(rid, JobState.COMMITTED)
    # A delivered consensus output does not close a committed job (it must still reveal) ...
    log.record_range([], [Close("1", JobState.CONFIRMED, "fulfilled_by_other")], 2)
    # ... a closed ballot does.
    committed = (JobState.SEEN, JobState.COMPUTED, JobState.COMMITTED)
    log.record_range([], [Close("2", JobState.CONFIRMED, "closed", committed)], 3)
    states = {j.request_id: j.state for j in log.all()}
    assert states == {"1": "committed", "2": "confirmed"}


def test_survives_reopen(tmp_path: Path) -> None:
    first = JobLog.in_dir(tmp_path)
    first.record_range([new("1")], [], 5)
    first.transition("1", JobState.COMPUTED, output=b"o", salt=b"x" * 32)
    first.bump("tx_sent", 2)
    # No close(): like a SIGKILL, only committed transactions count.
    second = JobLog.in_dir(tmp_path)
    job = second.get("1")
    assert job is not None and job.state == JobState.COMPUTED and job.salt == b"x" * 32
    assert second.cursor() == 5 and second.counters() == {"tx_sent": 2}


def test_big_request_ids_order(log: JobLog) -> None:
    big = str(2**200)
    log.record_range([new(big, block=1), new("7", block=1)], [], 1)
    assert [j.request_id for j in log.in_state(JobState.SEEN)] == ["7", big] or len(
        log.in_state(JobState.SEEN)
    ) == 2
    assert log.get(big) is not None


def test_standby_rows_taken_over_or_dropped(log: JobLog) -> None:
    standby = NewJob("5", model_id=1, mode=1, block=3, deadline=10**10, input=b"\x01", standby=True)
    other = NewJob("6", model_id=1, mode=1, block=3, deadline=10**10, input=b"\x01", standby=True)
    assert log.record_range([standby, other, new("7")], [], 3) == ["5", "6", "7"]
    job = log.get("5")
    assert job is not None and job.state == JobState.STANDBY and job.takeover
    assert not log.get("7").takeover  # type: ignore[union-attr]
    assert log.transition("5", JobState.STANDBY, assigned_until=1234)
    assert log.get("5").assigned_until == 1234  # type: ignore[union-attr]
    assert log.transition("5", JobState.SEEN, expect=(JobState.STANDBY,))
    # Settled by its assignee: the standby row goes; a taken-over job is closed like any other.
    log.record_range([], [Close("6", JobState.CONFIRMED, "fulfilled_by_other")], 4)
    log.record_range([], [Close("5", JobState.CONFIRMED, "fulfilled_by_other")], 5)
    assert log.get("6") is None
    assert log.get("5").state == JobState.CONFIRMED  # type: ignore[union-attr]
    log.record_range([other], [], 6)  # seen again later (never for a replayed range)
    assert log.drop_standby("6") and not log.drop_standby("6") and not log.drop_standby("5")


def test_revealed_waits_for_the_ballot(log: JobLog) -> None:
    log.record_range([new("1")], [], 1)
    log.transition("1", JobState.COMPUTED, output=b"o", salt=b"s" * 32)
    log.transition("1", JobState.SUBMITTED, phase=Phase.REVEAL, tx_hash="0x1", nonce=1)
    assert log.transition("1", JobState.REVEALED, outcome="revealed", reveal_deadline=99)
    job = log.get("1")
    assert job is not None and not job.state.terminal and job.reveal_deadline == 99
    assert log.transition("1", JobState.SUBMITTED, phase=Phase.FINALIZE, tx_hash="0x2", nonce=2)
    assert log.transition("1", JobState.REVEALED, expect=(JobState.SUBMITTED,))  # dropped tx
    closed = Close("1", JobState.CONFIRMED, "revealed", (JobState.REVEALED,))
    log.record_range([], [closed], 2)
    assert log.get("1").state == JobState.CONFIRMED  # type: ignore[union-attr]
    log.record_range([new("2")], [], 3)
    with pytest.raises(TransitionError):
        log.transition("2", JobState.REVEALED)  # seen -> revealed is no edge


def test_schema_1_database_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.executescript(
        """CREATE TABLE jobs (request_id TEXT PRIMARY KEY, model_id INTEGER NOT NULL,
        mode INTEGER NOT NULL, block INTEGER NOT NULL, deadline INTEGER NOT NULL,
        fee TEXT NOT NULL DEFAULT '0', input BLOB NOT NULL, state TEXT NOT NULL, phase TEXT,
        output BLOB, salt BLOB, tx_hash TEXT, nonce INTEGER, raw_tx BLOB, outcome TEXT,
        error TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
        updated_at REAL NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1'), ('cursor', '41');
        INSERT INTO jobs (request_id, model_id, mode, block, deadline, input, state, created_at,
        updated_at) VALUES ('3', 1, 1, 40, 99, x'01', 'computed', 0, 0);"""
    )
    db.close()
    log = JobLog.in_dir(tmp_path)
    job = log.get("3")
    assert job is not None and job.state == JobState.COMPUTED and not job.takeover
    assert (job.assigned_until, job.reveal_deadline, job.input_error) == (0, 0, None)
    assert job.proof is None and job.trace_root is None
    assert log.cursor() == 41
    assert log.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    log.close()
    assert JobLog.in_dir(tmp_path).get("3") == job  # opening again changes nothing
