"""The zk errors: each a ``ProofError``, naming the step that failed and how to fix it."""

from __future__ import annotations

from verinfer.errors import ProofError


class ZkStepError(ProofError):
    """An EZKL step failed in its worker; ``step`` names it, ``log_tail`` holds its output."""

    def __init__(
        self, step: str, message: str, *, log_tail: str = "", hint: str | None = None
    ) -> None:
        super().__init__(f"zk step {step!r} failed: {message}", hint=hint)
        self.step = step
        self.log_tail = log_tail


class ZkTimeoutError(ZkStepError):
    """A worker ran past its time limit and was killed."""


class ZkOutOfMemoryError(ZkStepError):
    """A worker hit its address-space limit (or was killed for memory)."""


class ZkWorkerCrashedError(ZkStepError):
    """A worker died without reporting (a signal, or an EZKL panic)."""


class ZkUnsupportedModelError(ZkStepError):
    """EZKL cannot build a circuit for this model (an unsupported op or a dynamic shape)."""


class ZkLimitError(ProofError):
    """The estimate exceeds the node's configured limits: refused before any work."""


class ZkInputError(ProofError):
    """An input to prove, or a proof to verify, has the wrong size or form."""


class SrsError(ProofError):
    """A structured reference string is missing, corrupted or for the wrong circuit size."""


class ZkToolError(ProofError):
    """A tool zk mode needs (node, the pinned solcjs) is missing or failed."""


class ProofRejectedError(ProofError):
    """A verifier contract rejected a proof (it reverts; it never returns false)."""
