"""The gateway: models sold per call with x402 (``POST /v1/models/{id}/infer``,
``POST /v1/embeddings``), their terms free (``GET /v1/models[/{id}]``).

Payment is the SDK's FastAPI middleware in front of the paid routes; verinfer supplies the
price (pricing.py) and the computation. The middleware verifies the payment with the
facilitator, runs the handler, and settles only when the handler answered below 400, so the
order is verify -> compute -> settle and a call whose computation fails is never charged.

Middlewares, outermost first: ``BodyLimit`` (413), ``known_model`` (404 unknown model, 410
deprecated, 400 bad mode or embeddings request: all before any payment is asked),
``idempotent_payments`` (a retry of a delivered call is answered again, not paid again:
idempotency.py), ``explain_refusal`` (400 malformed payment header; each 402's reason in the
body: refusals.py), then the SDK's payment middleware. Every answer carries a receipt signed
by the node's account (receipts.py); modes other than none are relayed on-chain (relay.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from x402 import x402ResourceServer
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
)
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.http.types import HTTPRequestContext, PaymentOption, RouteConfig
from x402.http.x402_http_server import x402HTTPResourceServer
from x402.mechanisms.evm.exact import register_exact_evm_server
from x402.schemas import AssetAmount, PaymentPayload, PaymentRequirements

from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import InferenceMode
from verinfer.chain.token import Token
from verinfer.client import InferenceClient
from verinfer.errors import ConfigError, ModelError, VerinferError
from verinfer.gateway.embeddings import (
    EMBEDDINGS_ROUTE,
    EmbeddingsInputError,
    EmbeddingsRequest,
    EmbeddingsService,
    openai_response,
)
from verinfer.gateway.idempotency import DeliveredCalls, IdempotentPayments
from verinfer.gateway.limits import DEFAULT_MAX_BODY, BodyLimit
from verinfer.gateway.pricing import Pricing, TokenDomain
from verinfer.gateway.receipts import SignedReceipt, digest, new_receipt, sign_receipt
from verinfer.gateway.refusals import malformed_payment, refusal_body
from verinfer.gateway.relay import Relay, RelayError
from verinfer.gateway.royalties import RoyaltyLedger, royalty
from verinfer.gateway.schemas import (
    PAID_RESPONSES,
    InferRequest,
    InferResponse,
    ModelList,
    ModelTerms,
)
from verinfer.home import home_dir
from verinfer.models.programs import quantize_inputs
from verinfer.models.registry import ModelRecord, RegistryClient, UnknownModelError
from verinfer.node.executor import Executor, InputUnavailableError
from verinfer.runtime import Program
from verinfer.store import open_store

INFER_ROUTE = "POST /v1/models/:model_id/infer"
DEFAULT_EMBEDDINGS_NAME = "all-MiniLM-L6-v2"
_MODEL_PATH = re.compile(r"^/v1/models/(\d+)(?:/|$)")


@dataclass(frozen=True)
class GatewayConfig:
    """Where payments go and who checks them."""

    network: str  # CAIP-2, e.g. "eip155:31337"
    pay_to: str  # the address that receives each payment
    facilitator_url: str
    max_timeout_seconds: int = 300  # how long a signed authorization stays valid
    max_body: int = DEFAULT_MAX_BODY  # bytes; a longer request body is refused with 413


def _model_id(path: str) -> int | None:
    match = _MODEL_PATH.match(path)
    return int(match.group(1)) if match else None


def _mode(value: str | list[str] | None) -> InferenceMode:
    """The ``mode`` query parameter (default none); ConfigError names a bad one."""
    if value is None:
        return InferenceMode.NONE
    if not isinstance(value, str):
        raise ConfigError("give the mode once")
    return InferenceMode.parse(value)


# The number of texts of the embeddings request being priced (set before payment, read by the
# price callback: the SDK gives that callback no access to the body).
_TEXTS: ContextVar[int] = ContextVar("verinfer_embedding_texts", default=1)


def _routes(
    config: GatewayConfig, pricing: Pricing, embeddings: EmbeddingsService | None
) -> dict[str, RouteConfig]:
    def price(context: HTTPRequestContext) -> AssetAmount:
        model_id = _model_id(context.decoded_path or context.path)
        if model_id is None:  # unreachable: the route pattern matched this path
            raise ValueError(f"no model id in {context.path!r}")
        return pricing.price(model_id, _mode(context.adapter.get_query_param("mode")))

    def option(price: Callable[[HTTPRequestContext], AssetAmount]) -> PaymentOption:
        return PaymentOption(
            scheme="exact",
            pay_to=config.pay_to,
            price=price,
            network=config.network,
            max_timeout_seconds=config.max_timeout_seconds,
        )

    extensions = {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
    routes = {
        INFER_ROUTE: RouteConfig(
            accepts=option(price),
            description="one inference by verinfer's deterministic runtime",
            mime_type="application/json",
            extensions=extensions,
        )
    }
    if embeddings is not None:
        model_id = embeddings.model_id
        routes[EMBEDDINGS_ROUTE] = RouteConfig(
            accepts=option(lambda _: pricing.price(model_id, count=_TEXTS.get())),
            description=f"OpenAI-compatible embeddings by {embeddings.name}, priced per text",
            mime_type="application/json",
            extensions=extensions,
        )
    return routes


def _resource_server(config: GatewayConfig, routes: dict[str, RouteConfig]) -> x402ResourceServer:
    """The SDK's resource server, checked against the facilitator now.

    The middleware could do this check itself, but on a configuration mismatch it ends the
    whole process with ``os._exit``; checking here raises a ConfigError the caller can report.
    """
    client = HTTPFacilitatorClient(FacilitatorConfig(url=config.facilitator_url))
    server = x402ResourceServer(client)
    register_exact_evm_server(server, networks=config.network)
    try:
        x402HTTPResourceServer(server, routes).initialize()
    except Exception as exc:
        raise ConfigError(
            f"the x402 facilitator at {config.facilitator_url} cannot serve this gateway: {exc}",
            hint=f"start a facilitator for {config.network} (verinfer facilitator start)",
        ) from exc
    return server


def _outputs(output: bytes) -> list[list[float]]:
    """Real-valued outputs (each tensor flattened) from the runtime's encoded output."""
    return [np.ldexp(q.astype(np.float64), -scale).tolist() for q, scale in decode_tensors(output)]


