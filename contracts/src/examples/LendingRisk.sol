// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IInferenceCoordinator} from "../interfaces/IInferenceCoordinator.sol";
import {TensorCodec} from "../TensorCodec.sol";
import {VerinferConsumer} from "../VerinferConsumer.sol";

/// @title LendingRisk: a minimal lending market whose collateral factors come from a risk model
/// @notice Example verinfer consumer. Lenders supply the debt token (no interest: it is an
/// example); borrowers deposit collateral, ask the registered risk model for a score with
/// `requestScore()` (paying the coordinator's quote), and may then borrow up to
/// collateral value × factor while the score is fresh (`scoreTtl`). No score, or a stale one,
/// blocks borrowing.
///
/// Input: one tensor of the 8 features below, computed on-chain at request time, each
/// q = value · 2^inputScale (18-decimal values converted, truncated): collateral volatility
/// (owner-set), pool utilization, account age in years (cap 4), repayments / 10 (cap 2), repaid /
/// borrowed, leverage = debt / collateral value (cap 1), size = collateral value / sizeUnit (cap 1),
/// concentration = debt / total supplied (cap 1). `inputScale` is the model program's input scale.
/// Output: one tensor [1, 1] at scale s, q ≈ P(default) · 2^s. The collateral factor becomes
/// MAX_FACTOR_BPS - round_half_up((MAX - MIN) · q / 2^s), clamped to [MIN_FACTOR_BPS,
/// MAX_FACTOR_BPS]: P = 0 gives 85 %, P = 1 gives 30 %.
contract LendingRisk is VerinferConsumer, Ownable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant BPS = 10_000;
    uint256 public constant MIN_FACTOR_BPS = 3_000;
    uint256 public constant MAX_FACTOR_BPS = 8_500;
    uint256 public constant FEATURES = 8;
    uint8 public constant MODE_NONE = 1;
    uint32 public constant CALLBACK_GAS = 200_000;
    uint64 public constant REQUEST_TTL = 1 hours;
    uint256 private constant WAD = 1e18;

    struct Account {
        uint256 collateral; // collateral token units
        uint256 debt; // debt token units
        uint256 totalBorrowed; // ever
        uint256 totalRepaid; // ever
        uint64 firstDepositAt;
        uint32 repayments;
    }

    struct Score {
        uint16 factorBps; // 0 = never scored
        uint64 updatedAt;
        uint64 pendingDeadline;
        uint256 pendingRequestId; // 0 = none in flight
    }

    struct ScoreRequest {
        address borrower;
        uint96 fee;
    }

    IERC20 public immutable collateralToken;
    IERC20 public immutable debtToken;
    uint256 public immutable modelId;
    int8 public immutable inputScale;

    /// @notice Debt-token units per 1e18 collateral units (owner-set oracle stand-in).
    uint256 public collateralPrice;
    /// @notice Annualized collateral volatility, 18 decimals (feature 0).
    uint256 public collateralVolatility;
    /// @notice Collateral value (debt-token units) at which the size feature reaches 1.
    uint256 public sizeUnit;
    /// @notice How long a score allows borrowing after it arrived.
    uint64 public scoreTtl = 1 days;

    uint256 public totalSupplied;
    uint256 public totalDebt;
    mapping(address => uint256) public supplied;
    mapping(address => Account) public accounts;
    mapping(address => Score) public scores;
    /// @notice Who asked for each score request in flight and the fee they paid.
    mapping(uint256 => ScoreRequest) public scoreRequests;

    event Supplied(address indexed lender, uint256 amount);
    event SupplyWithdrawn(address indexed lender, uint256 amount);
    event CollateralDeposited(address indexed borrower, uint256 amount);
    event CollateralWithdrawn(address indexed borrower, uint256 amount);
    event Borrowed(address indexed borrower, uint256 amount, uint256 debt);
    event Repaid(address indexed borrower, uint256 amount, uint256 debt);
    event ScoreRequested(address indexed borrower, uint256 indexed requestId, uint256 fee);
    event ScoreUpdated(address indexed borrower, uint256 indexed requestId, uint256 factorBps, int256 rawOutput, int8 scale);
    event RefundClaimed(address indexed borrower, uint256 indexed requestId, uint256 amount);
    event MarketUpdated(uint256 collateralPrice, uint256 collateralVolatility, uint256 sizeUnit, uint64 scoreTtl);

    error VerinferZeroAmount();
    error VerinferNoScore(address borrower);
    error VerinferStaleScore(address borrower, uint64 updatedAt, uint64 ttl);
    error VerinferBorrowTooLarge(uint256 debt, uint256 maxDebt);
    error VerinferUndercollateralized(uint256 debt, uint256 maxDebt);
    error VerinferInsufficientLiquidity(uint256 available, uint256 requested);
    error VerinferInsufficientBalance(uint256 available, uint256 requested);
    error VerinferScorePending(uint256 requestId, uint64 deadline);
    error VerinferNoCollateral(address borrower);
    error VerinferInvalidParameter(uint256 value);
    error VerinferNotRequester(uint256 requestId, address caller);
    error VerinferNotRefunded(uint256 requestId);

    /// @param coordinator_ the InferenceCoordinator (its payment token pays for scores)
    /// @param modelId_ the risk model; `inputScale_` its program's input scale
    constructor(
        address coordinator_,
        address collateralToken_,
        address debtToken_,
        uint256 modelId_,
        int8 inputScale_,
        uint256 collateralPrice_,
        uint256 collateralVolatility_,
        uint256 sizeUnit_
    ) VerinferConsumer(coordinator_) Ownable(msg.sender) {
        if (inputScale_ < 0 || inputScale_ > 20) revert VerinferInvalidParameter(uint256(int256(inputScale_)));
        collateralToken = IERC20(collateralToken_);
        debtToken = IERC20(debtToken_);
        modelId = modelId_;
        inputScale = inputScale_;
        _setMarket(collateralPrice_, collateralVolatility_, sizeUnit_, scoreTtl);
    }

    /// @notice Owner: set the collateral price, its volatility, the size unit and the score TTL.
    function setMarket(uint256 price_, uint256 volatility_, uint256 sizeUnit_, uint64 ttl_) external onlyOwner {
        _setMarket(price_, volatility_, sizeUnit_, ttl_);
    }

    // ----------------------------------------------------------------- lenders

    /// @notice Supply `amount` debt tokens to the market.
    function supply(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        supplied[msg.sender] += amount;
        totalSupplied += amount;
        emit Supplied(msg.sender, amount);
        debtToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraw up to what the caller supplied, from what is not lent out.
    function withdrawSupply(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        uint256 mine = supplied[msg.sender];
        if (amount > mine) revert VerinferInsufficientBalance(mine, amount);
        uint256 cash = totalSupplied - totalDebt;
        if (amount > cash) revert VerinferInsufficientLiquidity(cash, amount);
        supplied[msg.sender] = mine - amount;
        totalSupplied -= amount;
        emit SupplyWithdrawn(msg.sender, amount);
        debtToken.safeTransfer(msg.sender, amount);
    }

    // ----------------------------------------------------------------- borrowers

    /// @notice Deposit `amount` collateral tokens.
    function depositCollateral(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        Account storage a = accounts[msg.sender];
        a.collateral += amount;
        if (a.firstDepositAt == 0) a.firstDepositAt = uint64(block.timestamp);
        emit CollateralDeposited(msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraw collateral; with debt outstanding, what remains must still cover it at a
    /// fresh score's factor.
    function withdrawCollateral(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        Account storage a = accounts[msg.sender];
        if (amount > a.collateral) revert VerinferInsufficientBalance(a.collateral, amount);
        a.collateral -= amount;
        if (a.debt > 0) {
            uint256 maxDebt = _maxDebt(msg.sender, a.collateral);
            if (a.debt > maxDebt) revert VerinferUndercollateralized(a.debt, maxDebt);
        }
        emit CollateralWithdrawn(msg.sender, amount);
        collateralToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Ask the risk model for the caller's collateral factor. The caller pays the
    /// coordinator's quote in the payment token (approve this contract first).
    function requestScore() external nonReentrant returns (uint256 requestId) {
        Account storage a = accounts[msg.sender];
        if (a.collateral == 0) revert VerinferNoCollateral(msg.sender);
        Score storage s = scores[msg.sender];
        if (s.pendingRequestId != 0 && block.timestamp <= s.pendingDeadline) {
            revert VerinferScorePending(s.pendingRequestId, s.pendingDeadline);
        }
        uint256 fee = COORDINATOR.quote(modelId, MODE_NONE, 1);
        bytes memory input = modelInput(msg.sender);
        PAYMENT_TOKEN.safeTransferFrom(msg.sender, address(this), fee);
        uint64 deadline = uint64(block.timestamp) + REQUEST_TTL;
        // The id comes from the coordinator, so this state is written after the calls; the
        // nonReentrant guard and the trusted coordinator make that safe.
        requestId = _requestInference(modelId, input, MODE_NONE, fee, deadline, CALLBACK_GAS, 1);
        s.pendingRequestId = requestId;
        s.pendingDeadline = deadline;
        scoreRequests[requestId] = ScoreRequest(msg.sender, uint96(fee));
        emit ScoreRequested(msg.sender, requestId, fee);
    }

    /// @notice Return the fee of a score request that no node answered (the coordinator refunded
    /// it after its deadline) to the borrower who paid it.
    /// @dev Slashed stake the coordinator adds to a refund stays with the market.
    function claimRefund(uint256 requestId) external nonReentrant returns (uint256 amount) {
        ScoreRequest memory r = scoreRequests[requestId];
        if (r.borrower != msg.sender) revert VerinferNotRequester(requestId, msg.sender);
        IInferenceCoordinator.Status status = COORDINATOR.getRequest(requestId).status;
        if (status != IInferenceCoordinator.Status.Refunded) revert VerinferNotRefunded(requestId);
        amount = r.fee;
        delete scoreRequests[requestId];
        Score storage s = scores[msg.sender];
        if (s.pendingRequestId == requestId) {
            s.pendingRequestId = 0;
            s.pendingDeadline = 0;
        }
        emit RefundClaimed(msg.sender, requestId, amount);
        _withdrawRefunds();
        PAYMENT_TOKEN.safeTransfer(msg.sender, amount);
    }

    /// @notice Borrow `amount` debt tokens; needs a fresh score and total debt within the limit.
    function borrow(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        Account storage a = accounts[msg.sender];
        uint256 newDebt = a.debt + amount;
        uint256 maxDebt = _maxDebt(msg.sender, a.collateral);
        if (newDebt > maxDebt) revert VerinferBorrowTooLarge(newDebt, maxDebt);
        uint256 cash = totalSupplied - totalDebt;
        if (amount > cash) revert VerinferInsufficientLiquidity(cash, amount);
        a.debt = newDebt;
        a.totalBorrowed += amount;
        totalDebt += amount;
        emit Borrowed(msg.sender, amount, newDebt);
        debtToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Repay up to the caller's debt.
    function repay(uint256 amount) external nonReentrant {
        if (amount == 0) revert VerinferZeroAmount();
        Account storage a = accounts[msg.sender];
        if (amount > a.debt) revert VerinferInsufficientBalance(a.debt, amount);
        a.debt -= amount;
        a.totalRepaid += amount;
        a.repayments += 1;
        totalDebt -= amount;
        emit Repaid(msg.sender, amount, a.debt);
        debtToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ----------------------------------------------------------------- views

    /// @notice The most `borrower` may owe now (reverts without a fresh score).
    function maxBorrow(address borrower) external view returns (uint256) {
        return _maxDebt(borrower, accounts[borrower].collateral);
    }

    /// @notice Collateral value in debt-token units.
    function collateralValue(address borrower) public view returns (uint256) {
        return accounts[borrower].collateral * collateralPrice / WAD;
    }

    /// @notice The 8 model features of `borrower` now, 18 decimals (see the contract notice).
    function features(address borrower) public view returns (uint256[FEATURES] memory f) {
        Account storage a = accounts[borrower];
        uint256 value = collateralValue(borrower);
        f[0] = collateralVolatility;
        f[1] = totalSupplied == 0 ? 0 : Math.min(totalDebt * WAD / totalSupplied, WAD);
        f[2] = a.firstDepositAt == 0 ? 0 : Math.min((block.timestamp - a.firstDepositAt) * WAD / 365 days, 4 * WAD);
        f[3] = Math.min(uint256(a.repayments) * WAD / 10, 2 * WAD);
        f[4] = a.totalBorrowed == 0 ? 0 : Math.min(a.totalRepaid * WAD / a.totalBorrowed, WAD);
        f[5] = value == 0 ? 0 : Math.min(a.debt * WAD / value, WAD);
        f[6] = Math.min(value * WAD / sizeUnit, WAD);
        f[7] = totalSupplied == 0 ? 0 : Math.min(a.debt * WAD / totalSupplied, WAD);
    }

    /// @notice The encoded model input `requestScore` would send for `borrower` now.
    function modelInput(address borrower) public view returns (bytes memory) {
        uint256[FEATURES] memory f = features(borrower);
        int256[] memory values = new int256[](FEATURES);
        for (uint256 i = 0; i < FEATURES; i++) {
            // Every feature is at most 4 (volatility checked), so q <= 2^22 at scale <= 20.
            values[i] = int256((f[i] << uint8(inputScale)) / WAD);
        }
        return TensorCodec.encodeOne(inputScale, values);
    }

    /// @notice The collateral factor (bps) a model output q at `scale` maps to.
    function factorFromOutput(int256 q, int8 scale) public pure returns (uint256) {
        int256 span = int256(MAX_FACTOR_BPS - MIN_FACTOR_BPS);
        int256 cut;
        if (scale > 0) {
            uint256 s = uint256(uint8(scale));
            cut = (span * q + int256(1 << (s - 1))) >> s; // arithmetic shift = floor
        } else {
            cut = span * q * int256(1 << uint256(uint8(-scale)));
        }
        int256 factor = int256(MAX_FACTOR_BPS) - cut;
        if (factor < int256(MIN_FACTOR_BPS)) return MIN_FACTOR_BPS;
        if (factor > int256(MAX_FACTOR_BPS)) return MAX_FACTOR_BPS;
        return uint256(factor);
    }

    // ----------------------------------------------------------------- internals

    /// @dev The coordinator delivers a score. Only the borrower's pending request counts.
    function _onInference(uint256 requestId, bytes calldata output) internal override {
        address borrower = scoreRequests[requestId].borrower;
        Score storage s = scores[borrower];
        if (borrower == address(0) || s.pendingRequestId != requestId) return;
        bytes memory data = output;
        int8 scale = TensorCodec.scale(data, 0); // reverts on a malformed or empty output
        int256 q = TensorCodec.valueAt(data, 0, 0);
        uint256 factor = factorFromOutput(q, scale);
        s.factorBps = uint16(factor);
        s.updatedAt = uint64(block.timestamp);
        s.pendingRequestId = 0;
        s.pendingDeadline = 0;
        delete scoreRequests[requestId];
        emit ScoreUpdated(borrower, requestId, factor, q, scale);
    }

    function _maxDebt(address borrower, uint256 collateral) private view returns (uint256) {
        Score storage s = scores[borrower];
        if (s.updatedAt == 0) revert VerinferNoScore(borrower);
        if (block.timestamp > uint256(s.updatedAt) + scoreTtl) {
            revert VerinferStaleScore(borrower, s.updatedAt, scoreTtl);
        }
        return collateral * collateralPrice / WAD * s.factorBps / BPS;
    }

    function _setMarket(uint256 price_, uint256 volatility_, uint256 sizeUnit_, uint64 ttl_) private {
        if (price_ == 0) revert VerinferInvalidParameter(price_);
        if (volatility_ > 4 * WAD) revert VerinferInvalidParameter(volatility_);
        if (sizeUnit_ == 0) revert VerinferInvalidParameter(sizeUnit_);
        if (ttl_ == 0) revert VerinferInvalidParameter(ttl_);
        collateralPrice = price_;
        collateralVolatility = volatility_;
        sizeUnit = sizeUnit_;
        scoreTtl = ttl_;
        emit MarketUpdated(price_, volatility_, sizeUnit_, ttl_);
    }
}
