"""`verinfer demo`: a devnet, the contracts, and a registered model, from nothing.

It is idempotent: it reuses a running devnet, a live deployment and an already registered
copy of the example model, so running it twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deploy import deploy_suite
from verinfer.chain.devnet import Devnet
from verinfer.errors import ConfigError, VerinferError
from verinfer.models.manifest import Manifest
from verinfer.models.onnx_check import inspect_onnx
from verinfer.models.registry import Mode, ModelInput, RegistryClient
from verinfer.runtime import compile_model
from verinfer.store import open_store

EXAMPLE_MODEL = Path("examples/models/digits_mlp.onnx")
DEMO_MODEL_NAME = "digits"


@dataclass(frozen=True)
class DemoResult:
    rpc_url: str
    started_devnet: bool
    deployed: bool
    model_id: int
    cid: str
    reused_model: bool


def find_example_model() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / EXAMPLE_MODEL).is_file():
            return base / EXAMPLE_MODEL
    raise ConfigError(
        f"the example model {EXAMPLE_MODEL} was not found",
        hint="run the demo from the verinfer checkout (`make demo`)",
    )


def run_demo() -> DemoResult:
    devnet = Devnet()
    info = devnet.info()
    started = info is None
    if info is None:
        info = devnet.start()
    chain = connect(info.rpc_url)
    try:
        registry_address = deployed_address(chain, "ModelRegistry")
        deployed = False
    except VerinferError:
        registry_address = deploy_suite(chain).address("ModelRegistry")
        deployed = True
    registry = RegistryClient(chain, registry_address)

    model_path = find_example_model()
    spec = inspect_onnx(model_path)
    program = compile_model(model_path)
    store = open_store()
    cid = str(store.put(spec.data))
    program_cid = str(store.put(program.to_bytes()))
    for record in registry.list():
        if record.cid == cid and record.name == DEMO_MODEL_NAME and not record.deprecated:
            return DemoResult(info.rpc_url, started, deployed, record.model_id, cid, True)
    manifest = Manifest(
        name=DEMO_MODEL_NAME, onnx_cid=cid, spec=spec, license="MIT", parent=0,
        program_cid=program_cid, program_hash=program.program_hash,
        weights_root=program.weights_root,
    )  # fmt: skip
    manifest_cid = store.put(manifest.to_bytes())
    model_id, _ = registry.register(
        ModelInput(
            name=DEMO_MODEL_NAME,
            cid=cid,
            price=10_000,
            royalty_bps=1_000,
            modes=Mode.NONE | Mode.CONSENSUS | Mode.OPTIMISTIC,
            license="MIT",
            input_shapes=[list(t.shape) for t in spec.inputs],
            output_shapes=[list(t.shape) for t in spec.outputs],
            metadata_uri=f"ipfs://{manifest_cid}",
            program_hash=program.program_hash,
            weights_root=program.weights_root,
        )  # fmt: skip
    )
    return DemoResult(info.rpc_url, started, deployed, model_id, cid, False)
