"""Run an ASGI app with uvicorn on loopback, in a background thread or in the foreground.

Tests and the CLI need the same thing: start, know the real port (port 0 picks a free one),
and stop cleanly. uvicorn has no "started" callback, so ``ServerThread`` polls its flag.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from verinfer.errors import ConfigError

LOOPBACK = "127.0.0.1"


class ServerThread:
    """A uvicorn server in a daemon thread; ``url`` is valid once the constructor returns."""

    def __init__(self, app: Any, *, host: str = LOOPBACK, port: int = 0, timeout: float = 10.0):
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the HTTP server did not start on {host}:{port}")
            time.sleep(0.01)
        sockets = self.server.servers[0].sockets
        self.host = host
        self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_forever(app: Any, *, host: str = LOOPBACK, port: int = 8402) -> None:
    """Serve ``app`` in the foreground until interrupted (for ``verinfer ... start``)."""
    uvicorn.run(app, host=host, port=port, log_level="info")
