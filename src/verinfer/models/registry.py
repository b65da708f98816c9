"""Typed client for the on-chain ModelRegistry, with its custom errors as Python exceptions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntFlag
from typing import TYPE_CHECKING, Any

from web3.logs import DISCARD
from web3.types import TxReceipt

from verinfer.chain.client import Chain
from verinfer.chain.contract_errors import register_error
from verinfer.errors import ContractRevertError, ModelError

if TYPE_CHECKING:
    from verinfer.verify.backend import ZkArtifacts

MAX_ROYALTY_BPS = 10_000
ZERO_HASH = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20


class Mode(IntFlag):
    """Verification modes; the registry stores an allowed-set bitmask."""

    NONE = 1
    CONSENSUS = 2
    OPTIMISTIC = 4
    ZK = 8

    @classmethod
    def parse(cls, text: str) -> Mode:
        """``"none,zk"`` -> Mode.NONE | Mode.ZK; unknown names raise ModelError."""
        names = [n.strip().lower() for n in text.split(",") if n.strip()]
        if not names:
            raise ModelError("no verification mode given", hint=f"choose from {cls.names()}")
        result = cls(0)
        for name in names:
            try:
                result |= cls[name.upper()]
            except KeyError:
                raise ModelError(
                    f"unknown verification mode {name!r}", hint=f"choose from {cls.names()}"
                ) from None
        return result

    @classmethod
    def names(cls) -> str:
        return ",".join(m.name.lower() for m in cls if m.name)

    def to_names(self) -> list[str]:
        return [m.name.lower() for m in Mode if m in self and m.name]


class UnknownModelError(ContractRevertError, ModelError):
    """No model has this id."""


class NotModelOwnerError(ContractRevertError, ModelError):
    """Only the model token's owner (or an approved operator) may change its terms."""


class UnknownParentError(ContractRevertError, ModelError):
    """The parent model named for lineage does not exist."""


class RoyaltyTooHighError(ContractRevertError, ModelError):
    """Royalty above 10,000 bps."""


class InvalidModesError(ContractRevertError, ModelError):
    """The modes bitmask is empty or has unknown bits."""


class InvalidModelFieldError(ContractRevertError, ModelError):
    """A required field is empty or a shape is invalid."""


class ZkCircuitMissingError(ContractRevertError, ModelError):
    """Zk mode needs a zk circuit (verifier, scales, key hashes, artifacts CID)."""


class InvalidZkCircuitError(ContractRevertError, ModelError):
    """A zk circuit was given but a field is missing (or the verifier has no code)."""


class OptimisticConfigMissingError(ContractRevertError, ModelError):
    """Optimistic mode needs programHash, weightsRoot, stepsRoot and the step count."""


register_error("VerinferUnknownModel", UnknownModelError, "list models with `verinfer model list`")
register_error(
    "VerinferNotModelOwner",
    NotModelOwnerError,
    "sign with the key of the model token's owner",
)
register_error(
    "VerinferUnknownParent", UnknownParentError, "check --parent with `verinfer model list`"
)
register_error("VerinferRoyaltyTooHigh", RoyaltyTooHighError, "royalty is at most 10000 bps")
register_error("VerinferInvalidModes", InvalidModesError, f"choose from {Mode.names()}")
register_error("VerinferEmptyField", InvalidModelFieldError)
register_error("VerinferInvalidShape", InvalidModelFieldError)
register_error(
    "VerinferZkCircuitMissing",
    ZkCircuitMissingError,
    "register the model with its zk circuit (ZkCircuit.from_artifacts) to allow mode zk",
)
register_error(
    "VerinferInvalidZkCircuit",
    InvalidZkCircuitError,
    "give every circuit field (deploy the verifier first), or none",
)

register_error(
    "VerinferOptimisticConfigMissing",
    OptimisticConfigMissingError,
    "register the model from its compiled program (`verinfer model add` fills programHash, "
    "weightsRoot and stepsRoot) to allow mode optimistic",
)

_INT8 = range(-128, 128)


