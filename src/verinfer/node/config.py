"""The node's configuration: one TOML file, validated once at start into a pydantic model.

The file names *where* the signing key is (an environment variable, or a keystore file plus
the variable holding its password), never the key itself: a config file gets copied, shared
and committed. Every problem becomes a ``ConfigError`` naming the offending field.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from verinfer.chain.accounts import account_from_key, account_from_keystore
from verinfer.errors import ConfigError
from verinfer.hexstr import is_address

__all__ = [
    "ForcedErrorsConfig",
    "GasConfig",
    "KeyConfig",
    "MetricsConfig",
    "NodeConfig",
    "ServedModel",
    "WatchConfig",
    "ZkConfig",
    "load_config",
]

ModeName = Literal["none", "consensus", "optimistic", "zk"]
_FEE = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_FIELDS = {"private_key", "secret", "mnemonic", "password", "seed"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyConfig(_Strict):
    """Where the signing key comes from: ``env`` (a variable holding the hex key), or
    ``keystore`` (a V3 keystore file) with ``password_env`` (the variable holding its password)."""

    env: str | None = None
    keystore: Path | None = None
    password_env: str = "VERINFER_KEYSTORE_PASSWORD"

    @field_validator("env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (put the variable's *name* "
                "here, never the key itself)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        if (self.env is None) == (self.keystore is None):
            raise ValueError("give exactly one of key.env or key.keystore")
        return self

    def load(self) -> LocalAccount:
        """Read the key from its source; missing variables and bad keystores are ConfigErrors."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(
                    f"key.env: the environment variable {self.env} is not set",
                    hint=f"export {self.env}=0x... (the node's private key) before starting",
                )
            return account_from_key(value)
        password = os.environ.get(self.password_env)
        if password is None:
            raise ConfigError(
                f"key.password_env: the environment variable {self.password_env} is not set",
                hint="export the keystore's password in it",
            )
        return account_from_keystore(Path(str(self.keystore)), password)


class ServedModel(_Strict):
    """One model the node answers for: its registry id, modes, and fee in whole tokens."""

    id: int = Field(gt=0)
    modes: list[ModeName] = Field(min_length=1)
    fee: str = "0"

    @field_validator("fee")
    @classmethod
    def _fee(cls, value: str) -> str:
        if not _FEE.fullmatch(value.strip()):
            raise ValueError(f'{value!r} is not a plain decimal amount of tokens (e.g. "0.01")')
        return value.strip()

    @field_validator("modes")
    @classmethod
    def _unique(cls, value: list[ModeName]) -> list[ModeName]:
        if len(set(value)) != len(value):
            raise ValueError("a mode is listed twice")
        return value

    @property
    def mode_mask(self) -> int:
        return sum({"none": 1, "consensus": 2, "optimistic": 4, "zk": 8}[m] for m in self.modes)


class MetricsConfig(_Strict):
    """The /health and /metrics HTTP server; it always binds 127.0.0.1 (port 0 = any free)."""

    enabled: bool = True
    port: int = Field(default=9464, ge=0, le=65535)


class GasConfig(_Strict):
    """Fees and limits: EIP-1559 with a cap, and a margin above each gas estimate."""

    margin: float = Field(default=1.25, ge=1.0, le=5.0)
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    max_fee_gwei: float = Field(default=200.0, gt=0)

    @model_validator(mode="after")
    def _cap(self) -> GasConfig:
        if self.priority_fee_gwei > self.max_fee_gwei:
            raise ValueError("priority_fee_gwei must not exceed max_fee_gwei")
        return self


class ZkConfig(_Strict):
    """Mode zk: the SRS the node proves with. It must be the one the model's keys were made
    with (``verinfer model add --trusted-srs``); without ``trusted_srs`` the cached
    development SRS in ``srs_dir`` (default ``$VERINFER_SRS_DIR``, then ``$VERINFER_HOME/srs``)."""

    trusted_srs: Path | None = None
    srs_dir: Path | None = None


