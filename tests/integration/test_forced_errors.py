"""Forced errors with a jackpot (docs/optimistic.md, section 4) on a real anvil: a claimer's
committed secret makes some claims forced errors; conceding one pays the challenger its bond
and the jackpot (or voids an unchallenged claim), refunds the claimer's bond, and through the
coordinator refunds the requester without slashing the node. Every refused concede leaves the
ledgers as they were, and the game's balance always equals credits + pool + open bonds."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
from coordinator_kit import DISSENT_SLASH
from dispute_kit import (
    CHALLENGE_BOND,
    CLAIM_BOND,
    FEE_BPS,
    SEED_DELAY,
    WINDOW,
    Game,
    corrupted_values,
    deploy_game,
)
from eth_utils.crypto import keccak
from test_coordinator_optimistic import (
    CHALLENGER,
    NODE,
    OTHER_NODE,
    Setup,
    digits,
    ledger,
    optimistic_setup,
    request,
)
from web3.logs import DISCARD

from verinfer.chain.client import Chain
from verinfer.chain.coordinator_errors import ClaimNotDeliverableError
from verinfer.chain.deploy import SuiteParams
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, RequestStatus
from verinfer.optimistic import forced
from verinfer.optimistic.descriptors import build_descriptors, steps_root
from verinfer.optimistic.errors import DisputeRevertError
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    DisputeDriver,
    claim_params,
    input_bytes,
    output_bytes,
)
from verinfer.runtime.commit import commit_list

pytestmark = pytest.mark.integration

RATE = 500_000  # half the seeded claims are forced: both outcomes of the rule are common
JACKPOT_FEE = 10**15
JACKPOT = 3 * 10**15
OPEN, DISPUTED, FINALIZED, CLAIMER_WON, CHALLENGER_WON, FORCED = 1, 2, 3, 4, 5, 6
PHASE_DONE = 8
ZERO = "0x" + "00" * 20
OTHER_INPUT = b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x07"  # any bytes: the game hashes them


CHAIN = 4  # secrets per seed chain


@cache
def _chain(*wants: tuple[int, bytes, int, bool]) -> tuple[bytes, ...]:
    """The first deterministic seed chain whose secret ``k`` makes is_forced(chain[k], h, rate)
    each wanted bool, for every (k, h, rate, want)."""
    for i in range(100_000):
        chain = forced.seed_chain(keccak(f"forced-test-root-{i}".encode()), CHAIN)
        if all(forced.is_forced(chain[k], h, rate) is want for k, h, rate, want in wants):
            return tuple(chain)
    raise AssertionError("no seed chain found")


@pytest.fixture(scope="module")
def deployed(anvil: DevnetInfo) -> Game:
    return deploy_game(
        anvil.rpc_url, forced_rate_ppm=RATE, jackpot_fee=JACKPOT_FEE, jackpot_payout=JACKPOT
    )


@pytest.fixture
def game(deployed: Game, snapshot: None) -> Iterator[Game]:
    yield deployed


def _g(game: Game, chain: Chain | None = None) -> Any:
    return (chain or game.deployer).contract("DisputeGame", game.address)


def _advance(chain: Chain, seconds: int) -> None:
    chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _revert(fn: Callable[[], Any]) -> str:
    with pytest.raises(DisputeRevertError) as info:
        fn()
    return info.value.name


def seeds() -> tuple[bytes, ...]:
    """A chain whose first two secrets force claims on the digits input, the first not those
    on OTHER_INPUT."""
    program, execution = digits()
    digits_input = keccak(input_bytes(program, execution.values))
    return _chain(
        (1, digits_input, RATE, True), (2, digits_input, RATE, True),
        (1, keccak(OTHER_INPUT), RATE, False),
    )  # fmt: skip


def forced_secret() -> bytes:
    return seeds()[1]


def _commit(game: Game, head: bytes | None = None, *, wait: bool = True) -> int:
    gas = int(forced.commit_seed(game.claimer, game.address, head or seeds()[0])["gasUsed"])
    if wait:
        _advance(game.deployer, SEED_DELAY)
    return gas


def _open(
    game: Game, *, wrong: bool = True, other_input: bool = False
) -> tuple[int, ClaimerParty, bytes]:
    """A claim by the claimer on the digits MLP: a wrong output (a corrupted step 0) or the
    honest one, on the real input or on OTHER_INPUT's hash, with claimDeposit() wei."""
    program, execution = digits()
    values = corrupted_values(program, execution, 0, 100, 5, propagate=True) if wrong else None
    descriptors = build_descriptors(program)
    claimer = ClaimerParty(program, values or execution.values, descriptors)
    claimed = output_bytes(program, claimer.values)
    data = OTHER_INPUT if other_input else input_bytes(program, execution.values)
    params = claim_params(program, commit_list(claimer.leaves), steps_root(descriptors), data)
    g = _g(game, game.claimer)
    deposit = int(g.functions.claimDeposit().call())
    assert deposit == CLAIM_BOND + JACKPOT_FEE
    receipt = game.claimer.transact(g.functions.openClaim(params, claimed), value=deposit)
    (event,) = g.events.ClaimOpened().process_receipt(receipt, errors=DISCARD)
    return int(event["args"]["claimId"]), claimer, claimed


