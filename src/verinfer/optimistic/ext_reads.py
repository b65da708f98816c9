"""Which operand values one element of a ``OneStepVerifierExt`` step reads: the flat
indices that :class:`~verinfer.optimistic.onestep.OneStepProver` opens, mirroring the
contract (and so the runtime's kernels) op by op."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from verinfer.runtime.ops import KERNELS
from verinfer.runtime.program import Program, Step


def ext_reads(
    program: Program,
    step: Step,
    j: int,
    values: Callable[[str], np.ndarray[Any, Any]],
    shape: Callable[[str], tuple[int, ...]],
) -> list[list[int]]:
    """Per operand of ``step``, the flat indices its element ``j`` reads (empty: none);
    ``values`` and ``shape`` give a tensor's or constant's values and shape by name."""
    a, op = step.attrs, step.op
    shapes = [shape(n) for n in step.inputs]
    out = tuple(shape(step.output))
    if op == "lut":
        x = int(values(step.inputs[0]).reshape(-1)[j])
        return [[j], _table_reads([x], a)]
    if op in ("leaky_relu", "clip", "copy", "truncate", "to_bool"):
        return [[j]]
    if op == "where":
        return [[_broadcast_source(out, s, j)] for s in shapes]
    if op in ("argmax", "reduce_sum", "reduce_mean"):
        axes = [a["axis"]] if op == "argmax" else list(a["axes"])
        n, inner = _row(shapes[0], axes[0], axes[-1] + 1)
        start = (j // inner) * n * inner + j % inner
        return [list(range(start, start + n * inner, inner))]
    if op == "softmax":
        n, inner = _row(shapes[0], a["axis"], a["axis"] + 1)
        start = (j // (n * inner)) * n * inner + j % inner
        row = list(range(start, start + n * inner, inner))
        v = values(step.inputs[0]).reshape(-1)[row]
        return [row, _table_reads([int(t) for t in v - v.max()], a)]
    if op == "layernorm":
        n, _ = _row(shapes[0], a["axis"], len(shapes[0]))
        c = j % n
        return [list(range(j - c, j - c + n)), [c], [c]]
    if op == "concat":
        total, inner = _row(out, a["axis"], a["axis"] + 1)
        outer, pos = j // (total * inner), (j // inner) % total
        reads: list[list[int]] = [[] for _ in shapes]
        for p, s in enumerate(shapes):
            dim = s[a["axis"]]
            if pos < dim:
                reads[p] = [(outer * dim + pos) * inner + j % inner]
                break
            pos -= dim
        return reads
    if op == "gather":
        dim, inner = _row(shapes[0], a["axis"], a["axis"] + 1)
        n_idx = int(np.prod(shapes[1], dtype=np.int64))
        rest = j // inner
        t = rest % n_idx
        idx = int(values(step.inputs[1]).reshape(-1)[t])
        idx += dim if idx < 0 else 0
        return [[((rest // n_idx) * dim + idx) * inner + j % inner], [t]]
    # transpose, slice, expand, tile: the kernel moves flat indices like values
    arange = np.arange(int(np.prod(shapes[0], dtype=np.int64)), dtype=np.int64)
    moved = KERNELS[op](step, [arange.reshape(shapes[0])], program)
    return [[int(moved.reshape(-1)[j])]]


def _table_reads(xs: Sequence[int], a: Mapping[str, Any]) -> list[int]:
    """The table entries ``tables.lookup`` reads for inputs ``xs``."""
    lo, shift, intervals = a["lo"], a["shift"], a["intervals"]
    last = intervals << shift
    out = set()
    for x in xs:
        u = x - lo
        if u < 0:
            out.add(0)
        elif u >= last:
            out.add(intervals)
        else:
            i = u >> shift
            out.update((i, i + 1))
    return sorted(out)


def _row(shape: Sequence[int], first: int, last: int) -> tuple[int, int]:
    """Sizes of axes [first, last) and of the axes after them."""
    n = int(np.prod(shape[first:last], dtype=np.int64))
    return n, int(np.prod(shape[last:], dtype=np.int64))


def _broadcast_source(out: tuple[int, ...], s: Sequence[int], j: int) -> int:
    """Flat index in an operand of shape ``s`` (numpy-broadcast to ``out``) of element j."""
    aligned = (1,) * (len(out) - len(s)) + tuple(s)
    coords = np.unravel_index(j, out) if out else ()
    src = tuple(0 if d == 1 else int(i) for d, i in zip(aligned, coords, strict=True))
    return int(np.ravel_multi_index(src, aligned)) if aligned else 0
