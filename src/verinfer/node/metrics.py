"""A tiny HTTP server on 127.0.0.1: ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus).

The stdlib server in a daemon thread is enough for two read-only endpoints, and it adds no
dependency; it never binds another interface. The node's main loop publishes a snapshot
after each tick; the server only reads that snapshot (never the database or the chain).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MetricsServer", "Snapshot", "render_prometheus"]

HOST = "127.0.0.1"


@dataclass
class Snapshot:
    """What the node reports; replaced as a whole after every tick."""

    node: str = ""
    chain_id: int = 0
    head: int = 0
    cursor: int | None = None
    lag: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    ok: bool = False
    error: str | None = None
    updated_at: float = 0.0

    @property
    def pending(self) -> int:
        done = ("confirmed", "failed", "expired", "standby")  # standby: another node's request
        return sum(v for k, v in self.jobs.items() if k not in done)

    def health(self) -> dict[str, Any]:
        data = asdict(self)
        data["pending_jobs"] = self.pending
        return data


def render_prometheus(s: Snapshot) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP verinfer_node_jobs Jobs in the node's log, by state.",
        "# TYPE verinfer_node_jobs gauge",
    ]
    lines += [f'verinfer_node_jobs{{state="{k}"}} {v}' for k, v in sorted(s.jobs.items())]
    counters = {
        "requests_handled": "Requests this node answered (fulfilled or revealed).",
        "tx_sent": "Transactions signed and sent.",
        "tx_failed": "Transactions mined but reverted.",
        "tx_refused": "Transactions the RPC refused to accept.",
        "invalid_inputs": "Requests answered with the empty output (input no node can run).",
        "claims": "Optimistic claims made.",
        "forced_errors": "Optimistic claims made wrong on purpose (forced errors).",
        "forced_conceded": "Forced-error claims conceded.",
    }
    for name, text in counters.items():
        lines += [
            f"# HELP verinfer_node_{name}_total {text}",
            f"# TYPE verinfer_node_{name}_total counter",
            f"verinfer_node_{name}_total {s.counters.get(name, 0)}",
        ]
    gauges = {
        "head_block": ("The chain head seen at the last tick.", s.head),
        "last_block": ("The last block whose events were handled.", s.cursor or 0),
        "lag_blocks": ("Blocks between the head and the last handled block.", s.lag),
        "pending_jobs": ("Jobs not yet confirmed, failed or expired.", s.pending),
        "up": ("1 if the last tick succeeded.", int(s.ok)),
    }
    for name, (text, value) in gauges.items():
        lines += [
            f"# HELP verinfer_node_{name} {text}",
            f"# TYPE verinfer_node_{name} gauge",
            f"verinfer_node_{name} {value}",
        ]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves the latest snapshot until ``close``; ``port`` 0 picks a free port."""

    def __init__(self, port: int) -> None:
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                snapshot = owner.snapshot()
                if self.path == "/health":
                    body = json.dumps(snapshot.health()).encode()
                    self._reply(200 if snapshot.ok else 503, "application/json", body)
                elif self.path == "/metrics":
                    body = render_prometheus(snapshot).encode()
                    self._reply(200, "text/plain; version=0.0.4; charset=utf-8", body)
                else:
                    self._reply(404, "text/plain", b"not found: try /health or /metrics\n")

            def _reply(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # no access log on stderr

        self.server = ThreadingHTTPServer((HOST, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="verinfer-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
