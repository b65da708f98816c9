"""Forced errors: the claimer's side of the verifier's-dilemma defence (docs/optimistic.md,
section 4).

A claimer draws a root (:func:`new_secret`), builds a hash chain from it
(:func:`seed_chain`) and commits the chain's head with :func:`commit_seed`; ``seedDelay``
seconds later the seed is active and every claim it opens records the current head. The
claim's secret is the head's preimage (``chain[k + 1]`` for head ``chain[k]``). When
:func:`is_forced` holds for the claim's input hash, the claim must be wrong on purpose; the
claimer then reveals the secret with :func:`concede` before its window ends (at once if
challenged: the challenger wins the jackpot; unchallenged: the claim is void and never
delivered). The revealed secret becomes the head, so the next secret is the chain's next
element, committed long before any input it decides.

The rule is the contract's ``isForced``:
``uint256(keccak256(abi.encode(secret, inputHash))) % 1_000_000 < forcedRatePpm``.
"""

from __future__ import annotations

import secrets

from eth_utils.crypto import keccak
from web3.types import TxReceipt

from verinfer.chain.client import Chain
from verinfer.errors import ConfigError
from verinfer.optimistic import errors as _errors  # noqa: F401  (registers the game's errors)

__all__ = [
    "PPM",
    "commit_seed",
    "concede",
    "is_forced",
    "new_secret",
    "preimage",
    "seed_chain",
    "seed_hash",
]

PPM = 1_000_000


def _word(value: bytes, what: str) -> bytes:
    if len(value) != 32:
        raise ConfigError(f"a {what} is 32 bytes, got {len(value)}")
    return bytes(value)


def new_secret() -> bytes:
    """A fresh 32-byte secret from the OS's random source."""
    return secrets.token_bytes(32)


def seed_hash(secret: bytes) -> bytes:
    """``keccak256(abi.encode(secret))``: what ``commitSeed`` takes and a claim records."""
    return keccak(_word(secret, "secret"))


def seed_chain(root: bytes, length: int) -> list[bytes]:
    """The hash chain of ``root``, head first: ``chain[0]`` is what :func:`commit_seed` commits
    and ``seed_hash(chain[k + 1]) == chain[k]``; ``chain[length]`` is ``root``. Secrets are
    revealed in order ``chain[1]``, ``chain[2]``, ...: ``length`` forced errors in all."""
    if length < 1:
        raise ConfigError(f"a seed chain has at least one secret, got length {length}")
    chain = [_word(root, "root")]
    for _ in range(length):
        chain.append(seed_hash(chain[-1]))
    return chain[::-1]


def preimage(chain: list[bytes], head: bytes) -> bytes | None:
    """The secret of a claim that recorded ``head``, if ``head`` is in ``chain`` (a
    :func:`seed_chain`) and not its root: ``chain[k + 1]`` for ``head == chain[k]``."""
    try:
        k = chain.index(bytes(head))
    except ValueError:
        return None
    return chain[k + 1] if k + 1 < len(chain) else None


def is_forced(secret: bytes, input_hash: bytes, rate_ppm: int) -> bool:
    """Whether a claim on ``input_hash`` under ``secret`` is a forced error at ``rate_ppm``
    (the game's ``forcedRatePpm``): the contract's ``isForced``."""
    if not 0 <= rate_ppm <= PPM:
        raise ConfigError(f"forced rate {rate_ppm} ppm is not in 0..{PPM}")
    word = keccak(_word(secret, "secret") + _word(input_hash, "input hash"))
    return int.from_bytes(word, "big") % PPM < rate_ppm


def commit_seed(chain: Chain, game_address: str, head: bytes) -> TxReceipt:
    """Commit ``head`` (``seed_chain(root, n)[0]``, or ``seed_hash(secret)`` for a single
    secret) as ``chain``'s account's seed; it is active ``seedDelay`` seconds after this
    transaction, and the previous seed stops at once."""
    game = chain.contract("DisputeGame", game_address)
    return chain.transact(game.functions.commitSeed(_word(head, "seed head")))


def concede(chain: Chain, game_address: str, claim_id: int, secret: bytes) -> TxReceipt:
    """Reveal ``secret`` to void claim ``claim_id`` as a forced error (the claimer's account
    only). Refusals raise :class:`~verinfer.optimistic.errors.DisputeRevertError`
    (``VerinferWrongSecret``, ``VerinferNotForced``, ``VerinferNotClaimer``,
    ``VerinferClaimNotOpen``)."""
    game = chain.contract("DisputeGame", game_address)
    return chain.transact(game.functions.concede(claim_id, _word(secret, "secret")))
