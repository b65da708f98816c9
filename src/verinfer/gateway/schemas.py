"""The gateway's HTTP shapes, for validation and for the OpenAPI spec (docs/openapi.json).

The paid routes also list every refusal a client must handle, with its status: the spec is
what agents and SDK generators read, so "what can go wrong" belongs in it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InferRequest(BaseModel):
    """The model's input as real numbers: one nested list, or ``{input name: nested list}``."""

    input: list[Any] | dict[str, list[Any]]


class Price(BaseModel):
    amount: str = Field(description="token units (the asset's smallest unit) per call")
    asset: str = Field(description="the ERC-20 (EIP-3009) token paid")
    network: str = Field(description="CAIP-2 chain id, e.g. eip155:8453")


class ModelTerms(BaseModel):
    model_id: int
    name: str
    cid: str = Field(description="content id of the ONNX file in the store")
    modes: list[str] = Field(description="modes sold here: none, consensus, optimistic, zk")
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    program_hash: str
    weights_root: str
    node: str = Field(description="the address that signs this gateway's receipts")
    price: Price = Field(description="price of one call in mode none")
    prices: dict[str, str] = Field(description="mode -> token units per call")


class ModelList(BaseModel):
    models: list[ModelTerms]


class SignedReceiptBody(BaseModel):
    receipt: dict[str, Any] = Field(description="the EIP-712 InferenceReceipt fields and domain")
    signer: str
    signature: str


class InferResponse(BaseModel):
    model_id: int
    mode: str
    outputs: list[list[float]] = Field(description="each output tensor, flattened, as reals")
    output: str = Field(description="the encoded output bytes (0x-hex), as signed")
    input: str = Field(description="the encoded input bytes (0x-hex), as signed")
    receipt: SignedReceiptBody
    trace_root: str | None = Field(None, description="mode none: the execution's trace root")
    anchor: dict[str, Any] | None = Field(
        None,
        description="relayed modes: the on-chain request and its evidence (zk: the proof "
        "the coordinator verified; optimistic: the node's claim and its window)",
    )


def _refusal(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {}}}


PAID_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _refusal(
        "the payment header is malformed, or the mode is unknown or not sold for this model; "
        "nothing is charged"
    ),
    402: _refusal(
        "payment required or refused; `error` names the reason (amount, asset, network, "
        "expiry, signature, replay, balance); the terms are in `accepts` and in the "
        "PAYMENT-REQUIRED header; nothing is charged"
    ),
    404: _refusal("unknown model; asked before any payment"),
    409: _refusal("this payment identifier paid for another request or payer"),
    410: _refusal("the model is deprecated by its owner; asked before any payment"),
    413: _refusal("the request body is over the gateway's cap; asked before any payment"),
    422: _refusal("the input does not fit the model; verified but not charged"),
    502: _refusal("the relayed on-chain request failed (refunded); not charged"),
    503: _refusal("an input the call references is unavailable; not charged"),
    504: _refusal("no node answered the relayed request in time; not charged"),
}