@dataclass(frozen=True)
class ZkCircuit:
    """A model's zk circuit; mirrors IModelRegistry.ZkCircuit. The default means "no circuit"."""

    verifier: str = ZERO_ADDRESS
    input_scale: int = 0
    output_scale: int = 0
    vk_hash: str = ZERO_HASH
    settings_hash: str = ZERO_HASH
    artifacts_cid: str = ""

    @classmethod
    def from_artifacts(cls, verifier: str, artifacts: ZkArtifacts, artifacts_cid: str) -> ZkCircuit:
        """The circuit of EZKL ``artifacts`` verified at ``verifier`` (its dedicated verifier);
        ``artifacts_cid`` is where the artifacts' JSON is stored."""
        return cls(
            verifier=verifier,
            input_scale=artifacts.input_scale,
            output_scale=artifacts.output_scale,
            vk_hash=artifacts.vk_hash,
            settings_hash=artifacts.settings_hash,
            artifacts_cid=artifacts_cid,
        )

    @property
    def empty(self) -> bool:
        return self == ZkCircuit()

    def validate(self) -> None:
        """The registry's checks that need no chain (the verifier's code is checked there)."""
        if self.empty:
            return
        for name in ("input_scale", "output_scale"):
            if getattr(self, name) not in _INT8:
                raise ModelError(f"zk {name} {getattr(self, name)} does not fit int8")
        missing = [
            name
            for name, value, zero in (
                ("verifier", self.verifier, ZERO_ADDRESS),
                ("vk_hash", self.vk_hash, ZERO_HASH),
                ("settings_hash", self.settings_hash, ZERO_HASH),
                ("artifacts_cid", self.artifacts_cid, ""),
            )
            if value.lower() == zero
        ]
        if missing:
            raise ModelError(
                f"the zk circuit is incomplete: {', '.join(missing)} missing",
                hint="give every circuit field (ZkCircuit.from_artifacts), or none",
            )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.verifier, self.input_scale, self.output_scale, self.vk_hash, self.settings_hash,
            self.artifacts_cid,
        )  # fmt: skip

    @classmethod
    def from_tuple(cls, t: Any) -> ZkCircuit:
        return cls(
            verifier=str(t[0]), input_scale=int(t[1]), output_scale=int(t[2]),
            vk_hash="0x" + bytes(t[3]).hex(), settings_hash="0x" + bytes(t[4]).hex(),
            artifacts_cid=str(t[5]),
        )  # fmt: skip


def _zk_missing(model_id: int | None = None) -> ZkCircuitMissingError:
    where = "" if model_id is None else f" (model {model_id})"
    return ZkCircuitMissingError(
        "VerinferZkCircuitMissing",
        {},
        message=f"mode zk needs a zk circuit and the model has none{where}",
        hint="register the model with its zk circuit (ZkCircuit.from_artifacts)",
    )


@dataclass(frozen=True)
class ModelInput:
    """What a registrant supplies; mirrors IModelRegistry.ModelInput."""

    name: str
    cid: str
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    price: int = 0
    royalty_bps: int = 0
    modes: Mode = Mode.NONE
    program_hash: str = ZERO_HASH
    weights_root: str = ZERO_HASH
    steps_root: str = ZERO_HASH  # optimistic mode: verinfer.optimistic.steps_root of the program
    n_steps: int = 0  # the program's steps (leaves of steps_root and of every trace root)
    n_constants: int = 0  # the program's constants (leaves of weights_root)
    zk: ZkCircuit = field(default_factory=ZkCircuit)
    parent: int = 0
    license: str = ""
    metadata_uri: str = ""

    def validate(self) -> None:
        """Checks the contract would make, done first so a bad input sends nothing."""
        if not self.name.strip():
            raise ModelError("the model name is empty", hint="pass --name")
        if self.price < 0:
            raise ModelError(f"price {self.price} is negative", hint="use a price >= 0")
        if not 0 <= self.royalty_bps <= MAX_ROYALTY_BPS:
            raise ModelError(
                f"royalty {self.royalty_bps} bps is out of range",
                hint=f"use 0..{MAX_ROYALTY_BPS} bps (10000 = 100%)",
            )
        if not self.modes or int(self.modes) > 15:
            raise ModelError(f"invalid modes {int(self.modes)}", hint=f"choose from {Mode.names()}")
        if self.parent < 0:
            raise ModelError(f"parent id {self.parent} is negative")
        self.zk.validate()
        if Mode.ZK in self.modes and self.zk.empty:
            raise _zk_missing()
        for name in ("n_steps", "n_constants"):
            if not 0 <= getattr(self, name) < 2**32:
                raise ModelError(f"{name} {getattr(self, name)} does not fit uint32")
        if Mode.OPTIMISTIC in self.modes and (
            ZERO_HASH in (self.program_hash, self.weights_root, self.steps_root)
            or self.n_steps == 0
        ):
            raise OptimisticConfigMissingError(
                "VerinferOptimisticConfigMissing",
                {},
                message="mode optimistic needs the program hash, weights root and steps root",
                hint="register the model from its compiled program (`verinfer model add`)",
            )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.name, self.cid, self.program_hash, self.weights_root, self.input_shapes,
            self.output_shapes, self.price, self.royalty_bps, int(self.modes), self.zk.as_tuple(),
            self.parent, self.license, self.metadata_uri,
            (self.steps_root, self.n_steps, self.n_constants),
        )  # fmt: skip


@dataclass(frozen=True)
class ModelRecord:
    """A model as read back from the chain."""

    model_id: int
    owner: str
    name: str
    cid: str
    program_hash: str
    weights_root: str
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    price: int
    royalty_bps: int
    modes: list[str]
    deprecated: bool
    zk: ZkCircuit
    parent: int
    license: str
    metadata_uri: str
    registered_at: int
    steps_root: str = ZERO_HASH
    n_steps: int = 0
    n_constants: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data


