"""IpfsStore against a fake kubo RPC API on 127.0.0.1 (see conftest.py), and open_store."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_kubo import FakeKubo

from verinfer.errors import ConfigError, StoreError
from verinfer.store import CHUNK_SIZE, CID, IpfsStore, LocalStore, Store, file_cid, open_store


@pytest.fixture
def ipfs(fake_kubo: FakeKubo) -> Iterator[IpfsStore]:
    with IpfsStore(fake_kubo.url, timeout=5) as store:
        yield store


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7])
def test_put_get_round_trip(ipfs: IpfsStore, fake_kubo: FakeKubo, size: int) -> None:
    data = os.urandom(size)
    cid = ipfs.put(data)
    assert cid == file_cid(data)
    assert fake_kubo.blobs[str(cid)] == data
    assert ipfs.get(cid) == data
    assert ipfs.get(str(cid)) == data
    assert ipfs.has(cid)


def test_add_asks_for_kubos_default_file_layout(ipfs: IpfsStore, fake_kubo: FakeKubo) -> None:
    ipfs.put(b"x")
    path, params = fake_kubo.calls[0]
    assert path == "/api/v0/add"
    assert params["cid-version"] == "1" and params["raw-leaves"] == "true"
    assert params["chunker"] == "size-262144" and params["hash"] == "sha2-256"
    assert params["trickle"] == "false" and params["pin"] == "true"


def test_satisfies_the_store_protocol(ipfs: IpfsStore) -> None:
    assert isinstance(ipfs, Store)
    assert "127.0.0.1" in repr(ipfs)


def test_put_file_and_get_to_file(ipfs: IpfsStore, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(os.urandom(2 * CHUNK_SIZE + 11))
    cid = ipfs.put_file(src)
    assert cid == file_cid(src.read_bytes())
    out = tmp_path / "copy.onnx"
    assert ipfs.get_to_file(cid, out) == src.stat().st_size
    assert out.read_bytes() == src.read_bytes()
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    assert ipfs.get_to_file(ipfs.put_file(small), tmp_path / "small.out") == 4


def test_has_is_false_for_unknown(ipfs: IpfsStore) -> None:
    assert not ipfs.has(CID.of(b"nobody added this"))


def test_unknown_cid_raises(ipfs: IpfsStore) -> None:
    with pytest.raises(StoreError, match="could not find") as info:
        ipfs.get(CID.of(b"nobody added this"))
    assert info.value.hint


@pytest.mark.parametrize("size", [10, 3 * CHUNK_SIZE + 7])
def test_corrupted_bytes_are_never_returned(
    ipfs: IpfsStore, fake_kubo: FakeKubo, tmp_path: Path, size: int
) -> None:
    cid = ipfs.put(os.urandom(size))
    fake_kubo.corrupt.add(str(cid))
    with pytest.raises(StoreError, match="do not hash to it") as info:
        ipfs.get(cid)
    assert info.value.hint
    out = tmp_path / "out.bin"
    with pytest.raises(StoreError, match="do not hash to it"):
        ipfs.get_to_file(cid, out)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_node_answering_another_cid_is_refused(ipfs: IpfsStore, fake_kubo: FakeKubo) -> None:
    fake_kubo.wrong_cid = True
    with pytest.raises(StoreError, match="stored the content as") as info:
        ipfs.put(b"weights")
    assert "Import." in (info.value.hint or "")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_node(tmp_path: Path) -> None:
    store = IpfsStore(f"http://127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(StoreError, match="cannot reach the IPFS API") as info:
        store.put(b"x")
    assert "ipfs daemon" in (info.value.hint or "")
    with pytest.raises(StoreError, match="cannot reach"):
        store.get(CID.of(b"x"))
    with pytest.raises(StoreError, match="cannot reach"):
        store.has(CID.of(b"x"))
    out = tmp_path / "out.bin"
    with pytest.raises(StoreError, match="cannot reach"):
        store.get_to_file(file_cid(os.urandom(CHUNK_SIZE + 1)), out)
    assert not out.exists()


def test_timeout(fake_kubo: FakeKubo) -> None:
    fake_kubo.delay_s = 1.0
    with pytest.raises(StoreError, match="timed out"):
        IpfsStore(fake_kubo.url, timeout=0.2).get(CID.of(b"x"))


def test_gateway_instead_of_api(fake_kubo: FakeKubo) -> None:
    store = IpfsStore(fake_kubo.url + "/not-the-api/")
    with pytest.raises(StoreError, match="no add endpoint") as info:
        store.put(b"x")
    assert "5001" in (info.value.hint or "")


def test_api_url_forms(fake_kubo: FakeKubo) -> None:
    assert IpfsStore(fake_kubo.url + "/api/v0/").api_url == fake_kubo.url
    with pytest.raises(ConfigError):
        IpfsStore("127.0.0.1:5001")


def test_open_store(monkeypatch: pytest.MonkeyPatch, verinfer_home: Path, tmp_path: Path) -> None:
    monkeypatch.delenv("VERINFER_STORE", raising=False)
    default = open_store()
    assert isinstance(default, LocalStore) and default.root == verinfer_home / "store"
    assert isinstance(open_store("local"), LocalStore)
    custom = open_store(f"local:{tmp_path / 'blobs'}")
    assert isinstance(custom, LocalStore) and custom.root == tmp_path / "blobs"
    assert isinstance(open_store("http://127.0.0.1:5001"), IpfsStore)
    monkeypatch.setenv("VERINFER_STORE", "http://127.0.0.1:5001")
    assert isinstance(open_store(), IpfsStore)
    assert isinstance(open_store("local"), LocalStore)  # an explicit choice beats the env
    monkeypatch.setenv("VERINFER_STORE", "s3://bucket")
    with pytest.raises(ConfigError, match="unknown store") as info:
        open_store()
    assert "VERINFER_STORE" in (info.value.hint or "")


def test_env_selected_ipfs_store_round_trip(
    monkeypatch: pytest.MonkeyPatch, fake_kubo: FakeKubo
) -> None:
    monkeypatch.setenv("VERINFER_STORE", fake_kubo.url)
    store = open_store()
    cid = store.put(b"via env")
    assert store.get(cid) == b"via env"
