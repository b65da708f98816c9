"""Model owners' royalties on calls the gateway computes itself (mode none).

A relayed call pays the model owner through the coordinator, as any request does. A call the
gateway answers alone is paid to the gateway only (x402 has one payee), so the gateway owes
the owner the royalty the registry sets: ``price * royaltyBps / 10,000`` per run, the same
rule the coordinator applies. ``RoyaltyLedger`` counts it per owner after each settled call
and pays it out in batches from the gateway's account (one token transfer per owner).

Money path, checks-effects-interactions: a payout first moves the amount from ``owed`` to
``sending`` on disk, then transfers, then records it ``paid`` (or, if the transfer failed,
moves it back to ``owed``). Invariant: accrued == owed + sending + paid, per owner, at every
step. A crash during a transfer leaves its amount in ``sending``; ``recover`` (run when the
gateway opens its ledger) moves it back to ``owed``: an owner may then be paid that amount
twice if the transfer had landed, never less than owed. The gateway's account bears that
risk, not the owner.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from verinfer.chain.token import Token
from verinfer.errors import VerinferError
from verinfer.fsutil import SharedJsonState

BPS = 10_000


def royalty(price: int, royalty_bps: int) -> int:
    """The owner's share of one run, rounded down (as the coordinator rounds it)."""
    return price * royalty_bps // BPS


@dataclass
class _Account:
    accrued: int = 0
    owed: int = 0
    paid: int = 0
    sending: int = 0


@dataclass
class _State:
    owners: dict[str, _Account] = field(default_factory=dict)


class RoyaltyLedger:
    """Royalties owed by one gateway account, persisted at ``path`` and shared with other
    processes on that file (``verinfer gateway royalties`` while the gateway runs): each
    operation reads and writes it under an exclusive lock (``fsutil.SharedJsonState``).
    ``recover``: move what a crashed payout left ``sending`` back to ``owed`` on opening;
    only the gateway itself does, since another process's payout may be in flight."""

    def __init__(
        self,
        path: Path,
        token: Token,
        *,
        tx_lock: threading.Lock | None = None,
        recover: bool = True,
    ) -> None:
        self.path = path
        self.token = token
        self.tx_lock = tx_lock or threading.Lock()  # the account's transactions, one at a time
        self._payout = threading.Lock()  # one payout at a time in this process
        self._state = SharedJsonState(
            path,
            parse=lambda data: _State({k: _Account(**v) for k, v in data["owners"].items()}),
            dump=asdict,
            empty=_State,
            what="royalty ledger",
            hint="restore it from a backup: it records what model owners are owed",
        )
        with self._state.open():
            pass  # an unreadable ledger is refused now, not at the first settled call
        if recover:
            self.recover()

    def accrue(self, owner: str, amount: int) -> None:
        """Count ``amount`` owed to ``owner`` (after a settled call)."""
        if amount < 0:
            raise ValueError(f"a royalty cannot be negative, got {amount}")
        if amount == 0:
            return
        with self._state.open() as state:
            account = state.owners.setdefault(owner.lower(), _Account())
            account.accrued += amount
            account.owed += amount

    def balances(self) -> dict[str, dict[str, int]]:
        """Per owner: accrued, owed, sending and paid."""
        with self._state.open() as state:
            return {owner: asdict(a) for owner, a in state.owners.items()}

    def recover(self) -> None:
        """Amounts left ``sending`` by a crash are owed again (see the module docstring)."""
        with self._state.open() as state:
            for account in state.owners.values():
                account.owed, account.sending = account.owed + account.sending, 0

    def pay_out(self, minimum: int = 1) -> dict[str, int]:
        """Transfer each owner's owed amount (when at least ``minimum``); what was paid."""
        with self._payout:
            return self._pay_out(max(1, minimum))

    def _pay_out(self, minimum: int) -> dict[str, int]:
        paid: dict[str, int] = {}
        with self._state.open() as state:
            due = [o for o, a in state.owners.items() if a.owed >= minimum]
        for owner in due:
            with self._state.open() as state:  # effects first: it leaves ``owed`` before a transfer
                account = state.owners[owner]
                amount = account.owed  # read again: another process may have paid it meanwhile
                if amount < minimum:
                    continue
                account.owed, account.sending = 0, account.sending + amount
            try:
                with self.tx_lock:
                    self.token.transfer(owner, amount)  # raises on a revert
            except VerinferError:
                with self._state.open() as state:
                    account = state.owners[owner]
                    account.owed, account.sending = account.owed + amount, account.sending - amount
                continue
            with self._state.open() as state:
                account = state.owners[owner]
                account.paid, account.sending = account.paid + amount, account.sending - amount
            paid[owner] = amount
        return paid


class RoyaltyPayer:
    """Pays the ledger out every ``interval`` seconds in a daemon thread (``stop`` ends it
    after a last payout)."""

    def __init__(self, ledger: RoyaltyLedger, interval: float = 60.0, minimum: int = 1):
        self.ledger, self.interval, self.minimum = ledger, interval, minimum
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="royalties")

    def start(self) -> RoyaltyPayer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._pay()
        self._pay()

    def _pay(self) -> None:
        try:
            self.ledger.pay_out(self.minimum)
        except VerinferError:
            pass  # the ledger keeps what is owed; the next round retries

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
