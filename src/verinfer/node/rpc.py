"""Transient RPC failures: what counts as one, and retrying with exponential backoff.

A node must ride out an RPC that restarts, times out or rate-limits; only errors that say
nothing about the request itself (connection refused, timeouts, HTTP 429/5xx) are retried.
A revert or a refused transaction is data and is handled by the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import requests
import structlog
from web3.exceptions import ProviderConnectionError, TimeExhausted, Web3RPCError

from verinfer.errors import ChainError

__all__ = ["TransientRpcError", "is_transient", "with_retries"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


class TransientRpcError(ChainError):
    """The RPC stayed unreachable (or overloaded) through every retry."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Web3RPCError) and "BlockOutOfRange" in str(exc):
        return True  # a pruning RPC raced a new block; the next attempt reads a newer one
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    return isinstance(
        exc,
        requests.ConnectionError | requests.Timeout | ProviderConnectionError | TimeExhausted,
    )


def with_retries(
    call: Callable[[], T],
    what: str,
    *,
    attempts: int = 5,
    base_delay: float = 0.1,
    stop: threading.Event | None = None,
) -> T:
    """``call()``, retried on transient errors with delays base, 2*base, 4*base ..."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts - 1:
                raise TransientRpcError(
                    f"{what}: the RPC failed {attempts} times: {type(exc).__name__}: {exc}",
                    hint="check that the RPC endpoint is up; the node retries on its next poll",
                ) from exc
            delay = base_delay * 2**attempt
            log.info("rpc.retry", what=what, attempt=attempt + 1, delay=delay, error=str(exc)[:120])
            if stop is not None:
                if stop.wait(delay):
                    raise TransientRpcError(f"{what}: stopped while retrying") from exc
            else:
                time.sleep(delay)
    raise TransientRpcError(f"{what}: no attempt made")  # attempts < 1
