"""The native Committer and values_root: the same roots as commit.tensor_root, from any
thread, in order, and clear errors for arrays it cannot commit."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verinfer.runtime import commit
from verinfer.runtime.commit import commit_list, leaf_suffix, native, tensor_leaf, tensor_root

pytestmark = pytest.mark.skipif(native is None, reason="no C extension")

int32_tensors = hnp.arrays(
    st.sampled_from([np.int32, np.int64]),
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=40),
    elements=st.integers(-(2**31), 2**31 - 1),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(int32_tensors, min_size=1, max_size=6))
def test_committer_roots_equal_tensor_root_in_order(arrays: list[np.ndarray]) -> None:
    expected = [tensor_root(a) for a in arrays]
    committer = native.Committer()
    assert [committer.add(a) for a in arrays] == list(range(len(arrays)))
    assert committer.roots() == expected
    assert committer.roots() == expected  # a second call returns the same list
    assert [native.values_root(a) for a in arrays] == expected


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 9000), min_size=1, max_size=5),  # packed by add() and read in place
    st.data(),
)
def test_trace_equals_commit_list_of_tensor_leaves(sizes: list[int], data: st.DataObject) -> None:
    """add() and hash() with a suffix make each tensor's leaf with its root; trace() uses it,
    or makes the leaf itself where a position shares a root under another shape."""
    rng = np.random.default_rng(len(sizes))
    arrays = [rng.integers(-(2**31), 2**31, size=n, dtype=np.int64) for n in sizes]
    suffixes = [leaf_suffix((n,), 7) for n in sizes]
    committer = native.Committer()
    jobs = []
    for i, (a, sfx) in enumerate(zip(arrays, suffixes, strict=True)):
        here = data.draw(st.booleans(), label=f"hash {i} here")
        jobs.append((committer.hash if here else committer.add)(a, sfx))
    order = jobs + [jobs[0]]  # the last position shares the first root, as a reshape does
    shared = leaf_suffix((1, sizes[0]), 7)
    roots, root = committer.trace(order, (*suffixes, shared))
    expected = [tensor_root(a) for a in arrays]
    assert roots == [*expected, expected[0]]
    leaves = [tensor_leaf(r, (n,), 7) for r, n in zip(expected, sizes, strict=True)]
    assert root == commit_list([*leaves, tensor_leaf(expected[0], (1, sizes[0]), 7)])


def python_tensor_root(values: np.ndarray) -> bytes:
    """The tensor root by the pure-Python hasher: independent of the C tree code."""
    return commit._py_words_root(commit.pack_words(values))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [8193, 2 * 8192, 2 * 8192 + 1, 3 * 8192 - 5, 4 * 8192 + 129, 9 * 8192 + 999]
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([np.int32, np.int64]),
    st.data(),
)
def test_large_tensors_hashed_in_pieces_have_the_whole_tree_root(
    sizes: list[int], dtype: type, data: st.DataObject
) -> None:
    """A tensor of more than 8,192 values is queued as pieces of 64 chunks (aligned subtrees)
    that the worker and roots() share, the last one short and completed with zero subtrees;
    its root and leaf are those of the whole tree. Mixed with a small tensor in between."""
    rng = np.random.default_rng(sum(sizes))
    arrays = [rng.integers(-(2**31), 2**31, size=n).astype(dtype) for n in sizes]
    arrays.insert(1, rng.integers(-100, 100, size=300).astype(dtype))
    suffixes = [leaf_suffix((a.size,), 3) for a in arrays]
    committer = native.Committer()
    jobs = [committer.add(a, sfx) for a, sfx in zip(arrays, suffixes, strict=True)]
    if data.draw(st.booleans(), label="join at once"):  # roots() takes pieces still queued
        committer.roots()
    roots, root = committer.trace(jobs, tuple(suffixes))
    expected = [python_tensor_root(a) for a in arrays]
    assert roots == expected
    leaves = [tensor_leaf(r, (a.size,), 3) for r, a in zip(expected, arrays, strict=True)]
    assert root == commit_list(leaves)


def test_committers_on_many_threads_at_once() -> None:
    rng = np.random.default_rng(7)
    arrays = [rng.integers(-(2**31), 2**31, size=n, dtype=np.int64) for n in (1, 100, 5000, 20000)]
    expected = [tensor_root(a) for a in arrays]
    results: list[list[bytes]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            committer = native.Committer()
            for a in arrays:
                committer.add(a)
            roots = committer.roots()
            with lock:
                results.append(roots)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(r == expected for r in results)


def test_an_unjoined_committer_is_freed_safely() -> None:
    for _ in range(20):
        committer = native.Committer()
        committer.add(np.arange(100_000, dtype=np.int64))
        del committer  # waits for the worker before releasing the array


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(3),  # float
        np.zeros(3, dtype=np.int16),
        np.zeros(0, dtype=np.int64),
        np.arange(12, dtype=np.int64).reshape(3, 4).T,  # not C-contiguous
        b"12345678",
    ],
    ids=["float", "int16", "empty", "transposed", "bytes"],
)
def test_arrays_that_cannot_be_committed_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, BufferError)):
        native.Committer().add(bad)
    with pytest.raises((ValueError, BufferError)):
        native.values_root(bad)


@pytest.mark.parametrize("method", ["add", "hash"])
@pytest.mark.parametrize("size", [2, 5_000, 30_000], ids=["packed", "in-place", "in pieces"])
def test_values_outside_int32_raise_at_roots(method: str, size: int) -> None:
    committer = native.Committer()
    committer.add(np.array([1, 2], dtype=np.int64))
    values = np.zeros(size, dtype=np.int64)
    values[-1] = 2**31
    getattr(committer, method)(values, b"\x01")
    with pytest.raises(ValueError, match="int32"):
        committer.roots()
    with pytest.raises(ValueError, match="int32"):
        native.values_root(np.array([-(2**31) - 1], dtype=np.int64))


@pytest.mark.parametrize(
    "args",
    [(), (np.ones(2, dtype=np.int64), "shape"), (np.ones(2, dtype=np.int64), bytes(2049))],
    ids=["no array", "str suffix", "suffix too long"],
)
def test_bad_arguments_are_refused(args: tuple[object, ...]) -> None:
    committer = native.Committer()
    with pytest.raises((TypeError, ValueError)):
        committer.add(*args)
    with pytest.raises((TypeError, ValueError)):
        committer.hash(*args)
    assert committer.roots() == []  # nothing was added


def test_add_after_roots_is_refused() -> None:
    committer = native.Committer()
    committer.add(np.ones(4, dtype=np.int64))
    committer.roots()
    with pytest.raises(RuntimeError, match="roots"):
        committer.add(np.ones(4, dtype=np.int64))


def _child(queue: multiprocessing.Queue[bytes]) -> None:
    committer = native.Committer()
    committer.add(np.arange(50_000, dtype=np.int64))
    queue.put(committer.roots()[0])


def test_a_forked_child_gets_its_own_worker() -> None:
    committer = native.Committer()  # the parent's worker is running
    committer.add(np.arange(50_000, dtype=np.int64))
    assert committer.roots()[0] == tensor_root(np.arange(50_000))
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bytes] = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    assert queue.get(timeout=30) == tensor_root(np.arange(50_000))
    child.join(timeout=30)
    assert child.exitcode == 0
