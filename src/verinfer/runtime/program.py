"""The fixed-point program: tensors, constants and ordered integer steps, and its hash.

A Program is what the compiler produces and what every node runs. Its canonical serialization
(`to_bytes`) is hashed into ``program_hash``; its constants (weights, biases, lookup tables)
are committed into ``weights_root``. Both go on-chain, so any node can prove it runs the
registered model.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from eth_hash.auto import keccak
from numpy.typing import NDArray

from verinfer.errors import ModelError
from verinfer.runtime.commit import commit_list, tensor_leaf, tensor_root

if TYPE_CHECKING:
    from verinfer.runtime.executor import Execution

FORMAT = "verinfer.program/1"
Kind = Literal["fx", "int"]  # fx: fixed-point value q/2**scale; int: exact integers (ids, masks)


@dataclass(frozen=True)
class Tensor:
    """An activation: its static shape, scale, kind, and the proven bound on |q|."""

    name: str
    shape: tuple[int, ...]
    scale: int
    kind: Kind
    bound: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "scale": self.scale,
            "kind": self.kind,
            "bound": self.bound,
        }


@dataclass(frozen=True)
class Constant:
    """A weight, bias or lookup table, stored as int32 in the order its consumer reads it."""

    name: str
    values: NDArray[np.int32]
    scale: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.values.shape)

    @property
    def bound(self) -> int:
        return int(np.max(np.abs(self.values.astype(np.int64)))) if self.values.size else 0

    def leaf(self) -> bytes:
        return tensor_leaf(tensor_root(self.values), self.shape, self.scale)


@dataclass(frozen=True)
class Step:
    """One integer operation; ``attrs`` hold only ints, strings and tuples of ints."""

    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    node: str = ""  # the ONNX node it came from, for error messages

    def to_json(self) -> dict[str, Any]:
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.attrs.items())}
        return {
            "op": self.op,
            "inputs": list(self.inputs),
            "output": self.output,
            "attrs": attrs,
            "node": self.node,
        }


@dataclass(frozen=True)
class Program:
    """A compiled model. ``run`` executes it; ``program_hash`` identifies it."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    tensors: Mapping[str, Tensor]
    constants: Mapping[str, Constant]
    steps: tuple[Step, ...]
    input_dtypes: Mapping[str, str] = field(default_factory=dict)
    _prepared: dict[tuple[str, str], NDArray[Any]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _plan: list[Any] = field(default_factory=list, compare=False, repr=False)  # executor's

    def const(self, name: str, dtype: str = "int64") -> NDArray[Any]:
        """A constant converted once to ``dtype`` (int64 or float64) and cached for every run."""
        key = (name, dtype)
        if key not in self._prepared:
            self._prepared[key] = self.constants[name].values.astype(dtype)
        return self._prepared[key]

    @cached_property
    def weights_root(self) -> str:
        """Commitment to every constant, in program order (see docs/runtime-commitments.md)."""
        leaves = [c.leaf() for c in self.constants.values()]
        return "0x" + (commit_list(leaves) if leaves else b"\0" * 32).hex()

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "inputs": [t.to_json() for t in self.inputs],
            "input_dtypes": dict(sorted(self.input_dtypes.items())),
            "outputs": [t.name for t in self.outputs],
            "tensors": [self.tensors[n].to_json() for n in sorted(self.tensors)],
            "constants": [
                {"name": c.name, "shape": list(c.shape), "scale": c.scale}
                for c in self.constants.values()
            ],
            "steps": [s.to_json() for s in self.steps],
            "weights_root": self.weights_root,
        }

    @cached_property
    def program_hash(self) -> str:
        """keccak256 of the canonical header, which includes ``weights_root``."""
        return "0x" + keccak(_canonical(self.header())).hex()

    def to_bytes(self) -> bytes:
        """Canonical file form: 8-byte header length, header JSON, then every constant's
        int32 values big-endian, in program order."""
        head = _canonical(self.header())
        body = b"".join(c.values.astype(">i4").tobytes() for c in self.constants.values())
        return struct.pack(">Q", len(head)) + head + body

    def save(self, path: Path) -> None:
        from verinfer.fsutil import write_atomic

        write_atomic(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        try:
            (n,) = struct.unpack(">Q", data[:8])
            head = json.loads(data[8 : 8 + n])
            if head.get("format") != FORMAT:
                raise ValueError(f"unknown format {head.get('format')!r}")
            offset = 8 + n
            constants: dict[str, Constant] = {}
            for c in head["constants"]:
                count = int(np.prod(c["shape"], dtype=np.int64))
                raw = np.frombuffer(data, dtype=">i4", count=count, offset=offset)
                offset += 4 * count
                values = raw.astype(np.int32).reshape(c["shape"])
                constants[c["name"]] = Constant(c["name"], values, int(c["scale"]))
            tensors = {t["name"]: _tensor(t) for t in head["tensors"]}
            program = cls(
                inputs=tuple(_tensor(t) for t in head["inputs"]),
                outputs=tuple(tensors[n] for n in head["outputs"]),
                tensors=tensors,
                constants=constants,
                steps=tuple(
                    Step(
                        s["op"],
                        tuple(s["inputs"]),
                        s["output"],
                        {k: tuple(v) if isinstance(v, list) else v for k, v in s["attrs"].items()},
                        s["node"],
                    )
                    for s in head["steps"]
                ),
                input_dtypes=head.get("input_dtypes", {}),
            )
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise ModelError(f"not a valid verinfer program file: {exc}") from exc
        if program.weights_root != head["weights_root"]:
            raise ModelError("program file is corrupted: its weights do not match weights_root")
        return program

    @classmethod
    def load(cls, path: Path) -> Program:
        return cls.from_bytes(Path(path).read_bytes())

    def run(self, inputs: Mapping[str, Any] | NDArray[Any], *, trace: bool = True) -> Execution:
        """Execute on float (or integer) inputs; see ``verinfer.runtime.executor``."""
        return _executor().execute(self, inputs, trace=trace)


@cache
def _executor() -> ModuleType:
    """The executor module, imported on first use (it imports this one); cached, because an
    import statement in run() cost ~1 us a call, 5% of a small model's run."""
    from verinfer.runtime import executor

    return executor


def _tensor(t: Mapping[str, Any]) -> Tensor:
    return Tensor(t["name"], tuple(t["shape"]), int(t["scale"]), t["kind"], int(t["bound"]))


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