def _driver(game: Game) -> DisputeDriver:
    return DisputeDriver(game.claimer, game.challenger, game.address)


def _ledger(game: Game) -> tuple[int, ...]:
    """Every account's credit, the pool and the game's balance."""
    g = _g(game)
    accounts = (game.claimer.address, game.challenger.address, game.treasury, game.deployer.address)
    credits = tuple(int(g.functions.credits(a).call()) for a in accounts)
    balance = game.deployer.w3.eth.get_balance(game.address)  # type: ignore[arg-type]
    return (*credits, int(g.functions.jackpotPool().call()), int(balance))


def _assert_balanced(game: Game) -> None:
    """credits + pool + the bonds of unsettled claims == the game's balance."""
    g = _g(game)
    *credits, pool, balance = _ledger(game)
    held = 0
    for claim_id in range(1, int(g.functions.claimCount().call()) + 1):
        c = g.functions.claims(claim_id).call()
        if c[2] in (OPEN, DISPUTED):
            held += int(c[5]) + (CHALLENGE_BOND if c[2] == DISPUTED else 0)
    assert sum(credits) + pool + held == balance
    accounts = (game.claimer.address, game.challenger.address, game.deployer.address)
    assert sum(int(g.functions.jackpotOf(a).call()) for a in accounts) == pool


def _concede(game: Game, claim_id: int, secret: bytes | None = None) -> Any:
    return forced.concede(game.claimer, game.address, claim_id, secret or forced_secret())


def test_python_rule_matches_the_contract(game: Game) -> None:
    g = _g(game)
    assert int(g.functions.forcedRatePpm().call()) == RATE
    rng = random.Random(6)
    seen = set()
    for _ in range(200):
        secret, input_hash = rng.randbytes(32), rng.randbytes(32)
        on_chain = bool(g.functions.isForced(secret, input_hash).call())
        assert forced.is_forced(secret, input_hash, RATE) is on_chain
        seen.add(on_chain)
    assert seen == {True, False}
    secret = forced.new_secret()
    assert len(secret) == 32 and forced.seed_hash(secret) == keccak(secret)
    chain = forced.seed_chain(secret, 3)
    assert chain[3] == secret and len(chain) == 4
    assert all(forced.seed_hash(chain[k + 1]) == chain[k] for k in range(3))
    assert int(g.functions.seedDelay().call()) == SEED_DELAY
    assert not forced.is_forced(secret, bytes(32), 0)
    assert forced.is_forced(secret, bytes(32), forced.PPM)


