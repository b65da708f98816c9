"""`verinfer store put|get` through a tiny root app that turns VerinferError into exit 1."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import typer
from fake_kubo import FakeKubo
from typer.core import TyperGroup
from typer.testing import CliRunner

from verinfer.errors import VerinferError
from verinfer.store import CHUNK_SIZE, CID, LocalStore, file_cid
from verinfer.store.cli import app as store_app


class _Root(TyperGroup):
    """What the real root CLI does with library errors: one line, a hint, exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VerinferError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                typer.echo(f"  hint: {exc.hint}", err=True)
            raise typer.Exit(1) from exc


root = typer.Typer(cls=_Root)
root.add_typer(store_app, name="store")


@root.callback()
def _callback() -> None:
    pass


runner = CliRunner()


@pytest.fixture(autouse=True)
def _local_store_and_quiet_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("VERINFER_STORE", raising=False)
    # As the root CLI does (warnings only), without binding CliRunner's short-lived stderr.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


def test_put_prints_the_cid(tmp_path: Path, verinfer_home: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"hello world")
    result = runner.invoke(root, ["store", "put", str(src)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert LocalStore().has(result.stdout.strip())


def test_put_json(tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    data = os.urandom(CHUNK_SIZE + 3)
    src.write_bytes(data)
    result = runner.invoke(root, ["store", "put", str(src), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"cid": str(file_cid(data)), "size": len(data)}


def test_get_round_trip_and_overwrite_rules(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 1)
    cid = LocalStore().put(data)
    out = tmp_path / "out.bin"
    result = runner.invoke(root, ["store", "get", str(cid), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == data

    out.write_bytes(b"keep me")
    refused = runner.invoke(root, ["store", "get", str(cid), "-o", str(out)])
    assert refused.exit_code == 1
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.output
    assert out.read_bytes() == b"keep me"

    forced = runner.invoke(root, ["store", "get", str(cid), "-o", str(out), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout) == {"cid": str(cid), "size": len(data), "path": str(out)}
    assert out.read_bytes() == data


def test_get_unknown_and_invalid_cids(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    unknown = runner.invoke(root, ["store", "get", str(CID.of(b"nope")), "-o", str(out)])
    assert unknown.exit_code == 1
    assert "not in the store" in unknown.stderr and "hint:" in unknown.stderr
    invalid = runner.invoke(root, ["store", "get", "QmNotAV1", "-o", str(out)])
    assert invalid.exit_code == 1
    assert "ipfs cid base32" in invalid.stderr
    assert not out.exists()


def test_get_refuses_a_directory_and_corrupted_content(tmp_path: Path) -> None:
    cid = LocalStore().put(b"payload")
    result = runner.invoke(root, ["store", "get", str(cid), "-o", str(tmp_path)])
    assert result.exit_code == 1 and "is a directory" in result.stderr
    path = LocalStore().block_path(cid)
    path.write_bytes(b"pAyload")
    out = tmp_path / "out.bin"
    corrupted = runner.invoke(root, ["store", "get", str(cid), "-o", str(out)])
    assert corrupted.exit_code == 1 and "corrupted" in corrupted.stderr
    assert not out.exists()


def test_put_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(root, ["store", "put", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_store_option_selects_ipfs(tmp_path: Path, fake_kubo: FakeKubo) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"to ipfs")
    put = runner.invoke(root, ["store", "put", str(src), "--store", fake_kubo.url, "--json"])
    assert put.exit_code == 0, put.output
    cid = json.loads(put.stdout)["cid"]
    assert fake_kubo.blobs[cid] == b"to ipfs"
    out = tmp_path / "b.bin"
    get = runner.invoke(root, ["store", "get", cid, "-o", str(out), "--store", fake_kubo.url])
    assert get.exit_code == 0, get.output
    assert out.read_bytes() == b"to ipfs"


def test_unknown_store_is_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERINFER_STORE", "ftp://example")
    src = tmp_path / "a.bin"
    src.write_bytes(b"x")
    result = runner.invoke(root, ["store", "put", str(src)])
    assert result.exit_code == 1 and "unknown store" in result.stderr
