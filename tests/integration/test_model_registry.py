"""ModelRegistry against a real anvil: access control, events, royalties, lineage, errors."""

from __future__ import annotations

from typing import Any

import pytest
from web3.logs import DISCARD
from web3.types import TxReceipt

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.errors import ModelError
from verinfer.models.registry import (
    InvalidModelFieldError,
    InvalidModesError,
    InvalidZkCircuitError,
    Mode,
    ModelInput,
    NotModelOwnerError,
    RegistryClient,
    RoyaltyTooHighError,
    UnknownModelError,
    UnknownParentError,
    ZkCircuit,
    ZkCircuitMissingError,
)

pytestmark = pytest.mark.integration

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def circuit(verifier: str, **overrides: Any) -> ZkCircuit:
    """A complete zk circuit; the registry checks only that the verifier has code."""
    fields: dict[str, Any] = dict(
        verifier=verifier, input_scale=7, output_scale=-2, vk_hash="0x" + "11" * 32,
        settings_hash="0x" + "22" * 32, artifacts_cid=CID,
    )  # fmt: skip
    fields.update(overrides)
    return ZkCircuit(**fields)


def sample(registry: RegistryClient, **overrides: Any) -> ModelInput:
    """A model with modes none and zk, whose circuit's verifier is the registry itself (any
    contract will do for the registry)."""
    fields: dict[str, Any] = dict(
        name="digits", cid=CID, input_shapes=[[1, 64]], output_shapes=[[1, 10]],
        price=10_000, royalty_bps=500, modes=Mode.NONE | Mode.ZK, license="MIT",
        metadata_uri="ipfs://card", zk=circuit(registry.contract.address),
    )  # fmt: skip
    fields.update(overrides)
    return ModelInput(**fields)


@pytest.fixture
def registry(chain: Chain, book: AddressBook) -> RegistryClient:
    return RegistryClient(chain, book.address("ModelRegistry"))


def as_user(registry: RegistryClient, index: int) -> RegistryClient:
    """The same registry, signing as anvil dev account ``index``."""
    other = Chain(registry.chain.rpc_url, dev_account(index))
    return RegistryClient(other, registry.contract.address)


