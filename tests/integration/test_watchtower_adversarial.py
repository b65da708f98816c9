"""The watchtower against dishonest nodes and a dishonest challenger, on a real anvil.

An independent ``verinfer watch`` process (its own account W, a subprocess) watches the
digits MLP, the CNN and the transformer block. A dishonest node D claims, through the
coordinator, over a hundred randomized wrong results — one element of a random step
corrupted (later steps recomputed from it, or not), or only the output — and defends every
one of its corrupted traces move by move. The watchtower must challenge and win each; D
is slashed at each refund. Meanwhile honest claims are never slashed: D's own correct
claims go unchallenged, and W's correct claims, attacked by a dishonest challenger C who
disputes random steps, children and elements, are defended by the watchtower and win.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from coordinator_kit import DISSENT_SLASH, Kit, account
from dispute_kit import RandomChallenger, corrupted_values

from verinfer.chain.client import Chain
from verinfer.chain.deploy import SuiteParams
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, RequestStatus
from verinfer.models.registry import Mode, ModelInput, RegistryClient
from verinfer.optimistic.descriptors import StepDescriptor, build_descriptors, steps_root
from verinfer.optimistic.game import ClaimerParty, DisputePlayer, input_bytes, output_bytes
from verinfer.runtime.commit import commit_list
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS
from verinfer.store import open_store

pytestmark = pytest.mark.integration

MODE_NONE, MODE_OPTIMISTIC = 1, 4
GAME = SuiteParams()
OPEN, DISPUTED, CHALLENGER_WON = 1, 2, 5
DISHONEST = account(11)  # D: claims wrong results and defends them
WATCHER = account(12)  # W: the watchtower process; also an honest node
CHALLENGER = account(13)  # C: disputes W's correct claims at random
REQUESTER = account(14)
CASES = {"digits_mlp": 40, "digits_cnn": 32, "transformer_block": 30}  # wrong claims by D
HONEST = {"digits_mlp": 3, "digits_cnn": 2, "transformer_block": 2}  # per node (D and W)


@dataclass
class Served:
    name: str
    model_id: int
    program: Program
    descriptors: list[StepDescriptor]
    sample: np.ndarray[Any, Any]


@dataclass
class Claim:
    served: Served
    request_id: int
    claim_id: int
    party: ClaimerParty
    output: bytes
    kind: str  # "step s", "step s propagated", "output", "honest"
    execution: Execution | None = None  # honest claims: what the challenger proves from


def _register(kit: Kit, name: str) -> Served:
    """Register a test model for optimistic mode, its program in this test's store."""
    model = TEST_MODELS[name]
    batch = 1 if name == "transformer_block" else None  # its batch of 4 exceeds 16 KiB inline
    program = model.compile(batch)
    store = open_store()
    onnx_cid = str(store.put(model.onnx.read_bytes()))
    program_cid = str(store.put(program.to_bytes()))
    manifest_cid = str(store.put(json.dumps({"program": {"cid": program_cid}}).encode()))
    descriptors = build_descriptors(program)
    registry = RegistryClient(kit.chain, kit.book.address("ModelRegistry"))
    model_id, _ = registry.register(
        ModelInput(
            name=name,
            cid=onnx_cid,
            price=1_000,
            royalty_bps=500,
            modes=Mode.NONE | Mode.OPTIMISTIC,
            metadata_uri=f"ipfs://{manifest_cid}",
            input_shapes=[list(t.shape) for t in program.inputs],
            output_shapes=[list(t.shape) for t in program.outputs],
            program_hash=program.program_hash,
            weights_root=program.weights_root,
            steps_root="0x" + steps_root(descriptors).hex(),
            n_steps=len(program.steps),
            n_constants=len(program.constants),
        )  # fmt: skip
    )
    return Served(name, model_id, program, descriptors, model.inputs()[: batch or None])


def _execution(served: Served, rng: np.random.Generator) -> Execution:
    """A fresh random input near the model's sample (so every case differs)."""
    x = served.sample
    noisy = x + rng.normal(0.0, 0.2 * float(np.std(x)) + 1e-3, x.shape)
    return served.program.run({served.program.inputs[0].name: noisy}, trace=True)


def _request(kit: Kit, served: Served, data: bytes, node: str) -> int:
    rid, assigned, _ = kit.request(REQUESTER, served.model_id, MODE_OPTIMISTIC, data=data)
    assert assigned == [node]
    return rid


