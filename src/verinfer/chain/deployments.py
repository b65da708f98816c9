"""The address book: which contract lives at which address, one JSON file per chain id.

``verinfer deploy`` writes it; every other command reads it, so nobody types an address.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from verinfer.errors import ConfigError
from verinfer.fsutil import write_atomic
from verinfer.home import deployments_dir


@dataclass
class AddressBook:
    chain_id: int
    contracts: dict[str, str] = field(default_factory=dict)
    deployer: str = ""
    block: int = 0

    @staticmethod
    def path_for(chain_id: int, directory: Path | None = None) -> Path:
        return (directory or deployments_dir()) / f"{chain_id}.json"

    @classmethod
    def load(cls, chain_id: int, directory: Path | None = None) -> AddressBook:
        path = cls.path_for(chain_id, directory)
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no deployment recorded for chain {chain_id} ({path})",
                hint="run `verinfer deploy`",
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"address book {path} is corrupted: {exc}", hint="run `verinfer deploy` again"
            ) from exc

    def save(self, directory: Path | None = None) -> Path:
        path = self.path_for(self.chain_id, directory)
        write_atomic(path, (json.dumps(asdict(self), indent=2) + "\n").encode())
        return path

    def address(self, name: str) -> str:
        try:
            return self.contracts[name]
        except KeyError as exc:
            raise ConfigError(
                f"{name} is not deployed on chain {self.chain_id}",
                hint="run `verinfer deploy` to deploy the current contract suite",
            ) from exc
