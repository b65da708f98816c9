"""What an agent has spent today, kept on disk so the daily limit survives restarts.

A payment is *reserved* (counted) before it is signed, then *settled* (still counted) when the
server confirms it, or *released* (uncounted) when it certainly was not charged. A payment
whose fate is unknown (the connection dropped after signing) stays reserved: the ledger errs
toward counting money that may have left, never toward forgetting it. Days are UTC dates;
entries of earlier days are dropped when a new day starts.

One JSON file per wallet (``fsutil.SharedJsonState``): every operation re-reads it under an
exclusive lock and rewrites it atomically if it changed, so agents in several threads or
processes sharing a wallet share one daily budget too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from verinfer.agents.policy import Payment, PolicyError, SpendingPolicy
from verinfer.fsutil import SharedJsonState

RESERVED, SETTLED = "reserved", "settled"


def utc_day(now: float | None = None) -> str:
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%d")


@dataclass
class Entry:
    amount: int
    state: str
    payee: str
    model_id: int | None


@dataclass
class _Day:
    day: str
    entries: dict[str, Entry]


class SpendLedger:
    """Reservations and settled payments of the current UTC day, persisted at ``path``."""

    def __init__(self, path: Path, *, clock: Callable[[], str] = utc_day) -> None:
        self.path = path
        self.clock = clock
        self._state = SharedJsonState(
            path,
            parse=lambda data: _Day(
                str(data["day"]), {key: Entry(**value) for key, value in data["entries"].items()}
            ),
            dump=asdict,
            empty=lambda: _Day(self.clock(), {}),
            what="spend ledger",
            hint="restore it, or delete it to forget today's spending",
        )
        with self._locked():
            pass  # an unreadable ledger is refused now, not at the first payment

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Entry]]:
        """Today's entries, read under the locks; changes to them are written on exit."""
        with self._state.open() as state:
            today = self.clock()
            if state.day != today:
                state.day, state.entries = today, {}
            yield state.entries

    def spent_today(self) -> int:
        """Reserved plus settled today."""
        with self._locked() as entries:
            return sum(entry.amount for entry in entries.values())

    def reserve(self, key: str, payment: Payment, policy: SpendingPolicy) -> None:
        """Check ``payment`` against ``policy`` and count it, atomically. A key already held
        (a retry of the same call) is not counted twice, but must not cost more."""
        with self._locked() as entries:
            held = entries.get(key)
            if held is not None:
                if payment.amount > held.amount:
                    raise PolicyError(
                        f"the retry of call {key} costs {payment.amount}, more than the "
                        f"{held.amount} reserved for it",
                        limit="max_per_call",
                    )
                return
            policy.check(payment, sum(entry.amount for entry in entries.values()))
            entries[key] = Entry(payment.amount, RESERVED, payment.payee, payment.model_id)

    def settle(self, key: str) -> None:
        """The server confirmed the payment: it stays counted, as spent."""
        with self._locked() as entries:
            entry = entries.get(key)
            if entry is not None:
                entry.state = SETTLED

    def release(self, key: str) -> None:
        """Uncount a reservation that certainly was not charged."""
        with self._locked() as entries:
            entries.pop(key, None)

    def state(self, key: str) -> str | None:
        with self._locked() as entries:
            entry = entries.get(key)
            return None if entry is None else entry.state
