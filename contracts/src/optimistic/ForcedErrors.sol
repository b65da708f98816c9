// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ForcedErrors
/// @notice The seeds and jackpots of forced errors (docs/optimistic.md, section 4), which keep
/// watching worth it when every claimer is honest: a claimer commits the head of a hash chain
/// of secrets (`commitSeed`); at a small rate `forcedRatePpm` of inputs, decided by the secret,
/// its claim must be wrong on purpose; a challenger who disputes such a claim wins up to
/// `jackpotPayout` from that claimer's share of the jackpot pool (fed by `jackpotFee` per
/// claim). The claims and the concession itself are the DisputeGame's.
abstract contract ForcedErrors {
    /// @notice A claimer's forced-error seed: the head of a hash chain, `hash =
    /// keccak256(abi.encode(secret))`, active from `activeAt` on (a commit waits `seedDelay`, so
    /// the whole chain predates every input it decides). Conceding reveals `secret`, which
    /// becomes the head: the next secret is its preimage, fixed since the commit.
    struct Seed {
        bytes32 hash;
        uint64 activeAt;
    }

    uint256 internal constant PPM = 1_000_000;

    /// @notice Rate of forced errors, in parts per million of a seeded claimer's claims.
    uint256 public immutable forcedRatePpm;
    /// @notice Wei each claim pays into the jackpot pool, on top of the claim bond.
    uint256 public immutable jackpotFee;
    /// @notice Wei the challenger of a conceded forced error receives (at most the claimer's
    /// share of the pool).
    uint256 public immutable jackpotPayout;
    /// @notice Seconds from `commitSeed` until the seed is active: longer than any request may
    /// wait for its claim (the coordinator's deadline horizon), so no input a seed decides was
    /// known when the seed was chosen.
    uint256 public immutable seedDelay;

    /// @notice Wei held for forced-error jackpots (the sum of every claimer's `jackpotOf`).
    uint256 public jackpotPool;
    /// @notice The part of the pool that forced errors of `claimer` can pay: the jackpot fees of
    /// its claims and what was funded for it, minus what they paid. Per claimer, so a claimer
    /// that makes its own claims forced (by choosing their inputs as its own requester) and
    /// challenges them itself only wins back what it paid in, never others' fees.
    mapping(address => uint256) public jackpotOf;
    /// @notice Each claimer's forced-error seed.
    mapping(address => Seed) public seeds;

    /// @notice `claimer` committed a seed (hash-chain head), active from `activeAt` (its
    /// previous seed stopped).
    event SeedCommitted(address indexed claimer, bytes32 seedHash, uint256 activeAt);
    /// @notice `from` added `amount` wei to `claimer`'s share of the jackpot pool.
    event JackpotFunded(address indexed from, address indexed claimer, uint256 amount);

    /// @notice A constructor parameter is zero or out of range.
    error VerinferBadGameParams();
    /// @notice A seed hash must not be zero.
    error VerinferBadSeed();

    /// @param forcedRatePpm_ forced errors per million seeded claims (<= 1,000,000; 0: none)
    /// @param jackpotFee_ wei each claim adds to the jackpot pool (may be 0)
    /// @param jackpotPayout_ wei paid to the challenger of a conceded forced error
    /// @param seedDelay_ seconds from a seed's commit until it is active (> 0)
    constructor(
        uint256 forcedRatePpm_,
        uint256 jackpotFee_,
        uint256 jackpotPayout_,
        uint256 seedDelay_
    ) {
        if (seedDelay_ == 0 || forcedRatePpm_ > PPM) revert VerinferBadGameParams();
        forcedRatePpm = forcedRatePpm_;
        jackpotFee = jackpotFee_;
        jackpotPayout = jackpotPayout_;
        seedDelay = seedDelay_;
    }

    /// @notice Commits the caller's forced-error seed: the head `x_n` of a hash chain
    /// `x_{i+1} = keccak256(abi.encode(x_i))` from a fresh random `x_0`. It becomes active
    /// `seedDelay` seconds from now (so no secret of the chain was chosen after an input it
    /// decides); the caller's previous seed stops at once. Claims record the head active when
    /// they open; their secret is its preimage.
    /// @param seedHash the chain's head (non-zero)
    function commitSeed(bytes32 seedHash) external {
        if (seedHash == bytes32(0)) revert VerinferBadSeed();
        uint256 activeAt = block.timestamp + seedDelay;
        seeds[msg.sender] = Seed({hash: seedHash, activeAt: uint64(activeAt)});
        emit SeedCommitted(msg.sender, seedHash, activeAt);
    }

    /// @notice Adds `msg.value` wei to the jackpot pool, for forced errors of `claimer` (e.g. a
    /// consumer that relies on that node's claims pays for their watching).
    /// @param claimer the claimer whose forced errors the funds pay
    function fundJackpot(address claimer) external payable {
        jackpotOf[claimer] += msg.value;
        jackpotPool += msg.value;
        emit JackpotFunded(msg.sender, claimer, msg.value);
    }

    /// @notice Whether `secret` makes a claim on input `inputHash` a forced error:
    /// `uint256(keccak256(abi.encode(secret, inputHash))) % 1,000,000 < forcedRatePpm`.
    /// @param secret a claimer's secret
    /// @param inputHash keccak256 of the request's inline input
    /// @return forced whether the claim must be wrong
    function isForced(bytes32 secret, bytes32 inputHash) public view returns (bool forced) {
        return uint256(keccak256(abi.encode(secret, inputHash))) % PPM < forcedRatePpm;
    }

    /// @notice The seed hash a claim by `claimer` would record now (zero if none is active).
    /// @param claimer the claimer
    /// @return seedHash its active seed hash, or zero
    function activeSeed(address claimer) public view returns (bytes32 seedHash) {
        Seed memory s = seeds[claimer];
        return block.timestamp >= s.activeAt ? s.hash : bytes32(0);
    }

    /// @dev A claim's jackpot fee, into its claimer's share.
    function _collectJackpotFee(address claimer) internal {
        if (jackpotFee != 0) {
            jackpotOf[claimer] += jackpotFee;
            jackpotPool += jackpotFee;
        }
    }

    /// @dev Takes the jackpot of a conceded, challenged forced error from `claimer`'s share.
    function _takeJackpot(address claimer) internal returns (uint256 paid) {
        uint256 share = jackpotOf[claimer];
        paid = jackpotPayout < share ? jackpotPayout : share;
        jackpotOf[claimer] = share - paid;
        jackpotPool -= paid;
    }

    /// @dev The revealed `secret` of a claim that recorded `seedHash` becomes the claimer's
    /// head when `seedHash` is the current one (the chain's next secret is its preimage).
    function _advanceSeed(address claimer, bytes32 seedHash, bytes32 secret) internal {
        if (seeds[claimer].hash == seedHash) seeds[claimer].hash = secret;
    }
}
