// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title INodeRegistry
/// @notice Staked inference nodes: stake, the models and modes they serve with their fee quote,
/// unbonding with a delay, and slashing by authorized verification modules only.
interface INodeRegistry {
    struct Node {
        uint128 stake; // bonded, slashable, counts for assignment
        uint128 unbonding; // leaving, still slashable until withdrawn
        uint64 unbondingReadyAt; // when `unbonding` may be withdrawn
        bool registered;
    }

    struct Service {
        uint8 modes; // bitmask of verification modes served for this model
        uint96 fee; // the node's quote per request, in payment-token units
    }

    event NodeRegistered(address indexed node);
    event Staked(address indexed node, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed node, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed node, uint256 amount);
    event ServiceUpdated(address indexed node, uint256 indexed modelId, uint8 modes, uint96 fee);
    event Slashed(address indexed node, uint256 amount, address indexed recipient, bytes32 reason);
    event ModuleAuthorized(address indexed module, bool authorized);

    error VerinferNotRegistered(address node);
    error VerinferAlreadyRegistered(address node);
    error VerinferZeroAmount();
    error VerinferInsufficientStake(uint256 available, uint256 requested);
    error VerinferUnbondingNotReady(uint64 readyAt, uint64 nowTime);
    error VerinferNotAuthorizedModule(address caller);
    error VerinferTooManyNodes(uint256 modelId, uint256 max);
    error VerinferInvalidModes(uint8 modes);
    error VerinferFeeTooHigh(uint256 fee, uint256 max);
    error VerinferZeroAddress();

    /// @notice Register the caller as a node (stake separately with `stake`).
    function register() external;

    /// @notice Add `amount` payment tokens to the caller's stake (needs an allowance).
    /// @param amount Token units to bond.
    function stake(uint256 amount) external;

    /// @notice Start unbonding `amount`; it stays slashable until `withdraw` after the delay.
    /// @param amount Token units to move from stake to unbonding (restarts the delay).
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw everything whose unbonding delay has passed.
    function withdraw() external;

    /// @notice Serve `modelId` in `modes` (bitmask) for `fee` per request; modes 0 stops serving.
    /// @param modelId The model (ids of the ModelRegistry).
    /// @param modes Bitmask of verification modes served (0 = stop serving).
    /// @param fee The node's quote per request, in token units (at most 2^88 - 1,
    /// `VerinferFeeTooHigh` above).
    function setService(uint256 modelId, uint8 modes, uint96 fee) external;

    /// @notice Authorize (or revoke) a verification module that may `slash`. Owner only.
    /// @param module The module contract (the coordinator, later the optimistic and zk modules).
    /// @param authorized Whether it may slash.
    function setModule(address module, bool authorized) external;

    /// @notice Take up to `amount` from `node` (stake first, then unbonding) and pay `recipient`.
    /// @dev Authorized modules only. Returns what was actually taken.
    /// @param node The node to slash.
    /// @param amount The most to take.
    /// @param recipient Who receives the slashed tokens (a module passes itself to credit the
    /// harmed party in its own ledger).
    /// @param reason A short tag for indexers, e.g. "no-show".
    /// @return taken What was actually taken (less than `amount` if the node has less).
    function slash(address node, uint256 amount, address recipient, bytes32 reason) external returns (uint256 taken);

    /// @notice Pick `k` distinct eligible nodes for (model, mode), stake-weighted, from `seed`.
    /// @dev Eligible: registered, stake >= minStake, serving the model in `mode`. Returns fewer
    /// than `k` if there are not enough.
    /// The fee is the same whichever nodes the seed draws, so a request's price (and gas) does
    /// not depend on the block's randomness.
    /// @return nodes The picked nodes, in pick order.
    /// @return maxFee The highest fee quote among all eligible nodes of (model, mode), the same
    /// as `maxQuote` (0 if none).
    function pickNodes(uint256 modelId, uint8 mode, uint256 k, uint256 seed)
        external
        view
        returns (address[] memory nodes, uint256 maxFee);

    /// @notice The highest fee quote among the eligible nodes of (model, mode), and how many
    /// nodes are eligible: a request's node fee (see `pickNodes`).
    function maxQuote(uint256 modelId, uint8 mode) external view returns (uint256 fee, uint256 eligible);

    /// @notice Whether `node` may answer (model, mode) now: registered, staked >= minStake, serving it.
    function isEligible(address node, uint256 modelId, uint8 mode) external view returns (bool);

    /// @notice Whether `module` may slash.
    function isModule(address module) external view returns (bool);

    /// @notice A node's stake record (all zero for an unknown address).
    function getNode(address node) external view returns (Node memory);

    /// @notice A node's service terms for a model (zero if it does not serve it).
    function getService(address node, uint256 modelId) external view returns (Service memory);

    /// @notice The nodes listed for a model (serving it in some mode; at most MAX_NODES_PER_MODEL).
    function nodesOf(uint256 modelId) external view returns (address[] memory);

    /// @notice The least stake that makes a node eligible for assignment.
    function minStake() external view returns (uint256);

    /// @notice How long unbonded stake stays slashable before `withdraw`, in seconds.
    function unbondingDelay() external view returns (uint64);

    /// @notice The staking (and payment) token.
    function token() external view returns (address);
}
