"""Shared fixtures: a real anvil per test worker, snapshot/revert isolation per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import Devnet, DevnetInfo


@pytest.fixture(autouse=True)
def verinfer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own VERINFER_HOME, so no test sees another's files."""
    home = tmp_path / "verinfer-home"
    monkeypatch.setenv("VERINFER_HOME", str(home))
    monkeypatch.delenv("VERINFER_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("VERINFER_RPC_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetInfo]:
    """One anvil for this test worker, on a free loopback port, without persisted state."""
    devnet = Devnet(tmp_path_factory.mktemp("anvil"))
    info = devnet.start(persist=False)
    yield info
    devnet.stop()


@pytest.fixture(scope="session")
def suite(anvil: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> AddressBook:
    """The contract suite, deployed once per worker (tests revert to this state)."""
    from verinfer.chain.deploy import deploy_suite

    chain = Chain(anvil.rpc_url, dev_account(0))
    return deploy_suite(chain, book_dir=tmp_path_factory.mktemp("book"))


@pytest.fixture
def snapshot(anvil: DevnetInfo) -> Iterator[None]:
    """Revert the chain after the test: each test starts from the same state."""
    chain = Chain(anvil.rpc_url)
    snap = chain.w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    chain.w3.provider.make_request("evm_revert", [snap])


@pytest.fixture
def chain(anvil: DevnetInfo, suite: AddressBook, snapshot: None) -> Chain:
    """A client signing as anvil account 0 (the deployer), on an isolated chain state."""
    return Chain(anvil.rpc_url, dev_account(0))


@pytest.fixture
def book(suite: AddressBook, verinfer_home: Path) -> AddressBook:
    """The deployed suite's address book, also written into this test's VERINFER_HOME."""
    suite.save()
    return suite
