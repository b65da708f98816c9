"""Cost before work: extrapolate setup and proving cost from the circuit size.

``gen_settings`` + ``calibrate_settings`` (a second or two) give the circuit's logrows and its
make-up; the cost of everything after grows with the 2^logrows rows, at a per-row rate that
depends on how many columns the circuit has. Two classes cover the models measured here:
``plain`` (matmul/ReLU circuits: range checks only) and ``lookup`` (circuits with lookups or
shuffles, e.g. pooling; roughly twice the columns). Memory and pk size use the largest per-row
rate seen over a class's points, so they lean high: they guard limits. Times use the geometric
mean: on these shared 2-core VMs the same proof took 3.4-10.2 s from run to run.

Verification gas grows with the public instances (calldata and the instance MSM), at ~1,000
gas each, over a per-class base. The figures are a transaction's gasUsed for ``verifyProof``
on EZKL's dedicated verifier (anvil, cancun bytecode, solcjs 0.8.37, 200 optimizer runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from verinfer.verify.backend import Estimate

CircuitClass = Literal["plain", "lookup"]


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured setup + prove, and where it came from."""

    name: str
    source: str
    circuit_class: CircuitClass
    logrows: int
    setup_seconds: float | None
    prove_seconds: float
    peak_memory_bytes: int
    pk_bytes: int
    verify_gas: int | None
    n_instances: int | None


# Measured on the 2-core, 23 GiB development machines (2026-11), ezkl 23.0.5. setup_seconds is
# EzklBackend.setup without generating the development SRS (cached per logrows; gen_srs takes
# ~13 s at logrows 15 and ~29 s at 16), i.e. calibrate + compile + keys + storing the pk +
# verifier rendering and compilation. prove_seconds is ezkl.prove; peak memory the prove
# worker's max RSS (above setup's: 244 MB MLP, 868 MB CNN).
CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint(
        name="digits_mlp 64-32-10 (examples/models)",
        source="verinfer.verify.zk runs, 2026-11: setup 24.3 s incl. 12.9 s gen_srs; prove "
        "3.4-10.2 s over 7 runs (host noise on the shared VM): 5.1 s is their geometric mean",
        circuit_class="plain",
        logrows=15,
        setup_seconds=11.4,
        prove_seconds=5.1,
        peak_memory_bytes=353_484_800,
        pk_bytes=138_479_371,
        verify_gas=603_977,
        n_instances=74,
    ),
    CalibrationPoint(
        name="MLP 8-16-3",
        source="TOOLCHAIN.md (EZKL section; its 6 s setup is keys only, so not used here; "
        "instances assumed 8 public inputs + 3 public outputs)",
        circuit_class="plain",
        logrows=15,
        setup_seconds=None,
        prove_seconds=8.5,
        peak_memory_bytes=340_000_000,
        pk_bytes=132_000_000,
        verify_gas=540_680,
        n_instances=11,
    ),
    CalibrationPoint(
        name="digits_cnn (examples/models, 1,602 params)",
        source="verinfer.verify.zk run, 2026-11: setup 81.6 s incl. 29 s gen_srs (one run, "
        "taken while the machine was otherwise idle; 38.5 s in an earlier direct-EZKL run)",
        circuit_class="lookup",
        logrows=16,
        setup_seconds=52.6,
        prove_seconds=41.3,
        peak_memory_bytes=1_527_144_448,
        pk_bytes=574_777_539,
        verify_gas=718_120,
        n_instances=74,
    ),
    CalibrationPoint(
        name="LeNet-5 (62k params)",
        source="TOOLCHAIN.md (EZKL section); its class is assumed (pooling => lookups)",
        circuit_class="lookup",
        logrows=19,
        setup_seconds=None,
        prove_seconds=242.0,
        peak_memory_bytes=11_100_000_000,
        pk_bytes=4_400_000_000,
        verify_gas=None,
        n_instances=None,
    ),
)

GAS_PER_INSTANCE = (603_977 - 540_680) / (74 - 11)  # the two plain MLPs: ~1,005 gas
SETUP_PER_PROVE = 1.0  # when a point has no setup time: setup ~ proving (0.83-0.84 measured)


def circuit_class(settings: dict[str, Any]) -> CircuitClass:
    """``lookup`` if the circuit uses lookups, dynamic lookups or shuffles, else ``plain``."""
    if (
        settings.get("num_shuffles", 0)
        or settings.get("required_lookups")
        or settings.get("num_dynamic_lookups", 0)
    ):
        return "lookup"
    return "plain"


def n_instances(settings: dict[str, Any]) -> int:
    """Public instances: every element of the (public) inputs and outputs."""
    total = 0
    for shape in settings.get("model_instance_shapes", []):
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    return total


def _rate(points: list[CalibrationPoint], value: str, *, typical: bool = False) -> float:
    """The per-row rate: the largest seen, or (``typical``) the geometric mean."""
    rates = [float(getattr(p, value)) / (1 << p.logrows) for p in points if getattr(p, value)]
    if typical:
        return math.exp(sum(math.log(r) for r in rates) / len(rates))
    return max(rates)


def extrapolate(logrows: int, cls: CircuitClass, instances: int) -> Estimate:
    """The cost of a circuit of ``2^logrows`` rows of class ``cls`` with ``instances`` public."""
    points = [p for p in CALIBRATION if p.circuit_class == cls]
    rows = 1 << logrows
    prove = _rate(points, "prove_seconds", typical=True) * rows
    setup_points = [p for p in points if p.setup_seconds is not None]
    setup = (
        _rate(setup_points, "setup_seconds", typical=True) * rows
        if setup_points
        else prove * SETUP_PER_PROVE
    )
    gas_points = [p for p in CALIBRATION if p.verify_gas is not None and p.n_instances]
    same_class = [p for p in gas_points if p.circuit_class == cls] or gas_points
    base = max(
        int(p.verify_gas or 0) - GAS_PER_INSTANCE * int(p.n_instances or 0) for p in same_class
    )
    return Estimate(
        logrows=logrows,
        setup_seconds=round(setup, 1),
        prove_seconds=round(prove, 1),
        peak_memory_bytes=int(_rate(points, "peak_memory_bytes") * rows),
        pk_bytes=int(_rate(points, "pk_bytes") * rows),
        verify_gas=int(base + GAS_PER_INSTANCE * instances),
        n_instances=instances,
        circuit_class=cls,
    )


def estimate_from_settings(settings: dict[str, Any]) -> Estimate:
    """Extrapolate from a calibrated EZKL settings file's content."""
    return extrapolate(
        int(settings["run_args"]["logrows"]), circuit_class(settings), n_instances(settings)
    )
