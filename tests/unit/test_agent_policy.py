"""The agent's spending policy and ledger: limits checked before signing, days in UTC,
reservations counted once, the ledger surviving a restart."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from verinfer.agents import Payment, PolicyError, SpendingPolicy, SpendLedger
from verinfer.agents.ledger import RESERVED, SETTLED, utc_day
from verinfer.errors import ConfigError

TOKEN = "0x" + "11" * 20
PAYEE = "0x" + "22" * 20
NETWORK = "eip155:31337"


def policy(**kw: object) -> SpendingPolicy:
    base: dict[str, object] = dict(max_per_call=100, max_per_day=250, asset=TOKEN, network=NETWORK)
    return SpendingPolicy.of(**{**base, **kw})  # type: ignore[arg-type]


def pay(amount: int = 100, **kw: object) -> Payment:
    base: dict[str, object] = dict(
        amount=amount, payee=PAYEE, asset=TOKEN, network=NETWORK, model_id=1
    )
    return Payment(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_per_call": 0}, "must be positive"),
        ({"max_per_call": 300}, "over max_per_day"),
        ({"asset": "0x12"}, "not a 0x-prefixed"),
        ({"network": "base"}, "CAIP-2"),
        ({"payees": ["bob"]}, "not an address"),
    ],
)
def test_bad_policies_are_refused_at_construction(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy(**kw)


@pytest.mark.parametrize(
    ("payment", "limit"),
    [
        (pay(101), "max_per_call"),
        (pay(network="eip155:1"), "network"),
        (pay(asset="0x" + "33" * 20), "asset"),
        (pay(payee="0x" + "44" * 20), "payee"),
        (pay(model_id=2), "model"),
    ],
)
def test_each_rule_names_itself(payment: Payment, limit: str) -> None:
    rules = policy(payees=[PAYEE.upper().replace("0X", "0x")], models=[1])
    with pytest.raises(PolicyError) as raised:
        rules.check(payment, spent_today=0)
    assert raised.value.limit == limit


def test_daily_limit_counts_reservations_and_says_by_how_much(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "l.json")
    rules = policy()
    ledger.reserve("a", pay(100), rules)
    ledger.reserve("b", pay(100), rules)
    with pytest.raises(PolicyError, match="50 over the daily limit") as raised:
        ledger.reserve("c", pay(100), rules)
    assert raised.value.limit == "max_per_day"
    ledger.reserve("c", pay(50), rules)  # exactly at the limit
    assert ledger.spent_today() == 250


def test_a_retry_of_the_same_call_is_counted_once_and_cannot_cost_more(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "l.json")
    ledger.reserve("call", pay(100), policy())
    ledger.reserve("call", pay(100), policy())
    assert ledger.spent_today() == 100
    with pytest.raises(PolicyError, match="more than the 100 reserved"):
        ledger.reserve("call", pay(101), policy(max_per_call=200))


def test_release_uncounts_settle_keeps_and_restart_remembers(tmp_path: Path) -> None:
    path = tmp_path / "agents" / "w.json"
    ledger = SpendLedger(path)
    ledger.reserve("paid", pay(100), policy())
    ledger.reserve("failed", pay(100), policy())
    ledger.settle("paid")
    ledger.release("failed")
    assert ledger.spent_today() == 100
    again = SpendLedger(path)  # a restarted agent
    assert again.spent_today() == 100 and again.state("paid") == SETTLED
    again.reserve("unknown", pay(100), policy())
    assert SpendLedger(path).state("unknown") == RESERVED  # an unknown fate stays counted


def test_a_new_utc_day_starts_from_zero(tmp_path: Path) -> None:
    day = ["2026-11-22"]
    ledger = SpendLedger(tmp_path / "l.json", clock=lambda: day[0])
    ledger.reserve("a", pay(100), policy())
    ledger.reserve("b", pay(100), policy())
    day[0] = "2026-11-23"
    assert ledger.spent_today() == 0
    ledger.reserve("c", pay(100), policy())
    assert SpendLedger(tmp_path / "l.json", clock=lambda: day[0]).spent_today() == 100
    assert utc_day(0) == "1970-01-01" and utc_day(86_399.9) == "1970-01-01"
    assert utc_day(86_400) == "1970-01-02"


def test_concurrent_reservations_never_overshoot_the_day(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "l.json")
    rules = policy(max_per_call=10, max_per_day=250)
    accepted: list[str] = []

    def agent(i: int) -> None:
        try:
            ledger.reserve(f"k{i}", pay(10), rules)
            accepted.append(f"k{i}")
        except PolicyError:
            pass

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 25 and ledger.spent_today() == 250


def test_a_corrupt_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        SpendLedger(path)