class RegistryClient:
    """Reads and writes the ModelRegistry at ``address``."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract = chain.contract("ModelRegistry", address)

    def register(self, model: ModelInput) -> tuple[int, TxReceipt]:
        model.validate()
        receipt = self.chain.transact(self.contract.functions.register(model.as_tuple()))
        (event,) = self.contract.events.ModelRegistered().process_receipt(receipt, errors=DISCARD)
        return int(event["args"]["modelId"]), receipt

    def get(self, model_id: int) -> ModelRecord:
        if model_id <= 0:
            raise UnknownModelError(
                "VerinferUnknownModel", {"modelId": model_id}, hint="model ids start at 1"
            )
        m = self.chain.call(self.contract.functions.getModel(model_id))
        owner = self.chain.call(self.contract.functions.ownerOf(model_id))
        return ModelRecord(
            model_id=model_id, owner=owner, name=m[0], cid=m[1],
            program_hash="0x" + bytes(m[2]).hex(), weights_root="0x" + bytes(m[3]).hex(),
            input_shapes=[list(s) for s in m[4]], output_shapes=[list(s) for s in m[5]],
            price=m[6], royalty_bps=m[7], modes=Mode(m[8]).to_names(), deprecated=m[9],
            zk=ZkCircuit.from_tuple(m[10]), parent=m[11], license=m[12], metadata_uri=m[13],
            registered_at=m[14], steps_root="0x" + bytes(m[15][0]).hex(), n_steps=int(m[15][1]),
            n_constants=int(m[15][2]),
        )  # fmt: skip

    def check_parent(self, parent: int) -> None:
        """Raise UnknownParentError unless ``parent`` is 0 (none) or a registered model."""
        if parent != 0 and not 0 < parent <= self.count():
            raise UnknownParentError(
                "VerinferUnknownParent",
                {"parent": parent},
                message=f"parent model {parent} does not exist",
                hint="check --parent with `verinfer model list`",
            )

    def registration_tx(self, model_id: int, from_block: int = 0) -> str | None:
        """The hash of the transaction that registered ``model_id`` (from its event log).

        ``from_block``: the registry's deployment block, so the scan stays short on real chains.
        """
        logs = self.contract.events.ModelRegistered().get_logs(
            from_block=from_block, argument_filters={"modelId": model_id}
        )
        return logs[0]["transactionHash"].to_0x_hex() if logs else None

    def count(self) -> int:
        return int(self.chain.call(self.contract.functions.modelCount()))

    def list(self, start: int = 1, limit: int = 100) -> list[ModelRecord]:
        end = min(self.count(), start + limit - 1)
        return [self.get(i) for i in range(max(start, 1), end + 1)]

    def royalty(self, model_id: int, fee: int) -> tuple[str, int]:
        recipient, amount = self.chain.call(self.contract.functions.royaltyInfo(model_id, fee))
        return str(recipient), int(amount)

    def set_price(self, model_id: int, price: int) -> TxReceipt:
        if price < 0:
            raise ModelError(f"price {price} is negative", hint="use a price >= 0")
        return self.chain.transact(self.contract.functions.setPrice(model_id, price))

    def set_royalty(self, model_id: int, royalty_bps: int) -> TxReceipt:
        if not 0 <= royalty_bps <= MAX_ROYALTY_BPS:
            raise ModelError(
                f"royalty {royalty_bps} bps is out of range", hint=f"use 0..{MAX_ROYALTY_BPS}"
            )
        return self.chain.transact(self.contract.functions.setRoyalty(model_id, royalty_bps))

    def zk_config(self, model_id: int) -> tuple[str, int, int]:
        """(verifier, input scale, output scale) of the model's circuit; zeros if it has none."""
        verifier, input_scale, output_scale = self.chain.call(
            self.contract.functions.zkConfig(model_id)
        )
        return str(verifier), int(input_scale), int(output_scale)

    def optimistic_config(self, model_id: int) -> tuple[str, str, int, int]:
        """(weightsRoot, stepsRoot, nSteps, nConstants): what an optimistic claim commits to."""
        w, s, n_steps, n_constants = self.chain.call(
            self.contract.functions.optimisticConfig(model_id)
        )
        return "0x" + bytes(w).hex(), "0x" + bytes(s).hex(), int(n_steps), int(n_constants)

    def set_modes(self, model_id: int, modes: Mode) -> TxReceipt:
        return self.chain.transact(self.contract.functions.setModes(model_id, int(modes)))

    def set_deprecated(self, model_id: int, deprecated: bool = True) -> TxReceipt:
        return self.chain.transact(self.contract.functions.setDeprecated(model_id, deprecated))
