"""Forced errors through the node daemon on a real anvil (docs/optimistic.md, section 4).

A suite whose game forces every seeded claim (forcedRatePpm = 1,000,000) and activates a
seed after a minute. The node, with ``[forced_errors] enabled``, commits its seed chain at
start; once it is active, each of its claims carries a deliberately wrong output (honest
trace root). Unchallenged, the node concedes it shortly before the window ends; challenged
by another watchtower, at once (the challenger wins its bond and the jackpot). Either way
the requester is refunded in full, the node's stake is untouched, its claim bond comes back
and the job ends ``forced_error``; a restart keeps the chain position.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_kit import DIGITS_SAMPLE, RunningNode, fund, node_config, register_digits, setup_node
from test_node_e2e import wait_jobs
from test_node_optimistic import advance, wait_state

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deploy import SuiteParams, deploy_suite
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, NodeRegistryClient, RequestStatus
from verinfer.client import InferenceClient
from verinfer.errors import ConfigError
from verinfer.models.registry import Mode, RegistryClient
from verinfer.node.config import ForcedErrorsConfig, NodeConfig, parse_config
from verinfer.node.executor import Executor, encode_outputs
from verinfer.node.forced_errors import wrong_output
from verinfer.node.jobs import JobLog, JobState
from verinfer.node.service import NodeService
from verinfer.node.watchtower import Watchtower
from verinfer.optimistic.forced import seed_chain
from verinfer.store import open_store

pytestmark = pytest.mark.integration

PARAMS = SuiteParams(forced_rate_ppm=1_000_000, seed_delay_s=60)
WINDOW = PARAMS.challenge_window_s
CHAIN_LENGTH = 4
FORCED, OPEN = 6, 1
ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module")
def forced_suite(anvil: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> AddressBook:
    chain = Chain(anvil.rpc_url, dev_account(0))
    return deploy_suite(chain, book_dir=tmp_path_factory.mktemp("forced-book"), params=PARAMS)


@pytest.fixture
def env(
    anvil: DevnetInfo, forced_suite: AddressBook, snapshot: None, tmp_path: Path
) -> Iterator[Env]:
    forced_suite.save()  # into this test's VERINFER_HOME: the node and the client read it
    chain = Chain(anvil.rpc_url, dev_account(0))
    yield Env(chain, forced_suite, anvil, tmp_path)


class Env:
    """The deployer (also the requester), a registered digits MLP and node 1's config."""

    def __init__(self, chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp: Path) -> None:
        self.chain, self.book, self.anvil = chain, book, anvil
        self.model_id = register_digits(chain, book, optimistic=True).model_id
        self.node = setup_node(
            anvil.rpc_url, book, 1, self.model_id, modes=Mode.NONE | Mode.OPTIMISTIC
        )
        fund(chain, book, chain.address)
        config = node_config(
            anvil.rpc_url, tmp / "n1", 1, self.model_id, modes=("none", "optimistic"),
            start_block=chain.w3.eth.block_number,
        )  # fmt: skip
        forced = ForcedErrorsConfig(enabled=True, chain_length=CHAIN_LENGTH)
        self.config: NodeConfig = config.model_copy(update={"forced_errors": forced})
        self.client = InferenceClient.from_chain(chain)
        self.coordinator: CoordinatorClient = self.client.coordinator
        self.game: Any = chain.contract("DisputeGame", self.coordinator.dispute_game())
        self.stakes = NodeRegistryClient(chain, book.address("NodeRegistry"))

    @property
    def secrets(self) -> dict[str, Any]:
        path = self.config.data_dir / "forced_errors.json"
        assert path.stat().st_mode & 0o777 == 0o600
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def seed_chain(self) -> list[bytes]:
        current = self.secrets["chains"][-1]
        return seed_chain(bytes.fromhex(current["root"]), int(current["length"]))

    def commits(self) -> int:
        events = self.game.events.SeedCommitted().get_logs(
            from_block=0, argument_filters={"claimer": self.node}
        )
        return len(events)

    def request(self, row: int) -> tuple[int, bytes]:
        """A request on sample ``row``: (request id, the honest encoded output)."""
        x = np.load(DIGITS_SAMPLE)[row : row + 1]
        program = self.client.program(self.model_id)
        honest = encode_outputs(program, program.run(x).outputs_q)
        return self.client.request(self.model_id, x, "optimistic").request_id, honest

    def claim(self, request_id: int) -> tuple[int, Any]:
        claim_id = self.coordinator.claim_of(request_id)
        return claim_id, self.chain.call(self.game.functions.claims(claim_id))

    def claimed_output(self, claim_id: int) -> bytes:
        (event,) = self.game.events.ClaimOpened().get_logs(
            from_block=0, argument_filters={"claimId": claim_id}
        )
        return bytes(event["args"]["output"])

    def conceded(self, claim_id: int) -> Any:
        (event,) = self.game.events.ForcedErrorConceded().get_logs(
            from_block=0, argument_filters={"claimId": claim_id}
        )
        return event["args"]

    def withdrawn(self, account: str) -> list[int]:
        events = self.game.events.Withdrawn().get_logs(
            from_block=0, argument_filters={"account": account}
        )
        return [int(e["args"]["amount"]) for e in events]


