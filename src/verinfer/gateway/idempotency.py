"""Idempotent paid calls: a retry with the same x402 payment identifier is never charged twice.

Agents retry on timeouts and dropped connections, often with a freshly signed authorization
(a new EIP-3009 nonce), so nonce replay protection alone would charge them again. The client
names each logical call with the SDK's ``payment-identifier`` extension; this middleware,
placed before the payment middleware, remembers each identifier's delivered answer:

* first use: the call goes through (verify, compute, settle); a delivered (2xx) answer is
  kept, anything else is forgotten, since it was not charged and may be retried;
* same identifier while the first call is still running: the retry waits for it, then
  answers as below (so two copies in flight cost one settlement, not a reverted one);
* same identifier after delivery: the kept answer, with ``Idempotent-Replayed: true``, and
  no payment processed, provided the retry is the same request (method, path, query, body)
  and its authorization is signed by the same payer (a leaked identifier is worth nothing
  without the payer's key); otherwise 409 with the reason.

Calls in flight are tracked in memory. Delivered answers are also kept in ``DeliveredCalls``
(SQLite, ``$VERINFER_HOME/gateway``) for ``ttl`` seconds (a day by default), so a retry
after a gateway restart is still answered, not charged again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from x402.extensions.payment_identifier import extract_payment_identifier
from x402.http import decode_payment_signature_header
from x402.mechanisms.evm import ExactEIP3009Payload
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.verify import verify_eoa_signature
from x402.schemas import PaymentPayload

from verinfer.gateway.pricing import TokenDomain

REPLAYED_HEADER = "Idempotent-Replayed"
_KEPT_HEADERS = ("content-type", "payment-response")
Answer = tuple[int, bytes, dict[str, str]]  # status, body, the headers kept


@dataclass
class _Call:
    fingerprint: str
    payer: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    answer: Answer | None = None
    at: float = field(default_factory=time.monotonic)


class DeliveredCalls:
    """Delivered answers by payment id, on disk (SQLite), for ``ttl`` seconds."""

    def __init__(self, path: Path, *, ttl: float = 86_400.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS delivered (id TEXT PRIMARY KEY, fingerprint TEXT, "
            "payer TEXT, status INTEGER, body BLOB, headers TEXT, at REAL)"
        )
        self._db.commit()

    def get(self, payment_id: str) -> tuple[str, str, Answer] | None:
        """(fingerprint, payer, answer) of a delivered call still kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, payer, status, body, headers FROM delivered "
                "WHERE id = ? AND at > ?",
                (payment_id, time.time() - self.ttl),
            ).fetchone()
        if row is None:
            return None
        fingerprint, payer, status, body, headers = row
        return str(fingerprint), str(payer), (int(status), bytes(body), json.loads(headers))

    def put(self, payment_id: str, fingerprint: str, payer: str, answer: Answer) -> None:
        status, body, headers = answer
        with self._lock:
            self._db.execute("DELETE FROM delivered WHERE at <= ?", (time.time() - self.ttl,))
            self._db.execute(
                "INSERT OR REPLACE INTO delivered VALUES (?, ?, ?, ?, ?, ?, ?)",
                (payment_id, fingerprint, payer, status, body, json.dumps(headers), time.time()),
            )
            self._db.commit()


@dataclass(frozen=True)
class _Payment:
    id: str
    payer: str
    payload: PaymentPayload


