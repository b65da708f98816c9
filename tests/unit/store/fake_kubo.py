"""A fake kubo RPC API on 127.0.0.1 (kubo itself cannot be installed here, offline).

It is a real HTTP server in a thread that speaks the three endpoints IpfsStore uses
(``add``, ``cat``, ``pin/ls``) the way kubo does (POST only, JSON lines, errors as HTTP 500
with ``{"Message": ...}``), and it names blobs with verinfer's own UnixFS code, honouring the
``chunker`` parameter. Tests can make it lie (``wrong_cid``), corrupt what it serves
(``corrupt``) or stall (``delay_s``).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from verinfer.store.unixfs import FileBuilder


@dataclass
class FakeKubo:
    url: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)
    wrong_cid: bool = False
    delay_s: float = 0.0


def _handler(state: FakeKubo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked responses, as kubo streams `cat`

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, message: str) -> None:
            body = json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode()
            self._reply(500, body)

        def do_GET(self) -> None:  # kubo's RPC refuses GET
            self._reply(405, b"405 - Method Not Allowed", "text/plain")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            state.calls.append((parts.path, params))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if state.delay_s:
                time.sleep(state.delay_s)
            if parts.path == "/api/v0/add":
                self._add(params, body)
            elif parts.path == "/api/v0/cat":
                self._cat(params.get("arg", ""))
            elif parts.path == "/api/v0/pin/ls":
                cid = params.get("arg", "")
                if cid in state.blobs:
                    self._reply(200, json.dumps({"Keys": {cid: {"Type": "recursive"}}}).encode())
                else:
                    self._error(f"path '/ipfs/{cid}' is not pinned")
            else:
                self._reply(404, b"404 page not found", "text/plain")

        def _add(self, params: dict[str, str], body: bytes) -> None:
            header = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
            files = [p for p in message.iter_parts() if p.get_filename() is not None]
            if not files:
                self._error("no file in the request")
                return
            data = files[0].get_payload(decode=True)
            assert isinstance(data, bytes)
            chunk = int(params.get("chunker", "size-262144").removeprefix("size-"))
            builder = FileBuilder(chunk_size=chunk)
            builder.write(data)
            cid = str(builder.finish())
            state.blobs[cid] = data
            answer = (
                cid
                if not state.wrong_cid
                else "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            )
            line = {"Name": files[0].get_filename(), "Hash": answer, "Size": str(len(data))}
            self._reply(200, (json.dumps(line) + "\n").encode())

        def _cat(self, cid: str) -> None:
            if cid not in state.blobs:
                self._error(f"block was not found locally (offline): ipld: could not find {cid}")
                return
            data = state.blobs[cid]
            if cid in state.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1]) if data else b"x"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(data), 100_000):  # arrive in pieces, as from a real node
                piece = data[start : start + 100_000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (the timeout test) is not a failure of the fake


@contextmanager
def running_fake_kubo() -> Iterator[FakeKubo]:
    server = _QuietServer(("127.0.0.1", 0), _handler(FakeKubo("")))
    state = FakeKubo(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
