"""zk mode, end to end on one machine: setup, proving (verinfer vs plain EZKL), sizes, gas.

    .venv/bin/python benchmarks/bench_zk.py [--skip-cnn] [--repeats 5] [--srs-dir DIR]

For the digits MLP and the digits CNN (examples/models), in one run:
- setup: ``estimate`` (settings + calibrate), the development SRS (``gen_srs``, reported on its
  own: it is cached per logrows), ``EzklBackend.setup`` with the SRS cached (settings,
  calibrate, compile, keys, store, dedicated verifier) and the reusable verifier + VKA;
- proving, interleaved (A B, B A, ...) ``--repeats`` times on the same input:
  A = ``EzklBackend.prove``, as a node runs it (worker subprocess, store, calldata check);
  B = ``ezkl.gen_witness`` + ``ezkl.prove`` alone in a fresh subprocess
  (``benchmarks/zk_direct_prove.py``) on the very same compiled circuit, pk and SRS files.
  Both are wall times of a whole subprocess (interpreter start and ``import ezkl`` included),
  so the difference is what verinfer adds. As proving time itself varies run to run on a
  shared VM, the "outside gen_witness + prove" rows also give each side's wall time minus the
  two EZKL calls as timed inside its own process: that part is not proving noise;
- sizes: pk, vk, proof, calldata, verifier runtime bytecode (dedicated and reusable);
- gas on a fresh anvil: deployments, dedicated ``verifyProof`` (tx gasUsed), reusable
  ``registerVka`` and ``verifyProof``. One reusable verifier serves every model: it is
  deployed once and each model registers its VKA;
- a zk request through the coordinator: the model registered with its circuit, a staked node,
  a ``TestConsumer`` requesting in mode zk and the node's ``fulfilZk`` (verification, payment
  and the consumer's callback included), twice: the first delivery pays one-time zero-to-non-zero
  storage writes, the second is the steady state (as in bench_gas.py).

Everything lives in a temporary VERINFER_HOME (removed at the end unless ``--keep``); the
table is printed and written to /tmp/bench_zk.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from coordinator_kit import Kit, account  # noqa: E402

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import encode_tensors
from verinfer.chain.deploy import deploy_suite
from verinfer.chain.devnet import Devnet, find_anvil
from verinfer.chain.inference import CoordinatorClient
from verinfer.models.registry import Mode, ModelInput, RegistryClient, ZkCircuit
from verinfer.store import LocalStore
from verinfer.verify.backend import Proof, ZkArtifacts, ZkModel, felt_to_int
from verinfer.verify.zk import EzklBackend, ZkOptions
from verinfer.verify.zk_artifacts import put_artifacts
from verinfer.verify.zk_chain import (
    deploy_bytecode,
    encode_calldata,
    register_vka,
    verify_onchain,
)
from verinfer.verify.zk_solc import find_solcjs
from verinfer.verify.zk_srs import development_srs

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"
DIRECT = Path(__file__).resolve().with_name("zk_direct_prove.py")
DIRECT_TIMEOUT_S = 900


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    onnx: Path
    samples: Path


SPECS = (
    Spec("mlp", "digits MLP 64-32-10", MODELS / "digits_mlp.onnx", MODELS / "digits_sample.npy"),
    Spec("cnn", "digits CNN", MODELS / "digits_cnn.onnx", MODELS / "digits_cnn_sample.npy"),
)


@dataclass(frozen=True)
class Run:
    wall: float  # the whole prove, as the caller sees it
    inner: float  # gen_witness + prove, timed inside the subprocess
    rss: int  # the subprocess's peak RSS
    host: float = 0.0  # verinfer only: time in the calling process, outside the worker


@dataclass
class Result:
    spec: Spec
    backend: EzklBackend
    artifacts: ZkArtifacts
    reusable: ZkArtifacts
    proof: Proof
    circuit_class: str
    estimate_s: float
    srs_s: float | None  # None: the SRS was already cached (--srs-dir)
    setup_s: float
    keys_s: float
    reusable_s: float
    verify_s: float
    vk_bytes: int
    verinfer: list[Run]
    direct: list[Run]
    calldata_s: list[float]
    gas: dict[str, Any] = field(default_factory=dict)


def say(msg: str) -> None:
    print(f"[bench_zk {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def prove_verinfer(
    backend: EzklBackend, artifacts: ZkArtifacts, x: list[float]
) -> tuple[Proof, Run]:
    proof, wall = timed(lambda: backend.prove(artifacts, x))
    job = backend.last_jobs["prove"]
    inner = job.timings["gen_witness"] + job.timings["prove"]
    return proof, Run(wall, inner, int(job.usage["max_rss_bytes"]), wall - job.wall_seconds)


def prove_direct(
    backend: EzklBackend, artifacts: ZkArtifacts, srs: Path, x: list[float], scratch: Path
) -> tuple[tuple[int, ...], Run]:
    """gen_witness + prove in a fresh subprocess, on the backend's own files."""
    with tempfile.TemporaryDirectory(prefix="direct-", dir=scratch) as tmp:
        work = Path(tmp)
        data = work / "input.json"
        data.write_text(json.dumps({"input_data": [x]}))  # as EzklBackend.prove writes it
        job = {
            "data": str(data),
            "compiled": str(backend._file(artifacts.compiled_cid)),
            "pk": str(backend._file(artifacts.pk_cid)),
            "srs": str(srs),
            "witness": str(work / "witness.json"),
            "proof": str(work / "proof.json"),
            "result": str(work / "result.json"),
        }
        env = {**os.environ, "HOME": str(work / "home")}  # EZKL writes under ~ at most here
        (work / "home").mkdir()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(DIRECT), json.dumps(job)],
            env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=DIRECT_TIMEOUT_S, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"direct prove failed ({proc.returncode}): {proc.stderr[-800:]!r}")
        result = json.loads((work / "result.json").read_text())
        raw = json.loads((work / "proof.json").read_text())
    instances = tuple(int.from_bytes(bytes.fromhex(h), "little") for h in raw["instances"][0])
    inner = result["timings"]["gen_witness"] + result["timings"]["prove"]
    return instances, Run(wall, inner, int(result["max_rss_bytes"]))