class IdempotentPayments:
    """The middleware's state: payment identifier -> the call it paid for."""

    def __init__(
        self,
        token: TokenDomain,
        chain_id: int,
        *,
        delivered: DeliveredCalls | None = None,
        ttl: float = 3600.0,
        max_entries: int = 10_000,
    ) -> None:
        self.token = token
        self.chain_id = chain_id
        self.delivered = delivered  # None: memory only
        self.ttl = ttl  # in memory; ``delivered`` keeps answers for its own ttl
        self.max_entries = max_entries
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        payment = _payment(request)
        if payment is None:
            return await call_next(request)
        fingerprint = await _fingerprint(request)
        self._expire()
        # No await between this lookup and _first's registration: copies in flight must see
        # each other (the disk read is a local SQLite lookup, done inline for that reason).
        call = self._calls.get(payment.id) or self._kept(payment.id)
        if call is None:
            return await self._first(payment, fingerprint, request, call_next)
        if call.answer is None:
            await call.done.wait()
            if call.answer is None:  # the first copy failed, uncharged: this one runs anew
                return await self._first(payment, fingerprint, request, call_next)
        return self._replay(call, payment, fingerprint)

    async def _first(
        self,
        payment: _Payment,
        fingerprint: str,
        request: Request,
        call_next: Callable[[Request], Awaitable[Response]],
    ) -> Response:
        call = self._calls[payment.id] = _Call(fingerprint, payment.payer.lower())
        try:
            response = await call_next(request)
            if not 200 <= response.status_code < 300:
                return response
            body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
            headers = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
            call.answer = (response.status_code, body, headers)
            if self.delivered is not None:
                await run_in_threadpool(
                    self.delivered.put, payment.id, fingerprint, call.payer, call.answer
                )
            return Response(body, status_code=response.status_code, headers=dict(response.headers))
        finally:
            if call.answer is None:
                self._calls.pop(payment.id, None)
            call.done.set()

    def _kept(self, payment_id: str) -> _Call | None:
        """A call delivered before (by this process or an earlier one), from the disk."""
        if self.delivered is None:
            return None
        kept = self.delivered.get(payment_id)
        if kept is None:
            return None
        fingerprint, payer, answer = kept
        call = _Call(fingerprint, payer, answer=answer)
        call.done.set()
        return call

    def _replay(self, call: _Call, payment: _Payment, fingerprint: str) -> Response:
        if call.fingerprint != fingerprint:
            return _conflict(f"payment id {payment.id} already paid for another request")
        if payment.payer.lower() != call.payer or not self._signed_by_payer(payment.payload):
            return _conflict(f"payment id {payment.id} belongs to another payer")
        assert call.answer is not None
        status, body, headers = call.answer
        return Response(body, status_code=status, headers={**headers, REPLAYED_HEADER: "true"})

    def _signed_by_payer(self, payload: PaymentPayload) -> bool:
        """Whether the retry's own authorization carries the payer's valid signature."""
        try:
            p = ExactEIP3009Payload.from_dict(payload.payload)
            digest = hash_eip3009_authorization(
                p.authorization, self.chain_id, self.token.address, self.token.name,
                self.token.version,
            )  # fmt: skip
            signature = bytes.fromhex((p.signature or "").removeprefix("0x"))
            return verify_eoa_signature(digest, signature, p.authorization.from_address)
        except Exception:  # noqa: BLE001 - any malformed authorization is simply not the payer's
            return False

    def _expire(self) -> None:
        now = time.monotonic()
        while self._calls:
            key, oldest = next(iter(self._calls.items()))
            if now - oldest.at < self.ttl and len(self._calls) < self.max_entries:
                break
            if oldest.answer is None and not oldest.done.is_set():
                break  # still running: never drop a call in flight
            del self._calls[key]


def _payment(request: Request) -> _Payment | None:
    """The payment id and payer of the request's x402 payment, if it names one."""
    header = request.headers.get("payment-signature") or request.headers.get("x-payment")
    if not header:
        return None
    try:
        payload = decode_payment_signature_header(header)
        if not isinstance(payload, PaymentPayload):  # x402 v1 has no payment identifier
            return None
        payment_id = extract_payment_identifier(payload)
        payer = str(payload.payload["authorization"]["from"])
    except Exception:  # noqa: BLE001 - a malformed header is the payment middleware's to refuse
        return None
    if not payment_id:
        return None
    return _Payment(str(payment_id), payer, payload)


async def _fingerprint(request: Request) -> str:
    """What makes a retry "the same request": method, path, query and body."""
    body = await request.body()
    h = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        h.update(part.encode() + b"\0")
    h.update(body)
    return h.hexdigest()


def _conflict(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=409)
