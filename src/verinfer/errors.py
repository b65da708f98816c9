"""One error tree for the whole package.

Every failure a user can cause or meet is a ``VerinferError`` with a message that names the
problem and, where one exists, a ``hint`` that names the fix. The CLI prints both on one line
and exits 1; library users catch a domain base (``ChainError``, ``ModelError`` ...).
"""

from __future__ import annotations


class VerinferError(Exception):
    """Base of every error verinfer raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(VerinferError):
    """Bad configuration: a missing key, an unknown deployment, an invalid setting."""


class ChainError(VerinferError):
    """The chain or its RPC failed: unreachable node, reverted transaction, bad receipt."""


class ContractRevertError(ChainError):
    """A contract reverted with a custom error; ``name`` and ``args`` are decoded from the ABI."""

    def __init__(
        self,
        name: str,
        args: dict[str, object],
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        rendered = ", ".join(f"{k}={v}" for k, v in args.items())
        super().__init__(message or f"contract reverted with {name}({rendered})", hint=hint)
        self.name = name
        self.args_by_name = args


class DevnetError(ChainError):
    """The local anvil devnet could not start, stop or be found."""


class StoreError(VerinferError):
    """The content-addressed store failed: unknown CID, corrupted blob, unreachable backend."""


class ModelError(VerinferError):
    """A model file or registry entry is invalid, unknown or not allowed."""


class ProofError(VerinferError):
    """A proof could not be made or did not verify."""


class PaymentError(VerinferError):
    """A payment was refused, under-funded or over a spending policy."""
