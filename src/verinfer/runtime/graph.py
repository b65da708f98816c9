"""The ONNX graph as the compiler sees it, and the rewrites done before lowering.

Shapes are static once the batch dimension is bound, so every ``Shape`` sub-graph folds to a
constant; BatchNorm folds into the conv/gemm before it; the decomposed layer norm that old
torch exports emit (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div) fuses into one
LayerNormalization node, and the exact GELU spelled out with Erf into one Gelu node; a Mul
or Div by a scalar folds into the weights of the linear chain before it. What remains is what
the op table must lower.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from verinfer.errors import ModelError
from verinfer.runtime.ops import attr

# Ops that are never folded even with constant inputs: they have no deterministic value.
_NEVER_FOLD = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


@dataclass
class Graph:
    nodes: list[onnx.NodeProto]
    consts: dict[str, NDArray[np.generic]]
    shapes: dict[str, tuple[int, ...]]
    elem_types: dict[str, int]
    inputs: list[str]
    outputs: list[str]
    opset: int
    folded: int = field(default=0)
    # Tensors whose values a rewrite multiplied by a constant factor: their calibrated range
    # (measured on the original model) is multiplied by it too.
    range_factors: dict[str, float] = field(default_factory=dict)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if name in n.input]

    def is_const(self, name: str) -> bool:
        return name in self.consts


def load_graph(model: onnx.ModelProto) -> Graph:
    """Shape-infer a batch-bound model and index its constants, shapes and types."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises several error classes from its C++ core
        raise ModelError(f"ONNX shape inference failed: {exc}") from exc
    g = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    elem_types: dict[str, int] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        elem_types[vi.name] = t.elem_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    consts: dict[str, NDArray[np.generic]] = {}
    for init in g.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant_value(node)
        else:
            nodes.append(node)
    for name, value in consts.items():
        shapes[name] = tuple(value.shape)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inputs = [i.name for i in g.input if i.name not in consts]
    return Graph(nodes, consts, shapes, elem_types, inputs, [o.name for o in g.output], opset)


def _constant_value(node: onnx.NodeProto) -> NDArray[np.generic]:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.array(helper.get_attribute_value(a))
        if a.name in ("value_floats", "value_ints"):
            return np.array(list(helper.get_attribute_value(a)))
    raise ModelError(f"Constant node {node.name!r} has an unsupported value attribute")


def fold_constants(g: Graph) -> None:
    """Replace every node whose inputs are all constant (or whose value is a static shape)."""
    kept: list[onnx.NodeProto] = []
    for node in g.nodes:
        if node.op_type == "Shape" and node.input[0] in g.shapes:
            shape = np.array(g.shapes[node.input[0]], dtype=np.int64)
            start, end = attr(node, "start", 0), attr(node, "end", None)
            g.consts[node.output[0]] = shape[start:end]
        elif node.op_type == "Size" and node.input[0] in g.shapes:
            g.consts[node.output[0]] = np.array(np.prod(g.shapes[node.input[0]]), np.int64)
        elif node.op_type not in _NEVER_FOLD and all(i == "" or g.is_const(i) for i in node.input):
            for name, value in zip(node.output, _evaluate(node, g), strict=False):
                g.consts[name] = value
        else:
            kept.append(node)
            continue
        for name in node.output:
            g.shapes[name] = tuple(g.consts[name].shape)
        g.folded += 1
    g.nodes = kept


def _evaluate(node: onnx.NodeProto, g: Graph) -> list[NDArray[np.generic]]:
    """Run one node on constant inputs with ONNX's reference implementation."""
    names = [i for i in node.input if i]
    graph = helper.make_graph(
        [node],
        "fold",
        [],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output],
        [numpy_helper.from_array(np.asarray(g.consts[n]), n) for n in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    try:
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {})]
    except Exception as exc:  # the reference evaluator raises many kinds of errors
        raise ModelError(
            f"cannot fold constant node {node.name!r} ({node.op_type}): {exc}"
        ) from exc