def _claim(node: CoordinatorClient, rid: int, party: ClaimerParty, output: bytes) -> int:
    claim_id, _ = node.claim(rid, output, commit_list(party.leaves))
    return claim_id


def _wrong_claim(
    kit: Kit, node: CoordinatorClient, served: Served, rng: np.random.Generator
) -> Claim:
    program, execution = served.program, _execution(served, rng)
    honest_output = output_bytes(program, execution.values)
    if rng.random() < 0.2:  # only the output is wrong; the trace is the honest one
        values = {k: v.copy() for k, v in execution.values.items()}
        out = values[program.outputs[0].name].reshape(-1)
        out[int(rng.integers(out.size))] += int(rng.choice([-2, 1, 3]))
        party = ClaimerParty(program, execution.values, served.descriptors)
        output, kind = output_bytes(program, values), "output"
    else:
        s = int(rng.integers(len(program.steps)))
        n = int(np.asarray(execution.values[program.steps[s].output]).size)
        propagate = bool(rng.integers(2))
        delta = int(rng.choice([-1000, -7, -1, 1, 2, 5, 1 << 20]))
        e = int(rng.integers(n))
        values = corrupted_values(program, execution, s, e, delta, propagate=propagate)
        party = ClaimerParty(program, values, served.descriptors)
        output, kind = output_bytes(program, values), f"step {s}" + " propagated" * propagate
    assert kind != "output" or output != honest_output
    rid = _request(kit, served, input_bytes(program, execution.values), node.chain.address)
    return Claim(served, rid, _claim(node, rid, party, output), party, output, kind)


def _honest_claim(
    kit: Kit, node: CoordinatorClient, served: Served, rng: np.random.Generator
) -> Claim:
    program, execution = served.program, _execution(served, rng)
    party = ClaimerParty(program, execution.values, served.descriptors)
    output = output_bytes(program, execution.values)
    rid = _request(kit, served, input_bytes(program, execution.values), node.chain.address)
    claim_id = _claim(node, rid, party, output)
    return Claim(served, rid, claim_id, party, output, "honest", execution)


def _serve(kit: Kit, who: Any, models: list[Served], modes: int) -> None:
    for m in models:
        kit.send(who, "NodeRegistry", "setService", m.model_id, modes, 2_000)