def test_challenged_forced_claim_pays_the_jackpot(game: Game) -> None:
    g = _g(game)
    fund = game.deployer.transact(g.functions.fundJackpot(game.claimer.address), value=10**16)
    (funded,) = g.events.JackpotFunded().process_receipt(fund, errors=DISCARD)
    assert (funded["args"]["claimer"], funded["args"]["amount"]) == (game.claimer.address, 10**16)
    commit_gas = _commit(game)
    claim_id, claimer, claimed = _open(game)
    claim = g.functions.claims(claim_id).call()
    assert claim[5] == CLAIM_BOND and claim[11] == forced.seed_hash(forced_secret())
    assert g.functions.jackpotPool().call() == 10**16 + JACKPOT_FEE
    assert g.functions.jackpotOf(game.claimer.address).call() == 10**16 + JACKPOT_FEE
    _assert_balanced(game)
    driver = _driver(game)
    driver.challenge(claim_id)
    program, execution = digits()
    challenger = ChallengerParty(program, execution)
    driver.play(claim_id, claimer, challenger, claimed, max_moves=3)  # Leaves, Choose, Root
    before = _ledger(game)
    receipt = _concede(game, claim_id)
    (event,) = g.events.ForcedErrorConceded().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["challenger"] == game.challenger.address
    assert event["args"]["jackpotPaid"] == JACKPOT
    after = _ledger(game)
    assert after[0] - before[0] == CLAIM_BOND  # the claimer's bond, not slashed
    assert after[1] - before[1] == CHALLENGE_BOND + JACKPOT
    assert after[2] == before[2]  # no treasury fee on a forced error
    assert before[4] - after[4] == JACKPOT
    assert g.functions.jackpotOf(game.claimer.address).call() == 10**16 + JACKPOT_FEE - JACKPOT
    assert g.functions.claims(claim_id).call()[2] == FORCED
    assert g.functions.disputes(claim_id).call()[1] == PHASE_DONE
    # the revealed secret is the new head: the next secret is its preimage
    assert g.functions.activeSeed(game.claimer.address).call() == forced_secret()
    _assert_balanced(game)
    # every later move, settlement or second concede is refused
    state = _ledger(game)
    fns, as_challenger = g.functions, _g(game, game.challenger).functions
    leaves = claimer.leaves
    assert _revert(lambda: game.claimer.transact(fns.revealLeaves(claim_id, leaves))) == (
        "VerinferWrongPhase"
    )
    pick = as_challenger.pickChild(claim_id, False)
    assert _revert(lambda: game.challenger.transact(pick)) == "VerinferWrongPhase"
    _advance(game.deployer, WINDOW + 1)
    assert _revert(lambda: driver.timeout(claim_id)) == "VerinferClaimNotOpen"
    assert _revert(lambda: game.deployer.transact(fns.finalize(claim_id))) == (
        "VerinferClaimNotOpen"
    )
    assert _revert(lambda: _concede(game, claim_id)) == "VerinferClaimNotOpen"
    assert _ledger(game) == state
    print(  # noqa: T201
        f"\nforced errors gas: commitSeed {commit_gas:,}, concede (disputed) "
        f"{int(receipt['gasUsed']):,}"
    )


def test_unchallenged_forced_claim_is_void(game: Game) -> None:
    g = _g(game)
    _commit(game)
    first, _, _ = _open(game)
    _concede(game, first)
    # the chain goes on at once: the next claim records the revealed secret as its seed
    claim_id, _, _ = _open(game)
    assert g.functions.claims(claim_id).call()[11] == seeds()[1]
    assert _revert(lambda: _concede(game, claim_id)) == "VerinferWrongSecret"  # spent secret
    before = _ledger(game)
    receipt = _concede(game, claim_id, seeds()[2])
    (event,) = g.events.ForcedErrorConceded().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["challenger"] == ZERO and event["args"]["jackpotPaid"] == 0
    after = _ledger(game)
    assert after[0] - before[0] == CLAIM_BOND
    assert after[1:] == before[1:]  # no jackpot, the pool keeps the claims' fees
    assert after[4] == 2 * JACKPOT_FEE
    assert g.functions.activeSeed(game.claimer.address).call() == seeds()[2]
    assert g.functions.claims(claim_id).call()[2] == FORCED
    _assert_balanced(game)
    driver = _driver(game)
    assert _revert(lambda: driver.challenge(claim_id)) == "VerinferClaimNotOpen"
    _advance(game.deployer, WINDOW + 1)
    fin = g.functions.finalize(claim_id)
    assert _revert(lambda: game.deployer.transact(fin)) == "VerinferClaimNotOpen"
    print(f"\nforced errors gas: concede (open) {int(receipt['gasUsed']):,}")  # noqa: T201


