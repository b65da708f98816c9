"""Lookup tables: deterministic entries, interpolation accuracy, clamping outside the domain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verinfer.runtime.tables import build_table, lookup, table_spec

REFERENCE = {
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)),
    "tanh": math.tanh,
    "erf": math.erf,
    "exp": math.exp,
    "phi": lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))),
}
DOMAINS = {"sigmoid": (-16, 16), "tanh": (-8, 8), "erf": (-6, 6), "exp": (-16, 2), "phi": (-8, 8)}


@pytest.mark.parametrize("func", sorted(REFERENCE))
def test_table_matches_the_function_within_its_resolution(func: str) -> None:
    lo, hi = DOMAINS[func]
    spec = table_spec(func, 16, 20, lo, hi)
    table = np.array(build_table(spec), dtype=np.int64)
    xs = np.linspace(lo - 1, hi + 1, 3001)
    q = np.floor(xs * 2**16 + 0.5).astype(np.int64)
    got = lookup(q, table, spec.lo, spec.shift, spec.intervals) / 2**20
    want = np.array([REFERENCE[func](min(max(v, lo), hi)) for v in q / 2**16])
    tolerance = 2e-5 * max(1.0, float(np.max(np.abs(want))))
    assert np.max(np.abs(got - want)) < tolerance


def test_entries_are_exact_and_reproducible() -> None:
    spec = table_spec("sigmoid", 10, 16, -16, 16)
    first = build_table(spec)
    build_table.cache_clear()
    assert build_table(spec) == first
    assert first[spec.intervals // 2] == 1 << 15  # sigmoid(0) = 1/2 exactly


@given(st.integers(min_value=-(2**22), max_value=2**22))
def test_lookup_is_monotone_for_sigmoid(x: int) -> None:
    spec = table_spec("sigmoid", 16, 20, -16, 16)
    table = np.array(build_table(spec), dtype=np.int64)
    pair = lookup(np.array([x, x + 1], dtype=np.int64), table, spec.lo, spec.shift, spec.intervals)
    assert pair[0] <= pair[1]


def test_coarse_inputs_get_one_entry_per_value() -> None:
    spec = table_spec("tanh", 3, 16, -8, 8)  # input step 1/8 is coarser than the grid
    assert spec.shift == 0 and spec.intervals == 128
