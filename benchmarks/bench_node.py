"""End-to-end node throughput and latency on the devnet (anvil automine, loopback only).

One node (a NodeService in a thread, polling every 10 ms) serves the digits MLP in mode none.
Sequential: each request is sent and awaited before the next (latency = request transaction
sent -> fulfilled seen by the client). Burst: all requests sent back to back, then awaited
(throughput = requests / time from the first send to the last fulfilment).

    .venv/bin/python benchmarks/bench_node.py [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VERINFER_HOME"] = str(Path(tmp) / "home")
        import numpy as np
        from node_kit import (
            DIGITS_SAMPLE,
            RunningNode,
            fund,
            node_config,
            register_digits,
            setup_node,
        )

        from verinfer.chain.accounts import dev_account
        from verinfer.chain.client import Chain
        from verinfer.chain.deploy import deploy_suite
        from verinfer.chain.devnet import Devnet
        from verinfer.client import InferenceClient

        devnet = Devnet(Path(tmp) / "anvil")
        info = devnet.start(persist=False)
        try:
            chain = Chain(info.rpc_url, dev_account(0))
            book = deploy_suite(chain)
            model = register_digits(chain, book)
            setup_node(info.rpc_url, book, 1, model.model_id)
            fund(chain, book, chain.address, tokens=100_000)
            config = node_config(
                info.rpc_url, Path(tmp) / "node", 1, model.model_id, poll_interval=0.01,
                start_block=chain.w3.eth.block_number, metrics_port=None,
            )  # fmt: skip
            node = RunningNode(config)
            client = InferenceClient.from_chain(chain)
            client.token.approve(client.coordinator.address, 10**15)
            samples = np.load(DIGITS_SAMPLE)
            xs = [samples[i % len(samples)][None, :] for i in range(n)]
            client.request(model.model_id, xs[0], "none", wait=True)  # warm-up
            latencies = []
            seq_start = time.perf_counter()
            for x in xs:
                t0 = time.perf_counter()
                sent = client.request(model.model_id, x, "none")
                client.wait(sent.request_id, poll=0.005)
                latencies.append(time.perf_counter() - t0)
            seq_s = time.perf_counter() - seq_start
            burst_start = time.perf_counter()
            ids = [client.request(model.model_id, x, "none").request_id for x in xs]
            send_s = time.perf_counter() - burst_start
            for rid in ids:
                client.wait(rid, poll=0.005)
            burst_s = time.perf_counter() - burst_start
            node.stop()
        finally:
            devnet.stop()
    ms = [v * 1000 for v in latencies]
    print(f"## Node end to end ({n} requests, digits MLP, mode none, anvil automine)\n")
    print("| run | requests/s | p50 latency (ms) | p99 latency (ms) | mean (ms) |")
    print("|---|---|---|---|---|")
    print(
        f"| sequential (send, wait, repeat) | {n / seq_s:.1f} | {pct(ms, 0.5):.1f} | "
        f"{pct(ms, 0.99):.1f} | {statistics.mean(ms):.1f} |"
    )
    print(f"| burst (send all, then wait) | {n / burst_s:.1f} | - | - | - |")
    print(f"\nburst: sending {n} requests took {send_s:.2f} s; all fulfilled after {burst_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