def test_jackpot_is_capped_by_the_claimers_share(game: Game) -> None:
    """A claimer's forced errors pay from its own share of the pool (its claims' fees and what
    was funded for it), never from others': self-challenging wins back only what it paid."""
    g = _g(game)
    game.deployer.transact(g.functions.fundJackpot(game.deployer.address), value=10**16)
    _commit(game)
    claim_id, _, _ = _open(game)
    assert g.functions.jackpotOf(game.claimer.address).call() == JACKPOT_FEE < JACKPOT
    _driver(game).challenge(claim_id)
    receipt = _concede(game, claim_id)
    (event,) = g.events.ForcedErrorConceded().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["jackpotPaid"] == JACKPOT_FEE
    assert g.functions.jackpotOf(game.claimer.address).call() == 0
    assert g.functions.jackpotOf(game.deployer.address).call() == 10**16
    assert g.functions.jackpotPool().call() == 10**16
    assert g.functions.credits(game.challenger.address).call() == CHALLENGE_BOND + JACKPOT_FEE
    _assert_balanced(game)


def test_refused_concedes_change_nothing(game: Game) -> None:
    g = _g(game)
    _commit(game)
    forced_id, claimer, claimed = _open(game)
    plain_id, _, _ = _open(game, other_input=True)  # the rule is false for this input
    _driver(game).challenge(forced_id)

    def refused(name: str, fn: Callable[[], Any]) -> None:
        before = _ledger(game)
        assert _revert(fn) == name
        assert _ledger(game) == before
        _assert_balanced(game)

    refused("VerinferWrongSecret", lambda: _concede(game, forced_id, bytes(31) + b"\x01"))
    refused("VerinferWrongSecret", lambda: _concede(game, forced_id, seeds()[2]))  # not yet
    refused(
        "VerinferNotClaimer",
        lambda: forced.concede(game.challenger, game.address, forced_id, forced_secret()),
    )
    refused("VerinferNotForced", lambda: _concede(game, plain_id))
    refused("VerinferUnknownClaim", lambda: _concede(game, 99))
    refused("VerinferBadSeed", lambda: game.claimer.transact(g.functions.commitSeed(bytes(32))))

    # A forced claim that lost its dispute cannot be conceded afterwards.
    program, execution = digits()
    record = _driver(game).play(forced_id, claimer, ChallengerParty(program, execution), claimed)
    assert record.claimer_won is False
    assert g.functions.claims(forced_id).call()[2] == CHALLENGER_WON
    refused("VerinferClaimNotOpen", lambda: _concede(game, forced_id))
    fee = CLAIM_BOND * FEE_BPS // 10_000
    challenger_credit = int(g.functions.credits(game.challenger.address).call())
    assert challenger_credit == CHALLENGE_BOND + CLAIM_BOND - fee

    # A new seed replaces the old one at once and is not active before `seedDelay`: a claim
    # opened now records no seed, so no secret can concede it.
    other = forced.seed_chain(forced.new_secret(), 2)
    _commit(game, other[0], wait=False)
    assert g.functions.activeSeed(game.claimer.address).call() == bytes(32)
    early_id, _, _ = _open(game)
    assert g.functions.claims(early_id).call()[11] == bytes(32)
    refused("VerinferWrongSecret", lambda: _concede(game, early_id))
    refused("VerinferWrongSecret", lambda: _concede(game, early_id, other[1]))
    _advance(game.deployer, SEED_DELAY - WINDOW - 60)
    assert g.functions.activeSeed(game.claimer.address).call() == bytes(32)
    _advance(game.deployer, WINDOW + 60)
    assert g.functions.activeSeed(game.claimer.address).call() == other[0]
    _assert_balanced(game)


def test_bad_parameters_and_deposit(game: Game) -> None:
    g = _g(game)
    assert int(g.functions.claimDeposit().call()) == CLAIM_BOND + JACKPOT_FEE
    assert (int(g.functions.jackpotFee().call()), int(g.functions.jackpotPayout().call())) == (
        JACKPOT_FEE,
        JACKPOT,
    )
    program, execution = digits()
    params = claim_params(program, b"\x01" * 32, bytes(32), input_bytes(program, execution.values))
    bond_only = g.functions.openClaim(params, b"\x01")
    assert _revert(lambda: game.claimer.transact(bond_only, value=CLAIM_BOND)) == (
        "VerinferWrongBond"
    )
    router = g.functions.router().call()
    with pytest.raises(DisputeRevertError) as info:
        game.deployer.deploy(
            "DisputeGame", router, ZERO, game.treasury, 1, 1, 1, 1, 0, 1_000_001, 0, 0, 1
        )
    assert info.value.name == "VerinferBadGameParams"
    with pytest.raises(DisputeRevertError):  # a seed must wait
        game.deployer.deploy("DisputeGame", router, ZERO, game.treasury, 1, 1, 1, 1, 0, 1, 0, 0, 0)


