"""Play the dispute game of ``contracts/src/optimistic/DisputeGame.sol`` from Python.

:class:`ClaimerParty` answers for a claimer from the tensors it committed to (an honest
node's execution, or any values: a dishonest claimer is one whose values are wrong);
:class:`ChallengerParty` plays an honest challenger from its own execution: it checks the
output binding, names the first step whose leaf differs, follows the differing child down
the chunk tree, names the first differing element and proves its operands. Their methods
compute moves only; :class:`DisputePlayer` sends one party's moves, one transaction per
move, reading what the other side revealed from the contract's events, and
:class:`DisputeDriver` plays both parties of one claim (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from web3.contract.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

import verinfer.optimistic.errors  # noqa: F401  (registers the game's errors)
from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.optimistic.descriptors import (
    KIND_CONST,
    KIND_INPUT,
    KIND_STEP,
    StepDescriptor,
    build_descriptors,
)
from verinfer.optimistic.multiproof import CommittedTensor
from verinfer.optimistic.onestep import OneStepError, OneStepProver
from verinfer.runtime.commit import (
    CHUNK_BYTES,
    VALUES_PER_CHUNK,
    keccak256,
    leaf_suffix,
    list_proof,
    tensor_root,
)
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program

__all__ = [
    "PHASES",
    "ChallengerParty",
    "ClaimerParty",
    "DisputeDriver",
    "DisputePlayer",
    "DisputeRecord",
    "claim_params",
    "input_bytes",
    "output_bytes",
]

PHASES = ("None", "Leaves", "Choose", "Root", "Children", "Pick", "Chunk", "OneStep", "Done")


def input_bytes(program: Program, values: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The request's inline input: the program inputs' quantized values at their scales."""
    return encode_tensors([(values[t.name], t.scale) for t in program.inputs])


