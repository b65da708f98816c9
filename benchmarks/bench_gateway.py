"""Paid inference under load: the x402 gateway and facilitator on loopback, settled on anvil.

A fresh devnet, the suite and the digits MLP; `verinfer facilitator start` and `verinfer
gateway start` run as their own processes, as a user runs them. A second process (the load
generator) sends a fixed number of paid requests at a fixed concurrency, each a whole x402
exchange by the SDK's client (402 challenge, signed EIP-3009 authorization, paid retry), and
times each exchange. Then the money is checked on-chain: the payer's loss, the payee's gain
and the settlement transfers must all equal successes x price: no double charge, no lost
payment. Exit 1 if any request failed or the money does not add up.

    .venv/bin/python benchmarks/bench_gateway.py [--requests 2000] [--concurrency 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

PAYER, PAYEE, FACILITATOR = 3, 4, 2  # anvil dev accounts


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited:\n{log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered:\n{log.read_text()[-2000:]}")


# ---- the load generator (a second process) --------------------------------------------------


def load(url: str, n: int, concurrency: int, token: str, network: str, out: str) -> None:
    """Send ``n`` paid requests, ``concurrency`` at a time; write statuses and latencies."""
    import httpx
    import numpy as np
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    from verinfer.chain.accounts import dev_account

    client = x402Client()
    client.set_spend_controls({"allowed_assets": [{"network": network, "asset": token}]})
    register_exact_evm_client(client, EthAccountSigner(dev_account(PAYER)))
    samples = np.load(ROOT / "examples" / "models" / "digits_sample.npy")
    bodies = [{"input": samples[i % len(samples)][None, :].tolist()} for i in range(n)]

    async def run() -> tuple[list[dict[str, Any]], float]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with x402HttpxClient(client, timeout=120, limits=limits) as http:

            async def one(body: dict[str, Any]) -> dict[str, Any]:
                async with gate:
                    t0 = time.perf_counter()
                    try:
                        response = await http.post(url, json=body)
                        status, detail = response.status_code, response.text[:200]
                    except Exception as exc:  # noqa: BLE001 - counted as a failure, reported
                        status, detail = 0, f"{type(exc).__name__}: {exc}"[:200]
                    elapsed = time.perf_counter() - t0
                    return {"status": status, "seconds": elapsed, "detail": detail}

            await one(bodies[0])  # warm-up, not counted: connections, first record read
            start = time.perf_counter()
            results = await asyncio.gather(*(one(b) for b in bodies))
            return list(results), time.perf_counter() - start

    results, wall = asyncio.run(run())
    Path(out).write_text(json.dumps({"results": results, "wall": wall}))


# ---- the run -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="100 requests")
    args = parser.parse_args()
    n = 100 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VERINFER_HOME"] = str(Path(tmp) / "home")
        from node_kit import fund, register_digits

        from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
        from verinfer.chain.client import Chain
        from verinfer.chain.deploy import deploy_suite
        from verinfer.chain.devnet import Devnet
        from verinfer.chain.token import Token

        devnet = Devnet(Path(tmp) / "anvil")
        info = devnet.start(persist=False)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            chain = Chain(info.rpc_url, dev_account(0))
            book = deploy_suite(chain)
            model = register_digits(chain, book)
            payer, payee = dev_account(PAYER).address, dev_account(PAYEE).address
            fund(chain, book, payer, tokens=100_000)
            token = Token(chain, book.address("PaymentToken"))
            env = dict(
                os.environ, VERINFER_RPC_URL=info.rpc_url,
                VERINFER_PRIVATE_KEY=ANVIL_DEV_KEYS[FACILITATOR],
            )  # fmt: skip
            f_port, g_port = free_port(), free_port()
            f_log, g_log = Path(tmp) / "facilitator.log", Path(tmp) / "gateway.log"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "verinfer", "facilitator", "start", "--port", str(f_port)],
                env=env, stdout=f_log.open("w"), stderr=subprocess.STDOUT,
            ))  # fmt: skip
            wait_http(f"http://127.0.0.1:{f_port}/supported", procs[0], f_log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "verinfer", "gateway", "start", "--port", str(g_port),
                 "--pay-to", payee, "--facilitator-url", f"http://127.0.0.1:{f_port}",
                 "--no-relay"],
                env={**env, "VERINFER_PRIVATE_KEY": ANVIL_DEV_KEYS[0]},
                stdout=g_log.open("w"), stderr=subprocess.STDOUT,
            ))  # fmt: skip
            base = f"http://127.0.0.1:{g_port}/v1/models/{model.model_id}"
            wait_http(base, procs[1], g_log)
            import httpx

            price = int(httpx.get(base, timeout=10).json()["price"]["amount"])
            payer0, payee0 = token.balance_of(payer), token.balance_of(payee)
            first_block = chain.w3.eth.block_number + 1

            out = Path(tmp) / "load.json"
            worker = multiprocessing.get_context("spawn").Process(
                target=load,
                args=(f"{base}/infer", n, args.concurrency, token.address,
                      f"eip155:{chain.chain_id}", str(out)),
            )  # fmt: skip
            worker.start()
            worker.join()
            if worker.exitcode != 0:
                print(f"the load generator failed (exit {worker.exitcode})")
                return 1
            data = json.loads(out.read_text())
            results, wall = data["results"], float(data["wall"])
            ok = [r for r in results if r["status"] == 200]
            successes = len(ok) + 1  # the warm-up request was paid too
            transfers = token.contract.events.Transfer().get_logs(
                from_block=first_block, to_block="latest",
                argument_filters={"from": payer, "to": payee},
            )  # fmt: skip
            paid = sum(int(t["args"]["value"]) for t in transfers)
            lost = max(0, successes - len(transfers))
            double = max(0, len(transfers) - successes)
            payer_delta = payer0 - token.balance_of(payer)
            payee_delta = token.balance_of(payee) - payee0
            money_ok = payer_delta == payee_delta == paid == successes * price
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            devnet.stop()

    latencies = [r["seconds"] * 1000 for r in ok]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    failures = [r for r in results if r["status"] != 200]
    print(f"\nx402 gateway, digits MLP, mode none: {n} paid requests at concurrency "
          f"{args.concurrency} (load generator in a second process)")  # fmt: skip
    print("| paid requests | concurrency | paid req/s | p50 ms | p99 ms | max ms | statuses | "
          "double charges | lost payments | money checked |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    p50, p99 = (pct(latencies, 0.5), pct(latencies, 0.99)) if latencies else (0.0, 0.0)
    checked = f"{'yes' if money_ok else 'NO'} ({successes} x {price} = {successes * price})"
    worst = max(latencies, default=0)
    print(f"| {n} | {args.concurrency} | {len(ok) / wall:.1f} | {p50:.0f} | {p99:.0f} | "
          f"{worst:.0f} | {statuses} | {double} | {lost} | {checked} |")  # fmt: skip
    for r in failures[:5]:
        print(f"failed: {r}")
    return 0 if not failures and money_ok and not lost and not double else 1


if __name__ == "__main__":
    sys.exit(main())