def events(registry: RegistryClient, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    return [
        dict(e["args"])
        for e in registry.contract.events[name]().process_receipt(receipt, errors=DISCARD)
    ]


def test_register_round_trips_every_field(registry: RegistryClient) -> None:
    model_id, receipt = registry.register(sample(registry, parent=0))
    assert model_id == 1
    record = registry.get(model_id)
    assert record.owner == dev_account(0).address
    assert (record.name, record.cid, record.license, record.metadata_uri) == (
        "digits",
        CID,
        "MIT",
        "ipfs://card",
    )
    assert record.input_shapes == [[1, 64]] and record.output_shapes == [[1, 10]]
    assert (record.price, record.royalty_bps, record.modes) == (10_000, 500, ["none", "zk"])
    assert record.program_hash == "0x" + "00" * 32 and not record.deprecated
    assert record.registered_at > 0
    (ev,) = events(registry, "ModelRegistered", receipt)
    assert ev == {
        "modelId": 1, "owner": dev_account(0).address, "parent": 0, "cid": CID,
        "programHash": b"\0" * 32,
    }  # fmt: skip
    (transfer,) = events(registry, "Transfer", receipt)
    assert transfer["to"] == dev_account(0).address and transfer["tokenId"] == 1
    assert registry.chain.call(registry.contract.functions.tokenURI(1)) == "ipfs://card"


def test_lineage_links_to_an_existing_parent(registry: RegistryClient) -> None:
    base, _ = registry.register(sample(registry))
    child, receipt = registry.register(sample(registry, name="digits-ft", parent=base))
    assert registry.get(child).parent == base
    assert events(registry, "ModelRegistered", receipt)[0]["parent"] == base
    with pytest.raises(UnknownParentError) as err:
        registry.register(sample(registry, parent=99))
    assert err.value.args_by_name == {"parent": 99}
    assert registry.count() == 2


def test_terms_updates_emit_events(registry: RegistryClient) -> None:
    h = "0x" + "11" * 32  # mode optimistic needs the program's commitments
    model = sample(registry, program_hash=h, weights_root=h, steps_root=h, n_steps=2)
    model_id, _ = registry.register(model)
    r = registry.set_price(model_id, 42)
    assert events(registry, "PriceUpdated", r) == [
        {"modelId": model_id, "oldPrice": 10_000, "newPrice": 42}
    ]
    r = registry.set_royalty(model_id, 10_000)
    assert events(registry, "RoyaltyUpdated", r) == [
        {"modelId": model_id, "oldBps": 500, "newBps": 10_000}
    ]
    r = registry.set_modes(model_id, Mode.OPTIMISTIC)
    assert events(registry, "ModesUpdated", r) == [
        {"modelId": model_id, "oldModes": 9, "newModes": 4}
    ]
    r = registry.set_deprecated(model_id, True)
    assert events(registry, "DeprecationUpdated", r) == [{"modelId": model_id, "deprecated": True}]
    record = registry.get(model_id)
    assert (record.price, record.royalty_bps, record.modes, record.deprecated) == (
        42,
        10_000,
        ["optimistic"],
        True,
    )
    servable = registry.contract.functions.isServable
    assert registry.chain.call(servable(model_id, int(Mode.OPTIMISTIC))) is False
    registry.set_deprecated(model_id, False)
    assert registry.chain.call(servable(model_id, int(Mode.OPTIMISTIC))) is True
    assert registry.chain.call(servable(model_id, int(Mode.ZK))) is False


def test_only_the_owner_or_an_approved_operator_updates(registry: RegistryClient) -> None:
    model_id, _ = registry.register(sample(registry))
    stranger = as_user(registry, 1)
    for update in (
        lambda: stranger.set_price(model_id, 1),
        lambda: stranger.set_royalty(model_id, 1),
        lambda: stranger.set_modes(model_id, Mode.ZK),
        lambda: stranger.set_deprecated(model_id),
    ):
        with pytest.raises(NotModelOwnerError) as err:
            update()
        assert err.value.args_by_name == {"modelId": model_id, "caller": dev_account(1).address}
    assert registry.get(model_id).price == 10_000
    # An operator approved by the owner may manage the model's terms.
    registry.chain.transact(registry.contract.functions.approve(dev_account(1).address, model_id))
    stranger.set_price(model_id, 7)
    assert registry.get(model_id).price == 7


def test_transferring_the_token_moves_the_royalty_stream(registry: RegistryClient) -> None:
    model_id, _ = registry.register(sample(registry, royalty_bps=250))
    assert registry.royalty(model_id, 1_000_000) == (dev_account(0).address, 25_000)
    fn = registry.contract.functions.transferFrom(
        dev_account(0).address, dev_account(2).address, model_id
    )
    registry.chain.transact(fn)
    assert registry.royalty(model_id, 1_000_000) == (dev_account(2).address, 25_000)
    assert registry.get(model_id).owner == dev_account(2).address
    with pytest.raises(NotModelOwnerError):
        registry.set_price(model_id, 1)  # the old owner lost control with the token
    as_user(registry, 2).set_price(model_id, 1)


def test_bad_registrations_revert_with_typed_errors(registry: RegistryClient) -> None:
    contract_fn = registry.contract.functions.register

    def raw(model: ModelInput) -> None:  # bypasses client-side validation: the contract checks
        registry.chain.transact(contract_fn(model.as_tuple()))

    with pytest.raises(RoyaltyTooHighError) as royalty:
        raw(sample(registry, royalty_bps=10_001))
    assert royalty.value.args_by_name == {"royaltyBps": 10_001, "maxBps": 10_000}
    assert royalty.value.hint
    with pytest.raises(InvalidModesError):
        raw(sample(registry, modes=Mode(0)))
    with pytest.raises(InvalidModesError):
        registry.chain.transact(
            contract_fn(sample(registry).as_tuple()[:8] + (16,) + sample(registry).as_tuple()[9:])
        )
    with pytest.raises(InvalidModelFieldError) as empty:
        raw(sample(registry, cid=""))
    assert empty.value.args_by_name == {"field": "cid"}
    with pytest.raises(InvalidModelFieldError) as shape:
        raw(sample(registry, output_shapes=[[1, 0]]))
    assert shape.value.args_by_name == {"field": "outputShapes", "index": 0}
    with pytest.raises(InvalidModelFieldError):
        raw(sample(registry, input_shapes=[]))
    assert registry.count() == 0


def test_client_validation_refuses_before_sending(registry: RegistryClient) -> None:
    nonce = registry.chain.w3.eth.get_transaction_count(dev_account(0).address)
    for bad in (
        sample(registry, royalty_bps=10_001),
        sample(registry, price=-1),
        sample(registry, name=" "),
        sample(registry, parent=-1),
    ):
        with pytest.raises(ModelError):
            registry.register(bad)
    assert registry.chain.w3.eth.get_transaction_count(dev_account(0).address) == nonce


def test_unknown_model_reads_are_typed(registry: RegistryClient) -> None:
    with pytest.raises(UnknownModelError) as err:
        registry.get(5)
    assert err.value.args_by_name == {"modelId": 5}
    with pytest.raises(UnknownModelError):
        registry.get(0)
    with pytest.raises(UnknownModelError):
        registry.set_price(5, 1)
    with pytest.raises(UnknownParentError):
        registry.check_parent(3)
    registry.check_parent(0)


def test_zk_circuit_round_trips_and_zk_config_reads_it(registry: RegistryClient) -> None:
    model_id, _ = registry.register(sample(registry))
    record = registry.get(model_id)
    assert record.zk == circuit(registry.contract.address)
    assert registry.zk_config(model_id) == (registry.contract.address, 7, -2)
    assert record.to_dict()["zk"]["artifacts_cid"] == CID
    # No circuit: all zero, and the existence check still applies.
    plain, _ = registry.register(sample(registry, modes=Mode.NONE, zk=ZkCircuit()))
    assert registry.get(plain).zk == ZkCircuit() and registry.get(plain).zk.empty
    assert registry.zk_config(plain) == ("0x" + "00" * 20, 0, 0)
    for unknown in (0, 99):
        with pytest.raises(UnknownModelError) as err:
            registry.zk_config(unknown)
        assert err.value.args_by_name == {"modelId": unknown}


def test_zk_mode_needs_a_complete_circuit(registry: RegistryClient) -> None:
    contract_fn = registry.contract.functions.register

    def raw(model: ModelInput) -> None:  # bypasses client-side validation
        registry.chain.transact(contract_fn(model.as_tuple()))

    with pytest.raises(ZkCircuitMissingError):
        raw(sample(registry, zk=ZkCircuit()))
    verifier = registry.contract.address
    for field, bad in (
        ("verifier", circuit(dev_account(3).address)),  # an account without code
        ("verifier", circuit("0x" + "00" * 20)),
        ("vkHash", circuit(verifier, vk_hash="0x" + "00" * 32)),
        ("settingsHash", circuit(verifier, settings_hash="0x" + "00" * 32)),
        ("artifactsCid", circuit(verifier, artifacts_cid="")),
    ):
        # A partial circuit is refused with or without mode zk.
        for modes in (Mode.NONE | Mode.ZK, Mode.NONE):
            with pytest.raises(InvalidZkCircuitError) as err:
                raw(sample(registry, modes=modes, zk=bad))
            assert err.value.args_by_name == {"field": field}
    assert registry.count() == 0
    # The client refuses the same before sending anything.
    nonce = registry.chain.w3.eth.get_transaction_count(dev_account(0).address)
    with pytest.raises(ZkCircuitMissingError):
        registry.register(sample(registry, zk=ZkCircuit()))
    with pytest.raises(ModelError, match="vk_hash"):
        registry.register(sample(registry, zk=circuit(verifier, vk_hash="0x" + "00" * 32)))
    with pytest.raises(ModelError, match="int8"):
        registry.register(sample(registry, zk=circuit(verifier, input_scale=128)))
    assert registry.chain.w3.eth.get_transaction_count(dev_account(0).address) == nonce


def test_set_modes_enables_zk_only_with_a_circuit(registry: RegistryClient) -> None:
    plain, _ = registry.register(sample(registry, modes=Mode.NONE, zk=ZkCircuit()))
    with pytest.raises(ZkCircuitMissingError):
        registry.set_modes(plain, Mode.NONE | Mode.ZK)
    assert registry.get(plain).modes == ["none"]
    # A circuit registered without mode zk may be enabled later, and disabled again.
    later, _ = registry.register(sample(registry, modes=Mode.NONE))
    registry.set_modes(later, Mode.NONE | Mode.ZK)
    assert registry.get(later).modes == ["none", "zk"]
    registry.set_modes(later, Mode.NONE)
    assert registry.get(later).zk == circuit(registry.contract.address)
