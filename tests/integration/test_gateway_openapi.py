"""The gateway's OpenAPI spec is served at /openapi.json and committed as docs/openapi.json.

The committed file is what agent builders and SDK generators read without running a gateway,
so it must be the served one: regenerate it with ``make openapi`` after changing the API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from test_gateway_pay import Gateway, gateway

pytestmark = pytest.mark.integration
__all__ = ["gateway"]

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_served_spec_is_the_committed_one(gateway: Gateway) -> None:
    served = httpx.get(f"{gateway.url}/openapi.json").json()
    if os.environ.get("VERINFER_UPDATE_OPENAPI"):
        COMMITTED.write_text(json.dumps(served, indent=2, sort_keys=True) + "\n")
    assert served == json.loads(COMMITTED.read_text()), "docs/openapi.json is stale: make openapi"


def test_spec_documents_payment_and_every_refusal(gateway: Gateway) -> None:
    spec = json.loads(COMMITTED.read_text())
    infer = spec["paths"]["/v1/models/{model_id}/infer"]["post"]
    assert {"200", "400", "402", "404", "409", "410", "413", "422", "502", "503", "504"} <= set(
        infer["responses"]
    )
    params = {p["name"]: p for p in infer["parameters"]}
    assert params["PAYMENT-SIGNATURE"]["in"] == "header"
    assert params["mode"]["in"] == "query"
    assert "/v1/models" in spec["paths"] and "/v1/models/{model_id}" in spec["paths"]
