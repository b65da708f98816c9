"""Helpers shared by the example dApps' tests: import an example script, and the fixtures for
its registered model, a node serving it and the coordinator.

Not a test module (no ``test_`` prefix); the test modules import it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(relative: str, name: str) -> ModuleType:
    """Import ``examples/<relative>`` as ``name`` (examples/ is not a package)."""
    if name not in sys.modules:
        if str(EXAMPLES) not in sys.path:
            sys.path.insert(0, str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


kit = load_example("example_kit.py", "example_kit")


def example_fixtures(example: ModuleType, model_name: str) -> tuple[Any, Any, Any]:
    """The ``model``, ``node`` and ``coordinator`` fixtures for an example's run_on_devnet
    module: its model registered as ``model_name``, served by a node staked as dev account 1.

    Assign them to those names in the test module: ``model, node, coordinator = ...``.
    """

    @pytest.fixture
    def model(chain: Chain, book: AddressBook) -> Any:
        return kit.register_model(
            chain,
            example.MODEL_FILE,
            example.SAMPLE_FILE,
            name=model_name,
            price=example.MODEL_PRICE,
        )

    @pytest.fixture
    def node(chain: Chain, model: Any) -> Chain:
        node_chain = Chain(chain.rpc_url, dev_account(1))
        kit.serve_model(node_chain, model.model_id, fee=example.NODE_FEE)
        return node_chain

    @pytest.fixture
    def coordinator(chain: Chain, book: AddressBook) -> CoordinatorClient:
        return CoordinatorClient(chain, book.address("InferenceCoordinator"))

    return model, node, coordinator
