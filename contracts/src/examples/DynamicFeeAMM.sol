// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {TensorCodec} from "../TensorCodec.sol";
import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title DynamicFeeAMM: a constant-product pool whose swap fee a volatility model sets
/// @notice Example verinfer consumer. Two ERC-20s, x·y = k, simple LP shares, a swap fee in bps.
/// Every swap records the pool price. Anyone may call
/// `updateFee()`: the pool sends the last 16 log-returns of its price to the registered
/// volatility model through the coordinator (paying the fee from its own payment-token budget),
/// and the callback sets the fee from the model's output.
///
/// Input: one tensor of 16 int32 values, q = ln(p_t / p_{t-1}) · 2^inputScale, oldest first,
/// clamped to ±(2^23 - 1) (the runtime's activation range). `inputScale` is the model program's
/// input scale, fixed at deployment (the node refuses inputs at any other scale).
/// Output: one tensor [1, 1] at scale s holding q ≈ fee_bps · 2^s. The fee becomes
/// round_half_up(q / 2^s) = (q + 2^(s-1)) >> s, clamped to [MIN_FEE_BPS, MAX_FEE_BPS].
/// @dev Reserves are tracked in storage, not read from balances, so tokens sent to the pool
/// (its inference budget when a pool token is the payment token) never count as liquidity.
/// Fee-on-transfer and rebasing tokens are not supported. One observation per swap keeps the
/// example simple: a production pool would sample a time-weighted price (one observation per
/// block or per interval), so that a trader cannot cheaply paint the volatility input.
contract DynamicFeeAMM is VerinferConsumer, ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant BPS = 10_000;
    uint256 public constant MIN_FEE_BPS = 5;
    uint256 public constant MAX_FEE_BPS = 100;
    /// @notice Price observations kept: 17 prices give the model's 16 log-returns.
    uint256 public constant OBSERVATIONS = 17;
    uint256 public constant WINDOW = OBSERVATIONS - 1;
    /// @notice The largest |value| the runtime takes for an activation (2^23 - 1).
    int256 public constant ACT_MAX = 8_388_607;
    uint8 public constant MODE_NONE = 1;
    uint32 public constant CALLBACK_GAS = 200_000;
    uint64 public constant REQUEST_TTL = 1 hours;
    uint256 private constant WAD = 1e18;

    IERC20 public immutable token0;
    IERC20 public immutable token1;
    uint256 public immutable modelId;
    /// @notice The fixed-point scale of the model program's input (q = value · 2^inputScale).
    int8 public immutable inputScale;

    uint256 public reserve0;
    uint256 public reserve1;
    uint256 public totalShares;
    mapping(address => uint256) public sharesOf;

    uint256 public swapFeeBps;
    /// @notice The fee request in flight (0 if none) and when it expires.
    uint256 public pendingRequestId;
    uint64 public pendingDeadline;

    // Ring buffer of prices (token1 per token0, 18 decimals), written at `_next`.
    uint256[OBSERVATIONS] private _prices;
    uint256 public observationCount;
    uint256 private _next;

    event LiquidityAdded(address indexed provider, uint256 amount0, uint256 amount1, uint256 shares);
    event LiquidityRemoved(address indexed provider, uint256 amount0, uint256 amount1, uint256 shares);
    event Swapped(
        address indexed trader, address indexed tokenIn, uint256 amountIn, uint256 amountOut, uint256 feeBps
    );
    event PriceObserved(uint256 price, uint256 observationCount);
    event FeeUpdateRequested(uint256 indexed requestId, uint256 fee);
    event FeeUpdated(uint256 indexed requestId, uint256 oldFeeBps, uint256 newFeeBps, int256 rawOutput, int8 scale);

    error VerinferZeroAmount();
    error VerinferSameToken(address token);
    error VerinferUnknownToken(address token);
    error VerinferInvalidFee(uint256 feeBps);
    error VerinferSlippage(uint256 amount, uint256 minimum);
    error VerinferInsufficientShares(uint256 available, uint256 requested);
    error VerinferInsufficientLiquidity();
    error VerinferNotEnoughObservations(uint256 have, uint256 need);
    error VerinferUpdatePending(uint256 requestId, uint64 deadline);
    error VerinferInsufficientBudget(uint256 available, uint256 fee);
    error VerinferInvalidScale(int8 scale);

    /// @param coordinator_ the InferenceCoordinator
    /// @param token0_ the pool's first asset (either asset may be the payment token)
    /// @param token1_ the pool's second asset
    /// @param modelId_ the volatility model in the ModelRegistry
    /// @param inputScale_ the model program's input scale, 0..40 (see the contract notice)
    /// @param initialFeeBps the fee until the first update, in [MIN_FEE_BPS, MAX_FEE_BPS]
    constructor(
        address coordinator_,
        address token0_,
        address token1_,
        uint256 modelId_,
        int8 inputScale_,
        uint256 initialFeeBps
    ) VerinferConsumer(coordinator_) {
        if (token0_ == token1_) revert VerinferSameToken(token0_);
        if (initialFeeBps < MIN_FEE_BPS || initialFeeBps > MAX_FEE_BPS) revert VerinferInvalidFee(initialFeeBps);
        if (inputScale_ < 0 || inputScale_ > 40) revert VerinferInvalidScale(inputScale_);
        token0 = IERC20(token0_);
        token1 = IERC20(token1_);
        modelId = modelId_;
        inputScale = inputScale_;
        swapFeeBps = initialFeeBps;
    }

    // ----------------------------------------------------------------- liquidity

    /// @notice Deposit both tokens at the pool's ratio (the first deposit sets it) for shares.
    /// @dev Of the desired amounts, the largest pair at the current ratio is taken; the rest stays
    /// with the caller. Shares: sqrt(a0·a1) for the first deposit, then pro rata.
    /// @return amount0 taken of token0, amount1 taken of token1, shares minted
    function addLiquidity(uint256 amount0Desired, uint256 amount1Desired, uint256 minShares)
        external
        nonReentrant
        returns (uint256 amount0, uint256 amount1, uint256 shares)
    {
        if (amount0Desired == 0 || amount1Desired == 0) revert VerinferZeroAmount();
        uint256 r0 = reserve0;
        uint256 r1 = reserve1;
        uint256 supply = totalShares;
        if (supply == 0) {
            (amount0, amount1) = (amount0Desired, amount1Desired);
            shares = Math.sqrt(amount0 * amount1);
        } else {
            uint256 amount1Optimal = amount0Desired * r1 / r0;
            if (amount1Optimal <= amount1Desired) {
                (amount0, amount1) = (amount0Desired, amount1Optimal);
            } else {
                (amount0, amount1) = (amount1Desired * r0 / r1, amount1Desired);
            }
            shares = Math.min(amount0 * supply / r0, amount1 * supply / r1);
        }
        if (shares == 0) revert VerinferZeroAmount();
        if (shares < minShares) revert VerinferSlippage(shares, minShares);
        reserve0 = r0 + amount0;
        reserve1 = r1 + amount1;
        totalShares = supply + shares;
        sharesOf[msg.sender] += shares;
        emit LiquidityAdded(msg.sender, amount0, amount1, shares);
        token0.safeTransferFrom(msg.sender, address(this), amount0);
        token1.safeTransferFrom(msg.sender, address(this), amount1);
    }

    /// @notice Burn `shares` for their pro-rata part of both reserves (fees included).
    function removeLiquidity(uint256 shares, uint256 min0, uint256 min1)
        external
        nonReentrant
        returns (uint256 amount0, uint256 amount1)
    {
        if (shares == 0) revert VerinferZeroAmount();
        uint256 owned = sharesOf[msg.sender];
        if (shares > owned) revert VerinferInsufficientShares(owned, shares);
        uint256 supply = totalShares;
        amount0 = shares * reserve0 / supply;
        amount1 = shares * reserve1 / supply;
        if (amount0 < min0) revert VerinferSlippage(amount0, min0);
        if (amount1 < min1) revert VerinferSlippage(amount1, min1);
        sharesOf[msg.sender] = owned - shares;
        totalShares = supply - shares;
        reserve0 -= amount0;
        reserve1 -= amount1;
        emit LiquidityRemoved(msg.sender, amount0, amount1, shares);
        token0.safeTransfer(msg.sender, amount0);
        token1.safeTransfer(msg.sender, amount1);
    }

    // ----------------------------------------------------------------- swaps

    /// @notice What a swap of `amountIn` of `tokenIn` pays out at the current fee and reserves.
    function quoteSwap(address tokenIn, uint256 amountIn) public view returns (uint256 amountOut) {
        (uint256 rIn, uint256 rOut) = _reservesFor(tokenIn);
        return _amountOut(amountIn, rIn, rOut, swapFeeBps);
    }

    /// @notice Swap exactly `amountIn` of `tokenIn` for the other token, at least `minAmountOut`.
    /// @dev The fee stays in the pool (it accrues to LPs), so k = reserve0·reserve1 never falls.
    function swap(address tokenIn, uint256 amountIn, uint256 minAmountOut)
        external
        nonReentrant
        returns (uint256 amountOut)
    {
        if (amountIn == 0) revert VerinferZeroAmount();
        bool zeroForOne = tokenIn == address(token0);
        (uint256 rIn, uint256 rOut) = _reservesFor(tokenIn);
        if (rIn == 0 || rOut == 0) revert VerinferInsufficientLiquidity();
        uint256 feeBps = swapFeeBps;
        amountOut = _amountOut(amountIn, rIn, rOut, feeBps);
        if (amountOut == 0) revert VerinferZeroAmount();
        if (amountOut < minAmountOut) revert VerinferSlippage(amountOut, minAmountOut);
        if (zeroForOne) {
            (reserve0, reserve1) = (rIn + amountIn, rOut - amountOut);
        } else {
            (reserve0, reserve1) = (rOut - amountOut, rIn + amountIn);
        }
        _observe();
        emit Swapped(msg.sender, tokenIn, amountIn, amountOut, feeBps);
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), amountIn);
        (zeroForOne ? token1 : token0).safeTransfer(msg.sender, amountOut);
    }

    /// @notice The pool price: token1 per token0, 18 decimals (0 when empty).
    function price() public view returns (uint256) {
        return reserve0 == 0 ? 0 : reserve1 * WAD / reserve0;
    }

    // ----------------------------------------------------------------- the model

    /// @notice Ask the volatility model for a new swap fee; anyone may call. The pool pays the
    /// coordinator's quote from its payment-token budget (tokens beyond the reserves).
    /// @dev Needs a full window of observations and no request in flight (an unanswered one
    /// stops blocking after its deadline).
    function updateFee() external nonReentrant returns (uint256 requestId) {
        if (observationCount < OBSERVATIONS) revert VerinferNotEnoughObservations(observationCount, OBSERVATIONS);
        if (pendingRequestId != 0 && block.timestamp <= pendingDeadline) {
            revert VerinferUpdatePending(pendingRequestId, pendingDeadline);
        }
        uint256 fee = COORDINATOR.quote(modelId, MODE_NONE, 1);
        uint256 budget = feeBudget();
        if (budget < fee) revert VerinferInsufficientBudget(budget, fee);
        uint64 deadline = uint64(block.timestamp) + REQUEST_TTL;
        // The id comes from the coordinator, so this state is written after the call; the pool's
        // nonReentrant guard and the trusted coordinator make that safe.
        requestId = _requestInference(modelId, modelInput(), MODE_NONE, fee, deadline, CALLBACK_GAS, 1);
        pendingRequestId = requestId;
        pendingDeadline = deadline;
        emit FeeUpdateRequested(requestId, fee);
    }

    /// @notice Pull refunds the coordinator owes the pool (unanswered requests) into its budget.
    function withdrawRefunds() external nonReentrant returns (uint256) {
        return _withdrawRefunds();
    }

    /// @notice Payment tokens the pool holds beyond its reserves: what pays for `updateFee`.
    function feeBudget() public view returns (uint256) {
        uint256 balance = PAYMENT_TOKEN.balanceOf(address(this));
        if (address(PAYMENT_TOKEN) == address(token0)) return balance - reserve0;
        if (address(PAYMENT_TOKEN) == address(token1)) return balance - reserve1;
        return balance;
    }

    /// @notice The recorded prices, oldest first (fewer than OBSERVATIONS before the window fills).
    function observations() public view returns (uint256[] memory prices) {
        uint256 n = observationCount < OBSERVATIONS ? observationCount : OBSERVATIONS;
        prices = new uint256[](n);
        uint256 start = observationCount < OBSERVATIONS ? 0 : _next;
        for (uint256 i = 0; i < n; i++) {
            prices[i] = _prices[(start + i) % OBSERVATIONS];
        }
    }

    /// @notice The model input `updateFee` would send now: 16 quantized log-returns.
    function modelInput() public view returns (bytes memory) {
        uint256[] memory prices = observations();
        if (prices.length < OBSERVATIONS) revert VerinferNotEnoughObservations(prices.length, OBSERVATIONS);
        int256[] memory values = new int256[](WINDOW);
        for (uint256 i = 0; i < WINDOW; i++) {
            int256 q = _lnRatioWad(prices[i], prices[i + 1]) * int256(1 << _u8(inputScale)) / int256(WAD);
            values[i] = q > ACT_MAX ? ACT_MAX : (q < -ACT_MAX ? -ACT_MAX : q);
        }
        return TensorCodec.encodeOne(inputScale, values);
    }

    /// @notice The fee (bps) a model output maps to: round_half_up(q / 2^scale), clamped.
    function feeFromOutput(int256 q, int8 scale) public pure returns (uint256) {
        int256 fee;
        if (scale > 0) {
            fee = (q + int256(1 << (_u8(scale) - 1))) >> _u8(scale); // arithmetic shift = floor
        } else {
            fee = q * int256(1 << _u8(-scale));
        }
        if (fee < int256(MIN_FEE_BPS)) return MIN_FEE_BPS;
        if (fee > int256(MAX_FEE_BPS)) return MAX_FEE_BPS;
        return uint256(fee);
    }

    /// @dev The coordinator delivers the model's output: set the fee. Only the pending request
    /// counts; a late answer to a request that was superseded is ignored.
    function _onInference(uint256 requestId, bytes calldata output) internal override {
        if (requestId != pendingRequestId) return;
        bytes memory data = output;
        int8 scale = TensorCodec.scale(data, 0); // reverts on a malformed or empty output
        int256 q = TensorCodec.valueAt(data, 0, 0);
        uint256 oldFee = swapFeeBps;
        uint256 newFee = feeFromOutput(q, scale);
        swapFeeBps = newFee;
        pendingRequestId = 0;
        pendingDeadline = 0;
        emit FeeUpdated(requestId, oldFee, newFee, q, scale);
    }

    // ----------------------------------------------------------------- internals

    function _reservesFor(address tokenIn) private view returns (uint256 rIn, uint256 rOut) {
        if (tokenIn == address(token0)) return (reserve0, reserve1);
        if (tokenIn == address(token1)) return (reserve1, reserve0);
        revert VerinferUnknownToken(tokenIn);
    }

    function _amountOut(uint256 amountIn, uint256 rIn, uint256 rOut, uint256 feeBps)
        private
        pure
        returns (uint256)
    {
        uint256 inAfterFee = amountIn * (BPS - feeBps);
        return inAfterFee * rOut / (rIn * BPS + inAfterFee);
    }

    /// @dev Record the new price in the ring buffer (one observation per swap).
    function _observe() private {
        uint256 p = price();
        _prices[_next] = p;
        _next = (_next + 1) % OBSERVATIONS;
        observationCount += 1;
        emit PriceObserved(p, observationCount);
    }

    /// @dev ln(b / a) in 18-decimal fixed point, for prices a, b > 0, from the series
    /// ln(b/a) = 2·atanh(u) = 2·(u + u³/3 + u⁵/5 + u⁷/7 + …), u = (b - a) / (b + a), |u| < 1.
    /// Four terms: error below 2·u⁹/9 (2e-14 for a 10 % move, 1e-5 for a doubling).
    function _lnRatioWad(uint256 a, uint256 b) private pure returns (int256) {
        if (a == 0 || b == 0) return 0;
        int256 u = (int256(b) - int256(a)) * int256(WAD) / (int256(b) + int256(a));
        int256 u2 = u * u / int256(WAD);
        int256 term = u;
        int256 sum = u;
        for (int256 k = 3; k <= 7; k += 2) {
            term = term * u2 / int256(WAD);
            sum += term / k;
        }
        return 2 * sum;
    }

    function _u8(int8 x) private pure returns (uint256) {
        return uint256(uint8(x));
    }
}
