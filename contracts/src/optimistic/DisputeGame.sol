// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IDisputeGame} from "../interfaces/IDisputeGame.sol";
import {ForcedErrors} from "./ForcedErrors.sol";
import {StepDescriptors} from "./StepDescriptors.sol";
import {StepRouter} from "./StepRouter.sol";
import {TensorProofs} from "./TensorProofs.sol";

/// @title DisputeGame
/// @notice The tensor-level dispute of docs/optimistic.md, section 2, between the claimer of
/// an inference result and one challenger: the claimer reveals its step leaves, the
/// challenger names the first step it disputes (or proves that the claimed output is not the
/// committed one), both bisect that step's chunk tree down to one chunk, the challenger names
/// one element, and the chain recomputes it from the claimer's committed operands
/// (StepRouter -> OneStepVerifier). A party that misses a move's deadline loses.
/// Bonds are plain ETH; payouts are credited and withdrawn (pull payments).
/// Forced errors (ForcedErrors, docs/optimistic.md section 4): a claim its claimer's seed
/// forces is wrong on purpose; the claimer reveals the secret (`concede`) to void it without
/// slash, and a challenger who disputed it wins the jackpot.
/// @dev Standalone for now: a claimer opens its own claim with `openClaim`; the coordinator
/// will call `open` (restricted to it) and read `claims(id).status` for the outcome.
contract DisputeGame is ForcedErrors {
    using StepDescriptors for StepDescriptors.Descriptor;

    /// @notice A claim's lifecycle.
    enum Status {
        None,
        Open, // in its challenge window, not under dispute (again, after one it survived)
        Disputed,
        Finalized, // the window closed with no dispute open and none lost
        ClaimerWon, // not a resting state any more: an upheld claim reopens (kept for numbering)
        ChallengerWon,
        Forced // the claimer revealed a forced error (`concede`): void, nobody slashed
    }

    /// @notice Whose move a dispute waits for, and which.
    enum Phase {
        None,
        Leaves, // claimer: revealLeaves
        Choose, // challenger: chooseStep or challengeOutput
        Root, // claimer: revealRoot
        Children, // claimer: revealChildren
        Pick, // challenger: pickChild
        Chunk, // claimer: revealChunk
        OneStep, // challenger: resolve
        Done
    }

    /// @notice A claim and its bond.
    struct Claim {
        address claimer;
        uint64 openedAt; // start of the window; moved later when a dispute ends near its end
        Status status;
        uint32 nSteps;
        uint32 nConstants;
        uint256 bond;
        bytes32 traceRoot;
        bytes32 weightsRoot;
        bytes32 stepsRoot;
        bytes32 inputHash;
        bytes32 outputHash; // keccak256 of the claimed inline output
        bytes32 seedHash; // the claimer's active seed hash at the claim (zero: none)
    }

    /// @notice The state of a claim's dispute.
    struct Dispute {
        address challenger;
        Phase phase;
        uint64 deadline; // the waiting party must move by then
        uint32 step; // the disputed step s
        uint8 level; // level of `node` in step s's chunk tree (0: a chunk's hash)
        uint64 index; // index of `node` at its level
        uint64 nValues; // values of step s's output
        bytes32 node; // the disputed node (during Root: the leaf L_s)
        bytes32 left; // children revealed by the claimer (Pick)
        bytes32 right;
        bytes32 descriptorHash; // leaf of step s's descriptor
        bytes suffix; // tensor_leaf suffix of step s (shape, scale)
    }

    /// @notice A step, its descriptor proven against stepsRoot and its leaf against traceRoot.
    struct StepProof {
        uint256 step;
        StepDescriptors.Descriptor descriptor;
        bytes32[] stepsProof;
        bytes32 leaf; // the claimer's L_step
        bytes32[] traceProof;
    }

    /// @notice The challenger's last move: element `j` of the revealed chunk, recomputed.
    struct OneStepProof {
        StepDescriptors.Descriptor descriptor; // step s's, again (checked by hash)
        uint256 j; // index of the element in the chunk (0..127)
        bytes chunk; // the chunk the claimer revealed
        bytes32[] operandRoots; // per operand: its tensor root (ignored for request inputs)
        bytes32[][] operandProofs; // per operand: list proof (traceRoot or weightsRoot)
        bytes input; // the request's inline input (when an operand is a request input)
        TensorProofs.Opening[] openings; // per operand, for the one-step verifier
    }

    uint256 private constant VALUES_PER_CHUNK = 128;
    uint256 private constant BPS = 10_000;

    /// @notice Recomputes one element of a step from its descriptor.
    StepRouter public immutable router;
    /// @notice The only caller of `open` (the coordinator), or zero.
    address public immutable coordinator;
    /// @notice Receives the share of a loser's bond that does not go to the winner.
    address public immutable treasury;
    /// @notice Claim bond, in wei.
    uint256 public immutable claimBond;
    /// @notice Challenge bond, in wei.
    uint256 public immutable challengeBond;
    /// @notice Challenge window after a claim, in seconds (W).
    uint256 public immutable window;
    /// @notice Time for each move of a dispute, in seconds (T).
    uint256 public immutable moveTime;
    /// @notice Share of the loser's bond that goes to the treasury, in basis points.
    uint256 public immutable feeBps;

    /// @notice Claims by id (ids start at 1).
    mapping(uint256 => Claim) public claims;
    /// @notice Disputes by claim id.
    mapping(uint256 => Dispute) public disputes;
    /// @notice Wei each account can withdraw.
    mapping(address => uint256) public credits;
    /// @notice Number of claims opened so far (the last id).
    uint256 public claimCount;

    /// @notice A claim was opened with its bond.
    event ClaimOpened(
        uint256 indexed claimId, address indexed claimer, bytes32 traceRoot, bytes output
    );
    /// @notice A claim's window closed without a dispute.
    event ClaimFinalized(uint256 indexed claimId);
    /// @notice A challenger opened the claim's dispute.
    event Challenged(uint256 indexed claimId, address indexed challenger);
    /// @notice The claimer revealed its step leaves.
    event LeavesRevealed(uint256 indexed claimId, bytes32[] leaves);
    /// @notice The challenger named the disputed step.
    event StepChosen(uint256 indexed claimId, uint256 step, uint256 nValues, uint256 depth);
    /// @notice The claimer revealed the disputed step's tensor root.
    event RootRevealed(uint256 indexed claimId, bytes32 root);
    /// @notice The claimer revealed the children of node (`level`, `index`).
    event ChildrenRevealed(
        uint256 indexed claimId, uint256 level, uint256 index, bytes32 left, bytes32 right
    );
    /// @notice The challenger picked child (`level`, `index`).
    event ChildPicked(uint256 indexed claimId, uint256 level, uint256 index);
    /// @notice The claimer revealed chunk `chunkIndex` of the disputed step.
    event ChunkRevealed(uint256 indexed claimId, uint256 chunkIndex, bytes chunk);
    /// @notice The dispute ended: `reason` is 0 one-step, 1 output binding, 2 timeout.
    event DisputeResolved(
        uint256 indexed claimId, address indexed winner, bool claimerWon, uint8 reason
    );
    /// @notice `account` withdrew `amount` wei.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice The claimer proved the claim a forced error: its bond is back; the challenger
    /// (zero if none) got its bond and `jackpotPaid` wei from the pool.
    event ForcedErrorConceded(uint256 indexed claimId, address indexed challenger, uint256 jackpotPaid);

    /// @notice Reasons in DisputeResolved.
    uint8 public constant BY_ONE_STEP = 0;
    uint8 public constant BY_OUTPUT = 1;
    uint8 public constant BY_TIMEOUT = 2;

    /// @notice Only the coordinator may open claims on behalf of a claimer.
    error VerinferNotCoordinator(address caller);
    /// @notice The ETH sent is not the bond.
    error VerinferWrongBond(uint256 expected, uint256 given);
    /// @notice A claim needs a claimer, at least one step and a trace root.
    error VerinferBadClaim();
    /// @notice No claim has this id.
    error VerinferUnknownClaim(uint256 claimId);
    /// @notice The claim is not in the state this call needs (already disputed or settled).
    error VerinferClaimNotOpen(uint256 claimId, Status status);
    /// @notice The claim's challenge window has closed.
    error VerinferChallengeWindowClosed(uint256 claimId);
    /// @notice The claim's challenge window is still open.
    error VerinferChallengeWindowOpen(uint256 claimId);
    /// @notice The dispute waits for another move (a replayed or early move).
    error VerinferWrongPhase(Phase expected, Phase actual);
    /// @notice The move belongs to the other party.
    error VerinferNotYourTurn(address expected, address caller);
    /// @notice The move's deadline has passed: only `timeout` remains.
    error VerinferMoveDeadlinePassed(uint256 deadline);
    /// @notice The waiting party still has time to move.
    error VerinferMoveDeadlineNotPassed(uint256 deadline);
    /// @notice The leaves are not one per step, or do not commit to the trace root.
    error VerinferBadLeaves();
    /// @notice The descriptor or leaf of the step is not the committed one.
    error VerinferBadStepProof(uint256 step);
    /// @notice The root, with the step's shape and scale, does not hash to its leaf.
    error VerinferBadRoot();
    /// @notice The children do not hash to the disputed node.
    error VerinferBadChildren();
    /// @notice A padding node is not the zero subtree, or was picked for dispute.
    error VerinferPaddingNode(uint256 level, uint256 index);
    /// @notice The chunk does not hash to the leaf, or has a wrong length or padding.
    error VerinferBadChunk();
    /// @notice The element is not a value of the disputed chunk.
    error VerinferBadElement(uint256 j);
    /// @notice An operand's root, proof or opening does not match the commitments.
    error VerinferBadOperand(uint256 operand);
    /// @notice The input or output bytes are not the claim's (or are malformed).
    error VerinferBadInput();
    /// @notice The step's output is not a program output.
    error VerinferNotAnOutput(uint256 step);
    /// @notice The claimed output is the committed one: nothing to dispute there.
    error VerinferOutputMatches(uint256 step);
    /// @notice Nothing is credited to the caller.
    error VerinferNoCredit();
    /// @notice The caller refused the withdrawn ETH.
    error VerinferTransferFailed();
    /// @notice Only the claim's claimer may concede it.
    error VerinferNotClaimer(uint256 claimId, address caller);
    /// @notice The secret is not the one whose hash the claim recorded (or it recorded none).
    error VerinferWrongSecret(uint256 claimId);
    /// @notice The secret does not make this claim's input a forced error.
    error VerinferNotForced(uint256 claimId);

    /// @param router_ the StepRouter (which holds the OneStepVerifier)
    /// @param coordinator_ the only caller of `open`, or zero for none
    /// @param treasury_ receives `feeBps` of every lost bond
    /// @param claimBond_ claim bond in wei (> 0)
    /// @param challengeBond_ challenge bond in wei (> 0)
    /// @param window_ challenge window in seconds (> 0)
    /// @param moveTime_ time per move in seconds (> 0)
    /// @param feeBps_ the treasury's share of a lost bond (<= 5,000)
    /// @param forcedRatePpm_ forced errors per million seeded claims (<= 1,000,000; 0: none)
    /// @param jackpotFee_ wei each claim adds to the jackpot pool (may be 0)
    /// @param jackpotPayout_ wei paid to the challenger of a conceded forced error
    /// @param seedDelay_ seconds from a seed's commit until it is active (> 0)
    constructor(
        StepRouter router_,
        address coordinator_,
        address treasury_,
        uint256 claimBond_,
        uint256 challengeBond_,
        uint256 window_,
        uint256 moveTime_,
        uint256 feeBps_,
        uint256 forcedRatePpm_,
        uint256 jackpotFee_,
        uint256 jackpotPayout_,
        uint256 seedDelay_
    ) ForcedErrors(forcedRatePpm_, jackpotFee_, jackpotPayout_, seedDelay_) {
        if (address(router_) == address(0) || treasury_ == address(0)) {
            revert VerinferBadGameParams();
        }
        if (claimBond_ == 0 || challengeBond_ == 0 || window_ == 0 || moveTime_ == 0) {
            revert VerinferBadGameParams();
        }
        if (feeBps_ > BPS / 2) revert VerinferBadGameParams();
        router = router_;
        coordinator = coordinator_;
        treasury = treasury_;
        claimBond = claimBond_;
        challengeBond = challengeBond_;
        window = window_;
        moveTime = moveTime_;
        feeBps = feeBps_;
    }

    // ---- claims ----------------------------------------------------------------------

    /// @notice Opens a claim by its claimer, with `claimDeposit()` wei (the bond and the
    /// jackpot fee).
    /// @param p what the claim commits to (trace, model, request input)
    /// @param output the claimed output, inline-encoded (its hash is stored)
    /// @return claimId the new claim's id
    function openClaim(IDisputeGame.ClaimParams calldata p, bytes calldata output)
        external
        payable
        returns (uint256 claimId)
    {
        return _open(msg.sender, p, output);
    }

    /// @notice Opens a claim on behalf of `claimer`; only the coordinator, which pays
    /// `claimDeposit()`.
    /// @param claimer the node that made the claim (it plays the claimer's moves)
    /// @param p what the claim commits to
    /// @param output the claimed output, inline-encoded
    /// @return claimId the new claim's id
    function open(address claimer, IDisputeGame.ClaimParams calldata p, bytes calldata output)
        external
        payable
        returns (uint256 claimId)
    {
        if (msg.sender != coordinator || coordinator == address(0)) {
            revert VerinferNotCoordinator(msg.sender);
        }
        return _open(claimer, p, output);
    }

    /// @notice Closes an undisputed claim after its window; its bond is credited back.
    /// @param claimId the claim
    function finalize(uint256 claimId) external {
        Claim storage c = _claim(claimId);
        if (c.status != Status.Open) revert VerinferClaimNotOpen(claimId, c.status);
        if (block.timestamp <= c.openedAt + window) revert VerinferChallengeWindowOpen(claimId);
        c.status = Status.Finalized;
        credits[c.claimer] += c.bond;
        emit ClaimFinalized(claimId);
    }

    /// @notice Disputes an open claim, with `challengeBond` wei: one dispute at a time; a claim
    /// that survives a dispute is open again for the next challenger (see `_settle`).
    /// @param claimId the claim
    function challenge(uint256 claimId) external payable {
        Claim storage c = _claim(claimId);
        if (c.status != Status.Open) revert VerinferClaimNotOpen(claimId, c.status);
        if (block.timestamp > c.openedAt + window) revert VerinferChallengeWindowClosed(claimId);
        if (msg.value != challengeBond) revert VerinferWrongBond(challengeBond, msg.value);
        c.status = Status.Disputed;
        Dispute storage d = disputes[claimId];
        d.challenger = msg.sender;
        _next(d, Phase.Leaves);
        emit Challenged(claimId, msg.sender);
    }

    // ---- forced errors ---------------------------------------------------------------

    /// @notice The claimer proves its claim a forced error by revealing its seed's secret,
    /// while the claim is open or disputed: the claim becomes `Forced` (void; a dispute ends),
    /// the claimer's bond is credited back, a challenger (if any) is credited its bond and
    /// `min(jackpotPayout, jackpotOf[claimer])` from the pool, and the revealed secret becomes
    /// the claimer's seed head if the claim recorded the current head (so the next secret is
    /// the chain's next preimage, committed long before).
    /// @param claimId the claim
    /// @param secret the secret whose hash the claim recorded
    function concede(uint256 claimId, bytes32 secret) external {
        Claim storage c = _claim(claimId);
        address claimer = c.claimer;
        if (msg.sender != claimer) revert VerinferNotClaimer(claimId, msg.sender);
        Status status = c.status;
        if (status != Status.Open && status != Status.Disputed) {
            revert VerinferClaimNotOpen(claimId, status);
        }
        bytes32 seedHash = c.seedHash;
        if (seedHash == bytes32(0) || keccak256(abi.encode(secret)) != seedHash) {
            revert VerinferWrongSecret(claimId);
        }
        if (!isForced(secret, c.inputHash)) revert VerinferNotForced(claimId);
        c.status = Status.Forced;
        credits[claimer] += c.bond;
        Dispute storage d = disputes[claimId];
        address challenger = d.challenger;
        uint256 paid;
        if (status == Status.Disputed) {
            d.phase = Phase.Done;
            paid = _takeJackpot(claimer);
            credits[challenger] += challengeBond + paid;
        }
        _advanceSeed(claimer, seedHash, secret);
        emit ForcedErrorConceded(claimId, challenger, paid);
    }

    /// @notice Wei to send with `openClaim` / `open`: the claim bond plus the jackpot fee.
    /// @return deposit `claimBond + jackpotFee`
    function claimDeposit() external view returns (uint256 deposit) {
        return claimBond + jackpotFee;
    }

    // ---- moves -----------------------------------------------------------------------

    /// @notice Move 1 (claimer): its step leaves, checked against traceRoot.
    /// @param claimId the claim
    /// @param leaves the tensor_leaf of every step output, in step order
    function revealLeaves(uint256 claimId, bytes32[] calldata leaves) external {
        (Claim storage c, Dispute storage d) = _move(claimId, Phase.Leaves, true);
        if (leaves.length != c.nSteps) revert VerinferBadLeaves();
        if (StepDescriptors.merkleRoot(leaves) != c.traceRoot) revert VerinferBadLeaves();
        _next(d, Phase.Choose);
        emit LeavesRevealed(claimId, leaves);
    }

    /// @notice Move 2a (challenger): the claimed output tensor of an output step is not the
    /// one the claimer committed to; if so the claimer loses at once (else this reverts).
    /// @param claimId the claim
    /// @param sp the output step, its descriptor and the claimer's leaf, with proofs
    /// @param output the claimed output bytes (checked against the claim)
    function challengeOutput(uint256 claimId, StepProof calldata sp, bytes calldata output)
        external
    {
        (Claim storage c,) = _move(claimId, Phase.Choose, false);
        _checkStep(c, sp);
        StepDescriptors.Descriptor calldata desc = sp.descriptor;
        if (desc.output < 0) revert VerinferNotAnOutput(sp.step);
        if (keccak256(output) != c.outputHash) revert VerinferBadInput();
        (bool ok, int8 scale, uint256 count, bytes calldata vals) =
            StepDescriptors.inlineTensor(output, uint256(int256(desc.output)));
        bool matches = ok && count == StepDescriptors.size(desc.shape) && count > 0
            && int32(scale) == desc.scale
            && keccak256(
                abi.encodePacked(
                    StepDescriptors.packedRoot(vals, count),
                    StepDescriptors.leafSuffix(desc.shape, desc.scale)
                )
            ) == sp.leaf;
        if (matches) revert VerinferOutputMatches(sp.step);
        _settle(claimId, false, BY_OUTPUT);
    }

    /// @notice Move 2b (challenger): names the disputed step `sp.step` (the first whose
    /// leaf differs from its own), with its descriptor and the claimer's leaf.
    /// @param claimId the claim
    /// @param sp the step, its descriptor and the claimer's leaf, with proofs
    function chooseStep(uint256 claimId, StepProof calldata sp) external {
        (Claim storage c, Dispute storage d) = _move(claimId, Phase.Choose, false);
        _checkStep(c, sp);
        StepDescriptors.Descriptor calldata desc = sp.descriptor;
        uint256 n = StepDescriptors.size(desc.shape);
        if (n == 0 || n > type(uint64).max) revert VerinferBadStepProof(sp.step);
        d.step = uint32(sp.step);
        d.nValues = uint64(n);
        d.node = sp.leaf;
        d.descriptorHash = desc.leaf();
        d.suffix = StepDescriptors.leafSuffix(desc.shape, desc.scale);
        uint256 depth = StepDescriptors.depth((n + VALUES_PER_CHUNK - 1) / VALUES_PER_CHUNK);
        d.level = uint8(depth);
        d.index = 0;
        _next(d, Phase.Root);
        emit StepChosen(claimId, sp.step, n, depth);
    }

    /// @notice Move 3 (claimer): the disputed step's tensor root, checked against its leaf.
    /// @param claimId the claim
    /// @param root the tensor root of step s's output
    function revealRoot(uint256 claimId, bytes32 root) external {
        (, Dispute storage d) = _move(claimId, Phase.Root, true);
        if (keccak256(abi.encodePacked(root, d.suffix)) != d.node) revert VerinferBadRoot();
        d.node = root;
        _next(d, d.level == 0 ? Phase.Chunk : Phase.Children);
        emit RootRevealed(claimId, root);
    }

    /// @notice Bisection (claimer): the two children of the disputed node; a child made
    /// only of padding must be the zero subtree of its level.
    /// @param claimId the claim
    /// @param left the left child's hash
    /// @param right the right child's hash
    function revealChildren(uint256 claimId, bytes32 left, bytes32 right) external {
        (, Dispute storage d) = _move(claimId, Phase.Children, true);
        if (keccak256(abi.encodePacked(left, right)) != d.node) revert VerinferBadChildren();
        uint256 childLevel = d.level - 1;
        uint256 nodes = _nodesAt(d.nValues, childLevel);
        if (2 * d.index >= nodes && left != _zero(childLevel)) {
            revert VerinferPaddingNode(childLevel, 2 * d.index);
        }
        if (2 * d.index + 1 >= nodes && right != _zero(childLevel)) {
            revert VerinferPaddingNode(childLevel, 2 * d.index + 1);
        }
        d.left = left;
        d.right = right;
        _next(d, Phase.Pick);
        emit ChildrenRevealed(claimId, d.level, d.index, left, right);
    }

    /// @notice Bisection (challenger): the child it disputes (never a padding node).
    /// @param claimId the claim
    /// @param pickRight the right child (else the left)
    function pickChild(uint256 claimId, bool pickRight) external {
        (, Dispute storage d) = _move(claimId, Phase.Pick, false);
        uint256 level = d.level - 1;
        uint256 index = 2 * d.index + (pickRight ? 1 : 0);
        if (index >= _nodesAt(d.nValues, level)) revert VerinferPaddingNode(level, index);
        d.node = pickRight ? d.right : d.left;
        d.level = uint8(level);
        d.index = uint64(index);
        _next(d, level == 0 ? Phase.Chunk : Phase.Children);
        emit ChildPicked(claimId, level, index);
    }

    /// @notice Leaf (claimer): the disputed chunk, exactly as long as its position implies,
    /// with zero padding after the tensor's last value.
    /// @param claimId the claim
    /// @param chunk the chunk's bytes
    function revealChunk(uint256 claimId, bytes calldata chunk) external {
        (, Dispute storage d) = _move(claimId, Phase.Chunk, true);
        _checkChunk(d, chunk);
        _next(d, Phase.OneStep);
        emit ChunkRevealed(claimId, d.index, chunk);
    }

    /// @notice One step (challenger): names element `j` of the revealed chunk and proves the
    /// operands it reads; the chain recomputes it, and the claimer loses iff its value differs.
    /// @param claimId the claim
    /// @param p the element, the chunk again, the operand roots, proofs and openings
    function resolve(uint256 claimId, OneStepProof calldata p) external {
        (Claim storage c, Dispute storage d) = _move(claimId, Phase.OneStep, false);
        StepDescriptors.Descriptor calldata desc = p.descriptor;
        if (desc.leaf() != d.descriptorHash) revert VerinferBadStepProof(d.step);
        _checkChunk(d, p.chunk);
        uint256 flat = d.index * VALUES_PER_CHUNK + p.j;
        if (p.j >= VALUES_PER_CHUNK || flat >= d.nValues) revert VerinferBadElement(p.j);
        uint256 nOps = desc.operands.length;
        if (p.openings.length != nOps || p.operandRoots.length != nOps) revert VerinferBadOperand(nOps);
        if (p.operandProofs.length != nOps) revert VerinferBadOperand(nOps);
        for (uint256 i; i < nOps; ++i) {
            _bindOperand(c, d.step, desc.operands[i], p, i);
        }
        int256 claimed = int256(int32(uint32(bytes4(p.chunk[4 * p.j:4 * p.j + 4]))));
        int256 computed = router.recompute(desc, flat, p.openings);
        _settle(claimId, computed == claimed, BY_ONE_STEP);
    }

    /// @notice Ends a dispute whose waiting party missed its deadline: that party loses.
    /// @param claimId the claim
    function timeout(uint256 claimId) external {
        Claim storage c = _claim(claimId);
        if (c.status != Status.Disputed) revert VerinferClaimNotOpen(claimId, c.status);
        Dispute storage d = disputes[claimId];
        if (block.timestamp <= d.deadline) revert VerinferMoveDeadlineNotPassed(d.deadline);
        _settle(claimId, !_claimersTurn(d.phase), BY_TIMEOUT);
    }

    /// @notice Withdraws every wei credited to the caller.
    function withdraw() external {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert VerinferNoCredit();
        credits[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool sent,) = msg.sender.call{value: amount}("");
        if (!sent) revert VerinferTransferFailed();
    }

    /// @notice Whose move the dispute of `claimId` waits for, and until when.
    /// @param claimId the claim
    /// @return phase the expected move
    /// @return mover the account that must make it (zero when none)
    /// @return deadline the time by which it must be made
    function turn(uint256 claimId)
        external
        view
        returns (Phase phase, address mover, uint256 deadline)
    {
        Dispute storage d = disputes[claimId];
        phase = d.phase;
        if (phase == Phase.None || phase == Phase.Done) return (phase, address(0), 0);
        mover = _claimersTurn(phase) ? claims[claimId].claimer : d.challenger;
        deadline = d.deadline;
    }

    // ---- internals -------------------------------------------------------------------

    function _open(address claimer, IDisputeGame.ClaimParams calldata p, bytes calldata output)
        private
        returns (uint256 claimId)
    {
        uint256 deposit = claimBond + jackpotFee;
        if (msg.value != deposit) revert VerinferWrongBond(deposit, msg.value);
        if (claimer == address(0) || p.nSteps == 0 || p.traceRoot == bytes32(0)) {
            revert VerinferBadClaim();
        }
        claimId = ++claimCount;
        _collectJackpotFee(claimer);
        claims[claimId] = Claim({
            claimer: claimer,
            openedAt: uint64(block.timestamp),
            status: Status.Open,
            nSteps: p.nSteps,
            nConstants: p.nConstants,
            bond: claimBond,
            traceRoot: p.traceRoot,
            weightsRoot: p.weightsRoot,
            stepsRoot: p.stepsRoot,
            inputHash: p.inputHash,
            outputHash: keccak256(output),
            seedHash: activeSeed(claimer)
        });
        emit ClaimOpened(claimId, claimer, p.traceRoot, output);
    }

    function _claim(uint256 claimId) private view returns (Claim storage c) {
        c = claims[claimId];
        if (c.status == Status.None) revert VerinferUnknownClaim(claimId);
    }

    /// @dev Checks that `phase` is the dispute's, that the caller is the party it waits for
    /// (`byClaimer`) and that the deadline has not passed.
    function _move(uint256 claimId, Phase phase, bool byClaimer)
        private
        view
        returns (Claim storage c, Dispute storage d)
    {
        c = _claim(claimId);
        d = disputes[claimId];
        if (d.phase != phase) revert VerinferWrongPhase(phase, d.phase);
        address mover = byClaimer ? c.claimer : d.challenger;
        if (msg.sender != mover) revert VerinferNotYourTurn(mover, msg.sender);
        if (block.timestamp > d.deadline) revert VerinferMoveDeadlinePassed(d.deadline);
    }

    function _next(Dispute storage d, Phase phase) private {
        d.phase = phase;
        d.deadline = uint64(block.timestamp + moveTime);
    }

    function _claimersTurn(Phase phase) private pure returns (bool) {
        return phase == Phase.Leaves || phase == Phase.Root || phase == Phase.Children
            || phase == Phase.Chunk;
    }

    /// @dev The descriptor of `sp.step` against stepsRoot and the leaf against traceRoot.
    function _checkStep(Claim storage c, StepProof calldata sp) private view {
        bool ok = StepDescriptors.verifyList(
            c.stepsRoot, c.nSteps, sp.step, sp.descriptor.leaf(), sp.stepsProof
        ) && StepDescriptors.verifyList(c.traceRoot, c.nSteps, sp.step, sp.leaf, sp.traceProof);
        if (!ok) revert VerinferBadStepProof(sp.step);
    }

    /// @dev The chunk hashes to the disputed leaf node, has its exact length and zero padding.
    function _checkChunk(Dispute storage d, bytes calldata chunk) private view {
        uint256 n = d.nValues;
        uint256 words = (n + 7) / 8;
        uint256 w = words - 16 * d.index;
        if (w > 16) w = 16;
        if (chunk.length != 32 * w || keccak256(chunk) != d.node) revert VerinferBadChunk();
        if (d.index == (n + VALUES_PER_CHUNK - 1) / VALUES_PER_CHUNK - 1) {
            uint256 used = n - 8 * (words - 1); // values in the last word, 1..8
            uint256 last = uint256(bytes32(chunk[chunk.length - 32:]));
            if (last << (32 * used) != 0) revert VerinferBadChunk();
        }
    }

    /// @dev Binds opening `i` to operand `op`: its root from the claimer's trace (a list
    /// proof against traceRoot), the weights (against weightsRoot) or the request input
    /// (computed from the input bytes), and its size to the operand's shape.
    function _bindOperand(
        Claim storage c,
        uint256 step,
        StepDescriptors.Operand calldata op,
        OneStepProof calldata p,
        uint256 i
    ) private view {
        uint256 n = StepDescriptors.size(op.shape);
        bytes32 root = p.operandRoots[i];
        if (op.kind == StepDescriptors.KIND_INPUT) {
            if (keccak256(p.input) != c.inputHash) revert VerinferBadInput();
            (bool ok,, uint256 count, bytes calldata vals) =
                StepDescriptors.inlineTensor(p.input, op.index);
            if (!ok || count != n || n == 0) revert VerinferBadInput();
            root = StepDescriptors.packedRoot(vals, count);
        } else {
            bytes32 leaf_ =
                keccak256(abi.encodePacked(root, StepDescriptors.leafSuffix(op.shape, op.scale)));
            bool ok = op.kind == StepDescriptors.KIND_STEP
                ? op.index < step
                    && StepDescriptors.verifyList(
                        c.traceRoot, c.nSteps, op.index, leaf_, p.operandProofs[i]
                    )
                : op.kind == StepDescriptors.KIND_CONST
                    && StepDescriptors.verifyList(
                        c.weightsRoot, c.nConstants, op.index, leaf_, p.operandProofs[i]
                    );
            if (!ok) revert VerinferBadOperand(i);
        }
        if (p.openings[i].root != root || p.openings[i].n != n) revert VerinferBadOperand(i);
    }

    /// @dev Nodes at `level` of a tensor of `n` values that hold real values (the rest are
    /// padding): ceil(k / 2^level), k = n_chunks(n).
    function _nodesAt(uint256 n, uint256 level) private pure returns (uint256) {
        uint256 k = (n + VALUES_PER_CHUNK - 1) / VALUES_PER_CHUNK;
        return (k + (uint256(1) << level) - 1) >> level;
    }

    /// @dev Z[level]: the hash of a subtree of padding.
    function _zero(uint256 level) private pure returns (bytes32 z) {
        for (uint256 i; i < level; ++i) {
            z = keccak256(abi.encodePacked(z, z));
        }
    }

    /// @dev Effects of a dispute's end; the winner's and the treasury's shares are credited.
    function _settle(uint256 claimId, bool claimerWon, uint8 reason) private {
        Claim storage c = claims[claimId];
        Dispute storage d = disputes[claimId];
        d.phase = Phase.Done;
        uint256 lost = claimerWon ? challengeBond : c.bond;
        uint256 fee = lost * feeBps / BPS;
        address winner = claimerWon ? c.claimer : d.challenger;
        if (claimerWon) {
            // The claim is upheld against this challenger only: it reopens, keeping its bond,
            // and anyone may still dispute it until its window ends, at least `moveTime` from
            // now (a careless or colluding challenger cannot shield a wrong claim).
            c.status = Status.Open;
            uint256 reopenEnd = block.timestamp + moveTime;
            if (c.openedAt + window < reopenEnd) c.openedAt = uint64(reopenEnd - window);
            credits[winner] += lost - fee;
        } else {
            c.status = Status.ChallengerWon;
            credits[winner] += challengeBond + lost - fee;
        }
        credits[treasury] += fee;
        emit DisputeResolved(claimId, winner, claimerWon, reason);
    }
}