# ---- through the coordinator ------------------------------------------------------------


@pytest.fixture
def opt(chain: Chain, book: AddressBook) -> Setup:
    return optimistic_setup(chain, book)


def _wrong_claim(s: Setup) -> tuple[int, int, int, ClaimerParty, bytes]:
    """A request answered with a wrong claim by NODE; (request id, fee, claim id, ...)."""
    values = corrupted_values(s.program, s.execution, 0, 100, 5, propagate=True)
    claimer = ClaimerParty(s.program, values)
    wrong = output_bytes(s.program, values)
    rid = request(s)
    fee = s.kit.get_request(rid)["escrow"]
    claim_id, _ = s.node.claim(rid, wrong, commit_list(claimer.leaves))
    return rid, fee, claim_id, claimer, wrong


def test_conceded_forced_claim_is_refunded_without_slash(opt: Setup) -> None:
    kit, game = opt.kit, opt.game
    params = SuiteParams()
    assert int(kit.chain.call(game.functions.forcedRatePpm())) == params.forced_rate_ppm
    deposit = params.claim_bond_wei + params.jackpot_fee_wei
    assert int(kit.chain.call(game.functions.claimDeposit())) == deposit
    fund = game.functions.fundJackpot(NODE.address)
    kit.chain.transact(fund, value=params.jackpot_payout_wei)
    rate = params.forced_rate_ppm
    chain = _chain((1, keccak(opt.input), rate, True), (2, keccak(opt.input), rate, False))
    secret = chain[1]
    node_chain = kit.as_(NODE)
    forced.commit_seed(node_chain, game.address, chain[0])
    kit.advance(params.seed_delay_s)

    rid, fee, claim_id, claimer, wrong = _wrong_claim(opt)
    assert kit.chain.call(game.functions.claims(claim_id))[11] == chain[0]
    d = DisputeDriver(node_chain, kit.as_(CHALLENGER), game.address)
    d.challenge(claim_id)
    d.play(claim_id, claimer, ChallengerParty(opt.program, opt.execution), wrong, max_moves=2)
    pool = int(kit.chain.call(game.functions.jackpotPool()))
    forced.concede(node_chain, game.address, claim_id, secret)
    assert int(kit.chain.call(game.functions.jackpotPool())) == pool - params.jackpot_payout_wei
    assert int(kit.chain.call(game.functions.credits(CHALLENGER.address))) == (
        params.challenge_bond_wei + params.jackpot_payout_wei
    )
    assert int(kit.chain.call(game.functions.credits(NODE.address))) == params.claim_bond_wei
    with pytest.raises(ClaimNotDeliverableError):
        opt.node.finalize_optimistic(rid, wrong)
    stake_before, _ = kit.node_stake(NODE.address)
    anyone = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address)
    receipt = anyone.refund(rid)
    (event,) = kit.events("Refunded", receipt)
    assert event["amount"] == fee
    assert kit.node_stake(NODE.address)[0] == stake_before  # forced: no slash
    assert ledger(opt) == (0, 0, 0, fee)
    assert kit.get_request(rid)["status"] == RequestStatus.REFUNDED

    # The same wrong claim at a slot that is not forced (the chain's next secret does not force
    # this input): it cannot be conceded, loses its dispute, and the refund slashes.
    rid2, fee2, claim2, claimer2, wrong2 = _wrong_claim(opt)
    assert kit.chain.call(game.functions.claims(claim2))[11] == secret
    with pytest.raises(DisputeRevertError) as err:
        forced.concede(node_chain, game.address, claim2, chain[2])
    assert err.value.name == "VerinferNotForced"
    d.challenge(claim2)
    record = d.play(claim2, claimer2, ChallengerParty(opt.program, opt.execution), wrong2)
    assert record.claimer_won is False
    anyone.refund(rid2)
    assert stake_before - kit.node_stake(NODE.address)[0] == DISSENT_SLASH
    assert ledger(opt) == (0, 0, 0, fee + fee2 + DISSENT_SLASH)
