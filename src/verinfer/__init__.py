"""verinfer: verifiable, payable AI inference on EVM chains."""

import os

# OpenBLAS's idle worker threads busy-wait 2**28 cycles (~0.1 s) after every call before they
# sleep, taking the core that a traced run's hasher works on; 2**16 (~25 us) lets traced runs
# keep BLAS's threads (docs/runtime-spec.md, "Running it"). OpenBLAS reads this when it loads,
# so it counts only if numpy is imported after verinfer; a value already set wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

from verinfer.errors import (  # noqa: E402
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
