"""A ``Store`` backed by a kubo-compatible IPFS HTTP API, and ``open_store`` to pick a backend.

Writes go through ``/api/v0/add`` with kubo's default file layout requested explicitly
(CIDv1, raw leaves, 256 KiB chunks, balanced DAG, sha2-256), and the CID the node answers is
checked against the one computed here. Reads go through ``/api/v0/cat`` and the bytes are
re-imported locally: they are returned only if they hash to the CID that was asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import structlog

from verinfer.errors import ConfigError, StoreError
from verinfer.fsutil import atomic_output
from verinfer.store.cid import CID, RAW
from verinfer.store.local import LocalStore, Store, open_input
from verinfer.store.unixfs import CHUNK_SIZE, FileBuilder, build_stream

log = structlog.get_logger(__name__)

STORE_ENV = "VERINFER_STORE"
DEFAULT_TIMEOUT_S = 60.0

_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": f"size-{CHUNK_SIZE}",
    "hash": "sha2-256",
    "trickle": "false",
    "pin": "true",
    "progress": "false",
}
_HINT_UNREACHABLE = (
    "start the IPFS node (`ipfs daemon`) or fix the API URL in VERINFER_STORE "
    "(e.g. http://127.0.0.1:5001); use VERINFER_STORE=local for the local store"
)


class IpfsStore:
    """Blobs on an IPFS node through its HTTP RPC API (kubo's ``/api/v0``)."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = api_url.rstrip("/")
        if base.endswith("/api/v0"):
            base = base[: -len("/api/v0")]
        if not base.startswith(("http://", "https://")):
            raise ConfigError(
                f"IPFS API URL must start with http:// or https://, got {api_url!r}",
                hint="e.g. http://127.0.0.1:5001",
            )
        self.api_url = base
        self._client = httpx.Client(base_url=f"{base}/api/v0", timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"IpfsStore({self.api_url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> IpfsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- HTTP plumbing ---------------------------------------------------------------------

    def _send(self, endpoint: str, params: dict[str, str], **kwargs: Any) -> httpx.Response:
        """POST (kubo's RPC takes only POST) and stream the answer; errors become StoreError."""
        request = self._client.build_request("POST", endpoint, params=params, **kwargs)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise StoreError(
                f"the IPFS API at {self.api_url} timed out on {endpoint}",
                hint="the content may not be reachable from this node; check `ipfs swarm peers`",
            ) from exc
        except httpx.HTTPError as exc:
            raise StoreError(
                f"cannot reach the IPFS API at {self.api_url}: {exc}", hint=_HINT_UNREACHABLE
            ) from exc
        if response.status_code != 200:
            try:
                body = response.read()
            except httpx.HTTPError:
                body = b""
            finally:
                response.close()
            raise _api_error(endpoint, response.status_code, body)
        return response

    def _stream(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise StoreError(
                f"the IPFS API at {self.api_url} broke off a transfer: {exc}",
                hint="retry; if it persists, check the node's logs",
            ) from exc
        finally:
            response.close()

    def _add(self, name: str, content: Any, expected: CID) -> CID:
        files = {"file": (name, content, "application/octet-stream")}
        response = self._send("add", _ADD_PARAMS, files=files)
        body = b"".join(self._stream(response))
        returned: str | None = None
        for line in body.decode("utf-8", "replace").splitlines():
            if line.strip():
                try:
                    returned = json.loads(line).get("Hash", returned)
                except (json.JSONDecodeError, AttributeError):
                    continue
        if returned is None:
            raise StoreError(
                f"the IPFS API at {self.api_url} answered `add` without a CID",
                hint="is this a kubo-compatible /api/v0 endpoint?",
            )
        if returned != str(expected):
            raise StoreError(
                f"the IPFS node stored the content as {returned}, but its CID is {expected}",
                hint="the node overrides kubo's default import layout (Import.UnixFSFileMaxLinks, "
                "Import.UnixFSChunker); restore the defaults for verinfer to find its content",
            )
        log.debug("store.ipfs.add", cid=returned, api=self.api_url)
        return expected

    # -- Store -----------------------------------------------------------------------------

    def put(self, data: bytes) -> CID:
        builder = FileBuilder()
        builder.write(data)
        return self._add("blob", data, builder.finish())

    def put_file(self, path: Path) -> CID:
        path = Path(path)
        with open_input(path) as stream:
            expected, _ = build_stream(stream)
        with open_input(path) as stream:  # second pass: httpx streams the file from disk
            return self._add(path.name, stream, expected)

    def _verified_chunks(self, cid: CID) -> Iterator[bytes]:
        """What ``cat`` serves for a dag-pb CID, re-imported on the fly; checked after the end.

        Callers must discard what they received if this raises (``get_to_file`` writes to a
        temp file that is removed then).
        """
        response = self._send("cat", {"arg": str(cid)})
        builder = FileBuilder()
        for chunk in self._stream(response):
            builder.write(chunk)
            yield chunk
        if builder.finish() != cid:
            raise _mismatch(cid)

    def get(self, cid: CID | str) -> bytes:
        cid = CID.coerce(cid)
        if cid.codec == RAW:
            data = b"".join(self._stream(self._send("cat", {"arg": str(cid)})))
            if not cid.matches(data):
                raise _mismatch(cid)
            return data
        return b"".join(self._verified_chunks(cid))

    def get_to_file(self, cid: CID | str, path: Path) -> int:
        cid = CID.coerce(cid)
        if cid.codec == RAW:  # at most one block: hash it whole
            data = self.get(cid)
            with atomic_output(Path(path)) as out:
                out.write(data)
            return len(data)
        chunks = self._verified_chunks(cid)
        first = next(chunks, b"")  # connection and HTTP errors surface before the file is made
        size = len(first)
        with atomic_output(Path(path)) as out:
            out.write(first)
            for chunk in chunks:  # a hash mismatch raises here and the temp file is removed
                out.write(chunk)
                size += len(chunk)
        return size

    def has(self, cid: CID | str) -> bool:
        """Whether the node has ``cid`` pinned (answered offline: no network search)."""
        cid = CID.coerce(cid)
        try:
            response = self._send("pin/ls", {"arg": str(cid), "type": "recursive"})
        except StoreError as exc:
            if "not pinned" in exc.message or "not found" in exc.message:
                return False
            raise
        for _ in self._stream(response):
            pass
        return True


def _mismatch(cid: CID) -> StoreError:
    return StoreError(
        f"the IPFS node served bytes for {cid} that do not hash to it",
        hint="the node's copy is corrupted or was imported with another layout; "
        "run `ipfs repo verify` on the node, or add the file again",
    )


def _api_error(endpoint: str, status: int, body: bytes) -> StoreError:
    message = body.decode("utf-8", "replace").strip()
    try:
        message = str(json.loads(message).get("Message", message))
    except (json.JSONDecodeError, AttributeError):
        pass
    message = message[:300] or f"HTTP {status}"
    if status in (404, 405):
        return StoreError(
            f"the IPFS API has no {endpoint} endpoint (HTTP {status})",
            hint="point VERINFER_STORE at the node's RPC API (port 5001), not at a gateway",
        )
    if status in (401, 403):
        return StoreError(
            f"the IPFS API refused {endpoint} (HTTP {status}): {message}",
            hint="check the node's API.Authorizations or the URL's credentials",
        )
    return StoreError(
        f"the IPFS API failed on {endpoint}: {message}",
        hint="check the CID and the node's logs",
    )


def open_store(url: str | None = None) -> Store:
    """The store named by ``url``, else by ``$VERINFER_STORE``, else the local store.

    ``local`` (or nothing) is ``$VERINFER_HOME/store``; ``local:PATH`` a store directory of
    your choice; ``http://host:port`` an IPFS node's RPC API.
    """
    spec = (url if url is not None else os.environ.get(STORE_ENV, "")).strip()
    if spec in ("", "local"):
        return LocalStore()
    if spec.startswith("local:"):
        return LocalStore(Path(spec[len("local:") :]).expanduser())
    if spec.startswith(("http://", "https://")):
        return IpfsStore(spec)
    raise ConfigError(
        f"unknown store {spec!r}",
        hint=f"set {STORE_ENV} (or --store) to 'local', 'local:PATH' or an IPFS API URL "
        "such as http://127.0.0.1:5001",
    )
