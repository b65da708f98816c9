"""Gas of one inference request on a fresh anvil, as markdown tables.

    .venv/bin/python benchmarks/bench_gas.py

- mode none: a TestConsumer (stores the output in its callback) requests; the assigned node
  fulfils a 10-value output.
- mode consensus (k = 3): the consumer requests; three nodes commit, then reveal.

Each flow runs once to warm up, then once more: the second run ("steady state") is the figure
to quote. By then every balance slot (token balances, the coordinator's pull-payment ledger of
all three nodes, the owner and the treasury, the consumer's output slots) is non-zero and the
request's terms are known, as on a live network. The first run pays the one-time zero-to-non-zero
storage writes. The second table splits each steady-state transaction by call frame
(``debug_traceTransaction`` with the call tracer): what the frame spent itself, and each call.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from eth_utils.crypto import keccak

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from coordinator_kit import (  # noqa: E402
    INPUT,
    MODE_CONSENSUS,
    MODE_NONE,
    Kit,
    account,
    by_address,
    commitment,
)

from verinfer.chain.accounts import dev_account  # noqa: E402
from verinfer.chain.artifacts import abi, all_artifact_names  # noqa: E402
from verinfer.chain.client import Chain  # noqa: E402
from verinfer.chain.codec import encode_tensors  # noqa: E402
from verinfer.chain.deploy import deploy_suite  # noqa: E402
from verinfer.chain.devnet import Devnet  # noqa: E402

OUTPUT = encode_tensors([(np.arange(-5, 5), 8)])  # 10 int32 values: 46 bytes
SALT = b"\x33" * 32


def selectors() -> dict[str, str]:
    """4-byte selector -> function name, over every compiled contract."""
    out: dict[str, str] = {}
    for name in all_artifact_names():
        for item in abi(name):
            if item["type"] == "function":
                sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                out["0x" + keccak(text=sig)[:4].hex()] = item["name"]
    return out


def run(kit: Kit, consumer: Any, model: int, mode: int, k: int) -> dict[str, Any]:
    """One flow; returns {step: (gas, tx hash)}."""
    fee = kit.quote(model, mode, k)
    fn = consumer.functions.requestInference(model, INPUT, mode, fee, kit.now() + 3600, 200_000, k)
    receipt = kit.chain.transact(fn)
    (event,) = kit.events("InferenceRequested", receipt)
    rid, assigned = int(event["requestId"]), list(event["assigned"])
    steps: dict[str, Any] = {"request": receipt}
    pool = by_address([account(i) for i in range(1, 5)])
    if mode == MODE_NONE:
        steps["fulfil"] = kit.send(pool[assigned[0]], "InferenceCoordinator", "fulfil", rid, OUTPUT)
    else:
        for i, node in enumerate(assigned):
            c = commitment(rid, node, OUTPUT, SALT)
            steps[f"commit {i + 1}"] = kit.send(
                pool[node], "InferenceCoordinator", "commit", rid, c
            )
        for i, node in enumerate(assigned):
            r = kit.send(pool[node], "InferenceCoordinator", "reveal", rid, OUTPUT, SALT)
            steps[f"reveal {i + 1}"] = r
    assert consumer.functions.lastOutput().call() == OUTPUT
    return steps


def frames(kit: Kit, receipt: Any, names: dict[str, str]) -> list[str]:
    """The call tree of a transaction: each frame's own gas and its calls' (anvil's tracer)."""
    tx = receipt["transactionHash"].to_0x_hex()
    trace = kit.chain.w3.provider.make_request(
        "debug_traceTransaction", [tx, {"tracer": "callTracer"}]
    )["result"]
    lines: list[str] = []
    sel = selectors()

    def walk(call: dict[str, Any], depth: int) -> None:
        used = int(call["gasUsed"], 16)
        inner = sum(int(c["gasUsed"], 16) for c in call.get("calls", []))
        name = names.get(call["to"].lower(), call["to"][:10])
        fn = sel.get(call.get("input", "")[:10], call.get("input", "")[:10])
        lines.append(f"{'  ' * depth}{name}.{fn}: {used:,} ({used - inner:,} own)")
        for child in call.get("calls", []):
            walk(child, depth + 1)

    walk(trace, 0)
    return lines


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        devnet = Devnet(Path(tmp))
        info = devnet.start(persist=False)
        try:
            chain = Chain(info.rpc_url, dev_account(0))
            book = deploy_suite(chain, book_dir=Path(tmp))
            kit = Kit(chain, book)
            model = kit.register_model()
            for i in range(1, 4):
                kit.add_node(account(i), model)
            address, _ = chain.deploy("TestConsumer", kit.coordinator.address)
            kit.mint(address, 10**12)
            consumer = chain.contract("TestConsumer", address)
            names = {a.lower(): n for n, a in book.contracts.items() if n != "PaymentToken"}
            names[address.lower()] = "TestConsumer"
            flows = (("consensus k=3", MODE_CONSENSUS, 3), ("none", MODE_NONE, 1))
            # Consensus pays all three nodes, so the none flow's first run already finds
            # every node's ledger slot non-zero whichever node is picked.
            first = {label: run(kit, consumer, model, mode, k) for label, mode, k in flows}
            steady = {label: run(kit, consumer, model, mode, k) for label, mode, k in flows}
            trees = {
                (label, step): frames(kit, r, names)
                for label, steps in steady.items()
                for step, r in steps.items()
            }
        finally:
            devnet.stop()
    print("| flow | step | gas (first run) | gas (steady state) |")
    print("|---|---|---:|---:|")
    for label, _, _ in flows:
        for step in first[label]:
            a, b = first[label][step]["gasUsed"], steady[label][step]["gasUsed"]
            print(f"| {label} | {step} | {a:,} | {b:,} |")
        total_a = sum(int(r["gasUsed"]) for r in first[label].values())
        total_b = sum(int(r["gasUsed"]) for r in steady[label].values())
        print(f"| {label} | **total** | {total_a:,} | **{total_b:,}** |")
    print("\n3 nodes registered for the model; input 13 bytes; output 10 int32 values (46 bytes);")
    print("the consumer stores the output in its callback.\n")
    print(
        "Steady state by call frame (gasUsed of the receipt is after refunds; frames are before):"
    )
    for (label, step), lines in trees.items():
        print(f"\n{label} / {step}:")
        for line in lines:
            print(f"    {line}")


if __name__ == "__main__":
    main()
