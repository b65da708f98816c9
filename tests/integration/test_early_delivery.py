"""Early delivery (optimistic mode with the EARLY_DELIVERY flag, docs/optimistic.md section 1)
on a real anvil: the consumer gets the claimed output at the claim (`onProvisionalInference`),
the final one at `finalizeOptimistic` (`onInference`, paid as usual), or `onCorrection` when
the claim loses its dispute and the request is refunded. Hooks that revert settle nothing
differently; the flag is refused on every other mode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from coordinator_kit import (
    DEPLOYER,
    DISSENT_SLASH,
    MIN_STAKE,
    MODE_NONE,
    PRICE,
    ROYALTY_BPS,
    account,
)
from dispute_kit import corrupted_values
from eth_utils.crypto import keccak
from node_kit import DIGITS_SAMPLE, fund, register_digits, setup_node
from test_coordinator_optimistic import (
    CALLBACK_GAS,
    FEE,
    GAME,
    NODE,
    OTHER_NODE,
    PROTOCOL_FEE_BPS,
    TREASURY,
    Setup,
    claim_status,
    driver,
    optimistic_setup,
)
from typer.testing import CliRunner
from web3.types import TxReceipt

from verinfer.chain.client import Chain
from verinfer.chain.coordinator_errors import (
    ClaimNotDeliverableError,
    EarlyDeliveryNotOptimisticError,
    UnsupportedModeError,
    WrongStatusError,
)
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import EARLY_DELIVERY, CoordinatorClient, InferenceMode
from verinfer.chain.inference import RequestStatus as St
from verinfer.cli import app
from verinfer.client import InferenceClient
from verinfer.errors import ConfigError
from verinfer.models.registry import Mode
from verinfer.optimistic.game import ChallengerParty, ClaimerParty, output_bytes
from verinfer.runtime.commit import commit_list

pytestmark = pytest.mark.integration

MODE_OPTIMISTIC = 4
EARLY = MODE_OPTIMISTIC | EARLY_DELIVERY
PROVISIONAL, FINAL, CORRECTION = 1, 2, 3
CLAIM_FINALIZED, CLAIM_CHALLENGER_WON = 3, 5


@pytest.fixture
def early(chain: Chain, book: AddressBook) -> Setup:
    """The digits MLP served by NODE in modes none and optimistic, and a funded EarlyConsumer."""
    # Stake for a few slashes: a node below the minimum stake is not eligible for new requests.
    return optimistic_setup(chain, book, "EarlyConsumer", stake=5 * MIN_STAKE)


def request(s: Setup, mode: int = EARLY) -> int:
    """A request by the EarlyConsumer; the event carries the mode without the flag."""
    kit = s.kit
    fee = kit.quote(s.model_id, mode)
    fn = s.consumer.functions.requestInference(
        s.model_id, s.input, mode, fee, kit.now() + 3600, CALLBACK_GAS, 1
    )
    (event,) = kit.events("InferenceRequested", kit.chain.transact(fn))
    assert event["assigned"] == [NODE.address]
    assert event["mode"] == mode & ~EARLY_DELIVERY
    return int(event["requestId"])


def hooks(s: Setup, rid: int) -> list[int]:
    return list(s.kit.chain.call(s.consumer.functions.hooksOf(rid)))


def ledger(s: Setup) -> tuple[int, ...]:
    accounts = (NODE.address, DEPLOYER.address, TREASURY.address, s.consumer.address)
    return tuple(s.kit.owed(a) for a in accounts)


def coordinator_tokens(s: Setup) -> int:
    return s.kit.balance(s.kit.coordinator.address)


def wrong_claim(s: Setup) -> tuple[bytes, ClaimerParty]:
    values = corrupted_values(s.program, s.execution, 0, 100, 5, propagate=True)
    wrong = output_bytes(s.program, values)
    assert wrong != s.output
    return wrong, ClaimerParty(s.program, values)


def lose(s: Setup, claim_id: int, claimer: ClaimerParty, wrong: bytes) -> None:
    d = driver(s)
    d.challenge(claim_id)
    record = d.play(claim_id, claimer, ChallengerParty(s.program, s.execution), wrong)
    assert record.claimer_won is False
    assert claim_status(s, claim_id) == CLAIM_CHALLENGER_WON


def failed_callbacks(s: Setup, receipt: TxReceipt) -> list[bytes]:
    return [bytes(e["reason"]) for e in s.kit.events("CallbackFailed", receipt)]


def hook_failed(rid: int) -> bytes:
    """The revert data of EarlyConsumer.EarlyHookFailed(rid): CallbackFailed's reason."""
    return keccak(b"EarlyHookFailed(uint256)")[:4] + rid.to_bytes(32, "big")


