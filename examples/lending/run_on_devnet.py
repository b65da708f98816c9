"""Run the lending risk example on a running devnet with the verinfer suite deployed.

Registers the risk model (unless --model-id), stakes anvil dev account 1 as a node serving it,
deploys a TestToken (WETH) collateral and a LendingRisk market lending TestUSD, supplies
liquidity (account 0), then as borrower (account 2): deposits WETH, is refused a loan without a
score, pays for a score with ``requestScore()``, waits for the node to fulfil it, and borrows
up to collateral value x the model's collateral factor (one unit more is refused).

By default the node is verinfer's own node daemon (``NodeService``) run in this process; with
``--external-node`` the script waits for a node you started with ``verinfer node start``.
``--show-stale`` also moves the devnet clock past the score's lifetime to show it expire.

Usage: python examples/lending/run_on_devnet.py [--volatility 0.8] [--rpc-url URL]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from web3.contract.contract import Contract
from web3.logs import DISCARD

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from example_kit import (  # noqa: E402
    RegisteredModel,
    add_devnet_args,
    model_and_node,
    quiet_logs,
    request_and_settle,
)

from verinfer.chain.accounts import dev_account  # noqa: E402
from verinfer.chain.client import Chain  # noqa: E402
from verinfer.chain.connect import connect, deployed_address  # noqa: E402
from verinfer.chain.token import Token  # noqa: E402
from verinfer.errors import VerinferError  # noqa: E402

MODEL_FILE = HERE / "risk_mlp.onnx"
SAMPLE_FILE = HERE / "risk_sample.npy"
WAD = 10**18
TUSD = 10**6
MODEL_PRICE = 10_000  # 0.01 TUSD per score to the model owner
NODE_FEE = 10_000  # 0.01 TUSD to the node
WETH_PRICE = 2_000 * TUSD  # TUSD units per 1 WETH (1e18 units)
SIZE_UNIT = 100_000 * TUSD  # collateral value at which the size feature reaches 1
FEATURE_NAMES = (
    "collateral_vol",
    "utilization",
    "age_years",
    "repayments",
    "repaid_ratio",
    "leverage",
    "size",
    "concentration",
)


@dataclass
class Market:
    chain: Chain
    address: str
    weth: str
    tusd: str

    def contract(self, chain: Chain | None = None) -> Contract:
        return (chain or self.chain).contract("LendingRisk", self.address)


def deploy_market(
    chain: Chain,
    model: RegisteredModel,
    *,
    volatility: float = 0.8,
    liquidity: int = 500_000 * TUSD,
) -> Market:
    """Deploy WETH and the market (WETH collateral at 2,000 TUSD, TUSD debt); supply liquidity."""
    tusd = deployed_address(chain, "PaymentToken")
    coordinator = deployed_address(chain, "InferenceCoordinator")
    weth, _ = chain.deploy("TestToken", "Wrapped Ether", "WETH")
    address, _ = chain.deploy(
        "LendingRisk", coordinator, weth, tusd, model.model_id, model.input_scale, WETH_PRICE,
        int(volatility * WAD), SIZE_UNIT,
    )  # fmt: skip
    market = Market(chain, address, weth, tusd)
    token = Token(chain, tusd)
    token.faucet(chain.address, liquidity)
    token.approve(address, liquidity)
    chain.transact(market.contract().functions.supply(liquidity))
    return market


def open_account(borrower: Chain, market: Market, weth_amount: int) -> None:
    """Mint and deposit WETH collateral; fund and approve TUSD for score fees and repayments."""
    weth = borrower.contract("TestToken", market.weth)
    borrower.transact(weth.functions.mint(borrower.address, weth_amount))
    borrower.transact(weth.functions.approve(market.address, weth_amount))
    borrower.transact(market.contract(borrower).functions.depositCollateral(weth_amount))
    token = Token(borrower, market.tusd)
    token.faucet(borrower.address, 1_000 * TUSD)
    token.approve(market.address, 2**256 - 1)


def request_score(borrower: Chain, market: Market) -> int:
    """``requestScore()`` as the borrower; returns the request id."""
    contract = market.contract(borrower)
    receipt = borrower.transact(contract.functions.requestScore())
    (event,) = contract.events.ScoreRequested().process_receipt(receipt, errors=DISCARD)
    return int(event["args"]["requestId"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volatility", type=float, default=0.8, help="collateral vol, e.g. 0.8")
    parser.add_argument("--weth", type=float, default=10.0, help="collateral deposited")
    parser.add_argument("--show-stale", action="store_true", help="advance the devnet clock")
    add_devnet_args(parser)
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_logs()
    try:
        chain = connect(args.rpc_url)
        model, node_chain = model_and_node(
            chain,
            args,
            MODEL_FILE,
            SAMPLE_FILE,
            name="lending-risk-mlp",
            label="risk model",
            price=MODEL_PRICE,
            fee=NODE_FEE,
        )
        if args.register_only:
            return 0
        market = deploy_market(chain, model, volatility=args.volatility)
        print(f"market {market.address}: 500,000 TUSD supplied, WETH at 2,000 TUSD")

        borrower = Chain(chain.rpc_url, dev_account(2))
        lend = market.contract(borrower)
        open_account(borrower, market, int(args.weth * WAD))
        value = lend.functions.collateralValue(borrower.address).call()
        print(f"borrower {borrower.address}: {args.weth} WETH = {value / TUSD:,.2f} TUSD")
        try:
            borrower.transact(lend.functions.borrow(1 * TUSD))
        except VerinferError as exc:
            print(f"borrow(1 TUSD) without a score: refused ({exc})")
        features = lend.functions.features(borrower.address).call()
        shown = (f"{n}={f / WAD:.3f}" for n, f in zip(FEATURE_NAMES, features, strict=True))
        print("features: " + ", ".join(shown))
        request_id, info = request_and_settle(
            chain,
            node_chain,
            model,
            NODE_FEE,
            args,
            lambda: request_score(borrower, market),
            "requestScore()",
        )
        print(f"request {request_id}: {info.status.name.lower()}")
        logs = lend.events.ScoreUpdated().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        )
        if logs:
            raw, scale = logs[0]["args"]["rawOutput"], logs[0]["args"]["scale"]
            print(f"model output {raw} at scale {scale}: P(default) = {raw / 2**scale:.4f}")
        factor = lend.functions.scores(borrower.address).call()[0]
        limit = lend.functions.maxBorrow(borrower.address).call()
        print(f"collateral factor: {factor} bps -> may borrow up to {limit / TUSD:,.2f} TUSD")
        borrower.transact(lend.functions.borrow(limit))
        print(f"borrow({limit / TUSD:,.2f} TUSD): ok")
        try:
            borrower.transact(lend.functions.borrow(1))
        except VerinferError as exc:
            print(f"borrow(1 more unit): refused ({exc})")
        if args.show_stale:
            ttl = lend.functions.scoreTtl().call()
            chain.w3.provider.make_request("evm_increaseTime", [ttl + 1])
            chain.w3.provider.make_request("evm_mine", [])
            try:
                borrower.transact(lend.functions.borrow(1))
            except VerinferError as exc:
                print(f"{ttl} s later, borrow(1 unit): refused ({exc})")
    except VerinferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
