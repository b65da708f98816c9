// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IInferenceCoordinator} from "./interfaces/IInferenceCoordinator.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IVerinferConsumer} from "./interfaces/IVerinferConsumer.sol";

/// @title InferenceCoordinator
/// @notice Escrowed inference requests in modes none and consensus, answered by staked nodes,
/// delivered by callback, paid by pull payments.
/// @dev The fee split, exactly (all divisions round down):
///   P = model price, F = node fee (highest quote among the picked nodes), k = redundancy,
///   B = P + k*F, T = B * protocolFeeBps / 10,000, escrow E = B + T.
///   On delivery: royalty R = P * royaltyBps / 10,000 (the model's bps at settlement) to the
///   model token's owner; T to the treasury; each agreeing node (mode none: the answering node)
///   gets F + floor((P - R) / a), a = number of agreeing nodes, and the first agreeing node in
///   assignment order also gets the division remainder; (k - a) * F goes back to the requester.
///   Without delivery (refund, or consensus without majority) the requester gets E back.
///   Slashed stake (no-shows, dissenters) is credited to the requester.
/// Node assignment uses keccak256(prevrandao, requestId, requester) as the seed: a block proposer
/// can bias it by withholding a block (one bit of influence per forfeited block). That is
/// acceptable for assignment only, because after the assignment window any eligible node may
/// answer (mode none), and consensus needs a majority of independently staked nodes.
contract InferenceCoordinator is IInferenceCoordinator, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint8 public constant MODE_NONE = 1;
    uint8 public constant MODE_CONSENSUS = 2;
    uint8 public constant MIN_CONSENSUS_REDUNDANCY = 3;
    uint8 public constant MAX_REDUNDANCY = 7;
    uint256 public constant MAX_INPUT_BYTES = 16 * 1024;
    uint32 public constant MAX_CALLBACK_GAS = 2_000_000;
    /// @notice Gas kept back beyond the callback's for the work after it (events, bookkeeping).
    uint256 public constant CALLBACK_GAS_MARGIN = 30_000;
    /// @notice At most this many bytes of a failed callback's revert data are kept.
    uint256 public constant MAX_REASON_BYTES = 256;
    uint16 public constant MAX_PROTOCOL_FEE_BPS = 1_000;
    uint64 public constant MAX_DEADLINE_HORIZON = 30 days;

    /// @dev Storage is packed into four slots; the Terms slot and the input hash are deleted on
    /// settlement (gas refund); Head and Route stay readable.
    struct Head {
        address requester;
        uint40 deadline;
        uint40 assignedUntil;
        uint8 mode;
        Status status;
    }

    struct Terms {
        uint96 price;
        uint96 nodeFee;
        uint40 revealDeadline;
        uint8 redundancy;
        uint16 feeBps;
    }

    struct Route {
        address assigned0;
        uint64 modelId;
        uint32 callbackGasLimit;
    }

    struct Job {
        Head head;
        Terms terms;
        Route route;
        bytes32 inputHash;
    }

    struct Config {
        address treasury;
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
        uint256 toRequester;
    }

    IModelRegistry private immutable _models;
    INodeRegistry private immutable _nodes;
    IERC20 private immutable _token;

    Config private _config;
    Slashing private _slashing;
    uint256 private _lastId;
    mapping(uint256 requestId => Job) private _jobs;
    /// @dev assigned nodes 1..k-1 (node 0 lives in the Route slot).
    mapping(uint256 requestId => mapping(uint256 index => address)) private _moreAssigned;
    mapping(uint256 requestId => Ballot) private _ballots;
    /// @dev consensus: the commitment of node i, replaced by keccak256(output) when it reveals.
    mapping(uint256 requestId => bytes32[MAX_REDUNDANCY]) private _hashes;
    mapping(address account => uint256) private _balances;

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
        _checkRedundancy(mode, redundancy);
        requestId = ++_lastId;
        Order memory order = Order(modelId, mode, redundancy, deadline, callbackGasLimit, maxFee, 0, 0);
        uint256 fee = _open(requestId, order, input);
        _token.safeTransferFrom(msg.sender, address(this), fee);
    }

    /// @inheritdoc IInferenceCoordinator
    function quote(uint256 modelId, uint8 mode, uint8 redundancy) external view returns (uint256 fee) {
        _checkRedundancy(mode, redundancy);
        uint256 price = _servablePrice(modelId, mode);
        (uint256 nodeFee, uint256 eligible) = _nodes.maxQuote(modelId, mode);
        if (eligible < redundancy) revert VerinferNoEligibleNode(modelId, mode);
        (fee,) = _fee(price, nodeFee, redundancy, _config.protocolFeeBps);
    }

    // ---------------------------------------------------------------- mode none

    /// @inheritdoc IInferenceCoordinator
    /// @dev Before `assignedUntil` only the assigned node may answer; after it any eligible node
    /// may, and the assigned node is slashed the no-show amount (to the requester). Needs enough
    /// gas for the callback: gasleft() >= callbackGasLimit * 64 / 63 + CALLBACK_GAS_MARGIN.
    function fulfil(uint256 requestId, bytes calldata output) external nonReentrant {
        Job storage job = _jobs[requestId];
        Head memory head = _load(requestId, job, MODE_NONE);
        if (head.status != Status.Pending) revert VerinferWrongStatus(requestId, head.status);
        if (block.timestamp > head.deadline) revert VerinferDeadlinePassed(requestId);
        Route memory route = job.route;
        bool late = msg.sender != route.assigned0;
        if (late) {
            if (block.timestamp < head.assignedUntil) revert VerinferNotAssigned(requestId, msg.sender);
            if (!_nodes.isEligible(msg.sender, route.modelId, MODE_NONE)) {
                revert VerinferNotEligible(requestId, msg.sender);
            }
        }
        Settlement memory s = _settlement(requestId, head, job.terms, route);
        job.head.status = Status.Fulfilled;
        delete job.terms;
        delete job.inputHash;
        _payDelivery(s, msg.sender, 1);
        if (late) s.toRequester += _slash(route.assigned0, _slashing.noShow, "no-show");
        _credit(s.requester, s.toRequester);
        _deliver(requestId, head.requester, route.callbackGasLimit, output);
    }

    // ---------------------------------------------------------------- mode consensus

    /// @inheritdoc IInferenceCoordinator
    /// @dev Assigned nodes only, before `assignedUntil`. Reveals open when all k committed.
    function commit(uint256 requestId, bytes32 commitment) external nonReentrant {
        Job storage job = _jobs[requestId];
        Head memory head = _load(requestId, job, MODE_CONSENSUS);
        if (head.status != Status.Pending) revert VerinferWrongStatus(requestId, head.status);
        if (block.timestamp >= head.assignedUntil) revert VerinferWindowClosed(requestId);
        uint256 k = job.terms.redundancy;
        uint256 index = _indexOf(requestId, job.route.assigned0, k, msg.sender);
        Ballot storage ballot = _ballots[requestId];
        uint8 bit = uint8(1 << index);
        if (ballot.committed & bit != 0) revert VerinferAlreadyCommitted(requestId, msg.sender);
        uint8 committed = ballot.committed | bit;
        ballot.committed = committed;
        _hashes[requestId][index] = commitment;
        if (committed == (1 << k) - 1) job.head.status = Status.Revealing;
        emit Committed(requestId, msg.sender);
    }

    /// @inheritdoc IInferenceCoordinator
    /// @dev Reveals open once all k committed, or after `assignedUntil` if a strict majority
    /// committed; they close at `revealDeadline`. Late commits are impossible once reveals are
    /// public, so nobody can copy a revealed output.
    function reveal(uint256 requestId, bytes calldata output, bytes32 salt) external nonReentrant {
        Job storage job = _jobs[requestId];
        Head memory head = _load(requestId, job, MODE_CONSENSUS);
        Ballot memory ballot = _ballots[requestId];
        if (ballot.closed || head.status == Status.Refunded) revert VerinferWrongStatus(requestId, head.status);
        Terms memory terms = job.terms;
        if (head.status == Status.Pending) {
            if (block.timestamp < head.assignedUntil || _popcount(ballot.committed) * 2 <= terms.redundancy) {
                revert VerinferRevealNotOpen(requestId);
            }
            job.head.status = Status.Revealing;
        }
        if (block.timestamp > terms.revealDeadline) revert VerinferWindowClosed(requestId);
        uint256 index = _indexOf(requestId, job.route.assigned0, terms.redundancy, msg.sender);
        uint8 bit = uint8(1 << index);
        if (ballot.committed & bit == 0) revert VerinferNotCommitted(requestId, msg.sender);
        if (ballot.revealed & bit != 0) revert VerinferAlreadyRevealed(requestId, msg.sender);
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[requestId];
        if (keccak256(abi.encode(requestId, msg.sender, output, salt)) != hashes[index]) {
            revert VerinferRevealMismatch(requestId, msg.sender);
        }
        bytes32 outputHash = keccak256(output);
        hashes[index] = outputHash;
        ballot.revealed |= bit;
        bool deliver = ballot.majority == 0 && _votesFor(hashes, ballot.revealed, outputHash) * 2 > terms.redundancy;
        if (deliver) {
            ballot.majority = uint8(index + 1);
            job.head.status = Status.Fulfilled;
        }
        _ballots[requestId] = ballot;
        emit Revealed(requestId, msg.sender, outputHash);
        if (ballot.revealed == ballot.committed) _close(requestId, job);
        if (deliver) _deliver(requestId, head.requester, job.route.callbackGasLimit, output);
    }

    /// @inheritdoc IInferenceCoordinator
    function finalize(uint256 requestId) external nonReentrant {
        Job storage job = _jobs[requestId];
        Head memory head = _load(requestId, job, MODE_CONSENSUS);
        if (_ballots[requestId].closed || head.status == Status.Refunded) {
            revert VerinferWrongStatus(requestId, head.status);
        }
        if (block.timestamp <= job.terms.revealDeadline) revert VerinferDeadlineNotPassed(requestId);
        _close(requestId, job);
    }

    // ---------------------------------------------------------------- refunds and payments

    /// @inheritdoc IInferenceCoordinator
    /// @dev Mode none: refunds E and slashes the assigned node the no-show amount. Consensus:
    /// the same as `finalize` for a request that delivered nothing.
    function refund(uint256 requestId) external nonReentrant {
        Job storage job = _jobs[requestId];
        Head memory head = job.head;
        if (head.status == Status.None) revert VerinferUnknownRequest(requestId);
        if (head.status == Status.Fulfilled || head.status == Status.Refunded) {
            revert VerinferWrongStatus(requestId, head.status);
        }
        if (block.timestamp <= head.deadline) revert VerinferDeadlineNotPassed(requestId);
        if (head.mode == MODE_CONSENSUS) {
            _close(requestId, job);
            return;
        }
        Settlement memory s = _settlement(requestId, head, job.terms, job.route);
        job.head.status = Status.Refunded;
        delete job.terms;
        delete job.inputHash;
        uint256 escrow = s.price + s.k * s.nodeFee + s.protocolFee;
        uint256 slashed = _slash(job.route.assigned0, _slashing.noShow, "no-show");
        _credit(s.requester, escrow + slashed);
        emit Refunded(requestId, escrow);
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

    // ---------------------------------------------------------------- views

    /// @inheritdoc IInferenceCoordinator
    function getRequest(uint256 requestId) external view returns (Request memory r) {
        Job storage job = _jobs[requestId];
        Head memory head = job.head;
        if (head.status == Status.None) revert VerinferUnknownRequest(requestId);
        Terms memory terms = job.terms;
        Route memory route = job.route;
        (uint256 escrow,) = _fee(terms.price, terms.nodeFee, terms.redundancy, terms.feeBps);
        r = Request({
            requester: head.requester,
            deadline: head.deadline,
            callbackGasLimit: route.callbackGasLimit,
            mode: head.mode,
            redundancy: terms.redundancy,
            status: head.status,
            escrow: uint96(escrow),
            nodeFee: terms.nodeFee,
            assignedUntil: head.assignedUntil,
            revealDeadline: terms.revealDeadline,
            modelId: route.modelId,
            inputHash: job.inputHash
        });
    }

    /// @inheritdoc IInferenceCoordinator
    function assignedNodes(uint256 requestId) external view returns (address[] memory nodes) {
        Job storage job = _jobs[requestId];
        if (job.head.status == Status.None) revert VerinferUnknownRequest(requestId);
        uint256 k = job.head.mode == MODE_NONE ? 1 : _redundancyOf(requestId);
        nodes = new address[](k);
        for (uint256 i = 0; i < k; ++i) {
            nodes[i] = i == 0 ? job.route.assigned0 : _moreAssigned[requestId][i];
        }
    }

    /// @inheritdoc IInferenceCoordinator
    function getBallot(uint256 requestId) external view returns (Ballot memory) {
        return _ballots[requestId];
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
        return (_config, _slashing);
    }

    /// @notice How many requests were made (the highest id).
    function requestCount() external view returns (uint256) {
        return _lastId;
    }

    // ---------------------------------------------------------------- internals: opening

    function _checkRedundancy(uint8 mode, uint8 redundancy) private pure {
        if (mode == MODE_NONE) {
            if (redundancy != 1) revert VerinferInvalidRedundancy(redundancy);
        } else if (mode == MODE_CONSENSUS) {
            if (redundancy < MIN_CONSENSUS_REDUNDANCY || redundancy > MAX_REDUNDANCY || redundancy % 2 == 0) {
                revert VerinferInvalidRedundancy(redundancy);
            }
        } else {
            revert VerinferUnsupportedMode(mode);
        }
    }

    /// @dev The model's price, if it is servable in `mode` (unknown ids revert in the registry).
    function _servablePrice(uint256 modelId, uint8 mode) private view returns (uint256) {
        (uint256 price,, uint8 modes, bool deprecated) = _models.terms(modelId);
        if (deprecated || modes & mode != mode) revert VerinferModelNotServable(modelId, mode);
        return price;
    }

    /// @dev Picks the nodes, prices the request, stores it and emits InferenceRequested.
    function _open(uint256 requestId, Order memory o, bytes calldata input) private returns (uint256 fee) {
        Config memory cfg = _config;
        _windows(cfg, o);
        uint256 price = _servablePrice(o.modelId, o.mode);
        (address[] memory assigned, uint256 nodeFee) = _nodes.pickNodes(o.modelId, o.mode, o.k, _seed(requestId));
        if (assigned.length < o.k) revert VerinferNoEligibleNode(o.modelId, o.mode);
        (fee,) = _fee(price, nodeFee, o.k, cfg.protocolFeeBps);
        if (fee > o.maxFee) revert VerinferFeeAboveMax(fee, o.maxFee);
        SafeCast.toUint96(fee); // the escrow must fit Request.escrow
        Job storage job = _jobs[requestId];
        job.head = Head(msg.sender, uint40(o.deadline), o.assignedUntil, o.mode, Status.Pending);
        job.terms = Terms(
            SafeCast.toUint96(price), SafeCast.toUint96(nodeFee), o.revealDeadline, o.k, cfg.protocolFeeBps
        );
        job.route = Route(assigned[0], SafeCast.toUint64(o.modelId), o.callbackGasLimit);
        job.inputHash = keccak256(input);
        for (uint256 i = 1; i < o.k; ++i) {
            _moreAssigned[requestId][i] = assigned[i];
        }
        emit InferenceRequested(requestId, o.modelId, msg.sender, o.mode, assigned, o.deadline, fee, input);
    }

    /// @dev The assignment seed; see the contract's notice for the proposer bias.
    function _seed(uint256 requestId) private view returns (uint256) {
        return uint256(keccak256(abi.encode(block.prevrandao, requestId, msg.sender)));
    }

    /// @dev Checks the deadline; sets when the assignment window and the reveals end.
    function _windows(Config memory cfg, Order memory o) private view {
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
        protocolFee = base * bps / 10_000;
        fee = base + protocolFee;
    }

    // ---------------------------------------------------------------- internals: settling

    function _load(uint256 requestId, Job storage job, uint8 mode) private view returns (Head memory head) {
        head = job.head;
        if (head.status == Status.None) revert VerinferUnknownRequest(requestId);
        if (head.mode != mode) revert VerinferWrongMode(requestId, head.mode);
    }

    function _settlement(uint256 requestId, Head memory head, Terms memory terms, Route memory route)
        private
        pure
        returns (Settlement memory s)
    {
        (, uint256 protocolFee) = _fee(terms.price, terms.nodeFee, terms.redundancy, terms.feeBps);
        s = Settlement({
            requestId: requestId,
            requester: head.requester,
            modelId: route.modelId,
            k: terms.redundancy,
            price: terms.price,
            nodeFee: terms.nodeFee,
            protocolFee: protocolFee,
            toRequester: 0
        });
    }

    /// @dev Credits the royalty, the protocol fee, and the first agreeing node (`first`): F plus
    /// its share of the price remainder plus the division dust; adds to `s.toRequester` the node
    /// fees of the k - a nodes that are not paid. Returns each further agreeing node's share.
    function _payDelivery(Settlement memory s, address first, uint256 agreeing) private returns (uint256 share) {
        (address owner, uint256 royalty) = _models.royaltyInfo(s.modelId, s.price);
        _credit(owner, royalty);
        _credit(_config.treasury, s.protocolFee);
        uint256 remainder = s.price - royalty;
        share = remainder / agreeing;
        _credit(first, s.nodeFee + share + (remainder - share * agreeing));
        s.toRequester += (s.k - agreeing) * s.nodeFee;
    }

    /// @dev Consensus settlement: pays the agreeing nodes, slashes dissenters and no-shows (to
    /// the requester), refunds the rest; without a delivered majority, refunds E.
    function _close(uint256 requestId, Job storage job) private {
        Head memory head = job.head;
        Settlement memory s = _settlement(requestId, head, job.terms, job.route);
        Ballot storage ballot = _ballots[requestId];
        ballot.closed = true;
        bool delivered = ballot.majority != 0;
        if (!delivered) job.head.status = Status.Refunded;
        delete job.terms;
        delete job.inputHash;
        uint8 agreeing = delivered ? _payAgreeing(s, job.route.assigned0, ballot) : 0;
        _slashOthers(s, job.route.assigned0, ballot, delivered);
        if (!delivered) s.toRequester += s.price + s.k * s.nodeFee + s.protocolFee;
        _credit(s.requester, s.toRequester);
        emit ConsensusClosed(requestId, delivered, agreeing);
        if (!delivered) emit Refunded(requestId, s.price + s.k * s.nodeFee + s.protocolFee);
    }

    function _payAgreeing(Settlement memory s, address assigned0, Ballot storage ballot)
        private
        returns (uint8 agreeing)
    {
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[s.requestId];
        uint8 revealed = ballot.revealed;
        bytes32 winner = hashes[ballot.majority - 1];
        uint256 mask = _agreeMask(hashes, revealed, winner, s.k);
        agreeing = uint8(_popcount(uint8(mask)));
        bool first = true;
        uint256 share;
        for (uint256 i = 0; i < s.k; ++i) {
            if (mask & (1 << i) == 0) continue;
            address node = i == 0 ? assigned0 : _moreAssigned[s.requestId][i];
            if (first) {
                share = _payDelivery(s, node, agreeing);
                first = false;
            } else {
                _credit(node, s.nodeFee + share);
            }
        }
    }

    function _slashOthers(Settlement memory s, address assigned0, Ballot storage ballot, bool delivered) private {
        bytes32[MAX_REDUNDANCY] storage hashes = _hashes[s.requestId];
        uint8 revealed = ballot.revealed;
        bytes32 winner = delivered ? hashes[ballot.majority - 1] : bytes32(0);
        Slashing memory amounts = _slashing;
        for (uint256 i = 0; i < s.k; ++i) {
            bytes32 h = hashes[i];
            delete hashes[i];
            bool didReveal = revealed & (1 << i) != 0;
            if (didReveal && (!delivered || h == winner)) continue; // agreeing, or no majority
            address node = i == 0 ? assigned0 : _moreAssigned[s.requestId][i];
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

    function _indexOf(uint256 requestId, address assigned0, uint256 k, address node)
        private
        view
        returns (uint256)
    {
        if (node == assigned0) return 0;
        for (uint256 i = 1; i < k; ++i) {
            if (_moreAssigned[requestId][i] == node) return i;
        }
        revert VerinferNotAssigned(requestId, node);
    }

    /// @dev k of a consensus request, also after settlement (Terms is deleted then).
    function _redundancyOf(uint256 requestId) private view returns (uint256 k) {
        k = 1;
        while (k < MAX_REDUNDANCY && _moreAssigned[requestId][k] != address(0)) ++k;
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
        if (requester.code.length == 0) return;
        uint256 required = gasLimit * 64 / 63 + CALLBACK_GAS_MARGIN;
        if (gasleft() < required) revert VerinferInsufficientGas(gasleft(), required);
        bytes memory data = abi.encodeCall(IVerinferConsumer.onInference, (requestId, output));
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
        _config.treasury = treasury;
        _config.protocolFeeBps = protocolFeeBps;
        emit ProtocolFeeUpdated(treasury, protocolFeeBps);
    }

    function _setTiming(uint24 assignmentWindow, uint24 revealWindow, uint24 minDeadline) private {
        if (assignmentWindow == 0) revert VerinferInvalidConfig("assignmentWindow");
        if (revealWindow == 0) revert VerinferInvalidConfig("revealWindow");
        if (minDeadline == 0) revert VerinferInvalidConfig("minDeadline");
        _config.assignmentWindow = assignmentWindow;
        _config.revealWindow = revealWindow;
        _config.minDeadline = minDeadline;
        emit TimingUpdated(assignmentWindow, revealWindow, minDeadline);
    }

    function _setSlashAmounts(uint96 noShow, uint96 dissent) private {
        _slashing = Slashing(noShow, dissent);
        emit SlashAmountsUpdated(noShow, dissent);
    }
}