def test_early_request_is_delivered_at_the_claim_and_confirmed_at_finalization(
    early: Setup,
) -> None:
    s, kit = early, early.kit
    before = coordinator_tokens(s)
    rid = request(s)
    raw = kit.get_request(rid)
    assert raw["mode"] == EARLY and raw["status"] == St.PENDING
    info = s.node.get_request(rid)
    assert info.mode == InferenceMode.OPTIMISTIC and info.early is True
    fee = raw["escrow"]
    assert fee == kit.quote(s.model_id, MODE_OPTIMISTIC)  # the flag costs nothing

    claim_id, receipt = s.node.claim(rid, s.output, s.trace_root)
    assert failed_callbacks(s, receipt) == [] and not kit.events("InferenceFulfilled", receipt)
    assert kit.chain.call(s.consumer.functions.provisionalOf(rid)) == s.output
    assert hooks(s, rid) == [PROVISIONAL]
    assert ledger(s) == (0, 0, 0, 0)  # nothing paid before finalization
    assert kit.get_request(rid)["status"] == St.CLAIMED and kit.get_request(rid)["escrow"] == fee
    assert coordinator_tokens(s) == before + fee

    kit.advance(GAME.challenge_window_s + 1)
    anyone = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address)
    receipt = anyone.finalize_optimistic(rid, s.output)
    (event,) = kit.events("InferenceFulfilled", receipt)
    assert event["output"] == s.output and failed_callbacks(s, receipt) == []
    assert hooks(s, rid) == [PROVISIONAL, FINAL]
    assert kit.chain.call(s.consumer.functions.finalOf(rid)) == s.output
    assert not kit.chain.call(s.consumer.functions.corrected(rid))
    royalty = PRICE * ROYALTY_BPS // 10_000
    protocol_fee = (PRICE + FEE) * PROTOCOL_FEE_BPS // 10_000
    assert ledger(s) == (FEE + PRICE - royalty, royalty, protocol_fee, 0)
    assert sum(ledger(s)) == fee and coordinator_tokens(s) == before + fee
    assert claim_status(s, claim_id) == CLAIM_FINALIZED
    info = s.node.get_request(rid)
    assert info.status == St.FULFILLED and info.escrow == 0 and info.early
    with pytest.raises(WrongStatusError):
        anyone.refund(rid)


def test_lost_early_claim_is_corrected_refunded_and_slashed(early: Setup) -> None:
    s, kit = early, early.kit
    before = coordinator_tokens(s)
    wrong, claimer = wrong_claim(s)
    rid = request(s)
    fee = kit.get_request(rid)["escrow"]
    claim_id, _ = s.node.claim(rid, wrong, commit_list(claimer.leaves))
    assert kit.chain.call(s.consumer.functions.provisionalOf(rid)) == wrong
    lose(s, claim_id, claimer, wrong)
    with pytest.raises(ClaimNotDeliverableError):
        s.node.finalize_optimistic(rid, wrong)

    stake_before, _ = kit.node_stake(NODE.address)
    receipt = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address).refund(rid)
    (event,) = kit.events("Refunded", receipt)
    assert event["amount"] == fee and failed_callbacks(s, receipt) == []
    assert not kit.events("InferenceFulfilled", receipt)
    assert hooks(s, rid) == [PROVISIONAL, CORRECTION]
    assert kit.chain.call(s.consumer.functions.corrected(rid))
    assert kit.chain.call(s.consumer.functions.finalOf(rid)) == b""
    stake_after, _ = kit.node_stake(NODE.address)
    assert stake_before - stake_after == DISSENT_SLASH
    assert ledger(s) == (0, 0, 0, fee + DISSENT_SLASH)
    assert coordinator_tokens(s) == before + fee + DISSENT_SLASH
    info = kit.get_request(rid)
    assert info["status"] == St.REFUNDED and info["escrow"] == 0
    with pytest.raises(WrongStatusError):
        s.node.finalize_optimistic(rid, wrong)
    with pytest.raises(WrongStatusError):  # one correction: the request is settled
        s.node.refund(rid)
    # The consumer gets its refund and the slash.
    balance = kit.balance(s.consumer.address)
    kit.chain.transact(s.consumer.functions.withdrawRefunds())
    assert kit.balance(s.consumer.address) == balance + fee + DISSENT_SLASH


