"""The node under SIGKILL: N requests (default 200) while the node process is killed at random
moments and restarted. Every request must end fulfilled exactly once (or refunded), none
lost, no reverted node transaction, and the node paid exactly once per request.

    .venv/bin/python benchmarks/bench_node_faults.py [--requests 200] [--seed 7]

Runs its own anvil on a free loopback port and a throwaway VERINFER_HOME.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VERINFER_HOME"] = str(Path(tmp) / "home")
        from fault_kit import run_fault_scenario

        from verinfer.chain.accounts import dev_account
        from verinfer.chain.client import Chain
        from verinfer.chain.deploy import deploy_suite
        from verinfer.chain.devnet import Devnet

        devnet = Devnet(Path(tmp) / "anvil")
        info = devnet.start(persist=False)
        try:
            book = deploy_suite(Chain(info.rpc_url, dev_account(0)))
            report = run_fault_scenario(
                info.rpc_url, book, Path(tmp), args.requests, seed=args.seed
            )
        finally:
            devnet.stop()
    once = all(c == 1 for c in report.fulfil_events.values())
    ok = (
        report.fulfilled + report.refunded == report.requests
        and once
        and report.node_reverted_txs == 0
        and report.node_balance == report.expected_node_balance
    )
    print(f"## Node fault test ({report.requests} requests, SIGKILL at random moments)\n")
    print(
        "| requests | fulfilled | refunded | lost | kills | node txs | reverted | "
        "fulfilled twice | node paid exactly | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    lost = report.requests - report.fulfilled - report.refunded
    twice = sum(1 for c in report.fulfil_events.values() if c > 1)
    exact = report.node_balance == report.expected_node_balance
    print(
        f"| {report.requests} | {report.fulfilled} | {report.refunded} | {lost} | "
        f"{report.kills} | {report.node_txs} | {report.node_reverted_txs} | {twice} | "
        f"{'yes' if exact else 'NO'} | {report.seconds:.1f} |"
    )
    print(f"\nnode log events: {report.log_events}")
    print(f"\nresult: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
