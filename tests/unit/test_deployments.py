"""The address book: written atomically, read back, and clear errors when absent or broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from verinfer.chain.deployments import AddressBook
from verinfer.errors import ConfigError


def test_round_trip_under_verinfer_home(verinfer_home: Path) -> None:
    book = AddressBook(
        chain_id=31337, contracts={"ModelRegistry": "0xabc"}, deployer="0x1", block=3
    )
    path = book.save()
    assert path == verinfer_home / "deployments" / "31337.json"
    assert AddressBook.load(31337) == book
    assert AddressBook.load(31337).address("ModelRegistry") == "0xabc"


def test_missing_book_and_contract_have_hints(verinfer_home: Path) -> None:
    with pytest.raises(ConfigError, match="no deployment recorded for chain 5") as err:
        AddressBook.load(5)
    assert err.value.hint == "run `verinfer deploy`"
    with pytest.raises(ConfigError, match="Coordinator is not deployed"):
        AddressBook(chain_id=5).address("Coordinator")


def test_corrupted_book_is_reported(verinfer_home: Path) -> None:
    path = AddressBook.path_for(7)
    path.parent.mkdir(parents=True)
    path.write_text("{")
    with pytest.raises(ConfigError, match="corrupted"):
        AddressBook.load(7)