def test_watchtower_catches_every_wrong_claim_and_no_honest_claim_is_slashed(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    kit = Kit(chain, book)
    rng = np.random.default_rng(20261122)
    served = [_register(kit, name) for name in CASES]
    stake = 10 * 1000 * 10**6 + sum(CASES.values()) * DISSENT_SLASH
    for who in (DISHONEST, WATCHER):
        kit.add_node(who, served[0].model_id, modes=MODE_NONE | MODE_OPTIMISTIC, stake=stake)
        _serve(kit, who, served, 0)  # nobody serves until its turn below
    d_node = CoordinatorClient(kit.as_(DISHONEST), kit.coordinator.address)
    w_node = CoordinatorClient(kit.as_(WATCHER), kit.coordinator.address)
    kit.as_(CHALLENGER), kit.as_(REQUESTER)
    start = int(chain.w3.eth.block_number)

    # D serves alone: its wrong claims and a few correct ones; then W alone: correct claims.
    _serve(kit, DISHONEST, served, MODE_OPTIMISTIC)
    wrong = [_wrong_claim(kit, d_node, m, rng) for m in served for _ in range(CASES[m.name])]
    d_honest = [_honest_claim(kit, d_node, m, rng) for m in served for _ in range(HONEST[m.name])]
    _serve(kit, DISHONEST, served, 0)
    _serve(kit, WATCHER, served, MODE_OPTIMISTIC)
    w_honest = [_honest_claim(kit, w_node, m, rng) for m in served for _ in range(HONEST[m.name])]
    assert len(wrong) >= 100

    env = dict(os.environ, VERINFER_PRIVATE_KEY=WATCHER.key.hex(), VERINFER_DEBUG="1")
    log_path = tmp_path / "watch.log"
    models = ",".join(str(m.model_id) for m in served)
    with log_path.open("w") as log:
        watch = subprocess.Popen(
            [sys.executable, "-m", "verinfer", "-v", "watch", "--models", models,
             "--rpc-url", anvil.rpc_url, "--from-block", str(start), "--max-at-risk", "10",
             "--poll-interval", "0.05"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _play(kit, wrong, w_honest, log_path, watch)
    finally:
        watch.send_signal(signal.SIGTERM)
        code = watch.wait(timeout=30)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "watch.dispute_lost" not in text and "Traceback" not in text

    game = chain.contract("DisputeGame", kit.coordinator.functions.disputeGame().call())
    everything = wrong + d_honest + w_honest
    status = {c.claim_id: int(game.functions.claims(c.claim_id).call()[2]) for c in everything}
    missed = [(c.served.name, c.kind) for c in wrong if status[c.claim_id] != CHALLENGER_WON]
    assert not missed, f"wrong claims not caught: {missed}"
    for c in everything:
        resolved = game.events.DisputeResolved().get_logs(
            argument_filters={"claimId": c.claim_id}, from_block=start
        )
        winners = [e["args"]["winner"] for e in resolved]
        if c in wrong:
            assert winners == [WATCHER.address], (c.served.name, c.kind)
        elif c in d_honest:
            assert winners == [] and status[c.claim_id] == OPEN  # never challenged
        else:
            assert winners == [WATCHER.address]  # C disputed it and lost
    assert int(game.functions.credits(WATCHER.address).call()) == 0  # the watchtower withdrew

    # Settle: every wrong claim refunds the requester and slashes D; every honest one pays.
    stake_before = kit.node_stake(DISHONEST.address)[0]
    anyone = CoordinatorClient(kit.as_(REQUESTER), kit.coordinator.address)
    for c in wrong:
        anyone.refund(c.request_id)
        assert kit.get_request(c.request_id)["status"] == RequestStatus.REFUNDED
    assert stake_before - kit.node_stake(DISHONEST.address)[0] == len(wrong) * DISSENT_SLASH
    w_stake = kit.node_stake(WATCHER.address)[0]
    kit.advance(GAME.challenge_window_s + 1)
    for c in d_honest + w_honest:
        anyone.finalize_optimistic(c.request_id, c.output)
        assert kit.get_request(c.request_id)["status"] == RequestStatus.FULFILLED
    assert kit.node_stake(WATCHER.address)[0] == w_stake
    kinds = {k: sum(c.kind.startswith(k) for c in wrong) for k in ("step", "output")}
    honest = len(d_honest) + len(w_honest)
    print(f"\n{len(wrong)} wrong claims caught {kinds}; {honest} honest claims paid")  # noqa: T201


def _play(
    kit: Kit,
    wrong: list[Claim],
    w_honest: list[Claim],
    log_path: Path,
    watch: subprocess.Popen[bytes],
) -> None:
    """D defends its wrong claims and C attacks W's correct ones until every dispute ended."""
    game_address = kit.coordinator.functions.disputeGame().call()
    d_player = DisputePlayer(kit.as_(DISHONEST), game_address)
    c_player = DisputePlayer(kit.as_(CHALLENGER), game_address)
    game = d_player.game
    bond = int(game.functions.challengeBond().call())
    challengers = {
        c.claim_id: RandomChallenger(c.served.program, c.execution, seed=c.claim_id)
        for c in w_honest
        if c.execution is not None
    }
    attacked: set[int] = set()
    pending = {c.claim_id: c for c in wrong + w_honest}
    deadline = time.monotonic() + 600
    while pending:
        assert watch.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{len(pending)} disputes still open"
        moved = False
        for claim_id, c in list(pending.items()):
            status = int(game.functions.claims(claim_id).call()[2])
            honest = c.kind == "honest"
            if status not in (OPEN, DISPUTED) or (
                honest and status == OPEN and claim_id in attacked
            ):
                del pending[claim_id]  # settled (a claim that won its dispute may reopen)
            elif status == DISPUTED and not honest:
                moved |= d_player.move(claim_id, claimer=c.party) is not None
            elif status == DISPUTED:
                attacker = challengers[claim_id]
                played = c_player.move(claim_id, challenger=attacker, claimed_output=c.output)
                moved |= played is not None
            elif honest:
                c_player.chain.transact(c_player.game.functions.challenge(claim_id), value=bond)
                attacked.add(claim_id)
                moved = True
        if not moved:
            time.sleep(0.05)