def output_bytes(program: Program, values: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The claimed inline output: the program outputs' values at their scales."""
    return encode_tensors([(values[t.name], t.scale) for t in program.outputs])


def claim_params(
    program: Program, trace_root: bytes, steps_root: bytes, request_input: bytes
) -> tuple[Any, ...]:
    """``DisputeGame.ClaimParams`` of a claim on ``program``."""
    return (
        trace_root,
        bytes.fromhex(program.weights_root[2:]),
        steps_root,
        len(program.steps),
        len(program.constants),
        keccak256(request_input),
    )


class _Committed:
    """Every step output's tensor tree and leaf, from the values a party holds."""

    def __init__(
        self,
        program: Program,
        values: Mapping[str, npt.NDArray[Any]],
        descriptors: Sequence[StepDescriptor] | None = None,
        roots: Sequence[bytes] | None = None,
    ) -> None:
        """``roots``: the step outputs' tensor roots when already known (an execution's
        ``step_roots`` for these values), so they are not hashed again."""
        self.program = program
        self.values = values
        self.descriptors = list(descriptors or build_descriptors(program))
        self._trees: dict[int, CommittedTensor] = {}
        self.roots = (
            list(roots)
            if roots is not None
            else [tensor_root(np.asarray(values[s.output])) for s in program.steps]
        )
        self.leaves = [
            keccak256(r + leaf_suffix(d.shape, d.scale))
            for r, d in zip(self.roots, self.descriptors, strict=True)
        ]

    def tree(self, s: int) -> CommittedTensor:
        if s not in self._trees:
            self._trees[s] = CommittedTensor(self.values[self.program.steps[s].output])
        return self._trees[s]

    def chunk(self, s: int, c: int) -> bytes:
        return self.tree(s).words[c * CHUNK_BYTES : (c + 1) * CHUNK_BYTES]


def execution_roots(execution: Execution) -> list[bytes]:
    """The tensor roots of an execution's step outputs, as the runtime committed them."""
    return [bytes.fromhex(r[2:]) for r in execution.step_roots]


class ClaimerParty(_Committed):
    """The claimer's answers: its leaves, a step's root, a node's children, a chunk."""

    def children(self, s: int, level: int, index: int) -> tuple[bytes, bytes]:
        tree = self.tree(s).tree
        return tree.node(level - 1, 2 * index), tree.node(level - 1, 2 * index + 1)


@dataclass(frozen=True)
class StepChoice:
    """The challenger's move 2: dispute the output binding, or step ``step``."""

    output: bool
    step: int


class ChallengerParty(_Committed):
    """An honest challenger: its own execution decides every move."""

    def __init__(
        self,
        program: Program,
        execution: Execution,
        descriptors: Sequence[StepDescriptor] | None = None,
    ) -> None:
        super().__init__(program, execution.values, descriptors, execution_roots(execution))
        self.prover = OneStepProver(program, execution)
        self.request_input = input_bytes(program, execution.values)

    # ---- decisions (override to play dishonestly) ------------------------------------

    def choose(self, claimed_leaves: Sequence[bytes], claimed_output: bytes) -> StepChoice:
        """A bad output binding if there is one, else the first step whose leaf differs."""
        for s, d in enumerate(self.descriptors):
            if d.output >= 0 and not self._output_matches(d, claimed_leaves[s], claimed_output):
                return StepChoice(True, s)
        for s, (mine, theirs) in enumerate(zip(self.leaves, claimed_leaves, strict=True)):
            if mine != theirs:
                return StepChoice(False, s)
        raise OneStepError("the claimed trace equals ours: nothing to dispute")

    def pick(self, s: int, level: int, index: int, left: bytes, right: bytes) -> bool:
        """True to dispute the right child of node (level, index): the one that differs."""
        tree = self.tree(s).tree
        return left == tree.node(level - 1, 2 * index)

    def element(self, s: int, c: int, chunk: bytes) -> int:
        """The first element of the claimer's chunk ``c`` that differs from ours."""
        mine = self.chunk(s, c)
        for j in range(len(chunk) // 4):
            if chunk[4 * j : 4 * j + 4] != mine[4 * j : 4 * j + 4]:
                return j
        raise OneStepError(f"chunk {c} of step {s} equals ours")

    def _output_matches(self, d: StepDescriptor, leaf: bytes, claimed_output: bytes) -> bool:
        try:
            values, scale = decode_tensors(claimed_output)[d.output]
        except (IndexError, ValueError):
            return False
        if scale != d.scale or values.size != int(np.prod(d.shape, dtype=np.int64)):
            return False
        return keccak256(tensor_root(values) + leaf_suffix(d.shape, d.scale)) == leaf

    # ---- calldata --------------------------------------------------------------------

    def step_proof(self, s: int, claimed_leaves: Sequence[bytes]) -> tuple[Any, ...]:
        """``DisputeGame.StepProof`` of step ``s`` against the claimer's leaves."""
        d = self.descriptors[s]
        steps = list_proof([x.leaf for x in self.descriptors], s).siblings
        trace = list_proof(list(claimed_leaves), s).siblings
        return (s, d.abi(), list(steps), claimed_leaves[s], list(trace))

    def one_step_proof(
        self, s: int, c: int, j: int, chunk: bytes, claimed_leaves: Sequence[bytes]
    ) -> tuple[Any, ...]:
        """``DisputeGame.OneStepProof`` for element ``j`` of the claimer's chunk ``c``."""
        d = self.descriptors[s]
        call = self.prover.prove(s, c * VALUES_PER_CHUNK + j)
        openings = call.openings[: len(d.operands)]
        const_leaves = [k.leaf() for k in self.program.constants.values()]
        roots: list[bytes] = []
        proofs: list[list[bytes]] = []
        for o, opening in zip(d.operands, openings, strict=True):
            if o.kind == KIND_INPUT:
                roots.append(bytes(32))
                proofs.append([])
            elif o.kind == KIND_STEP:
                roots.append(opening.root)
                proofs.append(list(list_proof(list(claimed_leaves), o.index).siblings))
            elif o.kind == KIND_CONST:
                roots.append(opening.root)
                proofs.append(list(list_proof(const_leaves, o.index).siblings))
        uses_input = any(o.kind == KIND_INPUT for o in d.operands)
        return (
            d.abi(),
            j,
            chunk,
            roots,
            proofs,
            self.request_input if uses_input else b"",
            [o.abi() for o in openings],
        )


@dataclass
class DisputeRecord:
    """What a played dispute cost: each move's name and gas, and who won."""

    moves: list[tuple[str, int]] = field(default_factory=list)
    claimer_won: bool | None = None
    reason: int | None = None

    @property
    def total_gas(self) -> int:
        return sum(g for _, g in self.moves)

    @property
    def max_gas(self) -> int:
        return max((g for _, g in self.moves), default=0)


class DisputePlayer:
    """One party of disputes on one game: reads a dispute's state and sends the move that
    party owes, from its own account. Everything a move needs is read back from the chain
    (the state, the revealed leaves and chunk), so a player can take over a dispute that
    someone else, or an earlier run, has played so far."""

    def __init__(self, chain: Chain, game_address: str, *, from_block: int = 0) -> None:
        self.chain = chain
        self.from_block = from_block  # where to look for the game's events (e.g. its deployment)
        self.game: Contract = chain.contract("DisputeGame", game_address)

    def dispute(self, claim_id: int) -> tuple[str, int, int, int, int]:
        """(phase, step, level, index, deadline) of the claim's dispute."""
        d = self.game.functions.disputes(claim_id).call()
        return PHASES[d[1]], int(d[3]), int(d[4]), int(d[5]), int(d[2])

    def move(
        self,
        claim_id: int,
        *,
        claimer: ClaimerParty | None = None,
        challenger: ChallengerParty | None = None,
        claimed_output: bytes = b"",
        record: DisputeRecord | None = None,
    ) -> str | None:
        """Sends the move the dispute waits for if it is ``claimer``'s or ``challenger``'s (the
        party this player plays); returns the move's name, or None when it is not ours."""
        fns = self.game.functions
        d = self.game.functions.disputes(claim_id).call()
        phase, s, level, index = PHASES[d[1]], int(d[3]), int(d[4]), int(d[5])
        name, fn = phase, None
        if claimer is not None:
            if phase == "Leaves":
                fn = fns.revealLeaves(claim_id, claimer.leaves)
            elif phase == "Root":
                fn = fns.revealRoot(claim_id, claimer.roots[s])
            elif phase == "Children":
                fn = fns.revealChildren(claim_id, *claimer.children(s, level, index))
            elif phase == "Chunk":
                fn = fns.revealChunk(claim_id, claimer.chunk(s, index))
        if challenger is not None:
            if phase == "Choose":
                leaves = self.revealed_leaves(claim_id)
                choice = challenger.choose(leaves, claimed_output)
                proof = challenger.step_proof(choice.step, leaves)
                if choice.output:
                    name, fn = "ChooseOutput", fns.challengeOutput(claim_id, proof, claimed_output)
                else:
                    fn = fns.chooseStep(claim_id, proof)
            elif phase == "Pick":
                pick = challenger.pick(s, level, index, bytes(d[8]), bytes(d[9]))
                fn = fns.pickChild(claim_id, pick)
            elif phase == "OneStep":
                chunk = bytes(self.last_event(claim_id, "ChunkRevealed")["chunk"])
                j = challenger.element(s, index, chunk)
                leaves = self.revealed_leaves(claim_id)
                fn = fns.resolve(claim_id, challenger.one_step_proof(s, index, j, chunk, leaves))
        if fn is None:
            return None
        receipt = self.chain.transact(fn)
        if record is not None:
            record.moves.append((name, int(receipt["gasUsed"])))
        return name

    def last_event(self, claim_id: int, name: str) -> Any:
        events = getattr(self.game.events, name)().get_logs(
            argument_filters={"claimId": claim_id}, from_block=self.from_block
        )
        if not events:
            raise OneStepError(f"claim {claim_id} has no {name} event")
        return events[-1]["args"]

    def revealed_leaves(self, claim_id: int) -> list[bytes]:
        return [bytes(x) for x in self.last_event(claim_id, "LeavesRevealed")["leaves"]]

    def outcome(self, claim_id: int, record: DisputeRecord) -> None:
        """Fills ``record``'s winner and reason from the DisputeResolved event, if any."""
        events = self.game.events.DisputeResolved().get_logs(
            argument_filters={"claimId": claim_id}, from_block=self.from_block
        )
        if events:  # (log reads trail the head on a pruning RPC: fine for a finished game)
            record.claimer_won = bool(events[-1]["args"]["claimerWon"])
            record.reason = int(events[-1]["args"]["reason"])


class DisputeDriver:
    """Sends the moves of both parties of one claim, each from its own account."""

    def __init__(
        self,
        claimer_chain: Chain,
        challenger_chain: Chain,
        game_address: str,
        *,
        from_block: int = 0,
    ) -> None:
        self.from_block = from_block
        self.claimer_chain = claimer_chain
        self.challenger_chain = challenger_chain
        self.claimer = DisputePlayer(claimer_chain, game_address, from_block=from_block)
        self.challenger = DisputePlayer(challenger_chain, game_address, from_block=from_block)
        self.game: Contract = self.claimer.game
        self.as_challenger: Contract = self.challenger.game

    def open_claim(self, params: tuple[Any, ...], output: bytes) -> tuple[int, TxReceipt]:
        bond = self.game.functions.claimDeposit().call()  # the bond plus the jackpot fee
        receipt = self.claimer_chain.transact(
            self.game.functions.openClaim(params, output), value=bond
        )
        (event,) = self.game.events.ClaimOpened().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["claimId"]), receipt

    def challenge(self, claim_id: int) -> TxReceipt:
        bond = self.game.functions.challengeBond().call()
        return self.challenger_chain.transact(
            self.as_challenger.functions.challenge(claim_id), value=bond
        )

    def phase(self, claim_id: int) -> str:
        phase, _, _ = self.game.functions.turn(claim_id).call()
        return PHASES[phase]

    def play(
        self,
        claim_id: int,
        claimer: ClaimerParty,
        challenger: ChallengerParty,
        claimed_output: bytes,
        *,
        max_moves: int | None = None,
    ) -> DisputeRecord:
        """Plays from the challenge on until the dispute ends (or ``max_moves`` were sent)."""
        record = DisputeRecord()
        while max_moves is None or len(record.moves) < max_moves:
            moved = self.claimer.move(claim_id, claimer=claimer, record=record) or (
                self.challenger.move(
                    claim_id, challenger=challenger, claimed_output=claimed_output, record=record
                )
            )
            if moved is None:
                break
        self.claimer.outcome(claim_id, record)
        return record

    def timeout(self, claim_id: int, record: DisputeRecord | None = None) -> DisputeRecord:
        """Ends the dispute by the waiting party's timeout (sent by the claimer's account)."""
        record = record or DisputeRecord()
        receipt = self.claimer_chain.transact(self.game.functions.timeout(claim_id))
        record.moves.append(("Timeout", int(receipt["gasUsed"])))
        self.claimer.outcome(claim_id, record)
        return record
