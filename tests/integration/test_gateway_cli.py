"""`verinfer facilitator start` and `verinfer gateway start` as processes on loopback: the
gateway shows a model's terms for free and asks for payment (402) before any inference."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from node_kit import register_digits
from typer.testing import CliRunner

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.cli import app

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered: {log.read_text()[-2000:]}")


def test_servers_start_and_ask_for_payment(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    env = dict(os.environ, VERINFER_RPC_URL=anvil.rpc_url)
    env.pop("VERINFER_PRIVATE_KEY", None)  # devnet defaults: facilitator account 2, gateway 0
    f_port, g_port = _free_port(), _free_port()
    procs = []
    try:
        f_log = tmp_path / "facilitator.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "verinfer", "facilitator", "start", "--port", str(f_port)],
            env=env, stdout=f_log.open("w"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        _wait(f"http://127.0.0.1:{f_port}/supported", procs[0], f_log)
        assert f"gas from {dev_account(2).address}" in f_log.read_text()
        g_log = tmp_path / "gateway.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "verinfer", "gateway", "start", "--port", str(g_port),
             "--pay-to", dev_account(4).address,
             "--facilitator-url", f"http://127.0.0.1:{f_port}"],
            env=env, stdout=g_log.open("w"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        base = f"http://127.0.0.1:{g_port}/v1/models/{model.model_id}"
        _wait(base, procs[1], g_log)
        terms = httpx.get(base, timeout=10)
        assert terms.status_code == 200, terms.text
        unpaid = httpx.post(f"{base}/infer", json={"input": [[0.0] * 64]}, timeout=10)
        assert unpaid.status_code == 402
        assert terms.json()["node"] == dev_account(0).address  # the gateway signs as account 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def test_bad_arguments_are_refused(book: AddressBook, anvil: DevnetInfo) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["gateway", "start", "--pay-to", "nobody", "--rpc-url", anvil.rpc_url])
    assert bad.exit_code == 1 and "--pay-to" in bad.output
