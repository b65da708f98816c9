"""The fixed-point runtime agrees with onnxruntime (float32) on every test model and MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from verinfer.runtime import compile_model
from verinfer.runtime.testmodels import TEST_MODELS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_matches_onnxruntime_within_the_stated_tolerance(name: str) -> None:
    model = TEST_MODELS[name]
    program = model.compile()
    feed = model.feed()
    execution = program.run(feed)
    expected = ort.InferenceSession(str(model.onnx)).run(None, dict(feed))
    assert not execution.saturated
    for tensor, got, want in zip(program.outputs, execution.outputs, expected, strict=True):
        error = float(np.max(np.abs(got - want)))
        assert error <= model.tolerance, f"{name}/{tensor.name}: max abs error {error}"
        if tensor.kind == "int":  # ArgMax and the like: identical
            assert np.array_equal(got, want)


def test_classifiers_pick_the_same_class_on_the_whole_digits_sample() -> None:
    for name in ("digits_mlp", "digits_cnn", "sigmoid_mlp"):
        model = TEST_MODELS[name]
        feed = model.feed()
        ours = model.compile().run(feed).outputs[0].argmax(-1)
        theirs = ort.InferenceSession(str(model.onnx)).run(None, dict(feed))[0].argmax(-1)
        assert np.array_equal(ours, theirs), name


minilm = pytest.importorskip("verinfer.models.minilm")


@pytest.fixture(scope="module")
def minilm_setup() -> tuple[object, object, list[dict[str, np.ndarray]]]:
    try:
        path = minilm.cached_minilm_onnx(128, 17)
        tokenizer = minilm.Tokenizer()
    except Exception as exc:  # the package is optional outside `make test`
        pytest.skip(f"MiniLM unavailable: {exc}")
    feeds = [tokenizer.encode(s, 128) for s in minilm.SENTENCES]
    return compile_model(path, feeds), ort.InferenceSession(str(path)), feeds


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_minilm_sentence_embeddings_match(minilm_setup: tuple) -> None:
    program, session, feeds = minilm_setup
    official = np.load(FIXTURES / "minilm_reference.npy")  # sentence-transformers, torch
    for i, feed in enumerate(feeds):
        execution = program.run(feed, trace=False)
        assert not execution.saturated
        ours = execution.outputs[0][0]
        assert cosine(ours, session.run(None, feed)[0][0]) >= 0.99
        assert cosine(ours, official[i]) >= 0.99
