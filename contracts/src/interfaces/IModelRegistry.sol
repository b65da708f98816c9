// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IModelRegistry
/// @notice The registry of models that verinfer serves. Each model is an ERC-721 token; its
/// owner receives the model's royalties, so transferring the token transfers the royalty stream.
/// Content fields (what the model *is*) never change: a new version is a new model whose
/// `parent` points at the old one. Terms (price, royalty, modes, deprecation) are owner-updatable.
interface IModelRegistry {
    /// @notice The zk circuit of a model (EZKL, Halo2/KZG): what a zk-mode proof is checked
    /// against. All zero means "no circuit"; a model with MODE_ZK needs a complete one. The
    /// verifier and both scales share one storage slot (`zkConfig` reads only that slot).
    struct ZkCircuit {
        address verifier; // the circuit's dedicated EZKL verifier contract
        int8 inputScale; // fixed-point scale of the input instances (value = q / 2^scale)
        int8 outputScale; // fixed-point scale of the output instances
        bytes32 vkHash; // keccak256 of the verifying key bytes in the store
        bytes32 settingsHash; // keccak256 of the EZKL settings bytes in the store
        string artifactsCid; // CID of the ZkArtifacts JSON in the content-addressed store
    }

    /// @notice What a registrant supplies. Content fields are immutable after registration.
    struct ModelInput {
        string name;
        string cid; // CIDv1 (base32) of the ONNX file in the content-addressed store
        bytes32 programHash; // keccak256 of the compiled fixed-point program (0 until known)
        bytes32 weightsRoot; // Merkle root of the quantized weights (0 until known)
        uint32[][] inputShapes; // one shape per model input, batch dimension bound
        uint32[][] outputShapes; // one shape per model output
        uint256 price; // per inference, in payment-token units
        uint16 royaltyBps; // share of each fee paid to the token owner
        uint8 modes; // bitmask of allowed verification modes
        ZkCircuit zk; // the zk circuit (all zero if none; required with MODE_ZK)
        uint256 parent; // model this one derives from (0 = none)
        string license; // SPDX id or URL
        string metadataURI; // model card, returned as tokenURI
        Optimistic optimistic; // the step descriptors (all zero if none; required with MODE_OPTIMISTIC)
    }

    /// @notice What optimistic mode's dispute game needs besides programHash and weightsRoot:
    /// the root of the program's step descriptors (docs/optimistic.md, "Step descriptors"), the
    /// number of steps (leaves of stepsRoot and of every traceRoot) and of constants (leaves of
    /// weightsRoot). The counts bound the game's list proofs, so they come from the registry,
    /// never from the claimer. `nSteps` and `nConstants` share one storage slot.
    struct Optimistic {
        bytes32 stepsRoot;
        uint32 nSteps;
        uint32 nConstants;
    }

    /// @notice A registered model as stored.
    struct Model {
        string name;
        string cid;
        bytes32 programHash;
        bytes32 weightsRoot;
        uint32[][] inputShapes;
        uint32[][] outputShapes;
        uint256 price;
        uint16 royaltyBps;
        uint8 modes;
        bool deprecated;
        ZkCircuit zk;
        uint256 parent;
        string license;
        string metadataURI;
        uint64 registeredAt;
        Optimistic optimistic;
    }

    event ModelRegistered(
        uint256 indexed modelId, address indexed owner, uint256 indexed parent, string cid, bytes32 programHash
    );
    event PriceUpdated(uint256 indexed modelId, uint256 oldPrice, uint256 newPrice);
    event RoyaltyUpdated(uint256 indexed modelId, uint16 oldBps, uint16 newBps);
    event ModesUpdated(uint256 indexed modelId, uint8 oldModes, uint8 newModes);
    event DeprecationUpdated(uint256 indexed modelId, bool deprecated);

    error VerinferUnknownModel(uint256 modelId);
    error VerinferNotModelOwner(uint256 modelId, address caller);
    error VerinferUnknownParent(uint256 parent);
    error VerinferRoyaltyTooHigh(uint16 royaltyBps, uint16 maxBps);
    error VerinferInvalidModes(uint8 modes);
    error VerinferEmptyField(string field);
    error VerinferInvalidShape(string field, uint256 index);
    /// @notice MODE_ZK needs a zk circuit, and the model has none.
    error VerinferZkCircuitMissing();
    /// @notice A zk circuit was given but `field` is missing (zero, empty, or a verifier without
    /// code): a circuit is either all zero or complete.
    error VerinferInvalidZkCircuit(string field);
    /// @notice MODE_OPTIMISTIC needs non-zero programHash, weightsRoot, stepsRoot and nSteps.
    error VerinferOptimisticConfigMissing();

    /// @notice Register a model and mint its token to the caller.
    /// @return modelId The new model's id (ids start at 1).
    function register(ModelInput calldata input) external returns (uint256 modelId);

    /// @notice Set the price per inference. Owner or approved operator only.
    function setPrice(uint256 modelId, uint256 price) external;

    /// @notice Set the royalty share in basis points (at most 10,000). Owner or approved only.
    function setRoyalty(uint256 modelId, uint16 royaltyBps) external;

    /// @notice Set the allowed verification modes bitmask. Owner or approved only. Enabling
    /// MODE_ZK needs the model to have been registered with a zk circuit, MODE_OPTIMISTIC with
    /// its programHash, weightsRoot and step descriptors (Optimistic).
    function setModes(uint256 modelId, uint8 modes) external;

    /// @notice Mark a model deprecated (no new requests) or undo it. Owner or approved only.
    function setDeprecated(uint256 modelId, bool deprecated) external;

    /// @notice A registered model; reverts with VerinferUnknownModel for an unknown id.
    function getModel(uint256 modelId) external view returns (Model memory);

    /// @notice Whether `mode` (a single bit) is allowed for the model and it is not deprecated.
    function isServable(uint256 modelId, uint8 mode) external view returns (bool);

    /// @notice Who receives the royalty on `fee` and how much: the token owner, fee * bps / 10,000.
    function royaltyInfo(uint256 modelId, uint256 fee) external view returns (address recipient, uint256 amount);

    /// @notice The commercial terms of a model in one cheap call (for the coordinator); reverts with
    /// VerinferUnknownModel for an unknown id.
    function terms(uint256 modelId)
        external
        view
        returns (uint256 price, uint16 royaltyBps, uint8 modes, bool deprecated);

    /// @notice What the coordinator needs to check a zk-mode proof, in one storage read: the
    /// verifier and the input and output scales (all zero for a model without a circuit);
    /// reverts with VerinferUnknownModel for an unknown id.
    function zkConfig(uint256 modelId) external view returns (address verifier, int8 inputScale, int8 outputScale);

    /// @notice What the coordinator gives the dispute game for an optimistic claim, in three
    /// storage reads: the model's weightsRoot, stepsRoot and step and constant counts (all zero
    /// for a model without optimistic config); reverts with VerinferUnknownModel for an unknown id.
    function optimisticConfig(uint256 modelId)
        external
        view
        returns (bytes32 weightsRoot, bytes32 stepsRoot, uint32 nSteps, uint32 nConstants);

    /// @notice How many models were registered (the highest id).
    function modelCount() external view returns (uint256);
}
