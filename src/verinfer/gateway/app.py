"""The gateway: ``POST /v1/models/{id}/infer`` paid per call with x402.

Payment is the SDK's FastAPI middleware in front of the route; verinfer supplies the price
(``Pricing``) and the computation. The middleware verifies the payment with the facilitator,
runs the handler, and settles only when the handler answered below 400, so the order is
verify -> compute -> settle and a request whose computation fails is never charged.

An unknown model is answered 404 *before* the payment middleware (an outer middleware), so a
client is never asked to pay for a model that does not exist. The SDK puts a refusal's
reason only in the base64 ``PAYMENT-REQUIRED`` / ``PAYMENT-RESPONSE`` headers and answers
an empty body; ``explain_refusal`` copies the reason and terms into the 402 body so a person
or a plain HTTP client can read why (the headers stay, for x402 clients).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from x402 import x402ResourceServer
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    decode_payment_required_header,
    decode_payment_response_header,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.http.types import HTTPRequestContext, PaymentOption, RouteConfig
from x402.http.x402_http_server import x402HTTPResourceServer
from x402.mechanisms.evm.exact import register_exact_evm_server
from x402.schemas import AssetAmount

from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.chain.deployments import AddressBook
from verinfer.errors import ConfigError, ModelError, VerinferError
from verinfer.gateway.limits import DEFAULT_MAX_BODY, BodyLimit
from verinfer.gateway.pricing import Pricing, TokenDomain
from verinfer.models.programs import quantize_inputs
from verinfer.models.registry import ModelRecord, RegistryClient, UnknownModelError
from verinfer.node.executor import Executor, InputUnavailableError
from verinfer.store import open_store

INFER_ROUTE = "POST /v1/models/:model_id/infer"
_MODEL_PATH = re.compile(r"^/v1/models/(\d+)(?:/|$)")


@dataclass(frozen=True)
class GatewayConfig:
    """Where payments go and who checks them."""

    network: str  # CAIP-2, e.g. "eip155:31337"
    pay_to: str  # the address that receives each payment
    facilitator_url: str
    max_timeout_seconds: int = 300  # how long a signed authorization stays valid
    max_body: int = DEFAULT_MAX_BODY  # bytes; a longer request body is refused with 413


class InferRequest(BaseModel):
    """The model's input as real numbers: one nested list, or ``{input name: nested list}``."""

    input: list[Any] | dict[str, list[Any]]


def _model_id(path: str) -> int | None:
    match = _MODEL_PATH.match(path)
    return int(match.group(1)) if match else None


def _routes(config: GatewayConfig, pricing: Pricing) -> dict[str, RouteConfig]:
    def price(context: HTTPRequestContext) -> AssetAmount:
        model_id = _model_id(context.decoded_path or context.path)
        if model_id is None:  # unreachable: the route pattern matched this path
            raise ValueError(f"no model id in {context.path!r}")
        return pricing.price(model_id)

    option = PaymentOption(
        scheme="exact",
        pay_to=config.pay_to,
        price=price,
        network=config.network,
        max_timeout_seconds=config.max_timeout_seconds,
    )
    return {
        INFER_ROUTE: RouteConfig(
            accepts=option,
            description="one inference by verinfer's deterministic runtime",
            mime_type="application/json",
        )
    }


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


def create_gateway_app(config: GatewayConfig, pricing: Pricing, executor: Executor) -> FastAPI:
    """The gateway's FastAPI app; the facilitator must already be reachable."""
    routes = _routes(config, pricing)
    pay = payment_middleware(
        routes, _resource_server(config, routes), sync_facilitator_on_start=False
    )
    app = FastAPI(title="verinfer gateway")

    @app.middleware("http")
    async def x402_payment(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await pay(request, call_next)

    @app.middleware("http")  # outside the payment middleware: sees its 402s
    async def explain_refusal(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if response.status_code != 402:
            return response
        body = _refusal(
            response.headers.get("PAYMENT-REQUIRED"), response.headers.get("PAYMENT-RESPONSE")
        )
        if body is None:
            return response
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(body, status_code=402, headers=headers)

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
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=config.max_body)  # outermost: before payment

    def terms(record: ModelRecord) -> dict[str, Any]:
        return {
            "model_id": record.model_id,
            "name": record.name,
            "cid": record.cid,
            "modes": record.modes,
            "input_shapes": record.input_shapes,
            "output_shapes": record.output_shapes,
            "program_hash": record.program_hash,
            "weights_root": record.weights_root,
            "price": {
                "amount": str(pricing.amount_of(record)),
                "asset": pricing.token.address,
                "network": config.network,
            },
        }

    @app.get("/v1/models")
    def models(start: int = 1, limit: int = 100) -> dict[str, Any]:
        """Every model served (deprecated ones left out), free of charge."""
        if start < 1 or not 1 <= limit <= 100:
            raise HTTPException(status_code=400, detail="start >= 1 and 1 <= limit <= 100")
        records = pricing.registry.list(start, limit)
        return {"models": [terms(r) for r in records if not r.deprecated]}

    @app.get("/v1/models/{model_id}")
    def model(model_id: int) -> dict[str, Any]:
        return terms(pricing.record(model_id))

    @app.post("/v1/models/{model_id}/infer")
    def infer(model_id: int, body: InferRequest) -> dict[str, Any]:
        # Reached only with a verified payment; raising 4xx/5xx here means no settlement.
        try:
            program = executor.program(model_id)
            encoded = encode_tensors(quantize_inputs(program, _as_arrays(body.input)))
            output, root = executor.run_traced(model_id, encoded)
        except InputUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        except (ModelError, ValueError) as exc:
            raise HTTPException(
                status_code=422, detail=f"the model refuses the input: {exc}"
            ) from exc
        return {
            "model_id": model_id,
            "outputs": _outputs(output),
            "output": "0x" + output.hex(),
            "trace_root": "0x" + root.hex(),
        }

    return app


def gateway_from_chain(
    chain: Chain, book: AddressBook, config: GatewayConfig, *, node_fee: int
) -> FastAPI:
    """The gateway for the suite in ``book``: registry prices, ``PaymentToken`` as the asset,
    programs from the configured store (``$VERINFER_STORE``), as a node would run them."""
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    token = TokenDomain.read(chain, book.address("PaymentToken"))
    executor = Executor(registry, open_store())
    return create_gateway_app(config, Pricing(registry, token, node_fee), executor)


def _refusal(required: str | None, settled: str | None) -> dict[str, Any] | None:
    """A 402 body from the SDK's headers: the reason, and the terms to pay on."""
    try:
        if settled:
            settle = decode_payment_response_header(settled)
            return {
                "error": settle.error_reason or "settlement failed",
                "settlement": settle.model_dump(exclude_none=True),
            }
        if required:
            terms = decode_payment_required_header(required)
            return {
                "error": terms.error or "payment required",
                "accepts": [a.model_dump(exclude_none=True) for a in terms.accepts],
            }
    except Exception:  # noqa: BLE001 - a malformed header keeps the SDK's own response
        return None
    return None


def _as_arrays(value: list[Any] | dict[str, list[Any]]) -> Any:
    if isinstance(value, dict):
        return {name: np.asarray(v, dtype=np.float64) for name, v in value.items()}
    return np.asarray(value, dtype=np.float64)
