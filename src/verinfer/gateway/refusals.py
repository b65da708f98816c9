"""Why a payment was refused, in the 402 body, as precisely as the payment allows.

The x402 SDK puts a refusal's reason only in the base64 ``PAYMENT-REQUIRED`` /
``PAYMENT-RESPONSE`` headers and answers an empty body. ``refusal_body`` copies the reason
and the terms into the body, so a person or a plain HTTP client can read why. Two cases get
a better reason than the SDK's:

* a payment offered on other terms than the price (amount, asset, network, payee, scheme):
  the SDK says only "No matching payment requirements"; here the reason names each field
  that differs, with the value offered and the one required;
* a payment header that cannot be read at all: the SDK treats it as absent and asks for a
  payment again; ``malformed_payment`` lets the gateway answer 400 with what is wrong.
"""

from __future__ import annotations

from typing import Any

from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
    decode_payment_signature_header,
)
from x402.schemas import PaymentPayload

NO_MATCH = "No matching payment requirements"
_TERMS = (("scheme", "scheme"), ("network", "network"), ("asset", "asset"),
          ("amount", "amount"), ("payTo", "payee"))  # fmt: skip


def malformed_payment(header: str | None) -> str | None:
    """Why a present payment header is not an x402 payment payload, or None."""
    if not header:
        return None
    try:
        decode_payment_signature_header(header)
    except Exception as exc:  # noqa: BLE001 - base64, JSON and schema errors alike
        detail = str(exc).splitlines()[0][:200]
        return f"malformed payment header: not base64 JSON of an x402 payment payload ({detail})"
    return None


def refusal_body(
    required: str | None, settled: str | None, payment: str | None
) -> dict[str, Any] | None:
    """A 402 body from the SDK's headers and the payment sent: the reason, the terms."""
    try:
        if settled:
            settle = decode_payment_response_header(settled)
            return {
                "error": settle.error_reason or "settlement failed",
                "settlement": settle.model_dump(exclude_none=True),
            }
        if required:
            terms = decode_payment_required_header(required)
            accepts = [a.model_dump(exclude_none=True, by_alias=True) for a in terms.accepts]
            body: dict[str, Any] = {"error": terms.error or "payment required", "accepts": accepts}
            if terms.error == NO_MATCH and payment and accepts:
                body.update(_mismatch(payment, accepts[0]))
            return body
    except Exception:  # noqa: BLE001 - an unreadable SDK header keeps the SDK's own response
        return None
    return None


def _mismatch(payment: str, required: dict[str, Any]) -> dict[str, Any]:
    """The reason naming each term the payment offered differently from the price."""
    payload = decode_payment_signature_header(payment)
    if not isinstance(payload, PaymentPayload):
        return {"error": "payment_version_mismatch: this gateway takes x402 version 2"}
    offered = payload.accepted.model_dump(exclude_none=True, by_alias=True)
    differences = []
    for key, name in _TERMS:
        have, want = offered.get(key), required.get(key)
        if str(have).lower() != str(want).lower():
            differences.append((name, have, want))
    if not differences:
        return {}
    codes = "+".join(f"payment_{name}_mismatch" for name, _, _ in differences)
    detail = "; ".join(
        f"{name}: offered {have}, required {want}" for name, have, want in differences
    )
    return {"error": f"{codes}: {detail}"}
