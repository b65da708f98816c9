"""Run the dynamic-fee AMM example on a running devnet with the verinfer suite deployed.

Registers the volatility model (unless --model-id), stakes anvil dev account 1 as a node
serving it, deploys a TestToken (WETH) / TestUSD pool, adds liquidity, funds the pool's
inference budget, trades 20 times in a calm or stressed market, calls ``updateFee()`` and
waits for the node to fulfil it, then prints the fee before and after.

By default the node is verinfer's own node daemon (``NodeService``) run in this process;
with ``--external-node`` the script waits for a node you started with ``verinfer node start``
(register first with ``--register-only`` to learn the model id for its config).

Usage: python examples/amm/run_on_devnet.py [--regime calm|stressed] [--rpc-url URL]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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

from verinfer.chain.client import Chain  # noqa: E402
from verinfer.chain.connect import connect, deployed_address  # noqa: E402
from verinfer.chain.token import Token  # noqa: E402
from verinfer.errors import VerinferError  # noqa: E402

MODEL_FILE = HERE / "volatility_mlp.onnx"
SAMPLE_FILE = HERE / "volatility_sample.npy"
WAD = 10**18
TUSD = 10**6
MODEL_PRICE = 10_000  # 0.01 TUSD per inference to the model owner
NODE_FEE = 10_000  # 0.01 TUSD to the node
INITIAL_FEE_BPS = 30
REGIME_MOVES = {"calm": 0.002, "stressed": 0.025}  # typical |log-return| per swap


@dataclass
class Pool:
    chain: Chain
    address: str
    weth: str
    tusd: str

    @property
    def contract(self) -> Contract:
        return self.chain.contract("DynamicFeeAMM", self.address)


def deploy_pool(chain: Chain, model: RegisteredModel, *, budget: int = 5 * TUSD) -> Pool:
    """Deploy WETH + the pool (WETH/TUSD, 1 WETH = 2,000 TUSD), seed liquidity, fund budget."""
    tusd = deployed_address(chain, "PaymentToken")
    coordinator = deployed_address(chain, "InferenceCoordinator")
    weth, _ = chain.deploy("TestToken", "Wrapped Ether", "WETH")
    address, _ = chain.deploy(
        "DynamicFeeAMM", coordinator, weth, tusd, model.model_id, model.input_scale,
        INITIAL_FEE_BPS,
    )  # fmt: skip
    pool = Pool(chain, address, weth, tusd)
    me = chain.address
    weth_c = chain.contract("TestToken", weth)
    token = Token(chain, tusd)
    chain.transact(weth_c.functions.mint(me, 1_000 * WAD))
    token.faucet(me, 1_000_000 * TUSD)
    chain.transact(weth_c.functions.approve(address, 2**256 - 1))
    token.approve(address, 2**256 - 1)
    chain.transact(pool.contract.functions.addLiquidity(100 * WAD, 200_000 * TUSD, 0))
    token.transfer(address, budget)
    return pool


def trade(pool: Pool, regime: str, swaps: int = 20, seed: int = 0) -> list[float]:
    """Alternate buys and sells sized for the regime's typical move; returns log-returns."""
    rng = np.random.default_rng(seed)
    amm = pool.contract
    moves = []
    for _ in range(swaps):
        before = amm.functions.price().call()
        move = abs(rng.normal(0.0, REGIME_MOVES[regime])) + 1e-4
        if rng.random() < 0.5:  # sell WETH: reserve0 grows by ~ move/2 for a price drop ~ move
            amount = int(amm.functions.reserve0().call() * move / 2)
            pool.chain.transact(amm.functions.swap(pool.weth, amount, 0))
        else:
            amount = int(amm.functions.reserve1().call() * move / 2)
            pool.chain.transact(amm.functions.swap(pool.tusd, amount, 0))
        moves.append(float(np.log(amm.functions.price().call() / before)))
    return moves


def update_fee(pool: Pool) -> int:
    """Call updateFee(); returns the request id."""
    receipt = pool.chain.transact(pool.contract.functions.updateFee())
    (event,) = pool.contract.events.FeeUpdateRequested().process_receipt(receipt, errors=DISCARD)
    return int(event["args"]["requestId"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", choices=sorted(REGIME_MOVES), default="stressed")
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
            name="amm-volatility-mlp",
            label="volatility model",
            price=MODEL_PRICE,
            fee=NODE_FEE,
        )
        if args.register_only:
            return 0
        pool = deploy_pool(chain, model)
        amm = pool.contract
        print(f"pool {pool.address}: 100 WETH / 200,000 TUSD, fee {INITIAL_FEE_BPS} bps")
        moves = trade(pool, args.regime)
        sigma = float(np.sqrt(np.mean(np.square(moves))))
        print(f"{len(moves)} swaps in a {args.regime} market: realized vol {sigma:.4f} per swap")
        before = amm.functions.swapFeeBps().call()
        request_id, info = request_and_settle(
            chain, node_chain, model, NODE_FEE, args, lambda: update_fee(pool), "updateFee()"
        )
        (event,) = amm.events.FeeUpdated().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        ) or [None]
        after = amm.functions.swapFeeBps().call()
        print(f"request {request_id}: {info.status.name.lower()}")
        if event is not None:
            raw, scale = event["args"]["rawOutput"], event["args"]["scale"]
            print(f"model output {raw} at scale {scale} = {raw / 2**scale:.2f} bps")
        print(f"swap fee: {before} bps -> {after} bps")
        print(f"quote for 1 WETH: {amm.functions.quoteSwap(pool.weth, WAD).call() / TUSD:.2f} TUSD")
    except VerinferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
