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
