// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IInferenceCoordinator} from "./interfaces/IInferenceCoordinator.sol";
import {IDisputeGame} from "./interfaces/IDisputeGame.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IVerinferConsumer} from "./interfaces/IVerinferConsumer.sol";

/// @notice The interface of an EZKL dedicated verifier (Halo2/KZG on BN254). Declared `view` so
/// the coordinator calls it with STATICCALL: a verifier cannot change state or re-enter.
interface IZkVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool);
}

/// @title InferenceCoordinator
/// @notice Escrowed inference requests in modes none, consensus, optimistic and zk, answered by
/// staked nodes, delivered by callback, paid by pull payments.
/// @dev The fee split, exactly (all divisions round down):
///   P = model price, F = node fee (the highest quote among all nodes eligible for the model and
///   mode at request time, whichever are picked: `quote` prices exactly that), k = redundancy,
///   B = P + k*F, T = B * protocolFeeBps / 10,000, escrow E = B + T.
///   On delivery: royalty R = P * royaltyBps / 10,000 (the model's bps at request time) to the
///   model token's owner; T to the treasury; each agreeing node (modes none and zk: the answering node)
///   gets F + floor((P - R) / a), a = number of agreeing nodes, and the first agreeing node in
///   assignment order also gets the division remainder; (k - a) * F goes back to the requester.
///   Without delivery (refund, or consensus without majority) the requester gets E back.
///   Slashed stake (no-shows, dissenters, optimistic claimers that lost a dispute) is credited to
///   the requester. Optimistic mode pays exactly as mode none, at `finalizeOptimistic`.
/// Node assignment uses keccak256(prevrandao, requestId, requester) as the seed: a block proposer
/// can bias it by withholding a block (one bit of influence per forfeited block). That is
/// acceptable for assignment only, because after the assignment window any eligible node may
/// answer (mode none), and consensus needs a majority of independently staked nodes.
contract InferenceCoordinator is IInferenceCoordinator, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint8 public constant MODE_NONE = 1;
    uint8 public constant MODE_CONSENSUS = 2;
    uint8 public constant MODE_OPTIMISTIC = 4;
    uint8 public constant MODE_ZK = 8;
    /// @notice A flag of `request`'s mode byte, optimistic requests only (`MODE_OPTIMISTIC |
    /// EARLY_DELIVERY`): the consumer also gets the claimed output at the claim, provisionally
    /// (`onProvisionalInference`), and `onCorrection` if the claim then loses.
    uint8 public constant EARLY_DELIVERY = 0x10;
    /// @dev DisputeGame.Status values read by the coordinator.
    uint8 private constant CLAIM_OPEN = 1;
    uint8 private constant CLAIM_FINALIZED = 3;
    uint8 private constant CLAIM_CLAIMER_WON = 4;
    uint8 private constant CLAIM_CHALLENGER_WON = 5;
    uint8 private constant CLAIM_FORCED = 6;
    /// @notice The BN254 scalar field order: zk public instances are elements of this field.
    uint256 public constant FIELD_MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint8 public constant MIN_CONSENSUS_REDUNDANCY = 3;
    uint8 public constant MAX_REDUNDANCY = 7;
    uint256 public constant MAX_INPUT_BYTES = 16 * 1024;
    /// @dev TensorCodec's inline kind byte.
    uint8 private constant INLINE = 0x01;
    uint32 public constant MAX_CALLBACK_GAS = 2_000_000;
    /// @notice Gas kept back beyond the callback's for the work after it (events, bookkeeping).
    uint256 public constant CALLBACK_GAS_MARGIN = 30_000;
    /// @notice At most this many bytes of a failed callback's revert data are kept.
    uint256 public constant MAX_REASON_BYTES = 256;
    uint16 public constant MAX_PROTOCOL_FEE_BPS = 1_000;
    uint256 private constant BPS = 10_000;
    uint64 public constant MAX_DEADLINE_HORIZON = 30 days;

    /// @dev A request is one storage slot, written once when it is opened and kept for good
    /// (only `status` changes later), so `getRequest` answers for settled requests too:
    ///   Job: assigned node 0 | profile id | assignedUntil | deadline - assignedUntil | status
    /// What requests of one consumer share (requester, model, mode, callback gas, and the fee
    /// terms fixed at request time: node fee, price, royalty, protocol fee) is a Profile (two
    /// slots), stored once under an id the first time it is seen: a request then costs one read
    /// there instead of more new slots. None of a profile depends on which nodes are picked (the
    /// node fee is the highest quote among all eligible nodes, not among the picked ones), so a
    /// request's gas does not either (an `eth_estimateGas` stays valid whichever node the block's
    /// randomness picks).
    /// A consensus request adds its Panel (assigned node 1, k, reveal deadline and the ballot,
    /// one slot), the assigned nodes 2..k-1 (one slot each) and, while its ballot is open, the
    /// commitments.
    /// The input is not stored, nor is its hash: the bytes travel in InferenceRequested, where
    /// anyone can hash them, and neither mode none nor consensus checks them on-chain. Mode zk
    /// does (the proof's public instances are the input), so it stores keccak256(input) in
    /// `_inputHashes` until the request settles.
    struct Job {
        address assigned0;
        uint32 profile; // id in _profiles
        uint32 assignedUntil; // a timestamp: fits 32 bits until 2106 (checked)
        uint24 grace; // deadline - assignedUntil: at most MAX_DEADLINE_HORIZON < 2^24 seconds
        Status status;
    }

    /// @dev Two slots: requester | node fee | mode, then price | fee bps | royalty bps | modelId |
    /// callback gas (192 bits). See Job.
    struct Profile {
        address requester;
        uint88 nodeFee; // F: the highest quote among the eligible nodes at request time
        uint8 mode; // as requested: the mode, plus EARLY_DELIVERY if set
        uint96 price; // P, the model's price at request time
        uint16 feeBps; // the protocol fee at request time
        uint16 royaltyBps; // the model's royalty at request time
        uint40 modelId;
        uint24 callbackGasLimit; // <= MAX_CALLBACK_GAS < 2^24
    }

    /// @dev Consensus only, one slot: assigned node 1, the redundancy k, the reveal deadline and
    /// the ballot (see Ballot). k != 0 marks a consensus request.
    struct Panel {
        address assigned1;
        uint40 revealDeadline;
        uint8 k;
        uint8 committed;
        uint8 revealed;
        uint8 majority;
        bool closed;
    }

    /// @notice The configuration as `config` returns it.
    struct Config {
        address treasury;
        uint16 protocolFeeBps;
        uint24 assignmentWindow;
        uint24 revealWindow;
        uint24 minDeadline;
    }

    /// @dev What a request reads, with the request counter it increments: one slot, so opening
    /// a request reads and writes one global slot. The treasury is read at delivery only.
    struct Params {
        uint64 lastId;
        uint16 protocolFeeBps;
        uint24 assignmentWindow;
        uint24 revealWindow;
        uint24 minDeadline;
    }

    struct Slashing {
        uint96 noShow;
        uint96 dissent;
    }

    /// @dev A request's parameters, in memory (keeps the stack shallow).
    struct Order {
        uint256 modelId;
        uint8 mode;
        uint8 k;
        uint64 deadline;
        uint32 callbackGasLimit;
        uint256 maxFee;
        uint40 assignedUntil; // set by _windows
        uint40 revealDeadline; // set by _windows (consensus only)
        uint8 requested; // the mode byte as requested: `mode` plus the EARLY_DELIVERY flag
    }

    /// @dev What a settlement needs, in memory (keeps the stack shallow).
    struct Settlement {
        uint256 requestId;
        address requester;
        uint256 modelId;
        uint256 k;
        uint256 price;
        uint256 nodeFee;
        uint256 protocolFee;
        uint256 royaltyBps;
        uint256 toRequester;
    }

    IModelRegistry private immutable _models;
    INodeRegistry private immutable _nodes;
    IERC20 private immutable _token;

    Params private _params;
    address private _treasury;
    Slashing private _slashing;
    uint32 private _profileCount;
    mapping(uint256 requestId => Job) private _jobs;
    /// @dev Profile ids start at 1; `_profileIds` maps a profile's hash to its id (0 = none yet).
    mapping(uint32 id => Profile) private _profiles;
    mapping(bytes32 profileHash => uint32 id) private _profileIds;
    mapping(uint256 requestId => Panel) private _panels;
    /// @dev Consensus: assigned nodes 2..k-1 (node 0 lives in the Job, node 1 in the Panel).
    mapping(uint256 requestId => mapping(uint256 index => address)) private _moreAssigned;
    /// @dev Consensus: the commitment of node i, replaced by keccak256(output) when it reveals;
    /// deleted when the ballot closes (gas refund).
    mapping(uint256 requestId => bytes32[MAX_REDUNDANCY]) private _hashes;
    mapping(address account => uint256) private _balances;
    /// @dev Zk and optimistic modes: keccak256 of the request's input, deleted at settlement.
    mapping(uint256 requestId => bytes32) private _inputHashes;
    /// @notice Optimistic mode's dispute game (set once by the owner; zero: mode 4 unavailable).
    IDisputeGame public disputeGame;
    /// @notice Optimistic: the DisputeGame claim of a claimed request (0 before the claim).
    mapping(uint256 requestId => uint256 claimId) public claimOf;

    /// @param modelRegistry The ModelRegistry.
    /// @param nodeRegistry The NodeRegistry (this contract must be authorized there to slash).
    /// @param token The payment token (the NodeRegistry's staking token).
    /// @param treasury Receives the protocol fee.
    /// @param protocolFeeBps The protocol fee on top of price and node fees (at most 1,000).
    /// @param windows Seconds: [assignment window, reveal window, minimum deadline distance].
    /// @param slashes Token units: [no-show slash, dissent slash].
    constructor(
        address modelRegistry,
        address nodeRegistry,
        address token,
        address treasury,
        uint16 protocolFeeBps,
        uint24[3] memory windows,
        uint96[2] memory slashes
    ) Ownable(msg.sender) {
        if (modelRegistry == address(0)) revert VerinferInvalidConfig("modelRegistry");
        if (nodeRegistry == address(0)) revert VerinferInvalidConfig("nodeRegistry");
        if (token != INodeRegistry(nodeRegistry).token()) revert VerinferInvalidConfig("token");
        _models = IModelRegistry(modelRegistry);
        _nodes = INodeRegistry(nodeRegistry);
        _token = IERC20(token);
        _setProtocolFee(treasury, protocolFeeBps);
        _setTiming(windows[0], windows[1], windows[2]);
        _setSlashAmounts(slashes[0], slashes[1]);
    }

    // ---------------------------------------------------------------- requests

    /// @inheritdoc IInferenceCoordinator
    function request(
        uint256 modelId,
        bytes calldata input,
        uint8 mode,
        uint256 maxFee,
        uint64 deadline,
        uint32 callbackGasLimit,
        uint8 redundancy
    ) external nonReentrant returns (uint256 requestId) {
        if (input.length == 0) revert VerinferEmptyInput();
        if (input.length > MAX_INPUT_BYTES) revert VerinferInputTooLarge(input.length, MAX_INPUT_BYTES);
        if (callbackGasLimit > MAX_CALLBACK_GAS) revert VerinferCallbackGasTooHigh(callbackGasLimit, MAX_CALLBACK_GAS);
        Order memory order = Order(
            modelId, _checkMode(mode, redundancy), redundancy, deadline, callbackGasLimit, maxFee, 0, 0, mode
        );
        Params memory params = _params;
        requestId = ++params.lastId;
        _params.lastId = params.lastId;
        if (order.mode == MODE_ZK || order.mode == MODE_OPTIMISTIC) {
            // Zk: the proof's public instances are the input values. Optimistic: a dispute's
            // one-step proof reads the input. Both need it inline and its hash on-chain.
            uint8 kind = uint8(input[0]);
            if (kind != INLINE) revert VerinferZkInputNotInline(kind);
            _inputHashes[requestId] = keccak256(input);
        }
        uint256 fee = _open(requestId, order, params, input);
        _token.safeTransferFrom(msg.sender, address(this), fee);
    }

    /// @inheritdoc IInferenceCoordinator
    function quote(uint256 modelId, uint8 mode, uint8 redundancy) external view returns (uint256 fee) {
        mode = _checkMode(mode, redundancy); // early delivery costs nothing extra
        (uint256 price,) = _servableTerms(modelId, mode);
        (uint256 nodeFee, uint256 eligible) = _nodes.maxQuote(modelId, mode);
        if (eligible < redundancy) revert VerinferNoEligibleNode(modelId, mode);
        (fee,) = _fee(price, nodeFee, redundancy, _params.protocolFeeBps);
    }

    // ---------------------------------------------------------------- mode none

    /// @inheritdoc IInferenceCoordinator
    /// @dev Before `assignedUntil` only the assigned node may answer; after it any eligible node
    /// may, and the assigned node is slashed the no-show amount (to the requester). Needs enough
    /// gas for the callback: gasleft() >= callbackGasLimit * 64 / 63 + CALLBACK_GAS_MARGIN.
    function fulfil(uint256 requestId, bytes calldata output) external nonReentrant {
        (Job storage job, Job memory r, Profile memory profile) = _loadSingle(requestId, MODE_NONE);
        bool late = _checkAnswer(requestId, r, profile.modelId, MODE_NONE);
        _settleSingle(requestId, job, r, profile, msg.sender, late, output);
    }

    // ---------------------------------------------------------------- mode zk

    /// @inheritdoc IInferenceCoordinator
    /// @dev The same rules as `fulfil` (assigned node first, any eligible zk node after
    /// `assignedUntil`, which slashes the assigned node the no-show amount), plus the proof.
    /// The public instances are built here from `input` (checked against the request's hash) and
    /// `output`, so the verifier checks exactly what is delivered. An invalid proof reverts with
    /// VerinferInvalidProof instead of slashing: the proof is checked atomically in this
    /// transaction, so nothing was claimed and there is nothing to dispute; the node may retry
    /// before the deadline, and a node that never delivers is slashed by the deadline path
    /// (`refund`), as in mode none. The verifier is called with STATICCALL.
    function fulfilZk(uint256 requestId, bytes calldata input, bytes calldata output, bytes calldata proof)
        external
        nonReentrant
    {
        (Job storage job, Job memory r, Profile memory profile) = _loadSingle(requestId, MODE_ZK);
        bool late = _checkAnswer(requestId, r, profile.modelId, MODE_ZK);
        if (keccak256(input) != _inputHashes[requestId]) revert VerinferInputMismatch(requestId);
        _verifyZk(requestId, profile.modelId, input, output, proof);
        delete _inputHashes[requestId];
        _settleSingle(requestId, job, r, profile, msg.sender, late, output);
    }

    // ---------------------------------------------------------------- mode optimistic

    /// @inheritdoc IInferenceCoordinator
    /// @dev Only the assigned node, before the deadline (no late answers by other nodes: the
    /// claimer's stake is what a lost dispute slashes). The game is the owner-set DisputeGame.
    /// Early delivery: then calls the requester's `onProvisionalInference` (after every effect,
    /// with the callback rules of `_deliver`: the claim needs gas for it, a failure emits
    /// CallbackFailed and does not undo the claim). Nothing is paid before finalization.
    function claim(uint256 requestId, bytes calldata output, bytes32 traceRoot)
        external
        payable
        nonReentrant
        returns (uint256 claimId)
    {
        (Job storage job, Job memory r, Profile memory profile) = _loadSingle(requestId, MODE_OPTIMISTIC);
        if (r.status != Status.Pending) revert VerinferWrongStatus(requestId, r.status);
        if (block.timestamp > _deadline(r)) revert VerinferDeadlinePassed(requestId);
        if (msg.sender != r.assigned0) revert VerinferNotAssigned(requestId, msg.sender);
        job.status = Status.Claimed;
        claimId = _openClaim(requestId, profile.modelId, output, traceRoot);
        claimOf[requestId] = claimId;
        emit Claimed(requestId, claimId, msg.sender);
        if (profile.mode & EARLY_DELIVERY != 0) {
            _callback(
                requestId,
                profile.requester,
                profile.callbackGasLimit,
                abi.encodeCall(IVerinferConsumer.onProvisionalInference, (requestId, output))
            );
        }
    }

    /// @inheritdoc IInferenceCoordinator
    /// @dev The game is called before this contract's effects: it is the owner-set DisputeGame
    /// (trusted code) and every entry point here is nonReentrant.
    function finalizeOptimistic(uint256 requestId, bytes calldata output) external nonReentrant {
        (Job storage job, Job memory r, Profile memory profile) = _loadSingle(requestId, MODE_OPTIMISTIC);
        if (r.status != Status.Claimed) revert VerinferWrongStatus(requestId, r.status);
        uint256 claimId = claimOf[requestId];
        (uint8 status, bytes32 outputHash) = _claimState(claimId);
        if (keccak256(output) != outputHash) revert VerinferOutputMismatch(requestId);
        if (status == CLAIM_OPEN) {
            disputeGame.finalize(claimId); // reverts VerinferChallengeWindowOpen before W
        } else if (status != CLAIM_FINALIZED && status != CLAIM_CLAIMER_WON) {
            revert VerinferClaimNotDeliverable(requestId, status);
        }
        delete _inputHashes[requestId];
        _settleSingle(requestId, job, r, profile, r.assigned0, false, output);
    }

    // ---------------------------------------------------------------- mode consensus

    /// @inheritdoc IInferenceCoordinator
    /// @dev Assigned nodes only, before `assignedUntil`. Reveals open when all k committed.
    function commit(uint256 requestId, bytes32 commitment) external nonReentrant {
        (Job storage job, Job memory r, Panel memory panel) = _loadConsensus(requestId);
        if (r.status != Status.Pending) revert VerinferWrongStatus(requestId, r.status);
        if (block.timestamp >= r.assignedUntil) revert VerinferWindowClosed(requestId);
        uint256 index = _indexOf(requestId, r.assigned0, panel.assigned1, panel.k, msg.sender);
        uint8 bit = uint8(1 << index);
        if (panel.committed & bit != 0) revert VerinferAlreadyCommitted(requestId, msg.sender);
        uint8 committed = panel.committed | bit;
        _panels[requestId].committed = committed;
        _hashes[requestId][index] = commitment;
        if (committed == (1 << panel.k) - 1) job.status = Status.Revealing;
        emit Committed(requestId, msg.sender);
    }

    /// @inheritdoc IInferenceCoordinator
    /// @dev Reveals open once all k committed, or after `assignedUntil` if a strict majority
    /// committed; they close at `revealDeadline`. Late commits are impossible once reveals are
    /// public, so nobody can copy a revealed output.
    function reveal(uint256 requestId, bytes calldata output, bytes32 salt) external nonReentrant {
        (Job storage job, Job memory r, Panel memory panel) = _loadConsensus(requestId);
        if (panel.closed || r.status == Status.Refunded) revert VerinferWrongStatus(requestId, r.status);
        if (r.status == Status.Pending) {
            if (block.timestamp < r.assignedUntil || _popcount(panel.committed) * 2 <= panel.k) {
                revert VerinferRevealNotOpen(requestId);
            }
            job.status = Status.Revealing;
        }
        if (block.timestamp > panel.revealDeadline) revert VerinferWindowClosed(requestId);
        uint256 index = _indexOf(requestId, r.assigned0, panel.assigned1, panel.k, msg.sender);
        uint8 bit = uint8(1 << index);
        if (panel.committed & bit == 0) revert VerinferNotCommitted(requestId, msg.sender);
        if (panel.revealed & bit != 0) revert VerinferAlreadyRevealed(requestId, msg.sender);
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[requestId];
        if (keccak256(abi.encode(requestId, msg.sender, output, salt)) != hashes[index]) {
            revert VerinferRevealMismatch(requestId, msg.sender);
        }
        bytes32 outputHash = keccak256(output);
        hashes[index] = outputHash;
        panel.revealed |= bit;
        bool deliver = panel.majority == 0 && _votesFor(hashes, panel.revealed, outputHash) * 2 > panel.k;
        if (deliver) {
            panel.majority = uint8(index + 1);
            job.status = Status.Fulfilled;
        }
        emit Revealed(requestId, msg.sender, outputHash);
        if (panel.revealed == panel.committed) {
            _close(requestId, job, r, panel); // stores the panel
        } else {
            _panels[requestId] = panel;
        }
        if (deliver) {
            Profile storage profile = _profiles[r.profile];
            _deliver(requestId, profile.requester, profile.callbackGasLimit, output);
        }
    }

    /// @inheritdoc IInferenceCoordinator
    function finalize(uint256 requestId) external nonReentrant {
        (Job storage job, Job memory r, Panel memory panel) = _loadConsensus(requestId);
        if (panel.closed || r.status == Status.Refunded) revert VerinferWrongStatus(requestId, r.status);
        if (block.timestamp <= panel.revealDeadline) revert VerinferDeadlineNotPassed(requestId);
        _close(requestId, job, r, panel);
    }

    // ---------------------------------------------------------------- refunds and payments

    /// @inheritdoc IInferenceCoordinator
    /// @dev Modes none, zk, optimistic: refunds E and slashes the assigned node the no-show
    /// amount; an optimistic claim that lost its dispute is refundable at once and slashes the
    /// dissent amount instead; one whose claimer conceded a forced error is refundable at once
    /// and slashes nothing. Consensus: the same as `finalize` for a request that delivered
    /// nothing. A lost claim of an early-delivery request then calls the requester's
    /// `onCorrection` (after every effect; the callback rules of `_deliver`, so a failing hook
    /// does not block the refund).
    function refund(uint256 requestId) external nonReentrant {
        Job storage job = _jobs[requestId];
        Job memory r = job;
        if (r.status == Status.None) revert VerinferUnknownRequest(requestId);
        if (r.status == Status.Fulfilled || r.status == Status.Refunded) {
            revert VerinferWrongStatus(requestId, r.status);
        }
        bool lost = r.status == Status.Claimed;
        bool forced;
        if (lost) {
            (uint8 status,) = _claimState(claimOf[requestId]);
            forced = status == CLAIM_FORCED;
            if (status != CLAIM_CHALLENGER_WON && !forced) revert VerinferWrongStatus(requestId, r.status);
        } else if (block.timestamp <= _deadline(r)) {
            revert VerinferDeadlineNotPassed(requestId);
        }
        Panel memory panel = _panels[requestId];
        if (panel.k != 0) {
            _close(requestId, job, r, panel);
            return;
        }
        Profile memory profile = _profiles[r.profile];
        if (profile.mode != MODE_NONE) delete _inputHashes[requestId];
        Settlement memory s = _settlement(requestId, profile, 1);
        job.status = Status.Refunded;
        uint256 escrow = _escrow(s);
        uint256 slashed = forced
            ? 0
            : lost
                ? _slash(r.assigned0, _slashing.dissent, "dispute")
                : _slash(r.assigned0, _slashing.noShow, "no-show");
        _credit(s.requester, escrow + slashed);
        emit Refunded(requestId, escrow);
        // Early delivery: the claim's output reached the consumer provisionally; withdraw it.
        if (lost && profile.mode & EARLY_DELIVERY != 0) {
            _callback(
                requestId,
                profile.requester,
                profile.callbackGasLimit,
                abi.encodeCall(IVerinferConsumer.onCorrection, (requestId))
            );
        }
    }

    /// @inheritdoc IInferenceCoordinator
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert VerinferNothingToWithdraw(msg.sender);
        _balances[msg.sender] = 0;
        emit Paid(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Set the treasury and the protocol fee (at most MAX_PROTOCOL_FEE_BPS). Owner only;
    /// applies to new requests.
    /// @param treasury Receives protocol fees.
    /// @param protocolFeeBps The fee in basis points of price plus node fees.
    function setProtocolFee(address treasury, uint16 protocolFeeBps) external onlyOwner {
        _setProtocolFee(treasury, protocolFeeBps);
    }

    /// @notice Set the assignment window, the reveal window and the minimum deadline distance,
    /// in seconds (all non-zero). Owner only; applies to new requests.
    /// @param assignmentWindow Only assigned nodes may answer (commit) during this window.
    /// @param revealWindow Reveals close this long after the assignment window.
    /// @param minDeadline A request's deadline must be at least this far in the future.
    function setTiming(uint24 assignmentWindow, uint24 revealWindow, uint24 minDeadline) external onlyOwner {
        _setTiming(assignmentWindow, revealWindow, minDeadline);
    }

    /// @notice Set how much a no-show and a dissenter are slashed. Owner only.
    /// @param noShow Slash for an assigned node that did not answer (or reveal).
    /// @param dissent Slash for a consensus node that revealed a minority output.
    function setSlashAmounts(uint96 noShow, uint96 dissent) external onlyOwner {
        _setSlashAmounts(noShow, dissent);
    }

    /// @notice Set optimistic mode's DisputeGame, once (open claims must keep their game); it
    /// must have been deployed with this contract as its coordinator. Owner only.
    /// @param game The DisputeGame.
    function setDisputeGame(address game) external onlyOwner {
        if (game == address(0) || address(disputeGame) != address(0)) revert VerinferInvalidConfig("disputeGame");
        disputeGame = IDisputeGame(game);
        emit DisputeGameSet(game);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IInferenceCoordinator
    function getRequest(uint256 requestId) external view returns (Request memory r) {
        Job memory job = _jobs[requestId];
        if (job.status == Status.None) revert VerinferUnknownRequest(requestId);
        Profile memory profile = _profiles[job.profile];
        uint8 k = 1;
        uint40 revealDeadline = 0;
        bool settled = job.status == Status.Fulfilled || job.status == Status.Refunded;
        if (profile.mode == MODE_CONSENSUS) {
            Panel memory panel = _panels[requestId];
            (k, revealDeadline, settled) = (panel.k, panel.revealDeadline, panel.closed);
        }
        (uint256 escrow,) = _fee(profile.price, profile.nodeFee, k, profile.feeBps);
        r = Request({
            requester: profile.requester,
            deadline: uint64(_deadline(job)),
            callbackGasLimit: profile.callbackGasLimit,
            mode: profile.mode,
            redundancy: k,
            status: job.status,
            escrow: settled ? 0 : uint96(escrow), // checked to fit at request time
            nodeFee: profile.nodeFee,
            assignedUntil: job.assignedUntil,
            revealDeadline: revealDeadline,
            modelId: profile.modelId,
            // Zk and optimistic only, until settlement; never stored in modes none and consensus.
            inputHash: _inputHashes[requestId]
        });
    }

    /// @inheritdoc IInferenceCoordinator
    function assignedNodes(uint256 requestId) external view returns (address[] memory nodes) {
        Job storage job = _jobs[requestId];
        if (job.status == Status.None) revert VerinferUnknownRequest(requestId);
        Panel memory panel = _panels[requestId];
        uint256 k = panel.k == 0 ? 1 : panel.k;
        nodes = new address[](k);
        for (uint256 i = 0; i < k; ++i) {
            nodes[i] = _assignedAt(requestId, job.assigned0, panel.assigned1, i);
        }
    }

    /// @inheritdoc IInferenceCoordinator
    function getBallot(uint256 requestId) external view returns (Ballot memory) {
        Panel memory p = _panels[requestId];
        return Ballot(p.committed, p.revealed, p.majority, p.closed);
    }

    /// @inheritdoc IInferenceCoordinator
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @inheritdoc IInferenceCoordinator
    function paymentToken() external view returns (address) {
        return address(_token);
    }

    /// @notice The registries this coordinator uses.
    function registries() external view returns (address modelRegistry, address nodeRegistry) {
        return (address(_models), address(_nodes));
    }

    /// @notice The current configuration (new requests use it).
    function config() external view returns (Config memory, Slashing memory) {
        Params memory p = _params;
        return (Config(_treasury, p.protocolFeeBps, p.assignmentWindow, p.revealWindow, p.minDeadline), _slashing);
    }

    /// @notice How many requests were made (the highest id).
    function requestCount() external view returns (uint256) {
        return _params.lastId;
    }

    // ---------------------------------------------------------------- internals: opening

    /// @dev Checks the mode byte and the redundancy; returns the mode without EARLY_DELIVERY,
    /// a flag only optimistic requests may set (the flag alone is an unsupported mode).
    function _checkMode(uint8 requested, uint8 redundancy) private view returns (uint8 mode) {
        mode = requested & ~EARLY_DELIVERY;
        if (mode == MODE_NONE || mode == MODE_ZK || mode == MODE_OPTIMISTIC) {
            if (redundancy != 1) revert VerinferInvalidRedundancy(redundancy);
            if (mode == MODE_OPTIMISTIC && address(disputeGame) == address(0)) revert VerinferUnsupportedMode(mode);
        } else if (mode == MODE_CONSENSUS) {
            if (redundancy < MIN_CONSENSUS_REDUNDANCY || redundancy > MAX_REDUNDANCY || redundancy % 2 == 0) {
                revert VerinferInvalidRedundancy(redundancy);
            }
        } else {
            revert VerinferUnsupportedMode(requested);
        }
        if (mode != requested && mode != MODE_OPTIMISTIC) revert VerinferEarlyDeliveryNotOptimistic(requested);
    }

    /// @dev The model's price and royalty, if it is servable in `mode` (unknown ids revert in the
    /// registry). The one registry read of a request: settlement asks only for the owner.
    function _servableTerms(uint256 modelId, uint8 mode) private view returns (uint256 price, uint16 royaltyBps) {
        uint8 modes;
        bool deprecated;
        (price, royaltyBps, modes, deprecated) = _models.terms(modelId);
        if (deprecated || modes & mode != mode) revert VerinferModelNotServable(modelId, mode);
    }

    /// @dev Picks the nodes, prices the request, stores it and emits InferenceRequested.
    function _open(uint256 requestId, Order memory o, Params memory params, bytes calldata input)
        private
        returns (uint256 fee)
    {
        _windows(params, o);
        (uint256 price, uint16 royaltyBps) = _servableTerms(o.modelId, o.mode);
        (address[] memory assigned, uint256 nodeFee) = _nodes.pickNodes(o.modelId, o.mode, o.k, _seed(requestId));
        if (assigned.length < o.k) revert VerinferNoEligibleNode(o.modelId, o.mode);
        (fee,) = _fee(price, nodeFee, o.k, params.protocolFeeBps);
        if (fee > o.maxFee) revert VerinferFeeAboveMax(fee, o.maxFee);
        SafeCast.toUint96(fee); // the escrow must fit Request.escrow
        uint32 profile = _profileOf(
            Profile(
                msg.sender,
                SafeCast.toUint88(nodeFee),
                o.requested, // with the flag: getRequest reports it, and an early request's profile differs
                SafeCast.toUint96(price),
                params.protocolFeeBps,
                royaltyBps,
                SafeCast.toUint40(o.modelId),
                uint24(o.callbackGasLimit) // <= MAX_CALLBACK_GAS, checked
            )
        );
        _store(requestId, o, assigned, profile);
        emit InferenceRequested(requestId, o.modelId, msg.sender, o.mode, assigned, o.deadline, fee, input);
    }

    /// @dev Writes the request: its Job, plus the Panel and nodes 2..k-1 for consensus.
    function _store(uint256 requestId, Order memory o, address[] memory assigned, uint32 profile) private {
        // assignedUntil <= deadline <= now + MAX_DEADLINE_HORIZON (checked in _windows), so the
        // difference fits 24 bits; assignedUntil is checked to fit 32.
        _jobs[requestId] = Job(
            assigned[0],
            profile,
            SafeCast.toUint32(o.assignedUntil),
            uint24(o.deadline - o.assignedUntil),
            Status.Pending
        );
        if (o.mode == MODE_CONSENSUS) {
            _panels[requestId] = Panel(assigned[1], o.revealDeadline, o.k, 0, 0, 0, false);
            for (uint256 i = 2; i < o.k; ++i) {
                _moreAssigned[requestId][i] = assigned[i];
            }
        }
    }

    /// @dev The id of `p`, stored the first time it is seen.
    function _profileOf(Profile memory p) private returns (uint32 id) {
        bytes32 key = keccak256(abi.encode(p));
        id = _profileIds[key];
        if (id == 0) {
            id = ++_profileCount;
            _profileIds[key] = id;
            _profiles[id] = p;
        }
    }

    /// @dev The assignment seed; see the contract's notice for the proposer bias.
    function _seed(uint256 requestId) private view returns (uint256) {
        return uint256(keccak256(abi.encode(block.prevrandao, requestId, msg.sender)));
    }

    /// @dev Checks the deadline; sets when the assignment window and the reveals end.
    function _windows(Params memory cfg, Order memory o) private view {
        if (o.deadline < block.timestamp + cfg.minDeadline) revert VerinferDeadlineTooSoon(o.deadline);
        uint64 horizon = uint64(block.timestamp) + MAX_DEADLINE_HORIZON;
        if (o.deadline > horizon) revert VerinferDeadlineTooFar(o.deadline, horizon);
        uint256 until = block.timestamp + cfg.assignmentWindow;
        if (o.mode == MODE_CONSENSUS) {
            o.revealDeadline = uint40(until + cfg.revealWindow);
            if (o.deadline < o.revealDeadline) revert VerinferDeadlineTooSoon(o.deadline);
        }
        o.assignedUntil = uint40(until < o.deadline ? until : o.deadline);
    }

    /// @return fee E = B + T
    /// @return protocolFee T = B * bps / 10,000 with B = price + k * nodeFee
    function _fee(uint256 price, uint256 nodeFee, uint256 k, uint256 bps)
        private
        pure
        returns (uint256 fee, uint256 protocolFee)
    {
        uint256 base = price + k * nodeFee;
        protocolFee = base * bps / BPS;
        fee = base + protocolFee;
    }

    // ---------------------------------------------------------------- internals: settling

    /// @dev A single-node request (mode none, optimistic or zk) in `mode`.
    function _loadSingle(uint256 requestId, uint8 mode)
        private
        view
        returns (Job storage job, Job memory r, Profile memory profile)
    {
        job = _jobs[requestId];
        r = job;
        if (r.status == Status.None) revert VerinferUnknownRequest(requestId);
        profile = _profiles[r.profile];
        if (profile.mode & ~EARLY_DELIVERY != mode) revert VerinferWrongMode(requestId, profile.mode);
    }

    /// @dev Checks that the caller may answer a single-node request now; returns whether it is a
    /// late answer by another eligible node (which slashes the assigned node).
    function _checkAnswer(uint256 requestId, Job memory r, uint256 modelId, uint8 mode)
        private
        view
        returns (bool late)
    {
        if (r.status != Status.Pending) revert VerinferWrongStatus(requestId, r.status);
        if (block.timestamp > _deadline(r)) revert VerinferDeadlinePassed(requestId);
        late = msg.sender != r.assigned0;
        if (late) {
            if (block.timestamp < r.assignedUntil) revert VerinferNotAssigned(requestId, msg.sender);
            if (!_nodes.isEligible(msg.sender, modelId, mode)) revert VerinferNotEligible(requestId, msg.sender);
        }
    }

    /// @dev Settles a delivered single-node request: pays `node`, the owner and the treasury,
    /// slashes a no-show, then calls the requester back.
    function _settleSingle(
        uint256 requestId,
        Job storage job,
        Job memory r,
        Profile memory profile,
        address node,
        bool late,
        bytes calldata output
    ) private {
        Settlement memory s = _settlement(requestId, profile, 1);
        job.status = Status.Fulfilled;
        _payDelivery(s, node, 1);
        if (late) s.toRequester += _slash(r.assigned0, _slashing.noShow, "no-show");
        _credit(s.requester, s.toRequester);
        _deliver(requestId, profile.requester, profile.callbackGasLimit, output);
    }

    // ---------------------------------------------------------------- internals: optimistic

    /// @dev Opens the game's claim for the caller with the bond sent: the model's commitments
    /// come from the registry, the input hash from the request.
    function _openClaim(uint256 requestId, uint256 modelId, bytes calldata output, bytes32 traceRoot)
        private
        returns (uint256)
    {
        IDisputeGame.ClaimParams memory p;
        (p.weightsRoot, p.stepsRoot, p.nSteps, p.nConstants) = _models.optimisticConfig(modelId);
        (p.traceRoot, p.inputHash) = (traceRoot, _inputHashes[requestId]);
        return disputeGame.open{value: msg.value}(msg.sender, p, output);
    }

    /// @dev A DisputeGame claim's status and output hash.
    function _claimState(uint256 claimId) private view returns (uint8 status, bytes32 outputHash) {
        (,, status,,,,,,,, outputHash) = disputeGame.claims(claimId);
    }

    // ---------------------------------------------------------------- internals: zk

    /// @dev Checks `proof` with the model's verifier over the instances (input values, then
    /// output values, as field elements); reverts VerinferInvalidProof if it reverts or says no.
    function _verifyZk(
        uint256 requestId,
        uint256 modelId,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof
    ) private view {
        (address verifier, int8 inScale, int8 outScale) = _models.zkConfig(modelId);
        uint256 nIn = _singleTensor(requestId, input, inScale, false);
        uint256 nOut = _singleTensor(requestId, output, outScale, true);
        if (!_callVerifier(verifier, proof, input, output, nIn + nOut)) revert VerinferInvalidProof(requestId);
    }

    // Assembly in the three functions below because this is the zk path's hot loop: writing
    // each value straight into the ABI-encoded calldata of the call costs ~40 gas a value,
    // where building a uint256[] in Solidity and ABI-encoding it (bounds-checked slices,
    // checked arithmetic, a second copy) cost several times that. It also bounds what the
    // verifier can make us copy: at most 32 bytes of returndata, into scratch space (no
    // returndata bomb). The call buffer is built past the free memory pointer and abandoned
    // after the call (temporary use of free memory, hence memory-safe).

    /// @dev `verifier.verifyProof(proof, instances) == true`, where the `n` instances are the
    /// int32 values of `input`'s single tensor and then those of `output`'s, each as a field
    /// element (v >= 0 ? v : FIELD_MODULUS - |v|). A revert, or any answer but true, is false.
    /// STATICCALL: the verifier cannot change state or re-enter. The callers checked both
    /// tensors (inline, one tensor, 6 + 4 * count bytes).
    function _callVerifier(
        address verifier,
        bytes calldata proof,
        bytes calldata input,
        bytes calldata output,
        uint256 n
    ) private view returns (bool ok) {
        (uint256 ptr, uint256 p) = _verifyHeader(proof, n);
        p = _putFelts(p, input);
        p = _putFelts(p, output);
        assembly ("memory-safe") {
            mstore(0, 0)
            ok := staticcall(gas(), verifier, ptr, sub(p, ptr), 0, 0x20)
            ok := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1)))
        }
    }

    /// @dev Writes, from the free memory pointer `ptr`, the calldata of verifyProof(bytes,
    /// uint256[]) up to the instances: selector | 0x40 | offset of the array | proof.length |
    /// proof (zero-padded) | n. Returns `ptr` and where the first instance goes.
    function _verifyHeader(bytes calldata proof, uint256 n) private pure returns (uint256 ptr, uint256 p) {
        bytes4 selector = IZkVerifier.verifyProof.selector;
        assembly ("memory-safe") {
            ptr := mload(0x40)
            let padded := and(add(proof.length, 31), not(31))
            mstore(ptr, selector)
            mstore(add(ptr, 0x04), 0x40)
            mstore(add(ptr, 0x24), add(0x60, padded))
            mstore(add(ptr, 0x44), proof.length)
            if padded { mstore(add(ptr, add(0x44, padded)), 0) } // the last word's padding
            calldatacopy(add(ptr, 0x64), proof.offset, proof.length)
            p := add(add(ptr, 0x64), padded)
            mstore(p, n)
            p := add(p, 0x20)
        }
    }

    /// @dev Writes the values of the single inline tensor `data` (4 big-endian bytes each from
    /// offset 6) at `p` as field elements; returns the end. A negative v, sign-extended to 256
    /// bits, plus FIELD_MODULUS wraps to FIELD_MODULUS - |v|.
    function _putFelts(uint256 p, bytes calldata data) private pure returns (uint256) {
        assembly ("memory-safe") {
            let src := add(data.offset, 6)
            for { let end := add(data.offset, data.length) } lt(src, end) { src := add(src, 4) } {
                let v := signextend(3, shr(224, calldataload(src)))
                if slt(v, 0) { v := add(v, FIELD_MODULUS) }
                mstore(p, v)
                p := add(p, 0x20)
            }
        }
        return p;
    }

    /// @dev Checks that `data` is inline (TensorCodec) with exactly one tensor at `scale`;
    /// returns its value count. Layout: kind | scale | uint32 count | count int32 values.
    function _singleTensor(uint256 requestId, bytes calldata data, int8 scale, bool isOutput)
        private
        pure
        returns (uint256 count)
    {
        if (data.length < 6 || uint8(data[0]) != INLINE) revert VerinferZkMalformedTensor(requestId, isOutput);
        count = uint32(bytes4(data[2:6]));
        if (data.length != 6 + 4 * count) revert VerinferZkMalformedTensor(requestId, isOutput);
        int8 got = int8(uint8(data[1]));
        if (got != scale) revert VerinferZkScaleMismatch(requestId, isOutput, scale, got);
    }

    /// @dev Only consensus requests have a Panel (k != 0); the other mode is none.
    function _loadConsensus(uint256 requestId)
        private
        view
        returns (Job storage job, Job memory r, Panel memory panel)
    {
        job = _jobs[requestId];
        r = job;
        if (r.status == Status.None) revert VerinferUnknownRequest(requestId);
        panel = _panels[requestId];
        if (panel.k == 0) revert VerinferWrongMode(requestId, MODE_NONE);
    }

    function _deadline(Job memory r) private pure returns (uint256) {
        return uint256(r.assignedUntil) + r.grace;
    }

    function _settlement(uint256 requestId, Profile memory p, uint256 k) private pure returns (Settlement memory s) {
        (, uint256 protocolFee) = _fee(p.price, p.nodeFee, k, p.feeBps);
        s = Settlement({
            requestId: requestId,
            requester: p.requester,
            modelId: p.modelId,
            k: k,
            price: p.price,
            nodeFee: p.nodeFee,
            protocolFee: protocolFee,
            royaltyBps: p.royaltyBps,
            toRequester: 0
        });
    }

    /// @dev E = P + k * F + T, what the requester paid.
    function _escrow(Settlement memory s) private pure returns (uint256) {
        return s.price + s.k * s.nodeFee + s.protocolFee;
    }

    /// @dev Credits the royalty, the protocol fee, and the first agreeing node (`first`): F plus
    /// its share of the price remainder plus the division dust; adds to `s.toRequester` the node
    /// fees of the k - a nodes that are not paid. Returns each further agreeing node's share.
    function _payDelivery(Settlement memory s, address first, uint256 agreeing) private returns (uint256 share) {
        // The royalty rate was fixed at request time; it goes to the owner at settlement.
        address owner = IERC721(address(_models)).ownerOf(s.modelId);
        uint256 royalty = s.price * s.royaltyBps / BPS;
        _credit(owner, royalty);
        _credit(_treasury, s.protocolFee);
        uint256 remainder = s.price - royalty;
        share = remainder / agreeing;
        _credit(first, s.nodeFee + share + (remainder - share * agreeing));
        s.toRequester += (s.k - agreeing) * s.nodeFee;
    }

    /// @dev Consensus settlement: pays the agreeing nodes, slashes dissenters and no-shows (to
    /// the requester), refunds the rest; without a delivered majority, refunds E. Stores `panel`
    /// closed; the commitments are deleted (gas refund).
    function _close(uint256 requestId, Job storage job, Job memory r, Panel memory panel) private {
        Settlement memory s = _settlement(requestId, _profiles[r.profile], panel.k);
        panel.closed = true;
        _panels[requestId] = panel;
        bool delivered = panel.majority != 0;
        if (!delivered) job.status = Status.Refunded;
        uint8 agreeing = delivered ? _payAgreeing(s, r.assigned0, panel) : 0;
        _slashOthers(s, r.assigned0, panel, delivered);
        uint256 escrow = _escrow(s);
        if (!delivered) s.toRequester += escrow;
        _credit(s.requester, s.toRequester);
        emit ConsensusClosed(requestId, delivered, agreeing);
        if (!delivered) emit Refunded(requestId, escrow);
    }

    function _payAgreeing(Settlement memory s, address assigned0, Panel memory panel)
        private
        returns (uint8 agreeing)
    {
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[s.requestId];
        bytes32 winner = hashes[panel.majority - 1];
        uint256 mask = _agreeMask(hashes, panel.revealed, winner, s.k);
        agreeing = uint8(_popcount(uint8(mask)));
        bool first = true;
        uint256 share;
        for (uint256 i = 0; i < s.k; ++i) {
            if (mask & (1 << i) == 0) continue;
            address node = _assignedAt(s.requestId, assigned0, panel.assigned1, i);
            if (first) {
                share = _payDelivery(s, node, agreeing);
                first = false;
            } else {
                _credit(node, s.nodeFee + share);
            }
        }
    }

    function _slashOthers(Settlement memory s, address assigned0, Panel memory panel, bool delivered) private {
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[s.requestId];
        bytes32 winner = delivered ? hashes[panel.majority - 1] : bytes32(0);
        Slashing memory amounts = _slashing;
        for (uint256 i = 0; i < s.k; ++i) {
            bytes32 h = hashes[i];
            delete hashes[i];
            bool didReveal = panel.revealed & (1 << i) != 0;
            if (didReveal && (!delivered || h == winner)) continue; // agreeing, or no majority
            address node = _assignedAt(s.requestId, assigned0, panel.assigned1, i);
            s.toRequester += didReveal
                ? _slash(node, amounts.dissent, "dissent")
                : _slash(node, amounts.noShow, "no-show");
        }
    }

    function _agreeMask(bytes32[MAX_REDUNDANCY] storage hashes, uint8 revealed, bytes32 winner, uint256 k)
        private
        view
        returns (uint256 mask)
    {
        for (uint256 i = 0; i < k; ++i) {
            if (revealed & (1 << i) != 0 && hashes[i] == winner) mask |= 1 << i;
        }
    }

    function _votesFor(bytes32[MAX_REDUNDANCY] storage hashes, uint8 revealed, bytes32 outputHash)
        private
        view
        returns (uint256 votes)
    {
        for (uint256 i = 0; i < MAX_REDUNDANCY; ++i) {
            if (revealed & (1 << i) != 0 && hashes[i] == outputHash) ++votes;
        }
    }

    function _indexOf(uint256 requestId, address assigned0, address assigned1, uint256 k, address node)
        private
        view
        returns (uint256)
    {
        if (node == assigned0) return 0;
        if (node == assigned1) return 1;
        for (uint256 i = 2; i < k; ++i) {
            if (_moreAssigned[requestId][i] == node) return i;
        }
        revert VerinferNotAssigned(requestId, node);
    }

    /// @dev The i-th assigned node: 0 from the Job, 1 from the Panel, the rest from storage.
    function _assignedAt(uint256 requestId, address assigned0, address assigned1, uint256 i)
        private
        view
        returns (address)
    {
        if (i == 0) return assigned0;
        if (i == 1) return assigned1;
        return _moreAssigned[requestId][i];
    }

    function _popcount(uint8 x) private pure returns (uint256 n) {
        while (x != 0) {
            n += x & 1;
            x >>= 1;
        }
    }

    function _slash(address node, uint256 amount, bytes32 reason) private returns (uint256) {
        if (amount == 0) return 0;
        return _nodes.slash(node, amount, address(this), reason);
    }

    function _credit(address account, uint256 amount) private {
        if (amount != 0) _balances[account] += amount;
    }

    /// @dev Emits the result and calls the requester back if it is a contract. A reverting or
    /// gas-burning callback cannot block settlement: the call gets exactly `gasLimit`, and the
    /// caller must supply enough gas that it really does (EIP-150 forwards at most 63/64).
    function _deliver(uint256 requestId, address requester, uint256 gasLimit, bytes calldata output) private {
        emit InferenceFulfilled(requestId, keccak256(output), output);
        _callback(requestId, requester, gasLimit, abi.encodeCall(IVerinferConsumer.onInference, (requestId, output)));
    }

    /// @dev Calls the requester with `data` (an IVerinferConsumer hook) if it is a contract, with
    /// exactly `gasLimit` gas; a revert (or running out of gas) emits CallbackFailed, never
    /// reverts here. Reverts VerinferInsufficientGas if the transaction lacks the gas.
    function _callback(uint256 requestId, address requester, uint256 gasLimit, bytes memory data) private {
        if (requester.code.length == 0) return;
        uint256 required = gasLimit * 64 / 63 + CALLBACK_GAS_MARGIN;
        if (gasleft() < required) revert VerinferInsufficientGas(gasleft(), required);
        bool ok;
        bytes memory reason;
        // Assembly because Solidity's try/catch and low-level call copy *all* returndata into
        // memory: a consumer reverting with megabytes (a "returndata bomb") would make this
        // contract pay quadratic memory expansion and run out of gas. We copy at most
        // MAX_REASON_BYTES (256) of it.
        assembly ("memory-safe") {
            ok := call(gasLimit, requester, 0, add(data, 0x20), mload(data), 0, 0)
            if iszero(ok) {
                let size := returndatasize()
                if gt(size, 256) { size := 256 }
                reason := mload(0x40)
                mstore(reason, size)
                returndatacopy(add(reason, 0x20), 0, size)
                mstore(0x40, add(add(reason, 0x20), and(add(size, 31), not(31))))
            }
        }
        if (!ok) emit CallbackFailed(requestId, reason);
    }

    // ---------------------------------------------------------------- internals: admin

    function _setProtocolFee(address treasury, uint16 protocolFeeBps) private {
        if (treasury == address(0)) revert VerinferInvalidConfig("treasury");
        if (protocolFeeBps > MAX_PROTOCOL_FEE_BPS) revert VerinferInvalidConfig("protocolFeeBps");
        _treasury = treasury;
        _params.protocolFeeBps = protocolFeeBps;
        emit ProtocolFeeUpdated(treasury, protocolFeeBps);
    }

    function _setTiming(uint24 assignmentWindow, uint24 revealWindow, uint24 minDeadline) private {
        if (assignmentWindow == 0) revert VerinferInvalidConfig("assignmentWindow");
        if (revealWindow == 0) revert VerinferInvalidConfig("revealWindow");
        if (minDeadline == 0) revert VerinferInvalidConfig("minDeadline");
        _params.assignmentWindow = assignmentWindow;
        _params.revealWindow = revealWindow;
        _params.minDeadline = minDeadline;
        emit TimingUpdated(assignmentWindow, revealWindow, minDeadline);
    }

    function _setSlashAmounts(uint96 noShow, uint96 dissent) private {
        _slashing = Slashing(noShow, dissent);
        emit SlashAmountsUpdated(noShow, dissent);
    }
}
