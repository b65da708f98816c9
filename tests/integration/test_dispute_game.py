"""DisputeGame.sol on a real anvil, played by verinfer.optimistic.game: dishonest claimers
lose their bond to an honest challenger, honest claimers win against dishonest challengers,
silence loses by timeout, and replayed, out-of-turn or late moves revert."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest
from dispute_kit import (
    CHALLENGE_BOND,
    CLAIM_BOND,
    FEE_BPS,
    MOVE_TIME,
    WINDOW,
    Game,
    RandomChallenger,
    corrupted_values,
    deploy_game,
    game_claim,
)
from onestep_kit import wide_dense_program

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.chain.devnet import DevnetInfo
from verinfer.optimistic.descriptors import (
    OP_UNSUPPORTED,
    build_descriptors,
    unsupported_steps,
)
from verinfer.optimistic.errors import DisputeRevertError
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    DisputeDriver,
    DisputeRecord,
    claim_params,
    output_bytes,
)
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS

pytestmark = pytest.mark.integration

EIP7825_TX_GAS_CAP = 16_777_216
CASES = 10  # per model and claimer variant; the 100-case adversarial run is a benchmark
BY_ONE_STEP, BY_OUTPUT, BY_TIMEOUT = 0, 1, 2


def _test_model(name: str) -> tuple[Program, Execution]:
    model = TEST_MODELS[name]
    program = model.compile()
    return program, program.run(model.inputs())


PROGRAMS: dict[str, Callable[[], tuple[Program, Execution]]] = {
    "digits_mlp": lambda: _test_model("digits_mlp"),
    "digits_cnn": lambda: _test_model("digits_cnn"),
    # 300 output values: 3 chunks, so the chunk tree has a padding leaf
    "dense_300": lambda: wide_dense_program(8, 100, rows=3),
    # lookup tables, leaky_relu, clip, softmax rows (OneStepVerifierExt through the router)
    "sigmoid_mlp": lambda: _test_model("sigmoid_mlp"),
    # layer norm and softmax rows, a reduce over an inner axis, transpose, concat, slice
    "transformer_block": lambda: _test_model("transformer_block"),
    # transpose, slice, gather, concat, where, argmax
    "shape_ops": lambda: _test_model("shape_ops"),
}


@cache
def model(name: str) -> tuple[Program, Execution]:
    return PROGRAMS[name]()


@pytest.fixture(scope="module")
def deployed(anvil: DevnetInfo) -> Game:
    return deploy_game(anvil.rpc_url)


@pytest.fixture
def game(deployed: Game, snapshot: None) -> Iterator[Game]:
    yield deployed


def _driver(game: Game) -> DisputeDriver:
    return DisputeDriver(game.claimer, game.challenger, game.address)


def _open(
    game: Game, name: str, values: dict[str, Any] | None = None, output: bytes | None = None
) -> tuple[int, ClaimerParty, bytes]:
    """Opens a claim on model ``name`` from ``values`` (default: the honest execution)."""
    program, execution = model(name)
    made = game_claim(program, execution, values)
    claimed = output if output is not None else made.output
    claim_id, _ = _driver(game).open_claim(made.params, claimed)
    return claim_id, made.claimer, claimed


def _dispute(
    game: Game,
    name: str,
    claimer_values: dict[str, Any] | None = None,
    output: bytes | None = None,
    challenger: ChallengerParty | None = None,
) -> tuple[int, DisputeRecord]:
    program, execution = model(name)
    claim_id, claimer, claimed = _open(game, name, claimer_values, output)
    driver = _driver(game)
    driver.challenge(claim_id)
    party = challenger or ChallengerParty(program, execution)
    return claim_id, driver.play(claim_id, claimer, party, claimed)


def _credits(game: Game, account: str) -> int:
    g = game.deployer.contract("DisputeGame", game.address)
    return int(g.functions.credits(account).call())


def _assert_challenger_paid(game: Game) -> None:
    fee = CLAIM_BOND * FEE_BPS // 10_000
    assert _credits(game, game.claimer.address) == 0
    assert _credits(game, game.challenger.address) == CHALLENGE_BOND + CLAIM_BOND - fee
    assert _credits(game, game.treasury) == fee


def _assert_claimer_paid(game: Game) -> None:
    """The challenger's bond, less the fee, to the claimer; the claim bond stays in the claim,
    which is open again (another challenger may still dispute it) until it finalizes."""
    fee = CHALLENGE_BOND * FEE_BPS // 10_000
    assert _credits(game, game.challenger.address) == 0
    assert _credits(game, game.claimer.address) == CHALLENGE_BOND - fee
    assert _credits(game, game.treasury) == fee


def _revert(fn: Callable[[], Any]) -> str:
    with pytest.raises(DisputeRevertError) as info:
        fn()
    return info.value.name


def _advance(game: Game, seconds: int) -> None:
    w3 = game.deployer.w3
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("propagate", [False, True], ids=["alone", "propagated"])
def test_dishonest_claimer_loses_its_bond(
    deployed: Game, anvil: DevnetInfo, name: str, propagate: bool, record_property: Any
) -> None:
    program, execution = model(name)
    rng = np.random.default_rng(zlib.crc32(f"{name}-{propagate}".encode()))
    records = []
    for case in range(CASES):
        snap = deployed.deployer.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            step = int(rng.integers(0, len(program.steps)))
            size = program.tensors[program.steps[step].output].size
            element = int(rng.integers(0, size))
            delta = int(rng.choice([-1, 1]) * rng.integers(1, 1000))
            values = corrupted_values(program, execution, step, element, delta, propagate=propagate)
            start = time.perf_counter()
            _, record = _dispute(deployed, name, values)
            wall = time.perf_counter() - start
            assert record.claimer_won is False, f"case {case}: step {step} element {element}"
            assert record.reason in (BY_ONE_STEP, BY_OUTPUT)
            _assert_challenger_paid(deployed)
            assert record.max_gas < EIP7825_TX_GAS_CAP
            if record.reason == BY_ONE_STEP:
                records.append((record, wall))
        finally:
            deployed.deployer.w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]
    assert records, "no dispute went down to the one-step proof"
    longest, wall = max(records, key=lambda r: len(r[0].moves))
    record_property("moves", len(longest.moves))
    record_property("total_gas", longest.total_gas)
    record_property("max_tx_gas", longest.max_gas)
    record_property("wall_s", round(wall, 3))
    record_property("max_tx_gas_any", max(r.max_gas for r, _ in records))


@pytest.mark.parametrize("name", ["sigmoid_mlp", "transformer_block", "shape_ops"])
@pytest.mark.parametrize("propagate", [False, True], ids=["alone", "propagated"])
def test_every_op_of_a_model_is_decided_by_the_one_step(
    deployed: Game, name: str, propagate: bool, record_property: Any
) -> None:
    """A wrong element at the first step of each op (lookup tables, softmax and layer norm
    rows, shape ops, ...): the honest challenger wins with the one-step proof."""
    program, execution = model(name)
    rng = np.random.default_rng(zlib.crc32(f"ops-{name}-{propagate}".encode()))
    firsts = {s.op: i for i, s in reversed(list(enumerate(program.steps)))}
    largest = 0
    for op, step in sorted(firsts.items()):
        snap = deployed.deployer.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            size = program.tensors[program.steps[step].output].size
            element = int(rng.integers(0, size))
            delta = int(rng.choice([-1, 1]) * rng.integers(1, 100))
            values = corrupted_values(program, execution, step, element, delta, propagate=propagate)
            _, record = _dispute(deployed, name, values)
            assert record.claimer_won is False, f"{op} (step {step}) element {element}"
            assert record.reason == BY_ONE_STEP, f"{op} (step {step})"
            _assert_challenger_paid(deployed)
            record_property(f"max_tx_gas_{op}_step{step}", record.max_gas)
            largest = max(largest, record.max_gas)
        finally:
            deployed.deployer.w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]
    record_property("max_tx_gas_any", largest)
    assert largest < EIP7825_TX_GAS_CAP // 8


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_claimer_of_a_wrong_output_loses_at_the_binding(game: Game, name: str) -> None:
    program, execution = model(name)
    honest = output_bytes(program, execution.values)
    (values, scale), *rest = decode_tensors(honest)
    values = values.copy()
    values[3] += 7
    _, record = _dispute(game, name, output=encode_tensors([(values, scale), *rest]))
    assert record.claimer_won is False and record.reason == BY_OUTPUT
    assert [m for m, _ in record.moves] == ["Leaves", "ChooseOutput"]
    _assert_challenger_paid(game)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_honest_claimer_beats_a_dishonest_challenger(deployed: Game, name: str) -> None:
    program, execution = model(name)
    for seed in range(CASES):
        snap = deployed.deployer.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            liar = RandomChallenger(program, execution, seed)
            _, record = _dispute(deployed, name, challenger=liar)
            assert record.claimer_won is True and record.reason == BY_ONE_STEP
            _assert_claimer_paid(deployed)
        finally:
            deployed.deployer.w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]


def test_a_correct_output_cannot_be_disputed(game: Game) -> None:
    program, execution = model("digits_cnn")
    claim_id, claimer, claimed = _open(game, "digits_cnn")
    driver = _driver(game)
    driver.challenge(claim_id)
    driver.play(claim_id, claimer, ChallengerParty(program, execution), claimed, max_moves=1)
    out = next(i for i, d in enumerate(build_descriptors(program)) if d.output >= 0)
    proof = ChallengerParty(program, execution).step_proof(out, claimer.leaves)
    fn = driver.as_challenger.functions.challengeOutput(claim_id, proof, claimed)
    assert _revert(lambda: game.challenger.transact(fn)) == "VerinferOutputMatches"


@pytest.mark.parametrize("silent_after", [0, 1, 2, 3, 4, 5, 6])
def test_the_silent_party_loses_by_timeout(game: Game, silent_after: int) -> None:
    program, execution = model("digits_cnn")
    values = corrupted_values(program, execution, 2, 100, 5, propagate=True)
    claim_id, claimer, claimed = _open(game, "digits_cnn", values)
    driver = _driver(game)
    driver.challenge(claim_id)
    challenger = ChallengerParty(program, execution)
    record = driver.play(claim_id, claimer, challenger, claimed, max_moves=silent_after)
    _, mover, _ = driver.game.functions.turn(claim_id).call()
    assert mover in (game.claimer.address, game.challenger.address)
    assert _revert(lambda: driver.timeout(claim_id)) == "VerinferMoveDeadlineNotPassed"
    _advance(game, MOVE_TIME + 1)
    late = driver.game.functions.revealLeaves(claim_id, claimer.leaves)
    if driver.phase(claim_id) == "Leaves":
        assert _revert(lambda: game.claimer.transact(late)) == "VerinferMoveDeadlinePassed"
    driver.timeout(claim_id, record)
    assert record.reason == BY_TIMEOUT
    claimer_was_silent = mover == game.claimer.address
    assert record.claimer_won is (not claimer_was_silent)
    if claimer_was_silent:
        _assert_challenger_paid(game)
    else:
        _assert_claimer_paid(game)


def test_replayed_and_out_of_turn_moves_revert(game: Game) -> None:
    program, execution = model("digits_mlp")
    values = corrupted_values(program, execution, 0, 200, 3, propagate=False)
    claim_id, claimer, claimed = _open(game, "digits_mlp", values)
    driver = _driver(game)
    g, gc = driver.game.functions, driver.as_challenger.functions
    # no dispute yet: no move is expected
    assert _revert(lambda: game.claimer.transact(g.revealLeaves(claim_id, claimer.leaves))) == (
        "VerinferWrongPhase"
    )
    bad_bond = gc.challenge(claim_id)
    assert _revert(lambda: game.challenger.transact(bad_bond, value=1)) == "VerinferWrongBond"
    driver.challenge(claim_id)
    # the challenger cannot play the claimer's move, nor its own before its turn
    stolen = gc.revealLeaves(claim_id, claimer.leaves)
    assert _revert(lambda: game.challenger.transact(stolen)) == "VerinferNotYourTurn"
    assert _revert(lambda: game.challenger.transact(gc.pickChild(claim_id, True))) == (
        "VerinferWrongPhase"
    )
    bad = list(claimer.leaves)
    bad[0] = bytes(32)
    assert _revert(lambda: game.claimer.transact(g.revealLeaves(claim_id, bad))) == (
        "VerinferBadLeaves"
    )
    game.claimer.transact(g.revealLeaves(claim_id, claimer.leaves))
    # replay of move 1
    assert _revert(lambda: game.claimer.transact(g.revealLeaves(claim_id, claimer.leaves))) == (
        "VerinferWrongPhase"
    )
    challenger = ChallengerParty(program, execution)
    proof = challenger.step_proof(0, claimer.leaves)
    assert _revert(lambda: game.claimer.transact(g.chooseStep(claim_id, proof))) == (
        "VerinferNotYourTurn"
    )
    forged = (1, *proof[1:])  # step 0's descriptor and leaf presented as step 1's
    assert _revert(lambda: game.challenger.transact(gc.chooseStep(claim_id, forged))) == (
        "VerinferBadStepProof"
    )
    game.challenger.transact(gc.chooseStep(claim_id, proof))
    assert _revert(lambda: game.challenger.transact(gc.chooseStep(claim_id, proof))) == (
        "VerinferWrongPhase"
    )
    assert _revert(lambda: game.claimer.transact(g.revealRoot(claim_id, bytes(32)))) == (
        "VerinferBadRoot"
    )
    game.claimer.transact(g.revealRoot(claim_id, claimer.roots[0]))
    assert _revert(lambda: game.claimer.transact(g.revealRoot(claim_id, claimer.roots[0]))) == (
        "VerinferWrongPhase"
    )
    # the rest of the game, then every move is refused
    record = driver.play(claim_id, claimer, challenger, claimed)
    assert record.claimer_won is False
    assert _revert(lambda: game.claimer.transact(g.revealRoot(claim_id, claimer.roots[0]))) == (
        "VerinferWrongPhase"
    )
    assert _revert(lambda: driver.timeout(claim_id)) == "VerinferClaimNotOpen"


def test_a_padding_child_cannot_be_disputed(game: Game) -> None:
    program, execution = model("dense_300")
    values = corrupted_values(program, execution, 0, 299, 4, propagate=False)
    claim_id, claimer, claimed = _open(game, "dense_300", values)
    driver = _driver(game)
    driver.challenge(claim_id)
    challenger = ChallengerParty(program, execution)
    # Leaves, Choose, Root, Children (root), Pick (right), Children: at (1, 1)
    driver.play(claim_id, claimer, challenger, claimed, max_moves=6)
    assert driver.phase(claim_id) == "Pick"
    pick = driver.as_challenger.functions.pickChild(claim_id, True)  # (0, 3): padding
    assert _revert(lambda: game.challenger.transact(pick)) == "VerinferPaddingNode"
    record = driver.play(claim_id, claimer, challenger, claimed)
    assert record.claimer_won is False


@pytest.mark.parametrize("op", [OP_UNSUPPORTED, 25, 255])
def test_unsupported_steps_cannot_be_resolved(game: Game, op: int) -> None:
    program = TEST_MODELS["sigmoid_mlp"].compile()
    descriptors = build_descriptors(program)
    assert unsupported_steps(descriptors) == []  # every op of the test models has a rule
    unknown = replace(descriptors[4], op=op, attrs=())
    g = game.deployer.contract("DisputeGame", game.address)
    router = game.deployer.contract("StepRouter", g.functions.router().call())
    fn = router.functions.recompute(unknown.abi(), 0, [])
    assert _revert(lambda: game.deployer.call(fn)) == "VerinferUnsupportedStep"


def test_one_dispute_per_claim_and_the_window(game: Game) -> None:
    claim_id, _, _ = _open(game, "digits_mlp")
    driver = _driver(game)
    program, execution = model("digits_mlp")
    params = claim_params(program, bytes(32), bytes(32), b"\x01")
    by_proxy = driver.game.functions.open(game.claimer.address, params, b"\x01")
    assert _revert(lambda: game.claimer.transact(by_proxy, value=CLAIM_BOND)) == (
        "VerinferNotCoordinator"
    )
    fin = driver.game.functions.finalize(claim_id)
    assert _revert(lambda: game.claimer.transact(fin)) == "VerinferChallengeWindowOpen"
    driver.challenge(claim_id)
    assert _revert(lambda: driver.challenge(claim_id)) == "VerinferClaimNotOpen"
    other, _, _ = _open(game, "digits_mlp")
    _advance(game, WINDOW + 1)
    assert _revert(lambda: driver.challenge(other)) == "VerinferChallengeWindowClosed"
    game.claimer.transact(driver.game.functions.finalize(other))
    assert _credits(game, game.claimer.address) == CLAIM_BOND
    before = game.claimer.w3.eth.get_balance(game.claimer.address)
    receipt = game.claimer.transact(driver.game.functions.withdraw())
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert game.claimer.w3.eth.get_balance(game.claimer.address) == before + CLAIM_BOND - spent
    assert _revert(lambda: game.claimer.transact(driver.game.functions.withdraw())) == (
        "VerinferNoCredit"
    )


def test_disputes_in_sequence_a_lost_dispute_does_not_shield_a_wrong_claim(game: Game) -> None:
    """A colluding challenger disputes a wrong claim first and plays to lose (here: it stays
    silent); the claim reopens with at least `moveTime` of window left, an honest challenger
    disputes it in turn and wins the claim bond. Only one dispute runs at a time."""
    program, execution = model("digits_mlp")
    values = corrupted_values(program, execution, 0, 7, 4, propagate=True)
    claim_id, claimer, claimed = _open(game, "digits_mlp", values)
    stooge = _driver(game)
    _advance(game, WINDOW - 60)  # the stooge challenges late in the window
    stooge.challenge(claim_id)
    assert _revert(lambda: stooge.challenge(claim_id)) == "VerinferClaimNotOpen"
    stooge.play(claim_id, claimer, ChallengerParty(program, execution), claimed, max_moves=1)
    _advance(game, MOVE_TIME + 1)  # the stooge never names a step
    record = stooge.timeout(claim_id)
    assert record.claimer_won is True
    g = game.deployer.contract("DisputeGame", game.address)
    claim = g.functions.claims(claim_id).call()
    now = int(game.deployer.w3.eth.get_block("latest")["timestamp"])
    assert claim[2] == 1  # Open again, its bond still in it
    assert claim[1] + WINDOW >= now + MOVE_TIME - 1  # the window was extended
    fin = g.functions.finalize(claim_id)
    assert _revert(lambda: game.claimer.transact(fin)) == "VerinferChallengeWindowOpen"

    honest = Chain(game.deployer.rpc_url, dev_account(4))
    second = DisputeDriver(game.claimer, honest, game.address)
    second.challenge(claim_id)
    record = second.play(claim_id, claimer, ChallengerParty(program, execution), claimed)
    assert record.claimer_won is False and record.reason == BY_ONE_STEP
    fee = CHALLENGE_BOND * FEE_BPS // 10_000, CLAIM_BOND * FEE_BPS // 10_000
    assert _credits(game, honest.address) == CHALLENGE_BOND + CLAIM_BOND - fee[1]
    assert _credits(game, game.claimer.address) == CHALLENGE_BOND - fee[0]  # the stooge's
    assert _credits(game, game.challenger.address) == 0
    assert g.functions.claims(claim_id).call()[2] == 5  # ChallengerWon: final
    assert _revert(lambda: second.challenge(claim_id)) == "VerinferClaimNotOpen"


def test_an_upheld_claim_finalizes_after_its_window_with_its_bond(game: Game) -> None:
    program, execution = model("digits_mlp")
    claim_id, claimer, claimed = _open(game, "digits_mlp")
    driver = _driver(game)
    driver.challenge(claim_id)
    liar = RandomChallenger(program, execution, 5)
    assert driver.play(claim_id, claimer, liar, claimed).claimer_won is True
    _assert_claimer_paid(game)
    _advance(game, WINDOW + 1)
    assert _revert(lambda: driver.challenge(claim_id)) == "VerinferChallengeWindowClosed"
    g = game.deployer.contract("DisputeGame", game.address)
    game.claimer.transact(g.functions.finalize(claim_id))
    fee = CHALLENGE_BOND * FEE_BPS // 10_000
    assert _credits(game, game.claimer.address) == CLAIM_BOND + CHALLENGE_BOND - fee
