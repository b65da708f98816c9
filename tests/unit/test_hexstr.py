"""The 0x-hex shapes every boundary checks with (configs, CLI options, receipts, policies)."""

from __future__ import annotations

import pytest

from verinfer.hexstr import is_address, is_bytes32

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.mark.parametrize("value", [ADDRESS, ADDRESS.lower(), "0x" + "A" * 40])
def test_addresses(value: str) -> None:
    assert is_address(value)


@pytest.mark.parametrize(
    "value",
    [ADDRESS[2:], ADDRESS[:-1], ADDRESS + "0", "0X" + ADDRESS[2:], ADDRESS[:-1] + "g",
     " " + ADDRESS, ADDRESS + "\n", None, 42, b"0x" + b"a" * 40],
)  # fmt: skip
def test_not_addresses(value: object) -> None:
    assert not is_address(value)


def test_bytes32() -> None:
    assert is_bytes32("0x" + "ab" * 32)
    for value in ("0x" + "ab" * 31, "0x" + "ab" * 33, "ab" * 32, "0x" + "zz" * 32, None, 1):
        assert not is_bytes32(value)
