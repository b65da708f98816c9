"""native.trace_batched: a whole trace hashed at once on the calling thread (messages of
every tensor sharing the SIMD lanes) gives the Committer's roots and trace root, for any
sizes, shapes and hashing variant; bad arguments get clear errors; the executor uses it for
runs with few values, with the same roots as the worker path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verinfer.runtime import executor
from verinfer.runtime.commit import leaf_suffix, native
from verinfer.runtime.testmodels import TEST_MODELS

pytestmark = pytest.mark.skipif(native is None, reason="no C extension")

# Sizes around the 8-value word, the 128-value chunk and the lane counts (4 and 8 messages).
SIZES = st.one_of(
    st.sampled_from([1, 7, 8, 9, 64, 127, 128, 129, 256, 512, 513, 1024, 1100]),
    st.integers(1, 3000),
)
# Shapes of up to 30 dims: suffixes from 9 to 129 bytes, so leaf messages of 41 to 161 bytes,
# on both sides of keccak's 136-byte block.
SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=30).map(tuple)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(SIZES, min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 11), SHAPES, st.integers(0, 40)), min_size=1, max_size=14),
    st.integers(0, 2**32 - 1),
)
def test_same_roots_as_the_committer(
    sizes: list[int], positions: list[tuple[int, tuple[int, ...], int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(-(2**31), 2**31, n).astype(np.int32 if n % 2 else np.int64) for n in sizes
    ]
    order = [job % len(arrays) for job, _, _ in positions]
    suffixes = tuple(leaf_suffix(shape, scale) for _, shape, scale in positions)
    committer = native.Committer()
    for a in arrays:
        committer.add(a)
    expected = committer.trace(order, suffixes)
    saved = native.get_impl()
    try:
        for impl in native.impls():
            native.set_impl(impl)
            assert native.trace_batched(arrays, order, suffixes) == expected, impl
    finally:
        native.set_impl(saved)


@pytest.mark.parametrize(
    ("arrays", "order", "suffixes", "error"),
    [
        ([np.ones(3, np.int64)], [], (), ValueError),  # no position
        ([np.ones(3, np.int64)], [0], (b"\x01", b"\x01"), ValueError),  # suffixes != positions
        ([np.ones(3, np.int64)], [1], (b"\x01",), IndexError),  # no such tensor
        ([np.ones(3, np.int64)], [-1], (b"\x01",), IndexError),
        ([np.ones(3, np.int64)], [0], (bytes(2049),), ValueError),  # suffix too long
        ([np.ones(3, np.int64)], [0], ("shape",), ValueError),  # suffix not bytes
        ([np.ones(3)], [0], (b"\x01",), ValueError),  # float values
        ([np.zeros(0, np.int64)], [0], (b"\x01",), ValueError),  # empty
        ([np.arange(12).reshape(3, 4).T], [0], (b"\x01",), ValueError),  # not C-contiguous
        ([np.array([2**31])], [0], (b"\x01",), ValueError),  # outside int32
        ((np.ones(3, np.int64),), [0], (b"\x01",), TypeError),  # a tuple of arrays
        ([np.ones(3, np.int64)], [0], [b"\x01"], TypeError),  # a list of suffixes
    ],
)
def test_bad_arguments_are_refused(
    arrays: object, order: object, suffixes: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        native.trace_batched(arrays, order, suffixes)


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_the_executor_batches_small_runs_with_the_same_roots(name: str) -> None:
    """Both paths on each test model (at its sample's batch), and a run forced the other way;
    the golden vectors pin these roots as well."""
    model = TEST_MODELS[name]
    program = model.compile()
    plan = executor._plan(program)
    feed = model.feed()
    total = sum(program.tensors[n].size for n in plan.job_outputs)
    assert plan.batched == (total <= executor._BATCHED_TRACE_VALUES)
    runs = []
    for batched in (True, False):
        program._plan[0] = dataclasses.replace(plan, batched=batched)
        runs.append(program.run(feed))
    program._plan[0] = plan
    assert runs[0].step_roots == runs[1].step_roots
    assert runs[0].trace_root == runs[1].trace_root == program.run(feed).trace_root