def bench_model(spec: Spec, store: LocalStore, root: Path, srs_dir: Path, repeats: int) -> Result:
    backend = EzklBackend(store, ZkOptions(srs_dir=srs_dir), work_dir=root / "work" / spec.key)
    samples = np.load(spec.samples).astype(np.float64)
    samples = samples.reshape(len(samples), -1)
    model = ZkModel(spec.onnx, tuple(tuple(map(float, row)) for row in samples))

    say(f"{spec.key}: estimate")
    est, estimate_s = timed(lambda: backend.estimate(model))
    cached = (srs_dir / f"kzg{est.logrows}.dev.srs").is_file()
    say(f"{spec.key}: logrows {est.logrows}; SRS {'cached' if cached else 'gen_srs'}")
    srs, srs_s = timed(lambda: development_srs(est.logrows, cache_dir=srs_dir, warn=False))
    say(f"{spec.key}: setup")
    artifacts, setup_s = timed(lambda: backend.setup(model))
    # The worker compiles the circuit in one job and makes the keys in the next.
    keys_s = (
        backend.last_jobs["compile"].timings["compile_circuit"]
        + backend.last_jobs["setup"].timings["setup"]
    )
    say(f"{spec.key}: reusable verifier")
    reusable, reusable_s = timed(lambda: backend.build_verifier(artifacts, "reusable"))

    x = samples[0].tolist()
    scratch = root / "direct"
    scratch.mkdir(exist_ok=True)
    verinfer: list[Run] = []
    direct: list[Run] = []
    calldata_s: list[float] = []
    proof: Proof | None = None
    for i in range(repeats):
        for side in ("verinfer", "direct") if i % 2 == 0 else ("direct", "verinfer"):
            say(f"{spec.key}: prove {i + 1}/{repeats} ({side})")
            if side == "verinfer":
                proof, run = prove_verinfer(backend, artifacts, x)
                calldata_s.append(backend.last_jobs["prove"].timings["encode_evm_calldata"])
                verinfer.append(run)
            else:
                instances, run = prove_direct(backend, artifacts, srs.path, x, scratch)
                direct.append(run)
                if proof is not None and instances != proof.instances:
                    raise RuntimeError("the direct proof's instances differ from verinfer's")
    assert proof is not None
    ok, verify_s = timed(lambda: backend.verify(artifacts, proof))
    if not ok:
        raise RuntimeError(f"{spec.key}: the proof does not verify locally")
    return Result(
        spec=spec,
        backend=backend,
        artifacts=artifacts,
        reusable=reusable,
        proof=proof,
        circuit_class=est.circuit_class,
        estimate_s=estimate_s,
        srs_s=None if cached else srs_s,
        setup_s=setup_s,
        keys_s=keys_s,
        reusable_s=reusable_s,
        verify_s=verify_s,
        vk_bytes=backend._file(artifacts.vk_cid).stat().st_size,
        verinfer=verinfer,
        direct=direct,
        calldata_s=calldata_s,
    )


