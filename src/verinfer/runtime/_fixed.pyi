"""Type stub of the C kernels built from _fixed.c (see fused.py for the contract)."""

from typing import Any

def quantize(src: Any, dst: Any, scale: int, limit: int, /) -> int: ...
def requantize(
    acc: Any, bias: Any | None, bias_shift: int, shift: int, limit: int, dst: Any, relu: int, /
) -> int: ...
def relu_saturate(src: Any, dst: Any, limit: int, /) -> int: ...
def dense(
    x: Any,
    w: Any,
    bias: Any | None,
    bias_shift: int,
    shift: int,
    limit: int,
    relu: int,
    dst: Any,
    /,
) -> int: ...
def conv2d(
    x: Any,
    w: Any,
    bias: Any | None,
    dst: Any,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    pt: int,
    pl: int,
    pb: int,
    pr: int,
    group: int,
    bias_shift: int,
    shift: int,
    limit: int,
    relu: int,
    /,
) -> int: ...
def conv_impls() -> tuple[str, ...]: ...
def get_conv_impl() -> str: ...
def set_conv_impl(name: str, /) -> None: ...
def pool2d(
    x: Any,
    dst: Any,
    mode: int,
    fill: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    pt: int,
    pl: int,
    pb: int,
    pr: int,
    limit: int,
    /,
) -> int: ...
def lut(
    x: Any, table: Any, lo: int, shift: int, intervals: int, limit: int, dst: Any, /
) -> int: ...
def softmax(
    x: Any,
    table: Any,
    lo: int,
    shift: int,
    intervals: int,
    out_scale: int,
    limit: int,
    dst: Any,
    /,
) -> int: ...
def elementwise(
    op: int, limit: int, shift_a: int, shift_b: int, sign: int, geometry: Any, dst: Any, *xs: Any
) -> int: ...
def layernorm(
    x: Any, gamma: Any, beta: Any, eps: int, beta_shift: int, shift: int, limit: int, dst: Any, /
) -> int: ...
