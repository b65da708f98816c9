"""A cap on request bodies, checked before anything else reads them (pure ASGI middleware).

A body over the cap is answered 413 before the payment middleware or a handler sees it, so
an oversized request is never charged, nor asked to pay. A declared ``Content-Length`` is
checked at once; a body sent without one (chunked) is read first, up to the cap, and
refused as soon as it passes it (handlers downstream may answer without reading the body,
so counting only what they read would let a 402 through).
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a MiniLM input is ~3 KB, a 224x224 image ~1 MB as JSON


class BodyLimit:
    """ASGI middleware: 413 for any HTTP request body longer than ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        if max_bytes < 1:
            raise ValueError(f"the body cap must be positive, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)  # the server stops at the declared length
            return
        body = await self._read(receive)
        if body is None:
            await self._refuse(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                after: Message = await receive()  # after the body: http.disconnect
                return after
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Any) -> bytes | None:
        """The whole body of a request sent without a length, or None past the cap."""
        parts: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts)  # the client went away: let the app see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"error": f"request body over {self.max_bytes} bytes", "max_bytes": self.max_bytes}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