def measure_gas(results: list[Result], store: LocalStore, chain: Chain) -> None:
    reusable_at: dict[str, tuple[str, int]] = {}  # bytecode CID -> (address, deploy gas)
    for r in results:
        say(f"{r.spec.key}: on-chain")
        art, proof = r.artifacts, r.proof
        dep = deploy_bytecode(chain, store.get(art.verifier.bytecode_cid))
        r.gas["kind"] = art.verifier.kind
        r.gas["dedicated_runtime"] = dep.runtime_size
        r.gas["dedicated_deploy"] = dep.gas_used
        r.gas["dedicated_verify"] = verify_onchain(chain, dep.address, art, proof, send=True)
        r.gas["dedicated_calldata"] = len(
            encode_calldata(art.verifier.kind, proof.proof, proof.instances)
        )
        v = r.reusable.verifier
        if v.kind != "reusable" or v.vka_cid is None:
            r.gas["reusable"] = f"not built: {v.fallback_reason}"
            continue
        shared = v.bytecode_cid in reusable_at
        if not shared:
            rdep = deploy_bytecode(chain, store.get(v.bytecode_cid))
            reusable_at[v.bytecode_cid] = (rdep.address, rdep.gas_used)
        address, deploy_gas = reusable_at[v.bytecode_cid]
        vka = store.get(v.vka_cid)
        r.gas["reusable_runtime"] = v.runtime_size
        r.gas["reusable_deploy"] = deploy_gas
        r.gas["reusable_shared"] = shared
        r.gas["register_vka"] = register_vka(chain, address, vka)
        r.gas["reusable_verify"] = verify_onchain(
            chain, address, r.reusable, proof, vka=vka, send=True
        )
        r.gas["reusable_calldata"] = len(
            encode_calldata("reusable", proof.proof, proof.instances, vka)
        )


