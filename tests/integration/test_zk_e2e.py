"""Mode zk end to end: `verinfer model add --modes zk` -> a node proving in mode zk -> a
consumer contract receives the zk-verified output -> `verinfer proof verify` re-checks it.

Real anvil, real contracts, real EZKL, for the digits MLP and the digits CNN. One EZKL setup
per model (inside `model add`, through the CLI) and one proof per request; the SRS is shared
by the session (set VERINFER_SRS_DIR to keep it between runs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from node_kit import RunningNode, fund, node_config, setup_node
from typer.testing import CliRunner
from web3.logs import DISCARD

from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors
from verinfer.chain.coordinator_errors import InvalidProofError
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.chain.token import Token
from verinfer.cli import app
from verinfer.client import InferenceClient
from verinfer.models.registry import Mode, RegistryClient
from verinfer.node.jobs import JobLog
from verinfer.verify.cli import find_fulfilment
from verinfer.verify.zk_srs import SRS_DIR_ENV

pytestmark = [pytest.mark.integration, pytest.mark.zk]

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
CASES = {
    "mlp": (MODELS / "digits_mlp.onnx", MODELS / "digits_sample.npy"),
    "cnn": (MODELS / "digits_cnn.onnx", MODELS / "digits_cnn_sample.npy"),
}
runner = CliRunner()


@pytest.fixture(scope="session")
def shared_srs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get(SRS_DIR_ENV) or tmp_path_factory.mktemp("zk-srs"))


@pytest.fixture
def env(
    chain: Chain,
    book: AddressBook,
    anvil: DevnetInfo,
    shared_srs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Chain:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    monkeypatch.setenv(SRS_DIR_ENV, str(shared_srs))
    return chain


def verinfer(*args: str) -> Any:
    return runner.invoke(app, list(args))


def wait_delivery(chain: Chain, consumer: Any, n: int, timeout: float = 180.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(chain.call(consumer.functions.deliveries())) >= n:
            return bytes(chain.call(consumer.functions.lastOutput()))
        time.sleep(0.2)
    raise AssertionError(f"no delivery {n} within {timeout} s")


def request_via(chain: Chain, consumer: Any, model_id: int, data: bytes, mode: int) -> int:
    coordinator = CoordinatorClient(chain, consumer.functions.COORDINATOR().call())
    fee = coordinator.quote(model_id, InferenceMode(mode), 1)
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    fn = consumer.functions.requestInference(model_id, data, mode, fee, now + 3600, 300_000, 1)
    receipt = chain.transact(fn)
    (event,) = coordinator.contract.events.InferenceRequested().process_receipt(
        receipt, errors=DISCARD
    )
    return int(event["args"]["requestId"])


@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_zk_end_to_end(
    env: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path, case: str
) -> None:
    chain = env
    onnx_path, sample_path = CASES[case]
    samples = np.load(sample_path).astype(np.float64)

    # 1. Register through the CLI: EZKL setup with a progress line per stage on stderr.
    added = verinfer(
        "model", "add", str(onnx_path), "--name", f"digits-{case}", "--modes", "zk,none",
        "--calibration", str(sample_path), "--price", "0.01", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    out = json.loads(added.stdout)
    for stage in ("settings/calibration", "compile", "SRS", "keys", "verifier"):
        assert f"zk setup: {stage}" in added.stderr
    model_id, zk = out["model_id"], out["zk"]
    assert set(zk) >= {"verifier", "artifacts_cid", "vk_hash", "settings_hash", "logrows"}
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    record = registry.get(model_id)
    assert record.modes == ["none", "zk"] and record.zk.verifier == zk["verifier"]
    assert (record.zk.vk_hash, record.zk.artifacts_cid) == (zk["vk_hash"], zk["artifacts_cid"])
    verifier, in_scale, out_scale = registry.zk_config(model_id)

    # 2. A staked node serving the model in modes zk and none.
    node_address = setup_node(anvil.rpc_url, book, 1, model_id, modes=Mode.ZK | Mode.NONE)
    config = node_config(
        anvil.rpc_url, tmp_path / "node", 1, model_id, modes=("zk", "none"),
        start_block=chain.w3.eth.block_number,
    )  # fmt: skip
    fund(chain, book, chain.address)
    address, _ = chain.deploy("TestConsumer", book.address("InferenceCoordinator"))
    consumer = chain.contract("TestConsumer", address)
    Token(chain, book.address("PaymentToken")).faucet(address, 10**9)
    client = InferenceClient.from_chain(chain)
    program = client.program(model_id)  # the registered runtime program
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    node = RunningNode(config)
    try:
        # 3. The consumer contract asks in mode zk; the node proves and calls fulfilZk.
        x = samples[:1]
        data = client.encode_inputs(model_id, x, "zk")
        ((q_in, scale),) = decode_tensors(data)
        assert scale == in_scale
        started = time.perf_counter()
        rid = request_via(chain, consumer, model_id, data, int(InferenceMode.ZK))
        output = wait_delivery(chain, consumer, 1)
        seconds = time.perf_counter() - started
        ((q_out, got_scale),) = decode_tensors(output)
        assert got_scale == out_scale and q_out.size == 10
        delivered = np.ldexp(q_out.astype(np.float64), -out_scale)
        runtime = program.run(x.reshape(program.inputs[0].shape), trace=False)
        assert int(delivered.argmax()) == int(runtime.outputs[0].reshape(-1).argmax())
        logits = session.run(None, {"input": x.reshape(program.inputs[0].shape).astype("f4")})
        np.testing.assert_allclose(delivered, logits[0].reshape(-1), atol=0.1)

        # The proof delivered on-chain binds exactly the request's input and this output.
        found = find_fulfilment(chain, rid)
        assert (found.input, found.output, found.node) == (data, output, node_address)
        gas = int(chain.w3.eth.get_transaction_receipt(found.tx)["gasUsed"])  # type: ignore[arg-type]
        print(f"\nzk e2e {case}: request->delivery {seconds:.1f} s, fulfilZk gas {gas:,}")  # noqa: T201
        assert gas < 2_000_000

        # 4. Anyone re-checks the proof locally.
        verified = verinfer("proof", "verify", str(rid), "--json")
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.stdout)["valid"] is True

        if case == "mlp":
            # The CLI client in mode zk: the result printed is the delivered output.
            x_path = tmp_path / "x.npy"
            np.save(x_path, samples[1:2])
            sent = verinfer(
                "request", str(model_id), "--mode", "zk", "--input", str(x_path), "--wait",
                "--timeout", "120", "--json",
            )  # fmt: skip
            assert sent.exit_code == 0, sent.output
            result = json.loads(sent.stdout)
            assert result["status"] == "fulfilled" and result["mode"] == "zk"
            expected = program.run(samples[1:2], trace=False).outputs[0].reshape(-1)
            assert int(np.argmax(result["outputs"][0])) == int(expected.argmax())

            # A mode-none answer carries no proof: `proof verify` refuses it.
            none = client.request(model_id, samples[2:3], "none", wait=True, timeout=60)
            assert none.status == "fulfilled"
            refused = verinfer("proof", "verify", str(none.request_id))
            assert refused.exit_code == 1
            assert "has no zk fulfilment" in refused.stderr and "Traceback" not in refused.output
    finally:
        node.stop()

    if case == "mlp":
        # 5. A tampered proof is rejected on-chain and pays nothing.
        rid = request_via(chain, consumer, model_id, data, int(InferenceMode.ZK))
        coordinator = CoordinatorClient(
            Chain(anvil.rpc_url, config.key.load()), book.address("InferenceCoordinator")
        )
        bad = bytearray(found.proof)
        bad[100] ^= 0x01
        owed = coordinator.balance_of(node_address)
        with pytest.raises(InvalidProofError):
            coordinator.fulfil_zk(rid, data, output, bytes(bad))
        assert coordinator.balance_of(node_address) == owed
        assert coordinator.get_request(rid).status.name == "PENDING"
        # ... while the honest proof of the same input and output is accepted.
        coordinator.fulfil_zk(rid, data, output, found.proof)
        assert coordinator.get_request(rid).status.name == "FULFILLED"
        assert coordinator.balance_of(node_address) > owed

    jobs = JobLog.in_dir(config.data_dir)
    try:
        zk_jobs = [j for j in jobs.all() if j.mode == InferenceMode.ZK]
        assert zk_jobs and all(j.outcome == "fulfilled" and j.proof for j in zk_jobs)
        first = next(j for j in zk_jobs if j.request_id == str(found.request_id))
        assert (first.output, first.proof) == (output, found.proof)  # what the node proved
    finally:
        jobs.close()
    assert verifier == zk["verifier"]


def _state(chain: Chain, book: AddressBook) -> tuple[int, int]:
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    return chain.w3.eth.get_transaction_count(chain.address), registry.count()


def test_model_add_zk_over_the_limits_is_refused_before_any_work(
    env: Chain, book: AddressBook
) -> None:
    before = _state(env, book)
    started = time.perf_counter()
    refused = verinfer(
        "model", "add", str(CASES["mlp"][0]), "--name", "digits", "--modes", "zk",
        "--max-memory-gb", "0.01",
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "exceeds the limit" in refused.stderr and "Traceback" not in refused.output
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("zk setup:")]
    assert len(errors) == 2 and errors[0].startswith("error: ")  # one line and its hint
    assert "zk setup: compile" not in refused.stderr  # nothing built
    assert time.perf_counter() - started < 60
    assert _state(env, book) == before  # no transaction, no registration


def test_model_add_zk_with_the_rpc_down_is_one_line(env: Chain, book: AddressBook) -> None:
    from verinfer.chain.devnet import free_port

    before = _state(env, book)
    down = verinfer(
        "model", "add", str(CASES["mlp"][0]), "--name", "digits", "--modes", "zk",
        "--rpc-url", f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert down.exit_code == 1 and down.stderr.startswith("error: ")
    assert "Traceback" not in down.output and "zk setup" not in down.stderr
    assert _state(env, book) == before


def test_model_add_zk_names_the_op_ezkl_cannot_compile(
    env: Chain, book: AddressBook, tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"])], "gelu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 8
    path = tmp_path / "gelu.onnx"
    onnx.save(model, path)
    before = _state(env, book)
    refused = verinfer("model", "add", str(path), "--name", "gelu", "--modes", "zk")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "EZKL does not support the ONNX op Gelu" in refused.stderr
    assert _state(env, book) == before
