"""Decode contract custom errors (4-byte selector + ABI args) into typed exceptions.

web3.py hands us only the raw revert data; we match its selector against every custom error
in our artifacts and raise the exception class registered for that error name.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from verinfer.chain.artifacts import abi, all_artifact_names
from verinfer.errors import ContractRevertError


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


@cache
def _selectors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for contract in all_artifact_names():
        for item in abi(contract):
            if item.get("type") != "error":
                continue
            types = [_abi_type(p) for p in item["inputs"]]
            names = [p["name"] or f"arg{i}" for i, p in enumerate(item["inputs"])]
            selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
            table[selector] = (item["name"], types, names)
    return table


def _readable(abi_type: str, value: object) -> object:
    if abi_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


# Error name -> (exception class, hint). Domain modules register their own errors here.
_REGISTERED: dict[str, tuple[type[ContractRevertError], str | None]] = {}


def register_error(
    name: str, exc_class: type[ContractRevertError], hint: str | None = None
) -> None:
    _REGISTERED[name] = (exc_class, hint)


def decode_revert(data: bytes) -> ContractRevertError:
    """The typed exception for revert ``data``; a generic one for unknown selectors."""
    if len(data) < 4 or data[:4] not in _selectors():
        if data[:4] == bytes.fromhex("08c379a0"):  # Error(string) from require(..., "msg")
            (reason,) = decode(["string"], data[4:])
            return ContractRevertError("Error", {"reason": reason}, message=f"reverted: {reason}")
        return ContractRevertError("Unknown", {"data": "0x" + data.hex()})
    name, types, names = _selectors()[data[:4]]
    values = decode(types, data[4:])
    args = {n: _readable(t, v) for n, t, v in zip(names, types, values, strict=True)}
    exc_class, hint = _REGISTERED.get(name, (ContractRevertError, None))
    return exc_class(name, args, hint=hint)