def measure_fulfil(results: list[Result], store: LocalStore, chain: Chain, root: Path) -> None:
    """``fulfilZk`` through the coordinator, first delivery and steady state, per model."""
    kit = Kit(chain, deploy_suite(chain, book_dir=root / "book"))
    registry = RegistryClient(chain, kit.book.address("ModelRegistry"))
    for i, r in enumerate(results, start=1):
        say(f"{r.spec.key}: fulfilZk through the coordinator")
        art, proof = r.artifacts, r.proof
        verifier = deploy_bytecode(chain, store.get(art.verifier.bytecode_cid)).address
        circuit = ZkCircuit.from_artifacts(verifier, art, put_artifacts(store, art))
        model_id, _ = registry.register(
            ModelInput(
                name=r.spec.key, cid=art.model_cid, input_shapes=[list(art.input_shape)],
                output_shapes=[list(art.output_shape)], price=1_000, royalty_bps=500,
                modes=Mode.ZK, zk=circuit,
            )
        )  # fmt: skip
        node = account(i)
        kit.add_node(node, model_id, modes=int(Mode.ZK))
        consumer_address, _ = chain.deploy("TestConsumer", kit.coordinator.address)
        kit.mint(consumer_address, 10**12)
        consumer = chain.contract("TestConsumer", consumer_address)
        n_in = art.n_inputs
        data = encode_tensors([([felt_to_int(f) for f in proof.instances[:n_in]], art.input_scale)])
        output = encode_tensors(
            [([felt_to_int(f) for f in proof.instances[n_in:]], art.output_scale)]
        )
        answering = CoordinatorClient(kit.as_(node), kit.coordinator.address)
        for key in ("fulfil_zk_first", "fulfil_zk"):
            fee = kit.quote(model_id, int(Mode.ZK))
            fn = consumer.functions.requestInference(
                model_id, data, int(Mode.ZK), fee, kit.now() + 3600, 200_000, 1
            )
            (event,) = kit.events("InferenceRequested", chain.transact(fn))
            receipt = answering.fulfil_zk(int(event["requestId"]), data, output, proof.proof)
            r.gas[key] = int(receipt["gasUsed"])


# -- the table ---------------------------------------------------------------------------------
# -- the table ---------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def secs(x: float) -> str:
    return f"{x:.2f} s"


def spread(xs: list[float]) -> str:
    return f"{med(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f})"


def size(n: int) -> str:
    if n >= 10 * 2**20:
        return f"{n / 2**20:,.0f} MiB"
    if n >= 10 * 2**10:
        return f"{n / 2**10:,.0f} KiB"
    return f"{n:,} B"


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:+.1f}%"


def rows(r: Result) -> dict[str, str]:
    a, g = r.artifacts, r.gas
    v_wall = [x.wall for x in r.verinfer]
    d_wall = [x.wall for x in r.direct]
    v_out = [x.wall - x.inner for x in r.verinfer]
    d_out = [x.wall - x.inner for x in r.direct]
    out = {
        "logrows / circuit class": f"{a.logrows} / {r.circuit_class}",
        "estimate (settings + calibrate)": secs(r.estimate_s),
        "gen_srs (once per logrows, cached)": "cached" if r.srs_s is None else secs(r.srs_s),
        "setup without SRS (keys: compile + setup)": f"{secs(r.setup_s)} ({secs(r.keys_s)})",
        "reusable verifier + VKA (build_verifier)": secs(r.reusable_s),
        f"prove, verinfer `EzklBackend.prove`, median of {len(v_wall)} (min–max)": spread(v_wall),
        f"prove, ezkl gen_witness + prove in a subprocess, median of {len(d_wall)}": spread(d_wall),
        "**verinfer overhead (median wall)**": f"**{pct(med(v_wall) - med(d_wall), med(d_wall))}**",
        "gen_witness + prove, timed in the subprocess: verinfer / direct (median)": (
            f"{secs(med([x.inner for x in r.verinfer]))} / {secs(med([x.inner for x in r.direct]))}"
        ),
        "outside gen_witness + prove: verinfer / direct (median)": (
            f"{secs(med(v_out))} / {secs(med(d_out))}"
        ),
        "**verinfer's extra time outside gen_witness + prove, % of direct wall**": (
            f"**{pct(med(v_out) - med(d_out), med(d_wall))}**"
        ),
        "of which: caller process / worker's encode_evm_calldata (median)": (
            f"{secs(med([x.host for x in r.verinfer]))} / {secs(med(r.calldata_s))}"
        ),
        "prove peak RSS: verinfer / direct": (
            f"{size(max(x.rss for x in r.verinfer))} / {size(max(x.rss for x in r.direct))}"
        ),
        "verify locally (worker)": secs(r.verify_s),
        "pk / vk / proof": f"{size(a.pk_bytes)} / {size(r.vk_bytes)} / {len(r.proof.proof):,} B",
    }
    if g:
        out["dedicated verifier runtime / deploy gas"] = (
            f"{g['dedicated_runtime']:,} B / {g['dedicated_deploy']:,}"
        )
        out["**dedicated `verifyProof` (tx gasUsed)**"] = f"**{g['dedicated_verify']:,}**"
        if "fulfil_zk" in g:
            out["**zk request's `fulfilZk` (verify, pay, callback): steady / first**"] = (
                f"**{g['fulfil_zk']:,}** / {g['fulfil_zk_first']:,}"
            )
        if "reusable_verify" in g:
            shared = " (shared)" if g["reusable_shared"] else ""
            out["reusable verifier runtime / deploy gas"] = (
                f"{g['reusable_runtime']:,} B / {g['reusable_deploy']:,}{shared}"
            )
            out["`registerVka` (once per model)"] = f"{g['register_vka']:,}"
            out["**reusable `verifyProof` (tx gasUsed)**"] = f"**{g['reusable_verify']:,}**"
            out["calldata sent, dedicated / reusable"] = (
                f"{g['dedicated_calldata']:,} / {g['reusable_calldata']:,} B"
            )
        else:
            out["reusable verifier"] = str(g.get("reusable"))
    return out


