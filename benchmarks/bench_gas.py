"""Gas of one inference request on a fresh anvil, as a markdown table.

    .venv/bin/python benchmarks/bench_gas.py

- mode none: a TestConsumer (stores the output in its callback) requests; one node fulfils a
  10-value output.
- mode consensus (k = 3): the consumer requests; three nodes commit, then reveal.

Each flow runs twice; the second ("steady state") is the figure to quote: by then every
balance slot (token balances, the coordinator's pull-payment ledger, the consumer's output
slots) is non-zero, as on a live network. The first run pays the one-time zero-to-non-zero
storage writes.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import structlog

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
from verinfer.chain.client import Chain  # noqa: E402
from verinfer.chain.codec import encode_tensors  # noqa: E402
from verinfer.chain.deploy import deploy_suite  # noqa: E402
from verinfer.chain.devnet import Devnet  # noqa: E402

OUTPUT = encode_tensors([(np.arange(-5, 5), 8)])  # 10 int32 values: 46 bytes
SALT = b"\x33" * 32


def run(kit: Kit, consumer: Any, model: int, mode: int, k: int) -> dict[str, int]:
    fee = kit.quote(model, mode, k)
    fn = consumer.functions.requestInference(model, INPUT, mode, fee, kit.now() + 3600, 200_000, k)
    receipt = kit.chain.transact(fn)
    (event,) = kit.events("InferenceRequested", receipt)
    rid, assigned = int(event["requestId"]), list(event["assigned"])
    gas = {"request": int(receipt["gasUsed"])}
    pool = by_address([account(i) for i in range(1, 5)])
    if mode == MODE_NONE:
        r = kit.send(pool[assigned[0]], "InferenceCoordinator", "fulfil", rid, OUTPUT)
        gas["fulfil"] = int(r["gasUsed"])
    else:
        for i, node in enumerate(assigned):
            c = commitment(rid, node, OUTPUT, SALT)
            gas[f"commit {i + 1}"] = int(
                kit.send(pool[node], "InferenceCoordinator", "commit", rid, c)["gasUsed"]
            )
        for i, node in enumerate(assigned):
            r = kit.send(pool[node], "InferenceCoordinator", "reveal", rid, OUTPUT, SALT)
            gas[f"reveal {i + 1}"] = int(r["gasUsed"])
    assert consumer.functions.lastOutput().call() == OUTPUT
    gas["total"] = sum(gas.values())
    return gas


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        devnet = Devnet(Path(tmp))
        info = devnet.start(persist=False)
        try:
            chain = Chain(info.rpc_url, dev_account(0))
            kit = Kit(chain, deploy_suite(chain, book_dir=Path(tmp)))
            model = kit.register_model()
            for i in range(1, 4):
                kit.add_node(account(i), model)
            address, _ = chain.deploy("TestConsumer", kit.coordinator.address)
            kit.mint(address, 10**12)
            consumer = chain.contract("TestConsumer", address)
            rows = []
            for label, mode, k in (("none", MODE_NONE, 1), ("consensus k=3", MODE_CONSENSUS, 3)):
                first = run(kit, consumer, model, mode, k)
                steady = run(kit, consumer, model, mode, k)
                rows.append((label, first, steady))
        finally:
            devnet.stop()
    print("| flow | step | gas (first run) | gas (steady state) |")
    print("|---|---|---:|---:|")
    for label, first, steady in rows:
        for step in first:
            print(f"| {label} | {step} | {first[step]:,} | {steady[step]:,} |")
    print("\n3 nodes registered for the model; input 13 bytes; output 10 int32 values (46 bytes);")
    print("the consumer stores the output in its callback.")


if __name__ == "__main__":
    main()
