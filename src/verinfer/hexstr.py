"""The shapes of 0x-hex strings that cross verinfer's boundaries (configs, CLI options,
receipts, spending policies), checked in one place."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")


def is_address(value: object) -> bool:
    """A 0x-prefixed 20-byte hex address, in any letter case (no EIP-55 checksum check)."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def is_bytes32(value: object) -> bool:
    """0x and 32 bytes of hex: a hash or a bytes32 word."""
    return isinstance(value, str) and _BYTES32.fullmatch(value) is not None
