"""The agent's spending policy and ledger: limits checked before signing, days in UTC,
reservations counted once, the ledger surviving a restart."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from eth_account import Account
from x402.schemas import PaymentRequirements

from verinfer.agents import Payment, PolicyError, SpendingPolicy, SpendLedger, Wallet
from verinfer.agents.client import _prefer
from verinfer.agents.ledger import RESERVED, SETTLED, utc_day
from verinfer.agents.wallet import KEY_ENV, KEYSTORE_ENV, PASSWORD_ENV
from verinfer.errors import ConfigError

KEY = "0x" + "5a" * 32

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
        ({"max_per_call": 0}, "max_per_call must be a positive whole"),
        ({"max_per_day": 2.5e2}, "max_per_day must be a positive whole"),
        ({"max_per_call": True}, "max_per_call must be"),
        ({"max_per_call": 300}, "over max_per_day"),
        ({"asset": "0x12"}, "not a 0x-prefixed"),
        ({"network": "base"}, "CAIP-2"),
        ({"network": "eip155:0"}, "CAIP-2"),
        ({"payees": ["bob"]}, "not an address"),
        ({"payees": []}, "allowed_payees is empty"),
        ({"models": []}, "allowed_models is empty"),
        ({"models": ["1"]}, "not a model id"),
    ],
)
def test_bad_policies_are_refused_at_construction(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid spending policy: .*" + message):
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


@pytest.mark.parametrize("shared", [True, False])
def test_concurrent_reservations_never_overshoot_the_day(tmp_path: Path, shared: bool) -> None:
    """64 agents race for a budget of 25 calls, on one ledger object or each on its own
    object over the same file (as separate processes would be: only the file lock holds)."""
    path = tmp_path / "l.json"
    one = SpendLedger(path)
    rules = policy(max_per_call=10, max_per_day=250)
    accepted: list[str] = []
    start = threading.Barrier(64)

    def agent(i: int) -> None:
        ledger = one if shared else SpendLedger(path)
        start.wait()
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
    assert len(accepted) == 25 and SpendLedger(path).spent_today() == 250


def test_a_corrupt_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        SpendLedger(path)


def test_two_ledgers_on_one_file_share_the_day(tmp_path: Path) -> None:
    """Two agents (threads or processes) on one wallet file cannot both spend the budget."""
    path = tmp_path / "l.json"
    first, second = SpendLedger(path), SpendLedger(path)
    first.reserve("a", pay(100), policy())
    second.reserve("b", pay(100), policy())
    with pytest.raises(PolicyError, match="today already holds 200 of 250"):
        first.reserve("c", pay(100), policy())
    second.release("a")  # the other instance's reservation, released through this one
    assert first.spent_today() == 100 and first.state("a") is None


def test_wallet_keys_from_hex_env_and_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERINFER_HOME", str(tmp_path / "home"))
    address = Account.from_key(KEY).address
    wallet = Wallet.from_key(KEY, policy())
    assert wallet.address == address
    assert wallet.ledger.path == tmp_path / "home" / "agents" / f"{address.lower()}.json"

    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "pw", kdf="pbkdf2", iterations=2)))
    assert Wallet.from_keystore(keystore, "pw", policy()).address == address
    with pytest.raises(ConfigError, match="cannot decrypt"):
        Wallet.from_keystore(keystore, "wrong", policy())
    with pytest.raises(ConfigError, match="cannot read"):
        Wallet.from_keystore(tmp_path / "missing.json", "pw", policy())

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEYSTORE_ENV, raising=False)
    with pytest.raises(ConfigError, match="no agent key"):
        Wallet.from_env(policy())
    monkeypatch.setenv(KEYSTORE_ENV, str(keystore))
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert Wallet.from_env(policy()).address == address
    other = "0x" + "6b" * 32
    monkeypatch.setenv(KEY_ENV, other)  # the raw key wins over the keystore
    assert Wallet.from_env(policy()).address == Account.from_key(other).address
    with pytest.raises(ConfigError, match="32-byte hex"):
        Wallet.from_key("0x1234", policy())


def test_wallet_spending_goes_through_its_ledger(tmp_path: Path) -> None:
    wallet = Wallet.from_key(KEY, policy(), SpendLedger(tmp_path / "l.json"))
    wallet.reserve("a", pay(100))
    wallet.reserve("b", pay(100))
    wallet.settle("a")
    wallet.release("b")
    assert wallet.spent_today() == 100 and wallet.left_today() == 150
    wallet.reserve("c", pay(100))
    with pytest.raises(PolicyError, match="1 over the daily limit"):
        wallet.reserve("d", pay(51))
    wallet.reserve("d", pay(50))
    assert wallet.left_today() == 0 and wallet.spent_today() == 250


def test_the_sdk_picks_the_wallets_asset_and_network_cheapest_first() -> None:
    def offer(asset: str, network: str, amount: str) -> PaymentRequirements:
        return PaymentRequirements(
            scheme="exact", network=network, asset=asset, amount=amount, pay_to=PAYEE,
            max_timeout_seconds=60, extra={},
        )  # fmt: skip

    other = "0x" + "33" * 20
    offers = [
        offer(other, NETWORK, "1"),  # cheapest, but not the wallet's token
        offer(TOKEN, "eip155:1", "2"),  # the wallet's token address, on another chain
        offer(TOKEN.upper().replace("0X", "0x"), NETWORK, "9"),
        offer(TOKEN, NETWORK, "5"),
    ]
    ordered = _prefer(TOKEN, NETWORK)(2, list(offers))
    assert [o.amount for o in ordered] == ["5", "9", "1", "2"]
