"""An agent that pays a verinfer gateway per inference until its daily budget is spent.

It reads the model's terms (free), sets a spending policy from them (one call's price per
call, a daily budget), then classifies handwritten digits one by one, paying each call with
x402. Every answer's receipt is verified in-process (signature by the node the terms name,
payer, model, price, input and output bytes) and the first answer is also saved and checked
with ``verinfer receipt verify --rerun``, which re-executes it. When the next call would pass
the daily budget, the wallet refuses to sign, and the agent stops.

Start a devnet, a facilitator and a gateway first (docs/agents.md), then:

    python examples/agent/agent.py

Environment: VERINFER_GATEWAY_URL (default http://127.0.0.1:8402), VERINFER_AGENT_KEY (a
funded key; default anvil's dev account 3), AGENT_MODEL (1), AGENT_BUDGET (daily budget in
tokens, 0.05), AGENT_CALLS (at most this many calls, 10), AGENT_OUT (where answers are saved).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np

from verinfer.agents import AgentClient, PolicyError, SpendingPolicy, Wallet, model_terms

SAMPLES = Path(__file__).resolve().parents[1] / "models" / "digits_sample.npy"
DEV_KEY_3 = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
DECIMALS = 6  # TestUSD and USDC


def main() -> int:
    url = os.environ.get("VERINFER_GATEWAY_URL", "http://127.0.0.1:8402")
    model_id = int(os.environ.get("AGENT_MODEL", "1"))
    budget = int(Decimal(os.environ.get("AGENT_BUDGET", "0.05")) * 10**DECIMALS)
    calls = int(os.environ.get("AGENT_CALLS", "10"))
    out = Path(os.environ.get("AGENT_OUT") or tempfile.mkdtemp(prefix="verinfer-agent-"))

    terms = model_terms(url, model_id)  # free: no payment, no wallet
    price = terms["price"]
    policy = SpendingPolicy.of(
        max_per_call=int(price["amount"]), max_per_day=budget,
        asset=price["asset"], network=price["network"], models=[model_id],
    )  # fmt: skip
    wallet = Wallet.from_key(os.environ.get("VERINFER_AGENT_KEY", DEV_KEY_3), policy)
    agent = AgentClient(url, wallet)
    print(f"agent {wallet.address}: model {model_id} ({terms['name']}) at {price['amount']} "
          f"per call, budget {budget} today, {wallet.spent_today()} already spent")  # fmt: skip

    images = np.load(SAMPLES)
    paid = 0
    for i in range(calls):
        try:
            answer = agent.infer(model_id, images[i % len(images)][None, :].tolist())
        except PolicyError as refused:
            print(f"stopping: {refused.message} (limit: {refused.limit})")
            break
        paid += 1
        digit = int(np.argmax(answer.outputs[0]))
        print(f"call {i + 1}: digit {digit}, paid {answer.receipt.price}, receipt verified "
              f"(signed by {terms['node']})")  # fmt: skip
        saved = out / f"answer-{i + 1}.json"
        saved.write_text(json.dumps(answer.document))
        if paid == 1 and not _verify_with_cli(saved, terms["node"]):
            return 1
    print(f"{paid} calls paid, {wallet.spent_today()} spent today; answers in {out}")
    return 0


def _verify_with_cli(saved: Path, node: str) -> bool:
    """`verinfer receipt verify --rerun`: anyone can check the answer, not only this agent."""
    check = subprocess.run(
        [sys.executable, "-m", "verinfer", "receipt", "verify", str(saved), "--node", node,
         "--rerun"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    print(f"verinfer receipt verify: {(check.stdout or check.stderr).strip()}")
    return check.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
