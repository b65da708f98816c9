"""verinfer: verifiable, payable AI inference on EVM chains."""

from verinfer.errors import (
    ChainError,
    ConfigError,
    ContractRevertError,
    DevnetError,
    ModelError,
    PaymentError,
    ProofError,
    StoreError,
    VerinferError,
)

__version__ = "0.1.0"

__all__ = [
    "ChainError",
    "ConfigError",
    "ContractRevertError",
    "DevnetError",
    "ModelError",
    "PaymentError",
    "ProofError",
    "StoreError",
    "VerinferError",
    "__version__",
]
