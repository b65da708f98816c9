"""Model owners are paid their royalty on calls the gateway computes itself (mode none).

x402 pays the gateway only; the gateway counts ``price * royaltyBps / 10,000`` per settled
call for the model token's owner and transfers it from its account. Real anvil, real
contracts, real HTTP: only delivered, settled calls accrue (not refusals, not failed
computations, not idempotent replays), payouts land to the unit, a failed payout loses
nothing, and a crash mid-transfer leaves the amount owed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_kit import PRICE, fund, register_digits
from test_gateway_pay import COST, PAYER, Gateway, _client, _sample, serving
from test_gateway_receipts import _paid
from x402.http.clients import x402HttpxClient

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.token import Token
from verinfer.errors import ConfigError
from verinfer.gateway.royalties import RoyaltyLedger, royalty
from verinfer.models.registry import RegistryClient

pytestmark = pytest.mark.integration

OWNER = dev_account(1).address  # the model token's owner (not the gateway's account 0)
ROYALTY = royalty(PRICE, 1_000)  # register_digits: 10% of the model's price


@pytest.fixture
def setup(
    anvil: DevnetInfo, chain: Chain, book: AddressBook, tmp_path: Path
) -> Iterator[tuple[Gateway, RoyaltyLedger]]:
    model = register_digits(chain, book)
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    chain.transact(registry.contract.functions.transferFrom(chain.address, OWNER, model.model_id))
    payer = dev_account(PAYER)
    fund(chain, book, payer.address, tokens=1)
    token = Token(chain, book.address("PaymentToken"))
    ledger = RoyaltyLedger(tmp_path / "royalties.json", token)
    with serving(anvil, chain, book, royalties=ledger) as (url, network):
        payee = str(dev_account(4).address)
        yield Gateway(url, model.model_id, model.program, token, payer, payee, network), ledger


def test_settled_calls_accrue_and_are_paid_to_the_owner(
    setup: tuple[Gateway, RoyaltyLedger], chain: Chain, book: AddressBook
) -> None:
    gateway, ledger = setup
    fund(chain, book, chain.address, tokens=1)  # the gateway's account pays the royalties

    async def three() -> list[httpx.Response]:
        async with x402HttpxClient(_client(gateway), timeout=60) as http:
            # the mode as a client may spell it: "NONE" is mode none, computed here, owed for
            urls = [gateway.infer_url(), gateway.infer_url() + "?mode=none"]
            urls.append(gateway.infer_url() + "?mode=NONE")
            calls = [http.post(url, json={"input": _sample()}) for url in urls]
            return list(await asyncio.gather(*calls))

    assert [r.status_code for r in asyncio.run(three())] == [200, 200, 200]
    # Not accrued: a failed computation (422), an unpaid call (402), an idempotent replay.
    assert _paid(gateway, {"input": [[0.5] * 63]}).status_code == 422
    assert httpx.post(gateway.infer_url(), json={"input": _sample()}).status_code == 402
    body = {"input": _sample()}
    assert _paid(gateway, body, "pay_royalty_once_0123456789").status_code == 200
    assert _paid(gateway, body, "pay_royalty_once_0123456789").status_code == 200  # replayed
    owed = 4 * ROYALTY
    assert ledger.balances() == {
        OWNER.lower(): {"accrued": owed, "owed": owed, "sending": 0, "paid": 0}
    }
    owner0, gateway0 = gateway.token.balance_of(OWNER), gateway.token.balance_of(chain.address)
    assert ledger.pay_out() == {OWNER.lower(): owed}
    assert gateway.token.balance_of(OWNER) == owner0 + owed
    assert gateway.token.balance_of(chain.address) == gateway0 - owed
    assert ledger.balances()[OWNER.lower()] == {
        "accrued": owed,
        "owed": 0,
        "sending": 0,
        "paid": owed,
    }
    assert ledger.pay_out() == {}  # nothing owed: nothing sent
    assert COST > PRICE  # the node fee stays the gateway's: the royalty is on the price only


def test_a_failed_payout_keeps_everything_owed(
    setup: tuple[Gateway, RoyaltyLedger], chain: Chain, book: AddressBook
) -> None:
    gateway, ledger = setup
    assert _paid(gateway, {"input": _sample()}).status_code == 200
    spare = gateway.token.balance_of(chain.address)
    if spare:  # empty the gateway's account so the transfer reverts for want of balance
        gateway.token.transfer(dev_account(2).address, spare)
    assert ledger.pay_out() == {}
    assert ledger.balances()[OWNER.lower()] == {
        "accrued": ROYALTY,
        "owed": ROYALTY,
        "sending": 0,
        "paid": 0,
    }
    fund(chain, book, chain.address, tokens=1)
    assert ledger.pay_out() == {OWNER.lower(): ROYALTY}


def test_a_crash_mid_transfer_leaves_the_amount_owed(
    tmp_path: Path, chain: Chain, book: AddressBook
) -> None:
    path = tmp_path / "royalties.json"
    state = {"owners": {OWNER.lower(): {"accrued": 700, "owed": 200, "sending": 500, "paid": 0}}}
    path.write_text(json.dumps(state))
    reopened = RoyaltyLedger(path, Token(chain, book.address("PaymentToken")))
    assert reopened.balances()[OWNER.lower()] == {
        "accrued": 700,
        "owed": 700,
        "sending": 0,
        "paid": 0,
    }
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        RoyaltyLedger(path, Token(chain, book.address("PaymentToken")))


def test_two_processes_on_one_ledger_see_each_other(
    tmp_path: Path, chain: Chain, book: AddressBook
) -> None:
    """`verinfer gateway royalties --pay` while the gateway runs: each works on the file, not
    on a copy of its own, so neither undoes the other's accruals or payouts, and the looking
    process leaves the gateway's in-flight amounts alone."""
    path, token = tmp_path / "royalties.json", Token(chain, book.address("PaymentToken"))
    gateway = RoyaltyLedger(path, token)
    gateway.accrue(OWNER, 300)
    looking = RoyaltyLedger(path, token, recover=False)
    fund(chain, book, chain.address, tokens=1)
    owner0 = token.balance_of(OWNER)
    assert looking.pay_out() == {OWNER.lower(): 300}
    gateway.accrue(OWNER, 40)  # after the other's payout: not paid again, not lost
    assert gateway.pay_out() == {OWNER.lower(): 40}
    assert token.balance_of(OWNER) == owner0 + 340
    want = {OWNER.lower(): {"accrued": 340, "owed": 0, "sending": 0, "paid": 340}}
    assert gateway.balances() == looking.balances() == want
    state = json.loads(path.read_text())
    state["owners"][OWNER.lower()].update(accrued=440, sending=100)  # a payout in flight
    path.write_text(json.dumps(state))
    assert RoyaltyLedger(path, token, recover=False).balances()[OWNER.lower()]["sending"] == 100
    assert RoyaltyLedger(path, token).balances()[OWNER.lower()]["owed"] == 100  # the gateway's


