"""The local devnet: anvil on 127.0.0.1, started, found again, and stopped by PID.

State survives restarts through anvil's own dump/load (``--state`` plus a periodic dump, so a
SIGKILL loses at most a few seconds). A small ``devnet.json`` beside the state records the PID
and port so that other commands find the running devnet without being told.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from verinfer.errors import DevnetError
from verinfer.fsutil import write_atomic
from verinfer.home import devnet_dir

DEVNET_CHAIN_ID = 31337
HOST = "127.0.0.1"
STATE_INTERVAL_S = 2
# States kept in memory (none on disk): reads pinned a few blocks back, and "latest" reads
# racing a new block, need more than the newest state (`--prune-history` alone keeps one).
IN_MEMORY_STATES = 256
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
_ANVIL_NPM_PATH = Path("tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")


@dataclass(frozen=True)
class DevnetInfo:
    """What ``devnet.json`` records about a running devnet."""

    pid: int
    port: int
    chain_id: int
    state_dir: str

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def find_anvil() -> Path:
    """Locate the anvil binary: ``$VERINFER_ANVIL``, the repo's pinned npm package, or PATH."""
    env = os.environ.get("VERINFER_ANVIL")
    if env:
        path = Path(env)
        if not path.is_file():
            raise DevnetError(f"VERINFER_ANVIL points to {path}, which does not exist")
        return path
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / _ANVIL_NPM_PATH
        if candidate.is_file():
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise DevnetError(
        "anvil not found",
        hint="run `make setup` (installs the pinned npm package) or set VERINFER_ANVIL",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def rpc_chain_id(rpc_url: str, timeout: float = 2.0) -> int | None:
    """The chain id an RPC answers with, or None when nothing answers."""
    try:
        reply = httpx.post(
            rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=timeout,
        )
        return int(reply.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _pid_is_anvil(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"anvil" in cmdline.split(b"\0")[0]


class Devnet:
    """One devnet, identified by its state directory."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or devnet_dir()).expanduser().resolve()
        self.info_file = self.state_dir / "devnet.json"
        self.state_file = self.state_dir / "state.json"
        self.log_file = self.state_dir / "anvil.log"

    def info(self) -> DevnetInfo | None:
        """The running devnet, or None; a stale ``devnet.json`` (dead PID) is removed."""
        try:
            info = DevnetInfo(**json.loads(self.info_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise DevnetError(
                f"{self.info_file} is corrupted: {exc}", hint="delete it and start the devnet again"
            ) from exc
        if not _pid_is_anvil(info.pid):
            self.info_file.unlink(missing_ok=True)
            return None
        return info

    def start(self, port: int | None = None, *, persist: bool = True) -> DevnetInfo:
        """Start anvil in the background and wait until it answers RPC."""
        running = self.info()
        if running is not None:
            raise DevnetError(
                f"a devnet is already running at {running.rpc_url} (pid {running.pid})",
                hint="use it, or stop it with `verinfer devnet stop`",
            )
        if port is None:
            port = free_port()
        elif not 0 < port < 65536:
            raise DevnetError(f"port {port} is out of range", hint="choose a port from 1 to 65535")
        elif port_in_use(port):
            raise DevnetError(
                f"port {port} on {HOST} is already in use",
                hint="choose another with --port, or omit --port to pick a free one",
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(find_anvil()),
            "--host", HOST,
            "--port", str(port),
            "--chain-id", str(DEVNET_CHAIN_ID),
            "--prune-history", str(IN_MEMORY_STATES),
        ]  # fmt: skip
        if persist:
            cmd += ["--state", str(self.state_file), "--state-interval", str(STATE_INTERVAL_S)]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        info = DevnetInfo(
            pid=proc.pid, port=port, chain_id=DEVNET_CHAIN_ID, state_dir=str(self.state_dir)
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while rpc_chain_id(info.rpc_url, timeout=0.5) != DEVNET_CHAIN_ID:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = self.log_file.read_text(errors="replace")[-500:].strip()
                raise DevnetError(f"anvil did not start on port {port}: {tail or 'no output'}")
            time.sleep(0.05)
        write_atomic(self.info_file, json.dumps(asdict(info), indent=2).encode())
        return info

    def stop(self) -> DevnetInfo | None:
        """Stop the running devnet (SIGTERM, so anvil dumps its state); None if none ran."""
        info = self.info()
        if info is None:
            return None
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_is_anvil(info.pid) and time.monotonic() < deadline:
            _reap(info.pid)
            time.sleep(0.05)
        if _pid_is_anvil(info.pid):
            os.kill(info.pid, signal.SIGKILL)
            _reap(info.pid)
        self.info_file.unlink(missing_ok=True)
        return info


def _reap(pid: int) -> None:
    """Collect a child we started ourselves, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
