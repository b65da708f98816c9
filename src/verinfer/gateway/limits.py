"""A cap on request bodies, checked before anything else reads them (pure ASGI middleware).

A body over the cap is answered 413 before the payment middleware or a handler sees it, so
an oversized request is never charged and never buffered whole. The declared
``Content-Length`` is checked first; a body sent without one (chunked) is counted as it
arrives and refused as soon as it passes the cap.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a MiniLM input is ~3 KB, a 224x224 image ~1 MB as JSON


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the cap."""


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
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

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