def test_invariant_under_random_accruals_and_failing_payouts(
    tmp_path: Path, chain: Chain, book: AddressBook
) -> None:
    """accrued == owed + sending + paid for every owner after every step, and the tokens that
    reached each owner are exactly what the ledger says was paid."""
    rng = random.Random(7)
    token = Token(chain, book.address("PaymentToken"))
    ledger = RoyaltyLedger(tmp_path / "r.json", token)
    owners = [dev_account(i).address for i in (1, 3, 4)]
    sink = dev_account(2).address
    start = {o: token.balance_of(o) for o in owners}
    for _ in range(25):
        action = rng.random()
        if action < 0.6:
            ledger.accrue(rng.choice(owners), rng.randrange(0, 5_000))
        elif action < 0.8:
            fund(chain, book, chain.address, tokens=1)
            ledger.pay_out(minimum=rng.randrange(1, 3_000))
        else:  # a payout with an empty account: every transfer reverts
            spare = token.balance_of(chain.address)
            if spare:
                token.transfer(sink, spare)
            ledger.pay_out()
        for b in ledger.balances().values():
            assert b["accrued"] == b["owed"] + b["sending"] + b["paid"] and b["sending"] == 0
    balances = ledger.balances()
    assert any(b["paid"] for b in balances.values()) and any(b["owed"] for b in balances.values())
    for owner in owners:
        got = token.balance_of(owner) - start[owner]
        assert got == balances.get(owner.lower(), {"paid": 0})["paid"]


def test_royalties_command_shows_and_pays(
    chain: Chain, book: AddressBook, anvil: DevnetInfo
) -> None:
    from typer.testing import CliRunner

    from verinfer.cli import app
    from verinfer.gateway.app import royalty_ledger

    royalty_ledger(chain, book).accrue(OWNER, 1_234)  # the ledger `gateway start` keeps
    fund(chain, book, chain.address, tokens=1)
    owner0 = Token(chain, book.address("PaymentToken")).balance_of(OWNER)
    shown = CliRunner().invoke(app, ["gateway", "royalties", "--json", "--rpc-url", anvil.rpc_url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["owners"][OWNER.lower()]["owed"] == 1_234
    paid = CliRunner().invoke(
        app, ["gateway", "royalties", "--pay", "--json", "--rpc-url", anvil.rpc_url]
    )
    assert json.loads(paid.stdout)["paid_now"] == {OWNER.lower(): 1_234}
    assert Token(chain, book.address("PaymentToken")).balance_of(OWNER) == owner0 + 1_234
