// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IInferenceCoordinator
/// @notice Escrowed inference requests answered by staked nodes. Modes: 1 none (one node's
/// word), 2 consensus (k nodes commit-reveal, majority delivered), 4 optimistic (one node's
/// claim, delivered after the DisputeGame's challenge window unless a dispute overturns it), 8 zk
/// (one node's output with a zk proof of the model's circuit, checked on delivery). Payments
/// are pull-based. An optimistic request may add the EARLY_DELIVERY flag (0x10) to its mode
/// byte: its consumer then also gets the claimed output at the claim (`onProvisionalInference`)
/// and `onCorrection` if the claim loses (IVerinferConsumer).
interface IInferenceCoordinator {
    enum Status {
        None,
        Pending, // waiting for an answer (none) or for commits (consensus)
        Revealing, // consensus: reveals are open, no majority yet
        Fulfilled, // the output was delivered (consensus: payments settle at close)
        Refunded, // no result: the escrow went back to the requester
        Claimed // optimistic: the assigned node claimed; `finalizeOptimistic` or `refund` settles
    }

    /// @notice A request as `getRequest` returns it, also after settlement. `escrow` reads 0 once
    /// nothing is held for the request any more (mode none: fulfilled or refunded; consensus:
    /// the ballot closed).
    struct Request {
        address requester; // the consumer contract (or EOA) that pays and is called back
        uint64 deadline; // no result by then: refund and slash
        uint32 callbackGasLimit;
        uint8 mode; // as requested: 1, 2, 4 or 8, plus EARLY_DELIVERY (0x10) if set
        uint8 redundancy; // k for consensus, 1 for none
        Status status;
        uint96 escrow; // what the requester paid and may get back
        uint96 nodeFee; // per answering node
        uint64 assignedUntil; // only assigned nodes may answer before this time
        uint64 revealDeadline; // consensus: reveals after this are too late
        uint256 modelId;
        bytes32 inputHash; // zk, optimistic: keccak256(input) until settled; 0 in none, consensus
    }

    /// @notice Consensus bookkeeping: bit i is the i-th assigned node (assignment order).
    struct Ballot {
        uint8 committed;
        uint8 revealed;
        uint8 majority; // 1 + index of a node whose revealed output was delivered; 0 = none yet
        bool closed; // payments and slashes are settled
    }

    /// @notice `mode` is the protocol mode, without the EARLY_DELIVERY flag (nodes serve an early
    /// request like any optimistic one); `getRequest` reports the flag.
    event InferenceRequested(
        uint256 indexed requestId,
        uint256 indexed modelId,
        address indexed requester,
        uint8 mode,
        address[] assigned,
        uint64 deadline,
        uint256 fee,
        bytes input
    );
    event Committed(uint256 indexed requestId, address indexed node);
    event Revealed(uint256 indexed requestId, address indexed node, bytes32 outputHash);
    event InferenceFulfilled(uint256 indexed requestId, bytes32 outputHash, bytes output);
    /// @notice A consumer hook (onInference, onProvisionalInference or onCorrection) reverted or
    /// ran out of gas; the settlement stands. `reason`: at most 256 bytes of its revert data.
    event CallbackFailed(uint256 indexed requestId, bytes reason);
    event ConsensusClosed(uint256 indexed requestId, bool delivered, uint8 agreeing);
    event Refunded(uint256 indexed requestId, uint256 amount);
    event Paid(address indexed account, uint256 amount);
    event ProtocolFeeUpdated(address treasury, uint16 protocolFeeBps);
    event TimingUpdated(uint24 assignmentWindow, uint24 revealWindow, uint24 minDeadline);
    event SlashAmountsUpdated(uint96 noShowSlash, uint96 dissentSlash);
    /// @notice Optimistic: the assigned node claimed `requestId`'s output as DisputeGame claim
    /// `claimId` (the output and traceRoot are in the game's ClaimOpened event).
    event Claimed(uint256 indexed requestId, uint256 indexed claimId, address indexed node);
    event DisputeGameSet(address game);

