"""CIDs: the hand-written encoding against the `multiformats` package and kubo's own output."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID as MfCID
from multiformats import multihash, varint

from verinfer.errors import StoreError
from verinfer.store import CHUNK_SIZE, CID, DAG_PB, RAW, file_cid
from verinfer.store.cid import decode_varint, encode_varint

# Printed by kubo itself (test/cli/add_test.go and test/sharness/t0114 README in ipfs/kubo).
KUBO_HELLO_WORLD = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # "hello world"
KUBO_HELLO_NL = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"  # "hello\n"
KUBO_SHA512 = (  # "hello world" with --hash sha2-512: a valid CID we must refuse
    "bafkrgqbqt3gerhas23vuzrapkdeqf4vu2dwxp3srdj6hvg6nhsug2tgyn6mj3u23yx7utftq3i2ckw2fwdh5qmhid5"
    "qf3t35yvkc5e5ottlw6"
)
DAG_CBOR = "bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe"  # ipld codec fixture
CIDV0 = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"


def _mf_raw(data: bytes) -> MfCID:
    return MfCID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_raw_cid_matches_multiformats(data: bytes) -> None:
    ours = CID.of(data)
    theirs = _mf_raw(data)
    assert str(ours) == str(theirs)
    assert bytes(ours) == bytes(theirs)
    assert ours.multihash == bytes(theirs.digest)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=CHUNK_SIZE), st.integers(min_value=0, max_value=2**32))
def test_single_block_files_get_the_raw_cid_of_their_bytes(size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    assert str(file_cid(data)) == str(_mf_raw(data))


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE])
def test_single_block_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert file_cid(data) == CID.of(data, RAW)


@given(st.sampled_from([RAW, DAG_PB]), st.binary(min_size=32, max_size=32))
def test_dag_pb_and_raw_strings_match_multiformats(codec: int, digest: bytes) -> None:
    name = "raw" if codec == RAW else "dag-pb"
    theirs = MfCID("base32", 1, name, multihash.wrap(digest, "sha2-256"))
    ours = CID(codec, digest)
    assert str(ours) == str(theirs)
    assert CID.parse(str(theirs)) == ours
    assert CID.from_bytes(bytes(theirs)) == ours


@given(st.sampled_from([RAW, DAG_PB]), st.binary(min_size=32, max_size=32))
def test_parse_round_trips(codec: int, digest: bytes) -> None:
    cid = CID(codec, digest)
    text = str(cid)
    assert text.startswith("bafkrei" if codec == RAW else "bafybei")
    assert CID.parse(text) == cid
    assert CID.parse(f"  {text}\n") == cid
    assert CID.coerce(text) == CID.coerce(cid) == cid
    assert CID.from_bytes(bytes(cid)) == cid


def test_kubo_vectors() -> None:
    assert str(CID.of(b"hello world")) == KUBO_HELLO_WORLD
    assert str(CID.of(b"hello\n")) == KUBO_HELLO_NL
    assert str(CID.of(b"")) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert CID.parse(KUBO_HELLO_WORLD).digest == hashlib.sha256(b"hello world").digest()


def _b32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def _bad_cases() -> list[tuple[str, str]]:
    good = CID.of(b"x")
    raw = bytes(good)
    return [
        ("", "not a base32"),
        ("b", "not a base32"),
        ("hello", "not a base32"),
        (CIDV0, "not a base32"),
        (str(good).upper(), "not a base32"),
        ("z" + str(good)[1:], "not a base32"),
        (str(good)[:-1] + "!", "not a base32"),
        (str(good)[:-1] + "1", "not a base32"),  # '1' is not in the base32 alphabet
        (str(good)[:-3], "malformed"),  # truncated digest
        (_b32(raw + b"\x00"), "malformed"),  # trailing byte
        (_b32(b"\x02" + raw[1:]), "version 2"),
        (_b32(b"\x12\x20" + good.digest), "CIDv0"),
        (DAG_CBOR, "codec 0x71"),
        (KUBO_SHA512, "multihash"),
        (_b32(b"\x01\x55\x12\x10" + good.digest[:16]), "multihash"),
        (_b32(b"\x01\xd5\x80\x80\x80\x80\x80\x80\x80\x80\x01"), "varint"),
    ]


@pytest.mark.parametrize(("text", "problem"), _bad_cases())
def test_parse_rejects_with_a_hint(text: str, problem: str) -> None:
    with pytest.raises(StoreError) as info:
        CID.parse(text)
    assert problem in info.value.message
    assert info.value.hint


def test_parse_rejects_non_canonical_trailing_bits() -> None:
    text = str(CID.of(b"x"))
    # The last base32 character carries 2 padding bits: flipping one keeps the bytes, not the text.
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(text[-1])
    tweaked = text[:-1] + alphabet[last ^ 1]
    with pytest.raises(StoreError, match="canonical"):
        CID.parse(tweaked)


def test_cidv0_hint_says_how_to_convert() -> None:
    with pytest.raises(StoreError) as info:
        CID.parse(CIDV0)
    assert "ipfs cid base32" in (info.value.hint or "")


def test_constructor_validates() -> None:
    with pytest.raises(StoreError):
        CID(0x71, bytes(32))
    with pytest.raises(StoreError):
        CID(RAW, bytes(31))


def test_repr_and_codec_name() -> None:
    cid = CID.of(b"x", DAG_PB)
    assert repr(cid) == f"CID('{cid}')"
    assert cid.codec_name == "dag-pb"
    assert cid.matches(b"x") and not cid.matches(b"y")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_matches_multiformats(value: int) -> None:
    encoded = encode_varint(value)
    assert encoded == varint.encode(value)
    assert decode_varint(encoded + b"\xff", 0) == (value, len(encoded))


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\x80\x00", b"\xff" * 10])
def test_varint_rejects_truncated_overlong_and_non_minimal(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_varint(raw)
    with pytest.raises(ValueError):
        encode_varint(-1)
