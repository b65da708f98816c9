"""Find the chain to talk to: ``--rpc-url``, then ``$VERINFER_RPC_URL``, then the running devnet."""

from __future__ import annotations

import os
from pathlib import Path

from verinfer.chain.accounts import resolve_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import Devnet
from verinfer.errors import ConfigError

RPC_URL_ENV = "VERINFER_RPC_URL"


def resolve_rpc_url(rpc_url: str | None = None) -> str:
    if rpc_url:
        return rpc_url
    env = os.environ.get(RPC_URL_ENV)
    if env:
        return env
    info = Devnet().info()
    if info is not None:
        return info.rpc_url
    raise ConfigError(
        "no chain to talk to: no --rpc-url, no VERINFER_RPC_URL, and no devnet running",
        hint="start one with `verinfer devnet start --detach`, or pass --rpc-url",
    )


def connect(rpc_url: str | None = None, keystore: Path | None = None) -> Chain:
    """A Chain with the signer resolved for its chain id (anvil's dev key on the devnet)."""
    chain = Chain(resolve_rpc_url(rpc_url))
    chain.account = resolve_account(chain.chain_id, keystore)
    return chain


def deployed_address(chain: Chain, name: str) -> str:
    """A contract's address from the address book, checked to hold code on this chain."""
    address = AddressBook.load(chain.chain_id).address(name)
    if not chain.has_code(address):
        raise ConfigError(
            f"the address book says {name} is at {address}, but chain {chain.chain_id} has no "
            "code there (was the devnet reset?)",
            hint="run `verinfer deploy` again",
        )
    return address
