"""Mode zk over the x402 gateway: the paid call is relayed as an on-chain zk request, a node
proves it with EZKL, the coordinator verifies the proof in ``fulfilZk``, and the answer
carries that proof, its verifier and a receipt bound to the request. Real EZKL, real anvil."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from node_kit import NODE_FEE, RunningNode, fund, node_config, setup_node
from test_gateway_pay import Gateway, gateway
from test_gateway_receipts import GATEWAY_SIGNER, _pay_capped
from test_zk_e2e import CASES, env, shared_srs, verinfer

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.gateway.receipts import SignedReceipt, digest, verify_receipt
from verinfer.models.registry import Mode, RegistryClient
from verinfer.verify.cli import find_fulfilment

pytestmark = [pytest.mark.integration, pytest.mark.zk]
__all__ = ["env", "gateway", "shared_srs"]


def test_zk_call_is_answered_with_the_proof_the_chain_verified(
    gateway: Gateway, env: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    chain = env
    onnx_path, sample_path = CASES["mlp"]
    added = verinfer(
        "model", "add", str(onnx_path), "--name", "digits-zk", "--modes", "zk,none",
        "--calibration", str(sample_path), "--price", "0.01", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    model_id = json.loads(added.stdout)["model_id"]
    node = setup_node(anvil.rpc_url, book, 1, model_id, modes=Mode.ZK | Mode.NONE)
    config = node_config(
        anvil.rpc_url, tmp_path / "node", 1, model_id, modes=("zk", "none"),
        start_block=chain.w3.eth.block_number,
    )  # fmt: skip
    fund(chain, book, chain.address)
    coordinator = CoordinatorClient(chain, book.address("InferenceCoordinator"))
    price = coordinator.quote(model_id, InferenceMode.ZK) + NODE_FEE
    payer0, payee0 = gateway.balances()
    running = RunningNode(config)
    try:
        url = f"{gateway.url}/v1/models/{model_id}/infer?mode=zk"
        x = np.load(sample_path)[:1].tolist()
        response = asyncio.run(_pay_capped(gateway, url, {"input": x}, price))
    finally:
        running.stop()
    assert response.status_code == 200, response.text
    answer = response.json()
    anchor = answer["anchor"]
    found = find_fulfilment(chain, anchor["request_id"])
    assert anchor["proof"] == "0x" + found.proof.hex() and len(found.proof) > 0
    assert anchor["node"].lower() == node.lower() == found.node.lower()
    assert anchor["fulfil_tx"] == found.tx
    assert answer["output"] == "0x" + found.output.hex()
    receipt = verify_receipt(SignedReceipt.from_json(answer["receipt"]), node=GATEWAY_SIGNER)
    assert receipt.mode == int(InferenceMode.ZK) and receipt.request_id == anchor["request_id"]
    assert receipt.input_hash == digest(found.input)
    assert receipt.output_hash == digest(found.output)
    assert gateway.balances() == (payer0 - price, payee0 + price)
    verifier, _, _ = RegistryClient(chain, book.address("ModelRegistry")).zk_config(model_id)
    assert anchor["verifier"] == verifier
