// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";

/// @title NodeRegistry
/// @notice Inference nodes bond the payment token, declare per model the verification modes they
/// serve and their fee quote, unbond with a delay, and are slashed by authorized modules only.
/// @dev A slash takes from the bonded stake first, then from the unbonding amount: requesting an
/// unstake does not escape a pending slash until the unbonding delay has passed and the node
/// withdrew. At most `MAX_NODES_PER_MODEL` nodes are listed per model, so `pickNodes` is bounded;
/// when the list is full, a newcomer replaces a listed node whose stake fell below `minStake`.
contract NodeRegistry is INodeRegistry, Ownable2Step, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice The most nodes listed for one model (bounds `pickNodes` and `maxQuote`).
    uint256 public constant MAX_NODES_PER_MODEL = 64;
    /// @notice The highest valid modes bitmask (none | consensus | optimistic | zk).
    uint8 public constant ALL_MODES = 15;

    IERC20 private immutable _token;
    uint256 private immutable _minStake;
    uint64 private immutable _unbondingDelay;

    mapping(address node => Node) private _nodes;
    mapping(address node => mapping(uint256 modelId => Service)) private _services;
    /// @dev The nodes serving a model, with their modes and fee quote for it (a copy of
    /// `_services[node][model]` in the address's slot, so picking reads one slot per node besides
    /// its stake, and prices a request over every eligible node without a further read).
    mapping(uint256 modelId => Listing[]) private _modelNodes;
    /// @dev position in `_modelNodes[modelId]` plus one; 0 = not listed.
    mapping(uint256 modelId => mapping(address node => uint256)) private _listed;
    mapping(address module => bool) private _modules;

    /// @dev One entry of a model's node list: 32 bytes, one slot.
    struct Listing {
        address node;
        uint8 modes;
        uint88 fee; // <= MAX_FEE, checked in setService
    }

    /// @notice The highest fee quote a node may declare (a request's node fee is 88 bits).
    uint256 public constant MAX_FEE = type(uint88).max;

    /// @param token_ The payment token, also the staking token.
    /// @param minStake_ The least stake for assignment (non-zero).
    /// @param unbondingDelay_ Seconds between `requestUnstake` and `withdraw`.
    /// @param admin The owner: authorizes slashing modules.
    constructor(address token_, uint256 minStake_, uint64 unbondingDelay_, address admin) Ownable(admin) {
        if (token_ == address(0)) revert VerinferZeroAddress();
        if (minStake_ == 0) revert VerinferZeroAmount();
        _token = IERC20(token_);
        _minStake = minStake_;
        _unbondingDelay = unbondingDelay_;
    }

    /// @inheritdoc INodeRegistry
    function register() external nonReentrant {
        Node storage n = _nodes[msg.sender];
        if (n.registered) revert VerinferAlreadyRegistered(msg.sender);
        n.registered = true;
        emit NodeRegistered(msg.sender);
    }

    /// @inheritdoc INodeRegistry
    function stake(uint256 amount) external nonReentrant {
        Node storage n = _requireRegistered(msg.sender);
        if (amount == 0) revert VerinferZeroAmount();
        uint128 newStake = SafeCast.toUint128(n.stake + amount);
        n.stake = newStake;
        emit Staked(msg.sender, amount, newStake);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc INodeRegistry
    function requestUnstake(uint256 amount) external nonReentrant {
        Node storage n = _requireRegistered(msg.sender);
        if (amount == 0) revert VerinferZeroAmount();
        if (amount > n.stake) revert VerinferInsufficientStake(n.stake, amount);
        uint64 readyAt = uint64(block.timestamp) + _unbondingDelay;
        n.stake -= uint128(amount);
        n.unbonding += uint128(amount);
        n.unbondingReadyAt = readyAt;
        emit UnstakeRequested(msg.sender, amount, readyAt);
    }

    /// @inheritdoc INodeRegistry
    function withdraw() external nonReentrant {
        Node storage n = _requireRegistered(msg.sender);
        uint256 amount = n.unbonding;
        if (amount == 0) revert VerinferZeroAmount();
        if (block.timestamp < n.unbondingReadyAt) {
            revert VerinferUnbondingNotReady(n.unbondingReadyAt, uint64(block.timestamp));
        }
        n.unbonding = 0;
        n.unbondingReadyAt = 0;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc INodeRegistry
    function setService(uint256 modelId, uint8 modes, uint96 fee) external nonReentrant {
        _requireRegistered(msg.sender);
        if (modes > ALL_MODES) revert VerinferInvalidModes(modes);
        if (fee > MAX_FEE) revert VerinferFeeTooHigh(fee, MAX_FEE);
        uint256 position = _listed[modelId][msg.sender];
        if (modes != 0 && position == 0) {
            if (_modelNodes[modelId].length >= MAX_NODES_PER_MODEL) _evictUnstaked(modelId);
            _modelNodes[modelId].push(Listing(msg.sender, modes, uint88(fee)));
            _listed[modelId][msg.sender] = _modelNodes[modelId].length;
        } else if (modes == 0 && position != 0) {
            _unlist(modelId, msg.sender);
        } else if (position != 0) {
            _modelNodes[modelId][position - 1] = Listing(msg.sender, modes, uint88(fee));
        }
        _services[msg.sender][modelId] = Service({modes: modes, fee: fee});
        emit ServiceUpdated(msg.sender, modelId, modes, fee);
    }

    /// @inheritdoc INodeRegistry
    function setModule(address module, bool authorized) external onlyOwner {
        if (module == address(0)) revert VerinferZeroAddress();
        _modules[module] = authorized;
        emit ModuleAuthorized(module, authorized);
    }

    /// @inheritdoc INodeRegistry
    function slash(address node, uint256 amount, address recipient, bytes32 reason)
        external
        nonReentrant
        returns (uint256 taken)
    {
        if (!_modules[msg.sender]) revert VerinferNotAuthorizedModule(msg.sender);
        if (recipient == address(0)) revert VerinferZeroAddress();
        Node storage n = _nodes[node];
        uint256 fromStake = amount < n.stake ? amount : n.stake;
        uint256 rest = amount - fromStake;
        uint256 fromUnbonding = rest < n.unbonding ? rest : n.unbonding;
        taken = fromStake + fromUnbonding;
        if (taken == 0) return 0;
        n.stake -= uint128(fromStake);
        n.unbonding -= uint128(fromUnbonding);
        emit Slashed(node, taken, recipient, reason);
        _token.safeTransfer(recipient, taken);
    }

    /// @inheritdoc INodeRegistry
    /// @dev Weighted sampling without replacement: draw r in [0, total weight) from
    /// keccak256(seed, draw index), walk the cumulative weights, then zero the winner's weight.
    /// O(k * n) with n <= MAX_NODES_PER_MODEL. Reads two slots per listed node (listing, with
    /// the modes and the quote, and stake) whichever nodes are drawn: neither `maxFee` nor the
    /// gas depends on the seed.
    function pickNodes(uint256 modelId, uint8 mode, uint256 k, uint256 seed)
        external
        view
        returns (address[] memory nodes, uint256 maxFee)
    {
        (address[] memory candidates, uint256[] memory weights, uint256 count, uint256 total, uint256 fee) =
            _candidates(modelId, mode);
        maxFee = fee;
        if (k > count) k = count;
        nodes = new address[](k);
        for (uint256 j = 0; j < k; ++j) {
            uint256 idx = _draw(weights, total, uint256(keccak256(abi.encode(seed, j))));
            address node = candidates[idx];
            nodes[j] = node;
            total -= weights[idx];
            weights[idx] = 0;
        }
    }

    /// @inheritdoc INodeRegistry
    function maxQuote(uint256 modelId, uint8 mode) external view returns (uint256 fee, uint256 eligible) {
        (,, eligible,, fee) = _candidates(modelId, mode);
    }

    /// @inheritdoc INodeRegistry
    function isEligible(address node, uint256 modelId, uint8 mode) external view returns (bool ok) {
        (ok,,) = _eligibility(node, modelId, mode);
    }

    /// @inheritdoc INodeRegistry
    function isModule(address module) external view returns (bool) {
        return _modules[module];
    }

    /// @inheritdoc INodeRegistry
    function getNode(address node) external view returns (Node memory) {
        return _nodes[node];
    }

    /// @inheritdoc INodeRegistry
    function getService(address node, uint256 modelId) external view returns (Service memory) {
        return _services[node][modelId];
    }

    /// @inheritdoc INodeRegistry
    function nodesOf(uint256 modelId) external view returns (address[] memory nodes) {
        Listing[] storage list = _modelNodes[modelId];
        nodes = new address[](list.length);
        for (uint256 i = 0; i < nodes.length; ++i) {
            nodes[i] = list[i].node;
        }
    }

    /// @inheritdoc INodeRegistry
    function minStake() external view returns (uint256) {
        return _minStake;
    }

    /// @inheritdoc INodeRegistry
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    /// @inheritdoc INodeRegistry
    function token() external view returns (address) {
        return address(_token);
    }

    /// @dev Stake >= minStake (> 0) implies registered: only registered nodes can stake.
    function _eligibility(address node, uint256 modelId, uint8 mode)
        private
        view
        returns (bool ok, uint256 weight, uint256 fee)
    {
        weight = _nodes[node].stake;
        Service storage s = _services[node][modelId];
        ok = mode != 0 && weight >= _minStake && (s.modes & mode) == mode;
        fee = s.fee;
    }

    /// @dev The index whose cumulative-weight interval holds `random % total`.
    function _draw(uint256[] memory weights, uint256 total, uint256 random) private pure returns (uint256 idx) {
        uint256 r = random % total;
        // r < total = the sum of the weights, so the walk stops inside the array, and neither
        // the subtraction (r >= weights[idx]) nor ++idx (idx < weights.length) can wrap.
        unchecked {
            while (r >= weights[idx]) {
                r -= weights[idx];
                ++idx;
            }
        }
    }

    /// @dev The eligible nodes of (model, mode) in list order, their weights (stakes), how many
    /// there are, the total weight and the highest fee quote among them. Same rule as
    /// `_eligibility`, read from the listing.
    function _candidates(uint256 modelId, uint8 mode)
        private
        view
        returns (address[] memory nodes, uint256[] memory weights, uint256 count, uint256 total, uint256 maxFee)
    {
        Listing[] storage list = _modelNodes[modelId];
        uint256 n = list.length;
        nodes = new address[](n);
        weights = new uint256[](n);
        if (mode == 0) return (nodes, weights, 0, 0, 0);
        for (uint256 i = 0; i < n; ++i) {
            Listing memory entry = list[i];
            if (entry.modes & mode != mode) continue;
            uint256 weight = _nodes[entry.node].stake;
            if (weight < _minStake) continue;
            nodes[count] = entry.node;
            weights[count] = weight;
            if (entry.fee > maxFee) maxFee = entry.fee;
            // count < n <= MAX_NODES_PER_MODEL, and total is at most 64 uint128 stakes.
            unchecked {
                total += weight;
                ++count;
            }
        }
    }

    function _requireRegistered(address node) private view returns (Node storage n) {
        n = _nodes[node];
        if (!n.registered) revert VerinferNotRegistered(node);
    }

    /// @dev The list is full: drop the first listed node whose stake is below minStake, so that
    /// registered but unstaked addresses cannot lock a model's list.
    function _evictUnstaked(uint256 modelId) private {
        Listing[] storage list = _modelNodes[modelId];
        for (uint256 i = 0; i < list.length; ++i) {
            address node = list[i].node;
            if (_nodes[node].stake < _minStake) {
                _unlist(modelId, node);
                delete _services[node][modelId];
                emit ServiceUpdated(node, modelId, 0, 0);
                return;
            }
        }
        revert VerinferTooManyNodes(modelId, MAX_NODES_PER_MODEL);
    }

    function _unlist(uint256 modelId, address node) private {
        Listing[] storage list = _modelNodes[modelId];
        uint256 pos = _listed[modelId][node] - 1;
        Listing memory last = list[list.length - 1];
        list[pos] = last;
        _listed[modelId][last.node] = pos + 1;
        list.pop();
        delete _listed[modelId][node];
    }
}