def table(results: list[Result]) -> str:
    cols = [rows(r) for r in results]
    names = list(dict.fromkeys(k for c in cols for k in c))
    lines = [
        "| | " + " | ".join(r.spec.label for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(c.get(name, "–") for c in cols) + " |")
    return "\n".join(lines)


def machine() -> str:
    mem = cpu = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB RAM"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    anvil = subprocess.run(
        [str(find_anvil()), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    solcjs = json.loads((find_solcjs() / "package.json").read_text())["version"]
    return (
        f"Machine: {os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} "
        f"{platform.release()}. Versions: Python {platform.python_version()}, "
        f"ezkl {version('ezkl')}, {anvil[0] if anvil else 'anvil ?'}, solcjs {solcjs}, "
        f"verinfer {version('verinfer')}. {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--skip-cnn", action="store_true", help="the MLP only (~40 s; with the CNN ~2.5 min)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="proofs per side (default 5)")
    parser.add_argument("--srs-dir", type=Path, help="a warm SRS cache (gen_srs is not timed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VERINFER_HOME")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_zk.md"))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    root = Path(tempfile.mkdtemp(prefix="bench-zk-"))
    os.environ["VERINFER_HOME"] = str(root / "home")  # never the user's ~/.verinfer
    os.environ.pop("VERINFER_SRS_DIR", None)
    srs_dir = args.srs_dir.resolve() if args.srs_dir else root / "srs"
    store = LocalStore(root / "store")
    specs = [s for s in SPECS if not (args.skip_cnn and s.key == "cnn")]
    started = time.perf_counter()
    devnet = Devnet(root / "devnet")
    try:
        results = [bench_model(s, store, root, srs_dir, args.repeats) for s in specs]
        devnet_info = devnet.start(persist=False)  # only now: no anvil while proving
        chain = Chain(devnet_info.rpc_url, dev_account(0))
        measure_gas(results, store, chain)
        measure_fulfil(results, store, chain, root)
    finally:
        devnet.stop()
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    took = time.perf_counter() - started
    text = "\n".join(
        [
            table(results),
            "",
            machine(),
            f"Proving sides interleaved, {args.repeats} proofs each, same input, files and "
            f"SRS; direct = a fresh `python` subprocess running only `import ezkl`, "
            f"`gen_witness`, `prove`. Gas: tx gasUsed on a fresh anvil. Run took {took:.0f} s.",
        ]
    )
    print(text)
    args.out.write_text(text + "\n")
    say(f"written to {args.out}")


if __name__ == "__main__":
    main()
