"""The node's forced errors (docs/optimistic.md, section 4): its seed chains, which of its
claims they force, their concession and the requester's refund.

Why a file: a forced claim is conceded with the secret its claim recorded, possibly after a
restart, so the secrets must outlive the process; they must never reach the config or the
logs. The file (``forced_errors.secrets_file`` in ``data_dir``, mode 0600) holds each
chain's root (the chain is rebuilt by hashing) and the position of the next secret to
reveal; every write goes to a temporary file that is then renamed over it.

Why "quiet": a claim records the seed active when it is *mined*, not when its output was
decided. Conceding (which moves the head to the revealed secret) or committing a new chain
while one of our claims is decided but not yet mined could make a deliberately wrong claim
record a seed that does not force it: a claim that could not be conceded and would lose its
dispute. So both wait until no optimistic job sits between ``computed`` and ``claimed``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from eth_utils.crypto import keccak

from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.chain.coordinator_errors import WrongStatusError
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.errors import ConfigError, VerinferError
from verinfer.node.jobs import JobLog, JobState, Phase
from verinfer.node.rpc import with_retries
from verinfer.optimistic.forced import concede, is_forced, new_secret, preimage, seed_chain

__all__ = ["ForcedErrors", "wrong_output"]

log = structlog.get_logger(__name__)

ZERO = b"\0" * 32
KEEP_CHAINS = 3  # older chains stay for claims opened under them (a roll is seedDelay long)
MAX_MARGIN_S = 300


def wrong_output(output: bytes) -> bytes | None:
    """``output`` with its first value changed by one: a claim any re-executing watchtower
    catches by the output binding (the trace root stays the honest one). None when the
    output has no value to change."""
    tensors = [(values.astype("int64"), scale) for values, scale in decode_tensors(output)]
    for values, _ in tensors:
        if values.size:
            values[0] += 1 if values[0] < 2**31 - 1 else -1
            return encode_tensors(tensors)
    return None


@dataclass
class _SeedChain:
    root: bytes
    length: int
    committed: bool = False
    hashes: list[bytes] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.hashes = seed_chain(self.root, self.length)


class ForcedErrors:
    """One node's part in forced errors; ``poll`` on every tick after the watchtower.

    ``inject=False`` retires the seeds (``forced_errors.enabled`` turned off while the secrets
    file exists): no new chain and no wrong claim, but claims the seed forces are still
    conceded, so none of them is ever delivered."""

    def __init__(
        self,
        coordinator: CoordinatorClient,
        jobs: JobLog,
        path: Path,
        *,
        chain_length: int,
        inject: bool = True,
    ) -> None:
        self.coordinator = coordinator
        self.chain = coordinator.chain
        self.me = self.chain.address
        address = with_retries(coordinator.dispute_game, "dispute game")
        self.game: Any = self.chain.contract("DisputeGame", address)
        self.jobs = jobs
        self.path = Path(path)
        self.chain_length = chain_length
        self.inject = inject
        self.rate = self._read("forcedRatePpm")
        self.window = self._read("window")
        self.seed_delay = self._read("seedDelay")
        self.chains: list[_SeedChain] = []
        self.next = 1  # index in the current chain of the next secret to reveal
        self.active_at = 0
        self.conceded: set[int] = set()  # request ids whose claims this run conceded
        self.refunds_due: set[int] = set()
        self._stale = True  # the chain's seed must be read (and maybe committed) again
        self._load()

    @property
    def margin(self) -> int:
        """Seconds before a forced claim's window ends at which it is conceded."""
        return min(self.window // 4, MAX_MARGIN_S)

    # ---- decisions ---------------------------------------------------------------------

    def secret_for(self, seed_hash: bytes) -> bytes | None:
        """The secret of a claim that recorded ``seed_hash``: its preimage in our chains."""
        found = self._find(bytes(seed_hash))
        return preimage(found[0].hashes, bytes(seed_hash)) if found is not None else None

    def forced_secret(self, seed_hash: bytes, input_hash: bytes) -> bytes | None:
        """The secret that lets us concede a claim (recorded ``seed_hash``, on ``input_hash``),
        or None when it is not ours or not forced."""
        if self.rate == 0 or bytes(seed_hash) == ZERO:
            return None
        secret = self.secret_for(seed_hash)
        if secret is not None and is_forced(secret, bytes(input_hash), self.rate):
            return secret
        return None

    def decide(self, request_input: bytes) -> bool:
        """Whether a claim on ``request_input`` sent now must be wrong on purpose."""
        if not self.inject or self.rate == 0:
            return False
        fn = self.game.functions.activeSeed(self.me)
        head = bytes(with_retries(lambda: self.chain.call(fn), "active seed"))
        return self.forced_secret(head, keccak(request_input)) is not None

    def quiet(self) -> bool:
        """No claim of ours is decided but not yet mined (see the module's docstring)."""
        for job in self.jobs.in_state(JobState.COMPUTED, JobState.SUBMITTED):
            if job.mode == InferenceMode.OPTIMISTIC and (
                job.state == JobState.COMPUTED or job.phase == Phase.CLAIM
            ):
                return False
        return True

    # ---- actions -----------------------------------------------------------------------

    def concede(self, claim_id: int, request_id: int, secret: bytes) -> None:
        """Reveal ``secret`` for our forced claim; the requester's refund follows in ``poll``."""
        concede(self.chain, self.game.address, claim_id, secret)
        self.conceded.add(request_id)
        self.refunds_due.add(request_id)
        self.jobs.bump("forced_conceded")
        log.info("forced.conceded", claim_id=claim_id, request_id=request_id)
        self._stale = True  # the head moved to the revealed secret
        self.sync()

    def settled(self, request_id: int) -> None:
        """Our claim on ``request_id`` is ``Forced``: make sure the requester is refunded (a
        refund already made is skipped) and let the job close without waiting for its window."""
        if request_id not in self.conceded:
            self.conceded.add(request_id)
            self.refunds_due.add(request_id)

    def poll(self) -> bool:
        """Commit a chain when one is due, send due refunds; True when a tx was sent."""
        acted = self.sync() if self._stale else False
        for request_id in sorted(self.refunds_due):
            acted = self._refund(request_id) or acted
        return acted

    def sync(self) -> bool:
        """Reconcile with the game's seed for this node; commit a fresh chain when ours is
        missing, not committed or used up (and the node is quiet). True when it committed."""
        fn = self.game.functions.seeds(self.me)
        head_raw, active_at = with_retries(lambda: self.chain.call(fn), "seed")
        head, current = bytes(head_raw), self.chains[-1] if self.chains else None
        found = self._find(head)
        if current is not None and found is not None and found[0] is current:
            if found[1] < current.length:
                self._at(found[1] + 1, int(active_at))
                self._stale = False
                return False
        if not self.inject or self.rate == 0:  # retiring, or the game forces nothing
            self._stale = False
            return False
        if not self.quiet():
            return False  # look again next tick
        if current is None or current.committed:
            current = self._new_chain()
        # Not retried blindly: a second commit would push the activation further away.
        receipt = self.chain.transact(self.game.functions.commitSeed(current.hashes[0]))
        current.committed = True
        self.next = 1
        self._save()
        self._stale = False
        self.active_at = int(with_retries(lambda: self.chain.call(fn), "seed")[1])
        log.info(
            "forced.seed_committed", secrets=current.length, active_at=self.active_at,
            seed_delay=self.seed_delay, rate_ppm=self.rate, block=int(receipt["blockNumber"]),
        )  # fmt: skip
        return True

    def _refund(self, request_id: int) -> bool:
        try:
            self.coordinator.refund(request_id)
        except WrongStatusError:
            self.refunds_due.discard(request_id)  # refunded already (by anyone)
            return False
        except VerinferError as exc:
            log.warning("forced.refund_failed", request_id=request_id, error=str(exc)[:200])
            return False
        self.refunds_due.discard(request_id)
        log.info("forced.refunded", request_id=request_id)
        return True

    # ---- the secrets file --------------------------------------------------------------

    def _find(self, seed_hash: bytes) -> tuple[_SeedChain, int] | None:
        if seed_hash == ZERO:
            return None
        for chain in reversed(self.chains):
            if seed_hash in chain.hashes:
                return chain, chain.hashes.index(seed_hash)
        return None

    def _at(self, position: int, active_at: int) -> None:
        current = self.chains[-1]
        self.active_at = active_at
        if position != self.next or not current.committed:
            current.committed = True
            self.next = position
            self._save()

    def _new_chain(self) -> _SeedChain:
        chain = _SeedChain(new_secret(), self.chain_length)
        self.chains = [*self.chains, chain][-KEEP_CHAINS:]
        self.next = 1
        self._save()  # before the commit: a crash never loses a committed chain's secrets
        return chain

    def _load(self) -> None:
        if not self.path.exists():
            return
        if self.path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{self.path}: the forced-error secrets file is readable by others",
                hint=f"chmod 600 {self.path}",
            )
        try:
            data = json.loads(self.path.read_text())
            self.chains = [
                _SeedChain(bytes.fromhex(c["root"]), int(c["length"]), bool(c["committed"]))
                for c in data["chains"]
            ]
            self.next = int(data["next"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: not a forced-error secrets file: {exc}") from exc
        if any(len(c.root) != 32 for c in self.chains):
            raise ConfigError(f"{self.path}: a chain's root is not 32 bytes")

    def _save(self) -> None:
        data = {
            "version": 1,
            "next": self.next,
            "chains": [
                {"root": c.root.hex(), "length": c.length, "committed": c.committed}
                for c in self.chains
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _read(self, name: str) -> int:
        fn = getattr(self.game.functions, name)()
        return int(with_retries(lambda: self.chain.call(fn), name))