    error VerinferUnknownRequest(uint256 requestId);
    error VerinferUnsupportedMode(uint8 mode);
    error VerinferModelNotServable(uint256 modelId, uint8 mode);
    error VerinferFeeAboveMax(uint256 fee, uint256 maxFee);
    error VerinferNoEligibleNode(uint256 modelId, uint8 mode);
    error VerinferInvalidRedundancy(uint8 redundancy);
    error VerinferDeadlineTooSoon(uint64 deadline);
    error VerinferDeadlineTooFar(uint64 deadline, uint64 max);
    error VerinferEmptyInput();
    error VerinferInputTooLarge(uint256 size, uint256 max);
    error VerinferCallbackGasTooHigh(uint32 requested, uint32 max);
    error VerinferWrongMode(uint256 requestId, uint8 mode);
    error VerinferNotAssigned(uint256 requestId, address node);
    error VerinferNotEligible(uint256 requestId, address node);
    error VerinferWrongStatus(uint256 requestId, Status status);
    error VerinferAlreadyCommitted(uint256 requestId, address node);
    error VerinferNotCommitted(uint256 requestId, address node);
    error VerinferAlreadyRevealed(uint256 requestId, address node);
    error VerinferRevealNotOpen(uint256 requestId);
    error VerinferWindowClosed(uint256 requestId);
    error VerinferRevealMismatch(uint256 requestId, address node);
    error VerinferDeadlinePassed(uint256 requestId);
    error VerinferDeadlineNotPassed(uint256 requestId);
    error VerinferInsufficientGas(uint256 available, uint256 required);
    error VerinferNothingToWithdraw(address account);
    error VerinferInvalidConfig(string field);
    /// @notice Zk mode: the input must be inline (TensorCodec kind 0x01), not `kind`.
    error VerinferZkInputNotInline(uint8 kind);
    /// @notice Zk mode: `fulfilZk`'s input is not the request's (its keccak256 differs).
    error VerinferInputMismatch(uint256 requestId);
    /// @notice Zk mode: the input (isOutput false) or output is not inline with exactly one tensor.
    error VerinferZkMalformedTensor(uint256 requestId, bool isOutput);
    /// @notice Zk mode: the input (isOutput false) or output tensor's scale is not the circuit's.
    error VerinferZkScaleMismatch(uint256 requestId, bool isOutput, int8 expected, int8 got);
    /// @notice Zk mode: the verifier rejected the proof (it reverted or returned false).
    error VerinferInvalidProof(uint256 requestId);
    /// @notice Optimistic: `finalizeOptimistic`'s output is not the claimed one (keccak256 differs).
    error VerinferOutputMismatch(uint256 requestId);
    /// @notice Optimistic: the claim is disputed (2) or lost (5): nothing to deliver (yet).
    error VerinferClaimNotDeliverable(uint256 requestId, uint8 claimStatus);
    /// @notice The EARLY_DELIVERY flag (0x10) was set on a mode other than optimistic (4).
    error VerinferEarlyDeliveryNotOptimistic(uint8 mode);

    /// @notice Ask model `modelId` for an output. Pulls the fee (model price + node fee(s) +
    /// protocol fee) from the caller, which must be at most `maxFee`.
    /// @param modelId The ModelRegistry id.
    /// @param input The input tensors in the verinfer tensor encoding (see TensorCodec).
    /// @param mode 1 (none), 2 (consensus), 4 (optimistic) or 8 (zk); optimistic and zk need an
    /// inline input (VerinferZkInputNotInline otherwise). Optimistic may add EARLY_DELIVERY
    /// (0x10, VerinferEarlyDeliveryNotOptimistic on other modes): 4 | 0x10 = 20.
    /// @param maxFee The most the caller pays; `quote` gives a fee that never fails.
    /// @param deadline Unix time after which an unanswered request is refundable.
    /// @param callbackGasLimit Gas for each consumer callback (contracts only).
    /// @param redundancy 1 for none, optimistic and zk; odd 3..7 for consensus.
    /// @return requestId The new request's id (ids start at 1).
    function request(
        uint256 modelId,
        bytes calldata input,
        uint8 mode,
        uint256 maxFee,
        uint64 deadline,
        uint32 callbackGasLimit,
        uint8 redundancy
    ) external returns (uint256 requestId);