def _forced_claim(env: Env, row: int) -> tuple[int, int, bytes]:
    """Request on ``row``; the node claims a wrong output: (request id, claim id, output)."""
    request_id, honest = env.request(row)
    wait_state(env.config.data_dir, request_id, JobState.CLAIMED)
    claim_id, claim = env.claim(request_id)
    output = env.claimed_output(claim_id)
    assert output != honest and output == wrong_output(honest)
    assert bytes(claim[11]) in env.seed_chain()  # recorded our seed: forced at this rate
    return request_id, claim_id, output


def _wait(predicate: Any, what: str, timeout: float = 30.0, tick: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        if tick is not None:
            tick()
        time.sleep(0.05)


def test_unchallenged_forced_claim_is_conceded_before_its_window_ends(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    node = RunningNode(env.config)
    try:
        assert env.commits() == 1 and env.secrets["next"] == 1
        head = env.seed_chain()[0]
        assert bytes(env.chain.call(env.game.functions.seeds(env.node))[0]) == head
        advance(env.chain, PARAMS.seed_delay_s + 1)
        requester = env.chain.address
        credit_before = env.coordinator.balance_of(requester)
        stake_before = env.stakes.get_node(env.node).stake
        request_id, claim_id, _ = _forced_claim(env, 0)
        escrow = env.coordinator.get_request(request_id).escrow
        assert escrow > 0 and bytes(env.claim(request_id)[1][11]) == head
        time.sleep(0.5)  # inside the window, before the margin: the node waits
        assert int(env.claim(request_id)[1][2]) == OPEN
        advance(env.chain, WINDOW - 200)  # within min(W/4, 300 s) of the window's end
        wait_state(env.config.data_dir, request_id, JobState.FAILED)
        assert wait_jobs(env.config.data_dir, 1) == ["forced_error"]
    finally:
        node.stop()
    assert int(env.claim(request_id)[1][2]) == FORCED
    info = env.coordinator.get_request(request_id)
    assert info.status == RequestStatus.REFUNDED and info.escrow == 0
    assert env.coordinator.balance_of(requester) - credit_before == escrow  # in full
    assert env.stakes.get_node(env.node).stake == stake_before  # not slashed
    conceded = env.conceded(claim_id)
    assert conceded["challenger"] == ZERO and int(conceded["jackpotPaid"]) == 0
    bond = int(env.chain.call(env.game.functions.claimBond()))
    assert env.withdrawn(env.node) == [bond]  # the claim bond came back (and was withdrawn)
    assert int(env.chain.call(env.game.functions.credits(env.node))) == 0
    # The revealed secret is the new head; the file says the next secret is the chain's next.
    assert bytes(env.chain.call(env.game.functions.seeds(env.node))[0]) == env.seed_chain()[1]
    assert env.secrets["next"] == 2
    log = JobLog.in_dir(env.config.data_dir)
    assert log.counters()["forced_errors"] == 1 and log.counters()["forced_conceded"] == 1
    log.close()
    out, err = capfd.readouterr()
    assert "job.forced_error" in out + err  # logged, without any secret of the chain
    assert not any(x.hex() in out + err for x in env.seed_chain()[1:])


def test_challenged_forced_claim_is_conceded_at_once(env: Env) -> None:
    attacker = Chain(env.anvil.rpc_url, dev_account(3))
    coordinator = CoordinatorClient(attacker, env.book.address("InferenceCoordinator"))
    executor = Executor(RegistryClient(attacker, env.book.address("ModelRegistry")), open_store())
    node = RunningNode(env.config)
    try:
        advance(env.chain, PARAMS.seed_delay_s + 1)
        tower = Watchtower(
            attacker, coordinator, executor, models={env.model_id}, max_at_risk=10**18,
            start_block=env.chain.w3.eth.block_number,
        )  # fmt: skip
        credit_before = env.coordinator.balance_of(env.chain.address)
        stake_before = env.stakes.get_node(env.node).stake
        request_id, claim_id, _ = _forced_claim(env, 1)
        escrow = env.coordinator.get_request(request_id).escrow
        share = int(env.chain.call(env.game.functions.jackpotOf(env.node)))
        assert share == PARAMS.jackpot_fee_wei
        _wait(
            lambda: int(env.claim(request_id)[1][2]) == FORCED, "not conceded",
            tick=tower.poll,
        )  # fmt: skip
        _wait(lambda: tower.stats["won"] == 1, "challenger's win not counted", tick=tower.poll)
        assert tower.stats["challenged"] == 1 and tower.stats["lost"] == 0
        wait_state(env.config.data_dir, request_id, JobState.FAILED)
        assert wait_jobs(env.config.data_dir, 1) == ["forced_error"]
    finally:
        node.stop()
    paid = min(PARAMS.jackpot_payout_wei, share)
    conceded = env.conceded(claim_id)
    assert conceded["challenger"] == attacker.address and int(conceded["jackpotPaid"]) == paid
    assert env.withdrawn(attacker.address) == [PARAMS.challenge_bond_wei + paid]
    assert int(env.chain.call(env.game.functions.jackpotOf(env.node))) == share - paid
    assert env.withdrawn(env.node) == [PARAMS.claim_bond_wei]
    assert env.coordinator.balance_of(env.chain.address) - credit_before == escrow
    assert env.stakes.get_node(env.node).stake == stake_before
    # The node never played the dispute: no move of its own precedes the concession.
    moves = env.game.events.LeavesRevealed().get_logs(
        from_block=0, argument_filters={"claimId": claim_id}
    )
    assert moves == []


def test_restart_keeps_the_chain_position(env: Env) -> None:
    node = RunningNode(env.config)
    try:
        advance(env.chain, PARAMS.seed_delay_s + 1)
        first, claim1, _ = _forced_claim(env, 2)
        advance(env.chain, WINDOW - 200)
        wait_state(env.config.data_dir, first, JobState.FAILED)
    finally:
        node.stop()
    chain = env.seed_chain()
    assert env.secrets["next"] == 2
    secrets_file = env.config.data_dir / "forced_errors.json"
    secrets_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        NodeService(env.config).setup()
    secrets_file.chmod(0o600)
    node = RunningNode(env.config)
    try:
        assert env.commits() == 1  # the same chain: nothing committed again
        second, claim2, _ = _forced_claim(env, 3)
        assert bytes(env.claim(second)[1][11]) == chain[1]  # after the first secret
        advance(env.chain, WINDOW - 200)
        wait_state(env.config.data_dir, second, JobState.FAILED)
        assert wait_jobs(env.config.data_dir, 2) == ["forced_error", "forced_error"]
    finally:
        node.stop()
    assert int(env.claim(second)[1][2]) == FORCED
    assert env.coordinator.get_request(second).status == RequestStatus.REFUNDED
    assert env.secrets["next"] == 3 and env.seed_chain() == chain
    assert bytes(env.chain.call(env.game.functions.seeds(env.node))[0]) == chain[2]
    assert env.withdrawn(env.node) == [PARAMS.claim_bond_wei] * 2


def test_disabled_node_claims_honestly_and_commits_nothing(env: Env) -> None:
    """The default: no seed, so claims record none and are honest even at a 100% rate."""
    config = env.config.model_copy(update={"forced_errors": ForcedErrorsConfig()})
    node = RunningNode(config)
    try:
        advance(env.chain, PARAMS.seed_delay_s + 1)
        request_id, honest = env.request(5)
        wait_state(config.data_dir, request_id, JobState.CLAIMED)
        claim_id, claim = env.claim(request_id)
        assert env.claimed_output(claim_id) == honest and bytes(claim[11]) == b"\0" * 32
        advance(env.chain, WINDOW + 1)
        assert wait_jobs(config.data_dir, 1) == ["finalized"]
    finally:
        node.stop()
    assert env.commits() == 0 and not (config.data_dir / "forced_errors.json").exists()
    assert env.coordinator.get_request(request_id).status == RequestStatus.FULFILLED


def test_turned_off_node_still_concedes_what_its_seed_forces(env: Env) -> None:
    """Off with the secrets file kept: no wrong claims and no new commits, but a claim the
    committed seed forces is conceded (here honest: every claim is forced at this rate)."""
    RunningNode(env.config).stop()  # commits the seed
    config = env.config.model_copy(update={"forced_errors": ForcedErrorsConfig()})
    advance(env.chain, PARAMS.seed_delay_s + 1)
    node = RunningNode(config)
    try:
        request_id, honest = env.request(6)
        wait_state(config.data_dir, request_id, JobState.CLAIMED)
        claim_id, claim = env.claim(request_id)
        assert env.claimed_output(claim_id) == honest
        assert bytes(claim[11]) == env.seed_chain()[0]
        advance(env.chain, WINDOW - 200)
        assert wait_jobs(config.data_dir, 1) == ["forced_error"]
    finally:
        node.stop()
    assert env.commits() == 1
    assert env.coordinator.get_request(request_id).status == RequestStatus.REFUNDED
    log = JobLog.in_dir(config.data_dir)
    assert log.counters().get("forced_errors", 0) == 0 and log.counters()["forced_conceded"] == 1
    log.close()


def test_exhausted_chain_rolls_to_a_new_one(env: Env) -> None:
    """Once the last secret of a chain is revealed the node commits a fresh chain."""
    config = env.config.model_copy(
        update={"forced_errors": ForcedErrorsConfig(enabled=True, chain_length=1)}
    )
    node = RunningNode(config)
    try:
        advance(env.chain, PARAMS.seed_delay_s + 1)
        first = env.seed_chain()
        request_id, _, _ = _forced_claim(env, 4)
        advance(env.chain, WINDOW - 200)
        wait_state(config.data_dir, request_id, JobState.FAILED)
        _wait(lambda: env.commits() == 2, "no new chain committed")
    finally:
        node.stop()
    secrets = env.secrets
    assert len(secrets["chains"]) == 2 and secrets["next"] == 1
    assert env.seed_chain() != first
    seed = env.chain.call(env.game.functions.seeds(env.node))
    assert bytes(seed[0]) == env.seed_chain()[0]
    # Not active yet: claims until then record no seed and are honest.
    assert bytes(env.chain.call(env.game.functions.activeSeed(env.node))) == b"\0" * 32


def test_config_validation() -> None:
    base: dict[str, Any] = {
        "rpc_url": "http://127.0.0.1:8545", "data_dir": "/tmp/x", "key": {"env": "K"},
        "models": [{"id": 1, "modes": ["optimistic"]}],
    }  # fmt: skip
    assert parse_config(base).forced_errors.enabled is False
    ok = parse_config({**base, "forced_errors": {"enabled": True, "chain_length": 10}})
    assert ok.forced_errors.chain_length == 10
    bad = [
        ({"forced_errors": {"enabled": True, "chain_length": 0}}, "chain_length"),
        ({"forced_errors": {"secrets_file": "../x"}}, "secrets_file"),
        ({"forced_errors": {"root": "0x00"}}, "secrets never go"),
        ({"forced_errors": {"enabled": True}, "watch": {"enabled": False}}, "watch.enabled"),
        (
            {"forced_errors": {"enabled": True}, "models": [{"id": 1, "modes": ["none"]}]},
            "mode optimistic",
        ),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            parse_config({**base, **extra})


def test_wrong_output_changes_one_value() -> None:
    from verinfer.chain.codec import decode_tensors, encode_tensors

    honest = encode_tensors([(np.array([5, 2**31 - 1], dtype=np.int32), 3)])
    ((values, scale),) = decode_tensors(wrong_output(honest) or b"")
    assert list(values) == [6, 2**31 - 1] and scale == 3
    top = encode_tensors([(np.array([2**31 - 1], dtype=np.int32), 0)])
    assert list(decode_tensors(wrong_output(top) or b"")[0][0]) == [2**31 - 2]
    assert wrong_output(encode_tensors([(np.array([], dtype=np.int32), 0)])) is None
