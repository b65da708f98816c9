// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Models as ERC-721 tokens with content-addressed provenance, lineage and royalties.
contract ModelRegistry is ERC721, IModelRegistry {
    uint16 public constant MAX_ROYALTY_BPS = 10_000;
    uint8 public constant MODE_NONE = 1;
    uint8 public constant MODE_CONSENSUS = 2;
    uint8 public constant MODE_OPTIMISTIC = 4;
    uint8 public constant MODE_ZK = 8;
    uint8 public constant ALL_MODES = 15;

    uint256 private _count;
    mapping(uint256 modelId => Model) private _models;

    constructor() ERC721("verinfer Model", "VMODEL") {}

    /// @inheritdoc IModelRegistry
    function register(ModelInput calldata input) external returns (uint256 modelId) {
        if (bytes(input.name).length == 0) revert VerinferEmptyField("name");
        if (bytes(input.cid).length == 0) revert VerinferEmptyField("cid");
        _checkShapes(input.inputShapes, "inputShapes");
        _checkShapes(input.outputShapes, "outputShapes");
        _checkRoyalty(input.royaltyBps);
        _checkModes(input.modes);
        bool hasCircuit = _checkCircuit(input.zk);
        if (input.modes & MODE_ZK != 0 && !hasCircuit) revert VerinferZkCircuitMissing();
        if (input.modes & MODE_OPTIMISTIC != 0) {
            _checkOptimistic(input.programHash, input.weightsRoot, input.optimistic);
        }
        if (input.parent != 0 && input.parent > _count) revert VerinferUnknownParent(input.parent);

        modelId = ++_count;
        Model storage m = _models[modelId];
        m.name = input.name;
        m.cid = input.cid;
        m.programHash = input.programHash;
        m.weightsRoot = input.weightsRoot;
        _storeShapes(m.inputShapes, input.inputShapes);
        _storeShapes(m.outputShapes, input.outputShapes);
        m.price = input.price;
        m.royaltyBps = input.royaltyBps;
        m.modes = input.modes;
        if (hasCircuit) m.zk = input.zk;
        m.parent = input.parent;
        m.license = input.license;
        m.metadataURI = input.metadataURI;
        m.registeredAt = uint64(block.timestamp);
        m.optimistic = input.optimistic;
        // _mint, not _safeMint: the registrant is msg.sender, and an onERC721Received
        // callback would be an external call before the event for no benefit.
        _mint(msg.sender, modelId);
        emit ModelRegistered(modelId, msg.sender, input.parent, input.cid, input.programHash);
    }

    /// @inheritdoc IModelRegistry
    function setPrice(uint256 modelId, uint256 price) external {
        _checkCaller(modelId);
        uint256 old = _models[modelId].price;
        _models[modelId].price = price;
        emit PriceUpdated(modelId, old, price);
    }

    /// @inheritdoc IModelRegistry
    function setRoyalty(uint256 modelId, uint16 royaltyBps) external {
        _checkCaller(modelId);
        _checkRoyalty(royaltyBps);
        uint16 old = _models[modelId].royaltyBps;
        _models[modelId].royaltyBps = royaltyBps;
        emit RoyaltyUpdated(modelId, old, royaltyBps);
    }

    /// @inheritdoc IModelRegistry
    function setModes(uint256 modelId, uint8 modes) external {
        _checkCaller(modelId);
        _checkModes(modes);
        // A stored circuit is all zero or complete (checked at registration).
        if (modes & MODE_ZK != 0 && _models[modelId].zk.verifier == address(0)) revert VerinferZkCircuitMissing();
        if (modes & MODE_OPTIMISTIC != 0) {
            Model storage m = _models[modelId];
            _checkOptimistic(m.programHash, m.weightsRoot, m.optimistic);
        }
        uint8 old = _models[modelId].modes;
        _models[modelId].modes = modes;
        emit ModesUpdated(modelId, old, modes);
    }

    /// @inheritdoc IModelRegistry
    function setDeprecated(uint256 modelId, bool deprecated) external {
        _checkCaller(modelId);
        _models[modelId].deprecated = deprecated;
        emit DeprecationUpdated(modelId, deprecated);
    }

    /// @inheritdoc IModelRegistry
    function getModel(uint256 modelId) external view returns (Model memory) {
        _checkExists(modelId);
        return _models[modelId];
    }

    /// @inheritdoc IModelRegistry
    function isServable(uint256 modelId, uint8 mode) external view returns (bool) {
        _checkExists(modelId);
        Model storage m = _models[modelId];
        return !m.deprecated && mode != 0 && (m.modes & mode) == mode;
    }

    /// @inheritdoc IModelRegistry
    function royaltyInfo(uint256 modelId, uint256 fee) external view returns (address recipient, uint256 amount) {
        _checkExists(modelId);
        return (ownerOf(modelId), fee * _models[modelId].royaltyBps / MAX_ROYALTY_BPS);
    }

    /// @inheritdoc IModelRegistry
    function terms(uint256 modelId)
        external
        view
        returns (uint256 price, uint16 royaltyBps, uint8 modes, bool deprecated)
    {
        Model storage m = _models[modelId];
        modes = m.modes;
        // Every registered model has modes != 0 (_checkModes), so this checks existence without
        // reading _count: the coordinator calls this once per request.
        if (modes == 0) revert VerinferUnknownModel(modelId);
        return (m.price, m.royaltyBps, modes, m.deprecated);
    }

    /// @inheritdoc IModelRegistry
    function zkConfig(uint256 modelId) external view returns (address verifier, int8 inputScale, int8 outputScale) {
        ZkCircuit storage z = _models[modelId].zk;
        (verifier, inputScale, outputScale) = (z.verifier, z.inputScale, z.outputScale);
        // A zk-mode model always has a verifier, so the coordinator's call reads one slot; only
        // an answer of "no circuit" pays for the existence check.
        if (verifier == address(0)) _checkExists(modelId);
    }

    /// @inheritdoc IModelRegistry
    function optimisticConfig(uint256 modelId)
        external
        view
        returns (bytes32 weightsRoot, bytes32 stepsRoot, uint32 nSteps, uint32 nConstants)
    {
        Model storage m = _models[modelId];
        Optimistic storage o = m.optimistic;
        (weightsRoot, stepsRoot, nSteps, nConstants) = (m.weightsRoot, o.stepsRoot, o.nSteps, o.nConstants);
        // An optimistic-mode model always has steps: only an answer of "none" pays for the check.
        if (nSteps == 0) _checkExists(modelId);
    }

    /// @inheritdoc IModelRegistry
    function modelCount() external view returns (uint256) {
        return _count;
    }

    /// @notice The model card URI of a model (its metadataURI).
    function tokenURI(uint256 modelId) public view override returns (string memory) {
        _checkExists(modelId);
        return _models[modelId].metadataURI;
    }

    function _checkExists(uint256 modelId) private view {
        if (modelId == 0 || modelId > _count) revert VerinferUnknownModel(modelId);
    }

    function _checkCaller(uint256 modelId) private view {
        _checkExists(modelId);
        address owner = ownerOf(modelId);
        if (!_isAuthorized(owner, msg.sender, modelId)) revert VerinferNotModelOwner(modelId, msg.sender);
    }

    function _checkRoyalty(uint16 royaltyBps) private pure {
        if (royaltyBps > MAX_ROYALTY_BPS) revert VerinferRoyaltyTooHigh(royaltyBps, MAX_ROYALTY_BPS);
    }

    function _checkModes(uint8 modes) private pure {
        if (modes == 0 || modes > ALL_MODES) revert VerinferInvalidModes(modes);
    }

    /// @dev Whether `zk` is a circuit (false if all zero); reverts if it is only partly given.
    function _checkCircuit(ZkCircuit calldata zk) private view returns (bool) {
        bool empty = zk.verifier == address(0) && zk.inputScale == 0 && zk.outputScale == 0
            && zk.vkHash == 0 && zk.settingsHash == 0 && bytes(zk.artifactsCid).length == 0;
        if (empty) return false;
        if (zk.verifier.code.length == 0) revert VerinferInvalidZkCircuit("verifier");
        if (zk.vkHash == 0) revert VerinferInvalidZkCircuit("vkHash");
        if (zk.settingsHash == 0) revert VerinferInvalidZkCircuit("settingsHash");
        if (bytes(zk.artifactsCid).length == 0) revert VerinferInvalidZkCircuit("artifactsCid");
        return true;
    }

    /// @dev MODE_OPTIMISTIC: the dispute game needs the program, its constants and its steps.
    function _checkOptimistic(bytes32 programHash, bytes32 weightsRoot, Optimistic memory o) private pure {
        if (programHash == 0 || weightsRoot == 0 || o.stepsRoot == 0 || o.nSteps == 0) {
            revert VerinferOptimisticConfigMissing();
        }
    }

    /// @dev solc's legacy code generator cannot copy nested calldata arrays to storage at once.
    function _storeShapes(uint32[][] storage dst, uint32[][] calldata src) private {
        for (uint256 i = 0; i < src.length; ++i) {
            dst.push(src[i]);
        }
    }

    function _checkShapes(uint32[][] calldata shapes, string memory field) private pure {
        if (shapes.length == 0) revert VerinferEmptyField(field);
        for (uint256 i = 0; i < shapes.length; ++i) {
            if (shapes[i].length == 0) revert VerinferInvalidShape(field, i);
            for (uint256 j = 0; j < shapes[i].length; ++j) {
                if (shapes[i][j] == 0) revert VerinferInvalidShape(field, i);
            }
        }
    }
}
