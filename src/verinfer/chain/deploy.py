"""Deploy the whole contract suite and record it in the address book."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from verinfer.chain.accounts import DEVNET_CHAIN_ID
from verinfer.chain.artifacts import abi, load_artifact
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.errors import ConfigError, DevnetError

log = structlog.get_logger(__name__)

TUSD = 10**6  # TestUSD has 6 decimals, as USDC
ETH = 10**18


# Moves of the longest dispute: leaves, step choice, root, two per level of a tensor tree of up
# to 2^32 chunks, chunk and one step (docs/optimistic.md, section 2), with margin.
DISPUTE_MOVES_MAX = 70


@dataclass(frozen=True)
class SuiteParams:
    """Staking and request parameters of a deployment; the defaults suit the devnet.

    Amounts are token units of the payment token (6 decimals for TestUSD and USDC).
    """

    min_stake: int = 100 * TUSD
    unbonding_delay_s: int = 24 * 3600
    protocol_fee_bps: int = 200
    assignment_window_s: int = 60
    reveal_window_s: int = 120
    min_deadline_s: int = 300
    no_show_slash: int = 10 * TUSD
    dissent_slash: int = 20 * TUSD  # also what an optimistic claim that lost a dispute costs
    treasury: str | None = None  # None: the deployer
    # Optimistic mode's DisputeGame (bonds in wei, times in seconds; docs/optimistic.md).
    claim_bond_wei: int = ETH // 100
    challenge_bond_wei: int = ETH // 100
    challenge_window_s: int = 3600
    move_time_s: int = 600
    game_fee_bps: int = 1_000
    # Forced errors (docs/optimistic.md, section 4): rate p, jackpot fee f per claim, jackpot J.
    # f = p * J: a claimer's share of the pool pays out, on average, what its claims put in.
    forced_rate_ppm: int = 10_000
    jackpot_fee_wei: int = ETH // 10_000
    jackpot_payout_wei: int = ETH // 100
    # A seed is active this long after its commit: longer than the coordinator's deadline
    # horizon (30 days), so no request input it decides was known when it was chosen.
    seed_delay_s: int = 31 * 24 * 3600

    def validate(self) -> None:
        if self.min_stake <= 0:
            raise ConfigError(f"min_stake must be positive, got {self.min_stake}")
        if not 0 <= self.protocol_fee_bps <= 1_000:
            raise ConfigError(f"protocol_fee_bps {self.protocol_fee_bps} is not in 0..1000")
        for name in ("assignment_window_s", "reveal_window_s", "min_deadline_s"):
            value = getattr(self, name)
            if not 0 < value < 2**24:
                raise ConfigError(f"{name} {value} is not in 1..{2**24 - 1} seconds")
        if self.min_deadline_s < self.assignment_window_s + self.reveal_window_s:
            raise ConfigError(
                "min_deadline_s is shorter than the assignment and reveal windows together",
                hint="consensus requests could never be made with the shortest deadline",
            )
        for name in ("no_show_slash", "dissent_slash"):
            if not 0 <= getattr(self, name) < 2**96:
                raise ConfigError(f"{name} is not a uint96")
        positive = ("claim_bond_wei", "challenge_bond_wei", "challenge_window_s", "move_time_s")
        for name in (*positive, "seed_delay_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.game_fee_bps <= 5_000:
            raise ConfigError(f"game_fee_bps {self.game_fee_bps} is not in 0..5000")
        if not 0 <= self.forced_rate_ppm <= 1_000_000:
            raise ConfigError(f"forced_rate_ppm {self.forced_rate_ppm} is not in 0..1000000")
        for name in ("jackpot_fee_wei", "jackpot_payout_wei"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        at_risk = self.challenge_window_s + DISPUTE_MOVES_MAX * self.move_time_s
        if self.unbonding_delay_s < at_risk:
            raise ConfigError(
                f"unbonding_delay_s {self.unbonding_delay_s} is shorter than a claim's window "
                f"plus a full dispute ({at_risk} s)",
                hint="a claimer could unbond its stake before a lost dispute slashes it",
            )


def deploy_suite(
    chain: Chain,
    *,
    payment_token: str | None = None,
    book_dir: Path | None = None,
    params: SuiteParams | None = None,
) -> AddressBook:
    """Deploy every contract; the devnet gets its own TestUSD as the payment token.

    On any other chain the payment token (e.g. USDC) must be given: TestUSD's faucet would be
    useless there. The coordinator is authorized as a slashing module of the NodeRegistry.
    Optimistic mode: OneStepVerifier, StepRouter and a DisputeGame whose coordinator is the
    InferenceCoordinator (deployed after it, then set on it with ``setDisputeGame``). The
    address book is written only after every deployment succeeded.
    """
    params = params or SuiteParams()
    params.validate()
    book = AddressBook(chain_id=chain.chain_id, deployer=chain.address)
    if payment_token is None:
        if chain.chain_id != DEVNET_CHAIN_ID:
            raise ConfigError(
                f"chain {chain.chain_id} is not the devnet and no payment token was given",
                hint="pass --payment-token ADDRESS (e.g. the chain's USDC)",
            )
        payment_token, _ = chain.deploy("TestUSD")
        book.contracts["TestUSD"] = payment_token
    elif not chain.has_code(payment_token):
        raise ConfigError(f"no contract at payment token address {payment_token}")
    book.contracts["PaymentToken"] = payment_token
    if chain.chain_id == DEVNET_CHAIN_ID:
        install_devnet_multicall(chain)
    registry, receipt = chain.deploy("ModelRegistry")
    book.contracts["ModelRegistry"] = registry
    book.block = int(receipt["blockNumber"])
    nodes, _ = chain.deploy(
        "NodeRegistry", payment_token, params.min_stake, params.unbonding_delay_s, chain.address
    )
    book.contracts["NodeRegistry"] = nodes
    coordinator, _ = chain.deploy(
        "InferenceCoordinator",
        registry,
        nodes,
        payment_token,
        params.treasury or chain.address,
        params.protocol_fee_bps,
        [params.assignment_window_s, params.reveal_window_s, params.min_deadline_s],
        [params.no_show_slash, params.dissent_slash],
    )
    book.contracts["InferenceCoordinator"] = coordinator
    chain.transact(chain.contract("NodeRegistry", nodes).functions.setModule(coordinator, True))
    router = _deploy_step_router(chain, book)
    game, _ = chain.deploy(
        "DisputeGame",
        router,
        coordinator,
        params.treasury or chain.address,
        params.claim_bond_wei,
        params.challenge_bond_wei,
        params.challenge_window_s,
        params.move_time_s,
        params.game_fee_bps,
        params.forced_rate_ppm,
        params.jackpot_fee_wei,
        params.jackpot_payout_wei,
        params.seed_delay_s,
    )
    book.contracts.update(StepRouter=router, DisputeGame=game)
    coordinator_contract = chain.contract("InferenceCoordinator", coordinator)
    chain.transact(coordinator_contract.functions.setDisputeGame(game))
    book.save(book_dir)
    log.info("suite.deployed", chain_id=chain.chain_id, contracts=book.contracts)
    return book


MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"


def install_devnet_multicall(chain: Chain) -> None:
    """Put DevnetMulticall's runtime code at the canonical Multicall3 address, if nothing is
    there (anvil only: ``anvil_setCode``). Tools expect that contract on every chain; the
    x402 facilitator needs it to say why a payment is refused."""
    if chain.has_code(MULTICALL3_ADDRESS):
        return
    code = "0x" + load_artifact("DevnetMulticall")["deployedBytecode"].removeprefix("0x")
    chain.w3.provider.make_request("anvil_setCode", [MULTICALL3_ADDRESS, code])  # type: ignore[arg-type]
    if not chain.has_code(MULTICALL3_ADDRESS):
        raise DevnetError("the devnet refused anvil_setCode for Multicall3")


def _deploy_step_router(chain: Chain, book: AddressBook) -> str:
    """Deploy the StepRouter after the one-step verifier contracts its constructor takes (each
    constructor argument of type ``contract X`` is a fresh deployment of X, recorded in
    ``book``), so the suite follows the router's constructor as verifiers are added."""
    (constructor,) = [item for item in abi("StepRouter") if item["type"] == "constructor"]
    args = []
    for param in constructor["inputs"]:
        kind = str(param.get("internalType", ""))
        if not kind.startswith("contract "):
            raise ConfigError(f"StepRouter's constructor takes {kind or param['type']!r}")
        name = kind.removeprefix("contract ")
        address, _ = chain.deploy(name)
        book.contracts[name] = address
        args.append(address)
    router, _ = chain.deploy("StepRouter", *args)
    return router
