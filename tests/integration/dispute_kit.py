"""Parties and programs for the dispute game's tests: dishonest claimers (a corrupted value,
with or without the later steps recomputed from it) and a dishonest challenger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.optimistic.descriptors import StepDescriptor, build_descriptors, steps_root
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    StepChoice,
    claim_params,
    input_bytes,
    output_bytes,
)
from verinfer.runtime.commit import VALUES_PER_CHUNK, commit_list, n_chunks
from verinfer.runtime.executor import Execution, _plan
from verinfer.runtime.program import Program

CLAIM_BOND = 10**18
CHALLENGE_BOND = 5 * 10**17
WINDOW = 3600
MOVE_TIME = 600
FEE_BPS = 1000
# Forced errors off, and no jackpot fee: claimDeposit() == claimBond, which DisputeDriver sends.
FORCED_RATE_PPM = 0
JACKPOT_FEE = 0
JACKPOT_PAYOUT = 0
SEED_DELAY = 2 * WINDOW


@dataclass(frozen=True)
class Game:
    """A deployed DisputeGame and the clients of its three players."""

    address: str
    deployer: Chain
    claimer: Chain
    challenger: Chain
    treasury: str


def deploy_game(
    rpc_url: str,
    *,
    forced_rate_ppm: int = FORCED_RATE_PPM,
    jackpot_fee: int = JACKPOT_FEE,
    jackpot_payout: int = JACKPOT_PAYOUT,
    seed_delay: int = SEED_DELAY,
) -> Game:
    deployer = Chain(rpc_url, dev_account(0))
    verifier, _ = deployer.deploy("OneStepVerifier")
    ext, _ = deployer.deploy("OneStepVerifierExt")
    router, _ = deployer.deploy("StepRouter", verifier, ext)
    treasury = dev_account(3).address
    game, _ = deployer.deploy(
        "DisputeGame",
        router,
        "0x" + "00" * 20,
        treasury,
        CLAIM_BOND,
        CHALLENGE_BOND,
        WINDOW,
        MOVE_TIME,
        FEE_BPS,
        forced_rate_ppm,
        jackpot_fee,
        jackpot_payout,
        seed_delay,
    )
    return Game(
        game, deployer, Chain(rpc_url, dev_account(1)), Chain(rpc_url, dev_account(2)), treasury
    )


def corrupted_values(
    program: Program,
    execution: Execution,
    step: int,
    element: int,
    delta: int,
    *,
    propagate: bool,
) -> dict[str, Any]:
    """The execution's values with element ``element`` of step ``step``'s output moved by
    ``delta``; with ``propagate``, every later step recomputed from the corrupted tensors."""
    values = {k: v.copy() for k, v in execution.values.items()}
    name = program.steps[step].output
    flat = values[name].reshape(-1)
    flat[element] = int(np.clip(int(flat[element]) + delta, -(2**31), 2**31 - 1))
    if int(flat[element]) == int(execution.values[name].reshape(-1)[element]):
        flat[element] -= 2 * delta  # clipped back to the same value: move the other way
    if propagate:
        for i, (s, run, ins, _, limit, _) in enumerate(_plan(program).steps):
            if i <= step:
                continue
            args = [values[n] if c is None else c for n, c in ins]
            values[s.output], _ = run(s, args, program, limit)
    return values


class RandomChallenger(ChallengerParty):
    """A dishonest challenger: disputes a correct claim at a random step, child and element
    (its proofs are honest: it can only prove what the claimer committed to)."""

    def __init__(self, program: Program, execution: Execution, seed: int) -> None:
        super().__init__(program, execution)
        self.rng = np.random.default_rng(seed)

    def choose(self, claimed_leaves: Sequence[bytes], claimed_output: bytes) -> StepChoice:
        return StepChoice(False, int(self.rng.integers(0, len(self.descriptors))))

    def pick(self, s: int, level: int, index: int, left: bytes, right: bytes) -> bool:
        real = -(-n_chunks(self.tree(s).n) // 2 ** (level - 1))  # real nodes at level - 1
        return 2 * index + 1 < real and bool(self.rng.integers(0, 2))

    def element(self, s: int, c: int, chunk: bytes) -> int:
        n = self.tree(s).n
        return int(self.rng.integers(0, min(VALUES_PER_CHUNK, n - c * VALUES_PER_CHUNK)))


@dataclass(frozen=True)
class GameClaim:
    """What a claimer opens a standalone game claim with: its party, output and params."""

    claimer: ClaimerParty
    output: bytes
    params: tuple[Any, ...]


def game_claim(
    program: Program,
    execution: Execution,
    values: dict[str, Any] | None = None,
    descriptors: Sequence[StepDescriptor] | None = None,
) -> GameClaim:
    """A claim on ``execution``'s input from ``values`` (default: the honest ones)."""
    descriptors = list(descriptors or build_descriptors(program))
    claimer = ClaimerParty(program, values or execution.values, descriptors)
    params = claim_params(
        program,
        commit_list(claimer.leaves),
        steps_root(descriptors),
        input_bytes(program, execution.values),
    )
    return GameClaim(claimer, output_bytes(program, claimer.values), params)