def create_gateway_app(
    config: GatewayConfig,
    pricing: Pricing,
    executor: Executor,
    signer: LocalAccount,
    *,
    relay: Relay | None = None,
    embeddings: EmbeddingsService | None = None,
    royalties: RoyaltyLedger | None = None,
    delivered: DeliveredCalls | None = None,
) -> FastAPI:
    """The gateway's FastAPI app; the facilitator must already be reachable. ``signer`` (the
    node's account) signs every receipt; ``relay`` sells the on-chain modes (relay.py);
    ``embeddings`` serves ``POST /v1/embeddings`` (embeddings.py); ``royalties`` counts what
    model owners are owed for the calls computed here (royalties.py); ``delivered`` keeps
    delivered answers on disk for retries after a restart (idempotency.py)."""
    if (relay is None) != (pricing.quote is None):
        raise ValueError("relayed modes need both a relay and its quote in the pricing")
    chain_id = int(config.network.removeprefix("eip155:"))
    routes = _routes(config, pricing, embeddings)
    pay = payment_middleware(
        routes, _resource_server(config, routes), sync_facilitator_on_start=False
    )
    app = FastAPI(title="verinfer gateway")

    @app.middleware("http")
    async def x402_payment(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await pay(request, call_next)

    @app.middleware("http")  # just outside payment: a 200 here is a settled payment
    async def owe_royalties(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if royalties is not None and response.status_code == 200 and request.method == "POST":
            runs = _computed_runs(request, embeddings)
            if runs is not None:
                model_id, count = runs
                record = await run_in_threadpool(pricing.record, model_id)
                owed = royalty(int(record.price), int(record.royalty_bps)) * count
                await run_in_threadpool(royalties.accrue, record.owner, owed)
        return response

    @app.middleware("http")  # outside the payment middleware: sees its 402s
    async def explain_refusal(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        payment = request.headers.get("PAYMENT-SIGNATURE") or request.headers.get("X-PAYMENT")
        if request.method == "POST":
            malformed = malformed_payment(payment)
            if malformed is not None:
                return JSONResponse({"error": malformed}, status_code=400)
        response = await call_next(request)
        if response.status_code != 402:
            return response
        body = refusal_body(
            response.headers.get("PAYMENT-REQUIRED"),
            response.headers.get("PAYMENT-RESPONSE"),
            payment,
        )
        if body is None:
            return response
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(body, status_code=402, headers=headers)

    idempotent = IdempotentPayments(pricing.token, chain_id, delivered=delivered)

    @app.middleware("http")  # outside payment: a retry of a delivered call is not paid again
    async def idempotent_payments(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await idempotent(request, call_next)

    @app.middleware("http")  # added last, so it runs first: before any payment is asked
    async def known_model(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        model_id = _model_id(request.url.path)
        if model_id is not None:
            try:
                record = await run_in_threadpool(pricing.record, model_id)  # cached RPC
            except UnknownModelError:
                return JSONResponse({"error": f"unknown model {model_id}"}, status_code=404)
            except VerinferError as exc:
                return JSONResponse({"error": f"model registry: {exc}"}, status_code=502)
            if record.deprecated:
                return JSONResponse(
                    {"error": f"model {model_id} is deprecated by its owner"}, status_code=410
                )
            refused = await run_in_threadpool(_mode_refusal, request, record, pricing)
            if refused is not None:
                return JSONResponse({"error": refused}, status_code=400)
        if request.url.path == "/v1/embeddings" and request.method == "POST":
            if embeddings is None:
                return _openai_error("this gateway serves no embeddings model", 404)
            try:
                parsed = await run_in_threadpool(embeddings.parse, await request.body())
            except EmbeddingsInputError as exc:
                return _openai_error(str(exc), 400)
            record = await run_in_threadpool(pricing.record, embeddings.model_id)
            if record.deprecated:
                return _openai_error(f"{embeddings.name} is deprecated by its owner", 410)
            _TEXTS.set(len(parsed.texts()))  # the price callback reads it
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=config.max_body)  # outermost: before payment

    def terms(record: ModelRecord) -> dict[str, Any]:
        offer = pricing.offer(record)
        return {
            "model_id": record.model_id,
            "name": record.name,
            "cid": record.cid,
            "modes": [m.name.lower() for m in offer],
            "input_shapes": record.input_shapes,
            "output_shapes": record.output_shapes,
            "program_hash": record.program_hash,
            "weights_root": record.weights_root,
            "node": signer.address,  # who signs the receipts
            "price": {
                "amount": str(pricing.amount_of(record)),
                "asset": pricing.token.address,
                "network": config.network,
            },
            "prices": {m.name.lower(): str(amount) for m, amount in offer.items()},
        }

    @app.get("/v1/models", response_model=ModelList)
    def models(start: int = 1, limit: int = 100) -> dict[str, Any]:
        """Every model served (deprecated ones left out), free of charge."""
        if start < 1 or not 1 <= limit <= 100:
            raise HTTPException(status_code=400, detail="start >= 1 and 1 <= limit <= 100")
        records = pricing.registry.list(start, limit)
        return {"models": [terms(r) for r in records if not r.deprecated]}

    @app.get(
        "/v1/models/{model_id}", response_model=ModelTerms, responses={404: PAID_RESPONSES[404]}
    )
    def model(model_id: int) -> dict[str, Any]:
        """A model's terms: price per mode, token, shapes, content hashes; free of charge."""
        return terms(pricing.record(model_id))

    @app.post(
        "/v1/models/{model_id}/infer",
        response_model=InferResponse,
        response_model_exclude_none=True,
        responses=PAID_RESPONSES,
    )
    def infer(
        model_id: int,
        body: InferRequest,
        request: Request,
        mode: Annotated[str, Query(description="none, optimistic, zk or consensus")] = "none",
        payment_signature: Annotated[
            str | None,
            Header(alias="PAYMENT-SIGNATURE", description="the x402 payment (base64 JSON)"),
        ] = None,
    ) -> dict[str, Any]:
        """One inference, paid with x402 at the model's price in ``mode``; settled only once
        the answer is computed. The answer carries a receipt signed by the node."""
        # Reached only with a verified payment; raising 4xx/5xx here means no settlement.
        del payment_signature  # declared for the spec; the payment middleware reads it
        m = _mode(mode)
        payer, payment, price = _paid(request)
        answer: dict[str, Any] = {"model_id": model_id, "mode": m.name.lower()}
        try:
            if m == InferenceMode.NONE:
                program = _program(executor, model_id)
                encoded = encode_tensors(quantize_inputs(program, _as_arrays(body.input)))
                output, root = executor.run_traced(model_id, encoded)
                answer["trace_root"] = "0x" + root.hex()
                request_id = 0
            else:
                assert relay is not None  # known_model refused relayed modes without a relay
                relayed = relay.run(model_id, _as_arrays(body.input), m)
                encoded, output, request_id = relayed.input, relayed.output, relayed.request_id
                answer["anchor"] = relayed.anchor
        except InputUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        except RelayError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
        except (ModelError, ValueError) as exc:
            raise HTTPException(
                status_code=422, detail=f"the model refuses the input: {exc}"
            ) from exc
        except VerinferError as exc:
            raise HTTPException(status_code=502, detail=f"on-chain request: {exc}") from exc
        receipt = new_receipt(
            chain_id=chain_id, registry=str(pricing.registry.contract.address), model_id=model_id,
            input_hash=digest(encoded), output_hash=digest(output), mode=int(m), price=price,
            payer=payer, payment=payment, request_id=request_id,
        )  # fmt: skip
        signed: SignedReceipt = sign_receipt(signer, receipt)
        return {
            **answer,
            "outputs": _outputs(output),
            "output": "0x" + output.hex(),
            "input": "0x" + encoded.hex(),
            "receipt": signed.to_json(),
        }

    @app.post("/v1/embeddings", responses=PAID_RESPONSES)
    def create_embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        """OpenAI-compatible embeddings, paid per text with x402; each vector has a receipt."""
        if embeddings is None:  # unreachable: known_model answers 404 first
            raise HTTPException(status_code=404, detail="no embeddings model")
        payer, payment, price = _paid(request)
        try:
            result = embeddings.embed(body)
        except InputUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        except (ModelError, ValueError) as exc:
            detail = f"the model refuses the input: {exc}"
            raise HTTPException(status_code=422, detail=detail) from exc
        unit = price // len(result.runs)
        receipts = [
            sign_receipt(
                signer,
                new_receipt(
                    chain_id=chain_id,
                    registry=str(pricing.registry.contract.address),
                    model_id=embeddings.model_id,
                    input_hash=digest(encoded),
                    output_hash=digest(output),
                    mode=int(InferenceMode.NONE),
                    price=unit,
                    payer=payer,
                    payment=payment,
                    request_id=0,
                ),  # fmt: skip
            ).to_json()
            for encoded, output in result.runs
        ]
        answer = openai_response(result, embeddings.name, body.encoding_format)
        return {**answer, "receipts": receipts}

    return app


def _computed_runs(
    request: Request, embeddings: EmbeddingsService | None
) -> tuple[int, int] | None:
    """(model id, runs) of a paid call the gateway computed itself (mode none or embeddings);
    None for relayed calls, whose royalty the coordinator pays."""
    model_id = _model_id(request.url.path)
    if model_id is not None and request.url.path.endswith("/infer"):
        # parsed as the handler parses it: "NONE" or " none" was computed here too
        computed = _mode(request.query_params.get("mode")) == InferenceMode.NONE
        return (model_id, 1) if computed else None
    if request.url.path == "/v1/embeddings" and embeddings is not None:
        return embeddings.model_id, _TEXTS.get()
    return None


def _openai_error(message: str, status: int) -> JSONResponse:
    """An error body as OpenAI's API shapes it, which its clients parse."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=status)


def _program(executor: Executor, model_id: int) -> Program:
    """The model's program; the gateway's own fault (503, not charged) when it cannot load it."""
    try:
        return executor.program(model_id)
    except VerinferError as exc:
        raise HTTPException(
            status_code=503, detail=f"the model's program is unavailable here: {exc}"
        ) from exc


def _mode_refusal(request: Request, record: ModelRecord, pricing: Pricing) -> str | None:
    """Why a paid call's ``mode`` cannot be sold (before any payment is asked), or None."""
    if request.method != "POST":
        return None
    try:
        mode = _mode(request.query_params.get("mode"))
    except ConfigError as exc:
        return exc.message
    if mode.name.lower() in record.modes and (mode == InferenceMode.NONE or pricing.quote):
        try:
            pricing.amount_of(record, mode)  # a relayed mode: some node must serve it
            return None
        except VerinferError:
            pass
    sold = ", ".join(m.name.lower() for m in pricing.offer(record)) or "no mode"
    return f"model {record.model_id} is not sold in mode {mode.name.lower()} here (sold: {sold})"


def _paid(request: Request) -> tuple[str, str, int]:
    """(payer, EIP-3009 nonce, amount) of the payment the middleware verified."""
    payload: PaymentPayload | None = getattr(request.state, "payment_payload", None)
    requirements: PaymentRequirements | None = getattr(request.state, "payment_requirements", None)
    if payload is None or requirements is None:  # the route is always paid: a wiring fault
        raise HTTPException(status_code=500, detail="no verified payment reached the handler")
    authorization = payload.payload.get("authorization", {})
    return str(authorization["from"]), str(authorization["nonce"]), int(requirements.amount)


def gateway_from_chain(
    chain: Chain,
    book: AddressBook,
    config: GatewayConfig,
    *,
    node_fee: int,
    relay: bool = True,
    embeddings_model: int | None = None,
    embeddings_name: str = DEFAULT_EMBEDDINGS_NAME,
    royalties: RoyaltyLedger | None = None,
) -> FastAPI:
    """The gateway for the suite in ``book``: registry prices, ``PaymentToken`` as the asset,
    programs from the configured store (``$VERINFER_STORE``), as a node would run them.
    ``chain``'s account signs the receipts and, with ``relay``, pays relayed requests;
    ``embeddings_model`` (a registered MiniLM) serves ``/v1/embeddings`` as ``embeddings_name``;
    ``royalties`` (see ``royalty_ledger``) counts what owners are owed for mode none;
    delivered answers are kept under ``$VERINFER_HOME/gateway`` for retries (a day)."""
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    token = TokenDomain.read(chain, book.address("PaymentToken"))
    store = open_store()
    executor = Executor(registry, store)
    relayer = None
    if relay:
        client = InferenceClient(
            chain, coordinator=book.address("InferenceCoordinator"),
            registry=str(registry.contract.address), token=token.address, store=store,
        )  # fmt: skip
        relayer = Relay(client, tx_lock=royalties.tx_lock if royalties is not None else None)
    pricing = Pricing(
        registry, token, node_fee, quote=relayer.quote if relayer is not None else None
    )
    service = None
    if embeddings_model is not None:
        service = EmbeddingsService(executor, embeddings_model, embeddings_name)
    state = home_dir() / "gateway" / f"delivered-{chain.chain_id}-{chain.address.lower()}.sqlite"
    return create_gateway_app(
        config, pricing, executor, chain.signer(), relay=relayer, embeddings=service,
        royalties=royalties, delivered=DeliveredCalls(state),
    )  # fmt: skip


def royalty_ledger(chain: Chain, book: AddressBook, *, recover: bool = True) -> RoyaltyLedger:
    """The royalty ledger of ``chain``'s account, under ``$VERINFER_HOME/gateway``; ``recover``
    as ``RoyaltyLedger`` (the gateway itself, not a process looking at its ledger)."""
    path = home_dir() / "gateway" / f"royalties-{chain.chain_id}-{chain.address.lower()}.json"
    return RoyaltyLedger(path, Token(chain, book.address("PaymentToken")), recover=recover)


def _as_arrays(value: list[Any] | dict[str, list[Any]]) -> Any:
    if isinstance(value, dict):
        return {name: np.asarray(v, dtype=np.float64) for name, v in value.items()}
    return np.asarray(value, dtype=np.float64)