def test_reverting_early_hooks_block_neither_claim_nor_refund(early: Setup) -> None:
    s, kit = early, early.kit
    kit.chain.transact(s.consumer.functions.setFailing(True))
    before = coordinator_tokens(s)
    wrong, claimer = wrong_claim(s)
    rid = request(s)
    fee = kit.get_request(rid)["escrow"]
    claim_id, receipt = s.node.claim(rid, wrong, commit_list(claimer.leaves))
    assert failed_callbacks(s, receipt) == [hook_failed(rid)]
    assert kit.get_request(rid)["status"] == St.CLAIMED and s.node.claim_of(rid) == claim_id
    assert hooks(s, rid) == []
    lose(s, claim_id, claimer, wrong)
    receipt = s.node.refund(rid)
    assert failed_callbacks(s, receipt) == [hook_failed(rid)]
    (event,) = kit.events("Refunded", receipt)
    assert event["amount"] == fee
    assert ledger(s) == (0, 0, 0, fee + DISSENT_SLASH)
    assert coordinator_tokens(s) == before + fee + DISSENT_SLASH
    assert kit.get_request(rid)["status"] == St.REFUNDED and hooks(s, rid) == []

    # A failed provisional hook does not keep the final result from the consumer.
    rid = request(s)
    _, receipt = s.node.claim(rid, s.output, s.trace_root)
    assert failed_callbacks(s, receipt) == [hook_failed(rid)]
    kit.advance(GAME.challenge_window_s + 1)
    receipt = s.node.finalize_optimistic(rid, s.output)
    assert failed_callbacks(s, receipt) == [] and hooks(s, rid) == [FINAL]
    assert kit.chain.call(s.consumer.functions.finalOf(rid)) == s.output


def test_plain_optimistic_request_gets_no_early_hooks(early: Setup) -> None:
    s, kit = early, early.kit
    rid = request(s, MODE_OPTIMISTIC)
    info = s.node.get_request(rid)
    assert info.mode == MODE_OPTIMISTIC and info.early is False
    _, receipt = s.node.claim(rid, s.output, s.trace_root)
    assert hooks(s, rid) == [] and failed_callbacks(s, receipt) == []
    kit.advance(GAME.challenge_window_s + 1)
    s.node.finalize_optimistic(rid, s.output)
    assert hooks(s, rid) == [FINAL]
    # A lost plain claim is refunded without a correction: nothing was delivered early.
    wrong, claimer = wrong_claim(s)
    rid = request(s, MODE_OPTIMISTIC)
    claim_id, _ = s.node.claim(rid, wrong, commit_list(claimer.leaves))
    lose(s, claim_id, claimer, wrong)
    receipt = s.node.refund(rid)
    assert hooks(s, rid) == [] and failed_callbacks(s, receipt) == []
    # An early request that nobody claimed is refunded after its deadline, uncorrected.
    rid = request(s)
    kit.advance(3601)
    s.node.refund(rid)
    assert hooks(s, rid) == [] and kit.get_request(rid)["status"] == St.REFUNDED