class WatchConfig(_Strict):
    """Optimistic mode's watchtower (node/watchtower.py). A node serving mode optimistic always
    defends its own claims; ``models`` are the models whose other nodes' claims it re-executes
    and disputes when wrong (default: every model it serves in mode optimistic), with at most
    ``max_at_risk`` ETH in challenge bonds at once."""

    enabled: bool = True
    models: list[int] | None = None
    max_at_risk: str = "0.1"
    challenge: bool = True

    @field_validator("max_at_risk")
    @classmethod
    def _amount(cls, value: str) -> str:
        if not _FEE.fullmatch(value.strip()):
            raise ValueError(f'{value!r} is not a plain decimal amount of ETH (e.g. "0.1")')
        return value.strip()

    @field_validator("models")
    @classmethod
    def _ids(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(m <= 0 for m in value):
            raise ValueError("model ids are positive")
        return value


class ForcedErrorsConfig(_Strict):
    """Forced errors (docs/optimistic.md, section 4), opt-in: the node commits a hash chain of
    ``chain_length`` secrets, claims a deliberately wrong output when its seed makes a request
    forced, and concedes that claim before anyone can rely on it. The secrets live in
    ``secrets_file``, a file name inside ``data_dir`` written with mode 0600, never here."""

    enabled: bool = False
    chain_length: int = Field(default=1000, ge=1, le=100_000)
    secrets_file: str = "forced_errors.json"

    @field_validator("secrets_file")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not value or value in {".", ".."} or "/" in value or "\\" in value:
            raise ValueError(f"{value!r} is not a plain file name (it lives in data_dir)")
        return value


class NodeConfig(_Strict):
    """The whole node configuration (see docs/node.md for an annotated example)."""

    rpc_url: str
    key: KeyConfig
    models: list[ServedModel] = Field(min_length=1)
    data_dir: Path
    confirmations: int = Field(default=1, ge=1, le=1000)
    poll_interval: float = Field(default=0.5, gt=0, le=60)
    max_block_range: int = Field(default=1000, ge=1, le=100_000)
    start_block: int | None = Field(default=None, ge=0)
    # Mode none: answer requests whose assignee let the assignment window pass (the contract
    # pays the taker and slashes the no-show); never before the window ends.
    take_over_orphans: bool = True
    coordinator: str | None = None
    node_registry: str | None = None
    model_registry: str | None = None
    metrics: MetricsConfig = MetricsConfig()
    gas: GasConfig = GasConfig()
    zk: ZkConfig = ZkConfig()
    watch: WatchConfig = WatchConfig()
    forced_errors: ForcedErrorsConfig = ForcedErrorsConfig()

    @field_validator("rpc_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("coordinator", "node_registry", "model_registry")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not is_address(value):
            raise ValueError(f"{value!r} is not a 0x-prefixed 20-byte address")
        return value

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[ServedModel]) -> list[ServedModel]:
        ids = [m.id for m in value]
        if len(set(ids)) != len(ids):
            raise ValueError("a model id is listed twice")
        return value

    @model_validator(mode="after")
    def _forced_needs_watch(self) -> NodeConfig:
        if not self.forced_errors.enabled:
            return self
        if not any("optimistic" in m.modes for m in self.models):
            raise ValueError("forced_errors.enabled needs a model served in mode optimistic")
        if not self.watch.enabled:
            raise ValueError(
                "forced_errors.enabled needs watch.enabled: the watchtower concedes forced claims"
            )
        return self

    def served(self, model_id: int) -> ServedModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def watched(self) -> set[int]:
        """The models whose other nodes' claims the watchtower checks."""
        if self.watch.models is not None:
            return set(self.watch.models)
        return {m.id for m in self.models if "optimistic" in m.modes}


def _field_name(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a TOML path: ``("models", 0, "fee")`` -> ``models[0].fee``."""
    name = ""
    for item in loc:
        name += f"[{item}]" if isinstance(item, int) else (f".{item}" if name else item)
    return name or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "config") -> NodeConfig:
    """Validate a config mapping; the first problem becomes a ConfigError naming its field."""
    key = data.get("key")
    secrets = [f for f in _SECRET_FIELDS if f in data]
    if isinstance(key, dict):
        secrets += [f"key.{f}" for f in _SECRET_FIELDS if f in key]
    elif key is not None:
        secrets.append("key")
    forced = data.get("forced_errors")
    if isinstance(forced, dict):
        secrets += [f"forced_errors.{f}" for f in (*_SECRET_FIELDS, "root") if f in forced]
    if secrets:
        raise ConfigError(
            f"{source}: {sorted(secrets)[0]}: secrets never go in the config file",
            hint="name an environment variable in key.env, or a keystore file in key.keystore "
            "with its password's variable in key.password_env; forced-error secrets live in "
            "data_dir (forced_errors.secrets_file)",
        )
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field_name(tuple(error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        raise ConfigError(
            f"{source}: {field}: {message}", hint="see docs/node.md for every field"
        ) from exc


def load_config(path: Path) -> NodeConfig:
    """Read and validate a TOML config file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    config = parse_config(data, source=str(path))
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (Path(path).parent / config.data_dir)})
    return config