def fold_batchnorm(g: Graph) -> None:
    """BatchNorm right after a Conv with constant weights becomes part of that Conv; any other
    BatchNorm becomes a per-channel Mul and Add."""
    producers = {o: n for n in g.nodes for o in n.output}
    rewritten: list[onnx.NodeProto] = []
    dropped: set[int] = set()
    for node in g.nodes:
        if node.op_type != "BatchNormalization":
            rewritten.append(node)
            continue
        x, scale, bias, mean, var = node.input[:5]
        if not all(g.is_const(n) for n in (scale, bias, mean, var)):
            raise ModelError(f"BatchNormalization {node.name!r} has non-constant statistics")
        eps = float(attr(node, "epsilon", 1e-5))
        mult = g.consts[scale].astype(np.float64) / np.sqrt(g.consts[var].astype(np.float64) + eps)
        shift = g.consts[bias].astype(np.float64) - g.consts[mean].astype(np.float64) * mult
        conv = producers.get(x)
        if (
            conv is not None
            and conv.op_type == "Conv"
            and g.is_const(conv.input[1])
            and len(g.consumers(x)) == 1
        ):
            w = g.consts[conv.input[1]].astype(np.float64)
            b = g.consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else 0.0
            w_name, b_name = f"{conv.input[1]}::bnfold", f"{node.output[0]}::bnbias"
            g.consts[w_name] = (w * mult.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
            g.consts[b_name] = (b * mult + shift).astype(np.float32)
            fused = helper.make_node(
                "Conv",
                [conv.input[0], w_name, b_name],
                [node.output[0]],
                name=conv.name,
            )
            fused.attribute.extend(conv.attribute)
            dropped.add(id(conv))
            rewritten.append(fused)
            continue
        channel_shape = (-1, *[1] * (len(g.shapes[x]) - 2))
        m_name, s_name = f"{node.output[0]}::bnmul", f"{node.output[0]}::bnadd"
        g.consts[m_name] = mult.reshape(channel_shape).astype(np.float32)
        g.consts[s_name] = shift.reshape(channel_shape).astype(np.float32)
        mid = f"{node.output[0]}::scaled"
        g.shapes[mid] = g.shapes[x]
        rewritten.append(helper.make_node("Mul", [x, m_name], [mid], name=f"{node.name}/mul"))
        rewritten.append(helper.make_node("Add", [mid, s_name], [node.output[0]], name=node.name))
    g.nodes = [n for n in rewritten if id(n) not in dropped]


def fuse_layernorm(g: Graph) -> None:
    """Fuse ReduceMean→Sub→Pow(2)→ReduceMean→Add(eps)→Sqrt→Div[→Mul(γ)][→Add(β)]."""
    producers = {o: n for n in g.nodes for o in n.output}
    for div in [n for n in g.nodes if n.op_type == "Div"]:
        d, s = div.input
        sub, sqrt = producers.get(d), producers.get(s)
        if sub is None or sqrt is None or sub.op_type != "Sub" or sqrt.op_type != "Sqrt":
            continue
        add_eps = producers.get(sqrt.input[0])
        if add_eps is None or add_eps.op_type != "Add" or not g.is_const(add_eps.input[1]):
            continue
        var_mean = producers.get(add_eps.input[0])
        pow_ = producers.get(var_mean.input[0]) if var_mean is not None else None
        mean = producers.get(sub.input[1])
        if (
            var_mean is None
            or var_mean.op_type != "ReduceMean"
            or pow_ is None
            or pow_.op_type != "Pow"
            or pow_.input[0] != d
            or mean is None
            or mean.op_type != "ReduceMean"
            or mean.input[0] != sub.input[0]
        ):
            continue
        if not _last_axis(g, mean) or not _last_axis(g, var_mean):
            continue
        x, eps = sub.input[0], float(np.asarray(g.consts[add_eps.input[1]]).reshape(-1)[0])
        width = g.shapes[x][-1]
        out, gamma, beta = div.output[0], None, None
        tail = g.consumers(out)
        if len(tail) == 1 and tail[0].op_type == "Mul" and g.is_const(_other(tail[0], out)):
            gamma, out = _other(tail[0], out), tail[0].output[0]
            tail = g.consumers(out)
            if len(tail) == 1 and tail[0].op_type == "Add" and g.is_const(_other(tail[0], out)):
                beta, out = _other(tail[0], out), tail[0].output[0]
        gamma_name, beta_name = f"{out}::ln_gamma", f"{out}::ln_beta"
        g.consts[gamma_name] = np.broadcast_to(
            g.consts[gamma] if gamma else np.float32(1), (width,)
        ).astype(np.float32)
        g.consts[beta_name] = np.broadcast_to(
            g.consts[beta] if beta else np.float32(0), (width,)
        ).astype(np.float32)
        fused = helper.make_node(
            "LayerNormalization",
            [x, gamma_name, beta_name],
            [out],
            name=f"{div.name}/fused_layernorm",
            axis=-1,
            epsilon=eps,
        )
        index = next(i for i, n in enumerate(g.nodes) if n.output[0] == out)
        g.nodes[index] = fused
        remove_dead(g)
        producers = {o: n for n in g.nodes for o in n.output}


def fuse_gelu(g: Graph) -> None:
    """Fuse the exact GELU as torch exports it, x·0.5·(1 + Erf(x/√2)) in either order of the
    products (Div by √2 or Mul by 1/√2), into one Gelu node: two steps (Φ's table and one
    product) instead of five, and three fewer tensors in the trace."""
    for erf in [n for n in g.nodes if n.op_type == "Erf"]:
        fused = _gelu_of(g, erf)
        if fused is not None:
            index = next(i for i, n in enumerate(g.nodes) if n.output[0] == fused.output[0])
            g.nodes[index] = fused
    remove_dead(g)


def _gelu_of(g: Graph, erf: onnx.NodeProto) -> onnx.NodeProto | None:
    """The Gelu node that replaces the pattern around ``erf``, or None if it is not one."""
    producers = {o: n for n in g.nodes for o in n.output}
    scaled = producers.get(erf.input[0])
    if scaled is None or not _sole_use(g, erf.input[0]):
        return None
    if scaled.op_type == "Div":
        x, by_root_half = scaled.input[0], _const_near(g, scaled.input[1], np.sqrt(2.0))
    elif scaled.op_type == "Mul":
        x = scaled.input[1] if g.is_const(scaled.input[0]) else scaled.input[0]
        by_root_half = _const_near(g, _other(scaled, x), np.sqrt(0.5))
    else:
        return None
    if not by_root_half or g.is_const(x):
        return None
    one_plus = _sole_consumer(g, erf.output[0])
    if one_plus is None or one_plus.op_type != "Add":
        return None
    if not _const_near(g, _other(one_plus, erf.output[0]), 1.0):
        return None
    outer = _sole_consumer(g, one_plus.output[0])
    if outer is None or outer.op_type != "Mul":
        return None
    partner = _other(outer, one_plus.output[0])
    if partner == x:  # (x · (1 + erf)) · 0.5
        last = _sole_consumer(g, outer.output[0])
        if last is None or last.op_type != "Mul":
            return None
        if not _const_near(g, _other(last, outer.output[0]), 0.5):
            return None
    else:  # (x · 0.5) · (1 + erf)
        half = producers.get(partner)
        if half is None or half.op_type != "Mul" or not _sole_use(g, partner):
            return None
        if x not in half.input or not _const_near(g, _other(half, x), 0.5):
            return None
        last = outer
    return helper.make_node("Gelu", [x], [last.output[0]], name=f"{erf.name}/fused_gelu")


# Ops that only move values: a factor on their output is a factor on their data input.
_MOVES_VALUES = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
# Ops whose input 1 is their weight and input 2 (optional) their bias.
_WEIGHTED = frozenset({"Gemm", "Conv"})


def fold_scalar_scales(g: Graph) -> None:
    """Fold a Mul or Div by a scalar constant into the weights of the linear chain that makes
    its other operand: through reshapes and transposes, added constants, and either side of
    a MatMul of two activations, to the constant weights (and bias) of a MatMul, Gemm or
    Conv. Attention's 1/√d after Q·Kᵀ becomes part of W_q and b_q; a logit scale after the
    last Gemm, part of that Gemm. One step and one committed tensor fewer, and one rounding."""
    for node in [n for n in g.nodes if n.op_type in ("Mul", "Div")]:
        scalar = _scalar_factor(g, node)
        if scalar is None:
            continue
        factor, x = scalar
        producers = {o: n for n in g.nodes for o in n.output}
        chain = _sole_linear_chain(g, producers, x)
        if chain is None:
            continue
        tensors, weights = chain
        for target, index in weights:
            old = target.input[index]
            new = f"{old}::times:{node.output[0]}"
            g.consts[new] = (g.consts[old].astype(np.float64) * factor).astype(g.consts[old].dtype)
            g.shapes[new] = g.shapes[old]
            target.input[index] = new
        for name in tensors[1:]:  # tensors[0], x, is renamed to the Mul's output below
            g.range_factors[name] = g.range_factors.get(name, 1.0) * abs(factor)
        producers[x].output[0] = node.output[0]
        g.nodes = [n for n in g.nodes if n is not node]
    remove_dead(g)


def _scalar_factor(g: Graph, node: onnx.NodeProto) -> tuple[float, str] | None:
    """(c, x) if ``node`` is x·c, c·x or x/c with c a finite, non-zero float scalar that
    leaves x's shape as it is (a [1, 1] factor would add a dimension to a vector)."""
    x, c = node.input
    if node.op_type == "Mul" and g.is_const(x):
        x, c = c, x
    if g.is_const(x) or not g.is_const(c) or x not in g.shapes:
        return None
    value = g.consts[c]
    if value.size != 1 or value.dtype.kind != "f" or value.ndim > len(g.shapes[x]):
        return None
    scalar = float(value.reshape(-1)[0])
    if not np.isfinite(scalar) or scalar == 0.0:
        return None
    factor = 1.0 / scalar if node.op_type == "Div" else scalar
    return (factor, x) if np.isfinite(factor) else None


def _linear_chain(
    g: Graph, producers: dict[str, onnx.NodeProto], name: str
) -> tuple[list[str], list[tuple[onnx.NodeProto, int]]] | None:
    """The tensors from ``name`` up to constant weights, each read only by the next, and the
    (node, input index) of every float constant a factor on ``name`` must scale; None if
    ``name`` is not linear in such constants. The caller checks that ``name`` is read by one
    node only (_sole_linear_chain)."""
    node = producers.get(name)
    if node is None or name != node.output[0]:
        return None
    op = node.op_type
    if op in _MOVES_VALUES:
        up = _sole_linear_chain(g, producers, node.input[0])
        return None if up is None else ([name, *up[0]], up[1])
    if op in ("Add", "Sub"):
        const = [i for i, n in enumerate(node.input) if g.is_const(n)]
        if len(const) != 1 or not _scalable(g, node.input[const[0]]):
            return None
        up = _sole_linear_chain(g, producers, node.input[1 - const[0]])
        return None if up is None else ([name, *up[0]], [*up[1], (node, const[0])])
    if op == "MatMul":  # the constant side, or else either activation's chain
        const = [i for i, n in enumerate(node.input) if g.is_const(n)]
        if const:
            return ([name], [(node, const[0])]) if _scalable(g, node.input[const[0]]) else None
        for side in node.input:
            up = _sole_linear_chain(g, producers, side)
            if up is not None:
                return [name, *up[0]], up[1]
        return None
    if op not in _WEIGHTED or not _scalable(g, node.input[1]):
        return None
    has_bias = len(node.input) > 2 and node.input[2] != ""
    if has_bias and not _scalable(g, node.input[2]):
        return None
    return [name], [(node, 1), *([(node, 2)] if has_bias else [])]


def _sole_linear_chain(
    g: Graph, producers: dict[str, onnx.NodeProto], name: str
) -> tuple[list[str], list[tuple[onnx.NodeProto, int]]] | None:
    """_linear_chain of ``name`` if one node reads it and it is not a graph output."""
    return _linear_chain(g, producers, name) if _sole_use(g, name) else None


def _scalable(g: Graph, name: str) -> bool:
    return g.is_const(name) and g.consts[name].dtype.kind == "f"


def _sole_use(g: Graph, name: str) -> bool:
    """Whether ``name`` feeds exactly one node and is not a graph output."""
    return name not in g.outputs and len(g.consumers(name)) == 1


def _sole_consumer(g: Graph, name: str) -> onnx.NodeProto | None:
    return g.consumers(name)[0] if _sole_use(g, name) else None


def _const_near(g: Graph, name: str, value: float) -> bool:
    """Whether ``name`` is a constant all of whose elements are ``value`` to float32 precision."""
    if not g.is_const(name):
        return False
    c = np.asarray(g.consts[name], dtype=np.float64)
    return c.size >= 1 and bool(np.allclose(c, value, rtol=1e-6, atol=0.0))


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _last_axis(g: Graph, node: onnx.NodeProto) -> bool:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and g.is_const(node.input[1]):
        axes = list(np.asarray(g.consts[node.input[1]]).reshape(-1))
    rank = len(g.shapes.get(node.input[0], ()))
    return (
        axes is not None
        and len(axes) == 1
        and int(axes[0]) in (-1, rank - 1)
        and bool(attr(node, "keepdims", 1))
    )


def remove_dead(g: Graph) -> None:
    """Drop nodes none of whose outputs is used by a later node or a graph output."""
    needed = set(g.outputs)
    kept: list[onnx.NodeProto] = []
    for node in reversed(g.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    g.nodes = kept[::-1]


def prepare(model: onnx.ModelProto) -> Graph:
    g = load_graph(model)
    fold_constants(g)
    fold_batchnorm(g)
    fuse_layernorm(g)
    fuse_gelu(g)
    fold_scalar_scales(g)
    remove_dead(g)
    return g
