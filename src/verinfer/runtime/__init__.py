"""Deterministic fixed-point runtime: integer-exact execution and keccak trace commitments.

``compile_model(path, calibration=None, batch=1) -> Program``; ``Program.run(inputs) ->
Execution`` with ``.outputs``, ``.outputs_q``, ``.step_roots`` and ``.trace_root``;
``Program.program_hash`` and ``Program.weights_root`` identify the model on-chain.
"""

from verinfer.runtime.compiler import UnsupportedModelError, compile_model, compile_proto
from verinfer.runtime.executor import Execution, RuntimeInputError
from verinfer.runtime.program import Program

__all__ = [
    "Execution",
    "Program",
    "RuntimeInputError",
    "UnsupportedModelError",
    "compile_model",
    "compile_proto",
]