def test_claim_gas_with_and_without_early_delivery(early: Setup) -> None:
    """Steady state (every balance and slot already written once): the early flag adds the
    provisional callback: its call (a TestConsumer, whose provisional hook is the base's empty
    default) plus whatever the consumer's hook does (EarlyConsumer stores the output)."""
    s, kit = early, early.kit
    address, _ = kit.chain.deploy("TestConsumer", kit.coordinator.address)
    kit.mint(address, 10**9)
    noop = replace(s, consumer=kit.chain.contract("TestConsumer", address))
    gas: dict[str, list[int]] = {"plain": [], "noop": [], "early": []}
    for _ in range(2):
        for name, setup, mode in (
            ("plain", noop, MODE_OPTIMISTIC), ("noop", noop, EARLY), ("early", s, EARLY)
        ):  # fmt: skip
            rid = request(setup, mode)
            _, receipt = s.node.claim(rid, s.output, s.trace_root)
            gas[name].append(int(receipt["gasUsed"]))
    kit.chain.transact(s.consumer.functions.setFailing(True))
    rid = request(s)
    _, receipt = s.node.claim(rid, s.output, s.trace_root)
    reverted = int(receipt["gasUsed"])
    eoa = account(5)
    client = CoordinatorClient(kit.as_(eoa), kit.coordinator.address)
    fee = client.quote(s.model_id, "optimistic")
    kit.mint(eoa.address, fee)
    kit.approve(eoa, kit.coordinator.address, fee)
    sent = client.request(
        s.model_id, s.input, "optimistic", max_fee=fee, deadline=kit.now() + 3600, early=True
    )
    assert client.get_request(sent.request_id).early
    # An EOA requester has no code: early delivery calls nothing.
    _, receipt = s.node.claim(sent.request_id, s.output, s.trace_root)
    eoa_gas = int(receipt["gasUsed"])
    plain, noop_gas, with_early = gas["plain"][-1], gas["noop"][-1], gas["early"][-1]
    assert plain < noop_gas < with_early
    print(  # noqa: T201
        f"\nclaim gas (digits MLP, 326-byte output, steady state): plain {plain:,}; early"
        f" delivery to an empty hook {noop_gas:,} (+{noop_gas - plain:,}); to EarlyConsumer,"
        f" which stores the output, {with_early:,} (+{with_early - plain:,}); to a reverting"
        f" hook {reverted:,} (+{reverted - plain:,}); by an EOA requester {eoa_gas:,}"
        f" (+{eoa_gas - plain:,})"
    )


def test_early_flag_is_optimistic_only(early: Setup) -> None:
    s, kit = early, early.kit
    fee = kit.quote(s.model_id, MODE_OPTIMISTIC)
    assert kit.quote(s.model_id, EARLY) == fee
    for mode, k in ((MODE_NONE, 1), (2, 3), (8, 1)):
        fn = s.consumer.functions.requestInference(
            s.model_id, s.input, mode | EARLY_DELIVERY, fee, kit.now() + 3600, CALLBACK_GAS, k
        )
        with pytest.raises(EarlyDeliveryNotOptimisticError) as err:
            kit.chain.transact(fn)
        assert err.value.args_by_name == {"mode": mode | EARLY_DELIVERY}
        with pytest.raises(EarlyDeliveryNotOptimisticError):
            kit.quote(s.model_id, mode | EARLY_DELIVERY, k)
    for mode in (EARLY_DELIVERY, MODE_OPTIMISTIC | 0x20):  # not modes, flag or no flag
        with pytest.raises(UnsupportedModeError) as unsupported:
            kit.quote(s.model_id, mode)
        assert unsupported.value.args_by_name == {"mode": mode}
    # Python refuses it before anything is sent or paid.
    assert InferenceMode.OPTIMISTIC.byte(early=True) == EARLY
    assert InferenceMode.NONE.byte() == MODE_NONE
    with pytest.raises(ConfigError):
        InferenceMode.ZK.byte(early=True)
    requester = account(6)
    client = CoordinatorClient(kit.as_(requester), kit.coordinator.address)
    nonce = kit.chain.w3.eth.get_transaction_count(requester.address)
    with pytest.raises(ConfigError):
        client.request(
            s.model_id, s.input, "none", max_fee=fee, deadline=kit.now() + 3600, early=True
        )
    assert kit.chain.w3.eth.get_transaction_count(requester.address) == nonce


def test_client_and_cli_request_early_delivery(
    chain: Chain,
    book: AddressBook,
    anvil: DevnetInfo,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    model = register_digits(chain, book, optimistic=True)
    setup_node(anvil.rpc_url, book, 1, model.model_id, modes=Mode.NONE | Mode.OPTIMISTIC)
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    x = np.load(DIGITS_SAMPLE)[:1]
    sent = client.request(model.model_id, x, "optimistic", early=True)
    assert sent.early is True and sent.to_json()["early"] is True
    status = client.status(sent.request_id)
    assert status.early is True and status.mode == "optimistic"
    with pytest.raises(ConfigError):
        client.request(model.model_id, x, "consensus", early=True)

    runner = CliRunner()
    path = tmp_path / "x.npy"
    np.save(path, x)
    result = runner.invoke(
        app,
        ["request", str(model.model_id), "--input", str(path), "--mode", "optimistic",
         "--early", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["early"] is True and data["mode"] == "optimistic"
    assert client.coordinator.get_request(data["request_id"]).early
    refused = runner.invoke(app, ["request", str(model.model_id), "--input", str(path), "--early"])
    assert refused.exit_code != 0
    assert "early delivery is for mode optimistic" in refused.output