    /// @notice Mode none: deliver the output (assigned node first, any eligible node after).
    function fulfil(uint256 requestId, bytes calldata output) external;

    /// @notice Mode zk: deliver `output` with a proof that the model's circuit maps `input` (the
    /// request's input) to it. Reverts with VerinferInvalidProof, paying nothing, if the model's
    /// verifier rejects the proof; the same node rules as `fulfil`.
    /// @param requestId The request.
    /// @param input The request's input bytes (their keccak256 is checked).
    /// @param output The output: inline, one tensor at the circuit's output scale.
    /// @param proof The EZKL proof bytes for the verifier.
    function fulfilZk(uint256 requestId, bytes calldata input, bytes calldata output, bytes calldata proof)
        external;

    /// @notice Mode optimistic: the assigned node claims `output` (inline, the program outputs'
    /// integers at their scales) with the `traceRoot` of its execution, before the deadline,
    /// forwarding the DisputeGame's claim bond as `msg.value`. Opens the game's claim with the
    /// model's weightsRoot, stepsRoot and counts (registry) and the request's input hash. An
    /// early-delivery request's consumer gets `onProvisionalInference(requestId, output)` here.
    /// @return claimId The DisputeGame claim (also `claimOf(requestId)`).
    function claim(uint256 requestId, bytes calldata output, bytes32 traceRoot)
        external
        payable
        returns (uint256 claimId);

    /// @notice Mode optimistic: deliver the claimed `output` (checked against the claim's hash)
    /// and pay as mode none does, once the claim finalized undisputed (this closes it in the game
    /// after its window; before, the game reverts VerinferChallengeWindowOpen) or its claimer won
    /// the dispute. Anyone may call it. A lost claim is settled by `refund` instead.
    function finalizeOptimistic(uint256 requestId, bytes calldata output) external;

    /// @notice Mode consensus: commit keccak256(abi.encode(requestId, node, output, salt)).
    function commit(uint256 requestId, bytes32 commitment) external;

    /// @notice Mode consensus: reveal; the reveal that gives an output a strict majority of k
    /// delivers it; the last reveal (or `finalize` after the reveal deadline) settles payments.
    function reveal(uint256 requestId, bytes calldata output, bytes32 salt) external;

    /// @notice Consensus: settle after the reveal deadline with the reveals that arrived.
    function finalize(uint256 requestId) external;

    /// @notice After the deadline with no result: refund the requester, slash the no-shows.
    /// Optimistic: also as soon as the claim lost its dispute, deadline or not: the requester is
    /// refunded in full and the claimer slashed the dissent amount; an early-delivery
    /// request's consumer then gets `onCorrection(requestId)`.
    function refund(uint256 requestId) external;

    /// @notice Pull everything owed to the caller (fees, royalties, refunds).
    function withdraw() external;

    /// @notice What `model`'s request in `mode` (EARLY_DELIVERY included: it costs nothing
    /// more) with `redundancy` costs right now: the node fee
    /// is the highest quote among all eligible nodes, whichever nodes are picked, so a request
    /// in the same state pays exactly this (`maxFee = quote(...)` fails on price only if a node
    /// raised its quote, or a dearer node became eligible, before the request).
    function quote(uint256 modelId, uint8 mode, uint8 redundancy) external view returns (uint256 fee);

    /// @notice A request; reverts with VerinferUnknownRequest for an unknown id.
    function getRequest(uint256 requestId) external view returns (Request memory);

    /// @notice The nodes assigned to a request, in assignment order.
    function assignedNodes(uint256 requestId) external view returns (address[] memory);

    /// @notice Consensus bookkeeping of a request.
    function getBallot(uint256 requestId) external view returns (Ballot memory);

    /// @notice What `account` may `withdraw`.
    function balanceOf(address account) external view returns (uint256);

    /// @notice The payment token (ERC-20).
    function paymentToken() external view returns (address);
}
