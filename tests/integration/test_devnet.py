"""The devnet launcher and its CLI: start, status, persistence across restarts, stop."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.devnet import HOST, Devnet, free_port
from verinfer.cli import app
from verinfer.errors import DevnetError

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_start_persist_restart_stop(tmp_path: Path) -> None:
    state = tmp_path / "devnet"
    started = runner.invoke(
        app, ["devnet", "start", "--detach", "--state-dir", str(state), "--json"]
    )
    assert started.exit_code == 0, started.output
    info = json.loads(started.stdout)
    try:
        chain = Chain(info["rpc_url"], dev_account(0))
        address, _ = chain.deploy("ModelRegistry")
        status = runner.invoke(app, ["devnet", "status", "--state-dir", str(state), "--json"])
        assert status.exit_code == 0 and json.loads(status.stdout)["running"] is True
        again = runner.invoke(app, ["devnet", "start", "--detach", "--state-dir", str(state)])
        assert again.exit_code == 1 and "already running" in again.output
    finally:
        stopped = runner.invoke(app, ["devnet", "stop", "--state-dir", str(state), "--json"])
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert (state / "state.json").is_file()
    down = runner.invoke(app, ["devnet", "status", "--state-dir", str(state)])
    assert down.exit_code == 1 and "not running" in down.output

    info2 = Devnet(state).start()
    try:
        assert Chain(info2.rpc_url).has_code(address), "state was not restored after restart"
    finally:
        Devnet(state).stop()


def test_port_in_use_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app,
            [
                "devnet",
                "start",
                "--detach",
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path / "d"),
            ],
        )
    assert result.exit_code == 1
    assert f"port {port}" in result.output and "in use" in result.output and "hint" in result.output
    assert not (tmp_path / "d" / "devnet.json").exists()


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    devnet.info_file.write_text(json.dumps(
        {"pid": 2**22 + 1, "port": free_port(), "chain_id": 31337, "state_dir": str(tmp_path)}
    ))  # fmt: skip
    assert devnet.info() is None and not devnet.info_file.exists()
    assert devnet.stop() is None


def test_corrupted_pid_file_is_a_clear_error(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path)
    devnet.info_file.write_text("{not json")
    with pytest.raises(DevnetError, match="corrupted"):
        devnet.info()


def test_stop_without_a_devnet(tmp_path: Path) -> None:
    result = runner.invoke(app, ["devnet", "stop", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0 and "no devnet was running" in result.output
