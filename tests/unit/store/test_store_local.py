"""LocalStore: round trips, verification on every read, and crash safety."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

import verinfer.store.local as local_module
from verinfer.errors import StoreError
from verinfer.store import CHUNK_SIZE, CID, DAG_PB, RAW, LocalStore, Store, file_cid


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7])
def test_put_get_round_trip(store: LocalStore, size: int) -> None:
    data = os.urandom(size)
    cid = store.put(data)
    assert cid == file_cid(data)
    assert store.has(cid) and store.has(str(cid))
    assert store.get(cid) == data
    assert store.get(str(cid)) == data
    blocks = _files(store.root)
    assert len(blocks) == (1 if size <= CHUNK_SIZE else (size + CHUNK_SIZE - 1) // CHUNK_SIZE + 1)
    assert all(CID.parse(p.name).matches(p.read_bytes()) for p in blocks)


def test_satisfies_the_store_protocol(store: LocalStore) -> None:
    assert isinstance(store, Store)


def test_default_root_is_under_verinfer_home(verinfer_home: Path) -> None:
    cid = LocalStore().put(b"hello world")
    assert str(cid) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert LocalStore().block_path(cid).is_relative_to(verinfer_home / "store")


def test_unknown_cid(store: LocalStore, tmp_path: Path) -> None:
    cid = CID.of(b"never stored")
    assert not store.has(cid)
    with pytest.raises(StoreError, match="not in the store") as info:
        store.get(cid)
    assert info.value.hint
    out = tmp_path / "out.bin"
    with pytest.raises(StoreError, match="not in the store"):
        store.get_to_file(cid, out)
    assert not out.exists()


def test_invalid_cid_string(store: LocalStore) -> None:
    with pytest.raises(StoreError) as info:
        store.get("not-a-cid")
    assert info.value.hint


def _flip_byte(path: Path, offset: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_corrupted_single_block_is_never_returned(store: LocalStore) -> None:
    cid = store.put(b"model weights")
    _flip_byte(store.block_path(cid), 3)
    assert store.has(cid)  # present, but unreadable: reads are verified
    with pytest.raises(StoreError, match="corrupted") as info:
        store.get(cid)
    assert "delete" in (info.value.hint or "")


@pytest.mark.parametrize("which", ["leaf", "root"])
def test_corrupted_block_in_a_multi_block_file(
    store: LocalStore, tmp_path: Path, which: str
) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 7)
    cid = store.put(data)
    assert cid.codec == DAG_PB
    target = cid if which == "root" else CID.of(data[CHUNK_SIZE : 2 * CHUNK_SIZE], RAW)
    _flip_byte(store.block_path(target), 10)
    with pytest.raises(StoreError, match=f"block {target} is corrupted"):
        store.get(cid)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(StoreError, match="corrupted"):
        store.get_to_file(cid, out)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temp file left


def test_missing_leaf_is_reported(store: LocalStore) -> None:
    data = os.urandom(2 * CHUNK_SIZE)
    cid = store.put(data)
    leaf = CID.of(data[CHUNK_SIZE:])
    store.block_path(leaf).unlink()
    with pytest.raises(StoreError, match=f"{leaf} is not in the store"):
        store.get(cid)


def test_put_repairs_a_corrupted_block(store: LocalStore) -> None:
    cid = store.put(b"repair me")
    _flip_byte(store.block_path(cid))
    assert store.put(b"repair me") == cid
    assert store.get(cid) == b"repair me"


def test_get_to_file_streams_and_replaces_atomically(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 3)
    cid = store.put(data)
    out = tmp_path / "sub" / "copy.bin"
    assert store.get_to_file(cid, out) == len(data)
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["copy.bin"]


def test_crash_mid_put_leaves_nothing_half_written(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(4 * CHUNK_SIZE + 1)
    root = file_cid(data)
    written: list[CID] = []
    real_replace = os.replace

    def crashing_replace(src: str, dst: str) -> None:
        if len(written) == 3:
            raise OSError(28, "No space left on device")  # the 4th block never lands
        real_replace(src, dst)
        written.append(CID.parse(Path(dst).name))

    monkeypatch.setattr("verinfer.fsutil.os.replace", crashing_replace)
    with pytest.raises(StoreError, match="cannot write block") as info:
        store.put(data)
    assert "disk space" in (info.value.hint or "")
    assert not store.has(root)  # the root is written last, so it is absent
    files = _files(store.root)
    assert len(files) == 3  # three complete leaves, no temp file
    assert all(CID.parse(p.name).matches(p.read_bytes()) for p in files)
    monkeypatch.setattr("verinfer.fsutil.os.replace", real_replace)
    assert store.put(data) == root and store.get(root) == data


def test_blocks_are_written_children_first_root_last(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[CID] = []
    real = local_module.write_atomic

    def recording(path: Path, block: bytes) -> None:
        order.append(CID.parse(path.name))
        real(path, block)

    monkeypatch.setattr(local_module, "write_atomic", recording)
    data = os.urandom(3 * CHUNK_SIZE)
    root = store.put(data)
    assert order[-1] == root and len(order) == 4


def test_put_file_streams_a_large_file(store: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 175 * CHUNK_SIZE + 9  # more than 174 leaves: a two-level DAG
    chunk = os.urandom(CHUNK_SIZE)
    with path.open("wb") as f:
        for i in range(175):
            f.write(chunk[i:] + chunk[:i])  # distinct leaves
        f.write(b"123456789")
    tracemalloc.start()
    try:
        cid = store.put_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * CHUNK_SIZE  # ~46 MB file, a few chunks of memory
    out = tmp_path / "back.bin"
    assert store.get_to_file(cid, out) == size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_put_file_errors(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.put_file(tmp_path / "missing.onnx")
    with pytest.raises(StoreError, match="is a directory"):
        store.put_file(tmp_path)
