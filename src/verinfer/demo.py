"""`verinfer demo`: a devnet, the contracts, and a registered model, from nothing.

It reuses a running devnet, a live deployment, an already registered copy of the example
model, the staked demo node and the deployed demo contract; each run makes one new request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from web3.contract.contract import Contract
from web3.logs import DISCARD

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deploy import deploy_suite
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import Devnet
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.chain.token import Token
from verinfer.client import InferenceClient
from verinfer.errors import ConfigError, VerinferError
from verinfer.models.onnx_check import inspect_onnx
from verinfer.models.publish import draft_input, final_input, store_model
from verinfer.models.registry import Mode, RegistryClient
from verinfer.node.local import ensure_serving, node_in_thread
from verinfer.runtime import compile_model
from verinfer.store import open_store

EXAMPLE_MODEL = Path("examples/models/digits_mlp.onnx")
DEMO_MODEL_NAME = "digits"


NODE_ACCOUNT = 1  # anvil dev account 1 runs the demo's node; account 0 is the user
NODE_FEE = 10_000  # 0.01 TUSD per request
CONSUMER_BOOK_NAME = "DemoDigitClassifier"
SAMPLE_IMAGES = Path("examples/models/digits_sample.npy")


@dataclass(frozen=True)
class DemoResult:
    rpc_url: str
    started_devnet: bool
    deployed: bool
    model_id: int
    cid: str
    reused_model: bool
    node: str = ""
    consumer: str = ""
    request_id: int = 0
    digit: int = -1
    expected_digit: int = -1
    fee: int = 0


def _example_file(relative: Path) -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / relative).is_file():
            return base / relative
    raise ConfigError(
        f"the example file {relative} was not found",
        hint="run the demo from the verinfer checkout (`make demo`)",
    )


def find_example_model() -> Path:
    return _example_file(EXAMPLE_MODEL)


def setup_model() -> DemoResult:
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
    for record in registry.list():
        if record.cid == cid and record.name == DEMO_MODEL_NAME and not record.deprecated:
            return DemoResult(info.rpc_url, started, deployed, record.model_id, cid, True)
    draft = draft_input(
        spec, program, name=DEMO_MODEL_NAME, price=10_000, royalty_bps=1_000,
        modes=Mode.NONE | Mode.CONSENSUS | Mode.OPTIMISTIC, license="MIT",
    )  # fmt: skip
    stored = store_model(store, spec, program, name=DEMO_MODEL_NAME, license="MIT", parent=0)
    model_id, _ = registry.register(final_input(draft, stored, None))
    return DemoResult(info.rpc_url, started, deployed, model_id, cid, False)


def run_demo() -> DemoResult:
    """Devnet, contracts, model; then a node serves it and a contract receives a result."""
    base = setup_model()
    chain = connect(base.rpc_url)
    node_chain = Chain(base.rpc_url, dev_account(NODE_ACCOUNT))
    ensure_serving(node_chain, base.model_id, fee=NODE_FEE)
    consumer = _consumer(chain, base.model_id)
    coordinator = CoordinatorClient(chain, deployed_address(chain, "InferenceCoordinator"))
    fee = coordinator.quote(base.model_id, InferenceMode.NONE, 1)
    token = Token(chain, deployed_address(chain, "PaymentToken"))
    if token.balance_of(consumer.address) < fee:
        token.faucet(consumer.address, 100 * fee)
    client = InferenceClient.from_chain(chain)
    image = np.load(_example_file(SAMPLE_IMAGES))[:1]
    expected = int(client.program(base.model_id).run(image, trace=False).outputs[0].argmax())
    with node_in_thread(node_chain, base.model_id, NODE_FEE):
        receipt = chain.transact(
            consumer.functions.classify(client.encode_inputs(base.model_id, image), fee)
        )
        (event,) = consumer.events.ClassificationRequested().process_receipt(
            receipt, errors=DISCARD
        )
        request_id = int(event["args"]["requestId"])
        client.wait(request_id, timeout=60)
    digit = int(chain.call(consumer.functions.digitOf(request_id)))
    return replace(
        base, node=node_chain.address, consumer=consumer.address, request_id=request_id,
        digit=digit, expected_digit=expected, fee=fee,
    )  # fmt: skip


def _consumer(chain: Chain, model_id: int) -> Contract:
    """The demo's DigitClassifier for ``model_id``: reused from the address book, or deployed."""
    book = AddressBook.load(chain.chain_id)
    address = book.contracts.get(CONSUMER_BOOK_NAME)
    if address and chain.has_code(address):
        contract = chain.contract("DigitClassifier", address)
        if int(chain.call(contract.functions.MODEL_ID())) == model_id:
            return contract
    coordinator = deployed_address(chain, "InferenceCoordinator")
    address, _ = chain.deploy("DigitClassifier", coordinator, model_id)
    book.contracts[CONSUMER_BOOK_NAME] = address
    book.save()
    return chain.contract("DigitClassifier", address)
