"""Deploy the whole contract suite and record it in the address book."""

from __future__ import annotations

from pathlib import Path

import structlog

from verinfer.chain.accounts import DEVNET_CHAIN_ID
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.errors import ConfigError

log = structlog.get_logger(__name__)


def deploy_suite(
    chain: Chain, *, payment_token: str | None = None, book_dir: Path | None = None
) -> AddressBook:
    """Deploy every contract; the devnet gets its own TestUSD as the payment token.

    On any other chain the payment token (e.g. USDC) must be given: TestUSD's faucet would be
    useless there. The address book is written only after every deployment succeeded.
    """
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
    registry, receipt = chain.deploy("ModelRegistry")
    book.contracts["ModelRegistry"] = registry
    book.block = int(receipt["blockNumber"])
    book.save(book_dir)
    log.info("suite.deployed", chain_id=chain.chain_id, contracts=book.contracts)
    return book
