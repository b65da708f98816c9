"""EZKL verifiers on an EVM chain: calldata, deployment, VKA registration, ``verifyProof``.

Two verifier kinds (both rendered by EZKL, compiled with the pinned solcjs):
- ``dedicated``: ``Halo2Verifier.verifyProof(bytes proof, uint256[] instances) -> bool``, one
  contract per circuit, its verifying key baked into the code.
- ``reusable`` (EZKL marks it experimental): one ``Halo2VerifierReusable`` for all circuits;
  ``verifyProof(bytes, uint256[], bytes32[] vka)`` takes the circuit's verifying-key artifact
  in calldata, and only if ``registerVka(vka)`` registered it first. Its return data is not
  valid ABI (``success, vka_digest, len, rescaled...`` without an offset word): raw words.
  A registered VKA proves nothing about *which* model: a caller must pass the model's own
  VKA (its digest is in the artifacts), else a proof of any registered circuit passes.
Both revert on a bad proof; neither ever returns false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from verinfer.chain.client import GAS_MARGIN_DEN, GAS_MARGIN_NUM, Chain
from verinfer.errors import ChainError
from verinfer.runtime.commit import keccak256
from verinfer.verify.backend import Proof, VerifierKind, ZkArtifacts
from verinfer.verify.errors import ProofRejectedError, ZkInputError
from verinfer.verify.zk_solc import EIP170_MAX_RUNTIME

VERIFY_DEDICATED = function_signature_to_4byte_selector("verifyProof(bytes,uint256[])")
VERIFY_REUSABLE = function_signature_to_4byte_selector("verifyProof(bytes,uint256[],bytes32[])")
REGISTER_VKA = function_signature_to_4byte_selector("registerVka(bytes32[])")


@dataclass(frozen=True)
class Deployed:
    address: str
    gas_used: int
    runtime_size: int


def vka_words(vka: bytes) -> list[bytes]:
    """The verifying-key artifact as 32-byte words (the store holds them concatenated)."""
    if len(vka) % 32:
        raise ZkInputError(f"a VKA is whole 32-byte words; got {len(vka)} bytes")
    return [vka[i : i + 32] for i in range(0, len(vka), 32)]


def vka_digest(vka: bytes) -> str:
    """keccak256 over the words, as ``registerVka`` and the reusable verifier compute it."""
    return "0x" + keccak256(vka).hex()


def encode_calldata(
    kind: VerifierKind, proof: bytes, instances: tuple[int, ...], vka: bytes | None = None
) -> bytes:
    """``verifyProof`` calldata, as ``ezkl.encode_evm_calldata`` builds it (minus its padding)."""
    if kind == "dedicated":
        return VERIFY_DEDICATED + encode(["bytes", "uint256[]"], [proof, list(instances)])
    if vka is None:
        raise ZkInputError("the reusable verifier needs the model's VKA")
    return VERIFY_REUSABLE + encode(
        ["bytes", "uint256[]", "bytes32[]"], [proof, list(instances), vka_words(vka)]
    )


def _send(chain: Chain, tx: dict[str, Any]) -> dict[str, Any]:
    """Estimate, sign, send and wait for a raw transaction (a deployment or raw calldata)."""
    account = chain.signer()
    tx = {**tx, "from": account.address, "chainId": chain.chain_id}
    try:
        tx["gas"] = chain.w3.eth.estimate_gas(tx) * GAS_MARGIN_NUM // GAS_MARGIN_DEN  # type: ignore[arg-type]
    except (ContractCustomError, ContractLogicError) as exc:
        raise ProofRejectedError(f"the transaction would revert: {exc}") from exc
    except Web3RPCError as exc:
        raise ChainError(f"the RPC refused the transaction: {exc}") from exc
    tx["nonce"] = chain.w3.eth.get_transaction_count(account.address, "pending")
    fees = chain.w3.eth.fee_history(1, "latest")
    base_fee = int(fees["baseFeePerGas"][-1])
    tx["maxPriorityFeePerGas"] = 0
    tx["maxFeePerGas"] = 2 * base_fee + 1
    signed = account.sign_transaction(tx)
    tx_hash = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = dict(chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120))
    if receipt["status"] != 1:
        raise ChainError(f"transaction {tx_hash.hex()} reverted on-chain")
    return receipt


def deploy_bytecode(chain: Chain, bytecode: bytes) -> Deployed:
    """Deploy raw creation code; refuse code that real chains would refuse (EIP-170)."""
    receipt = _send(chain, {"data": "0x" + bytecode.hex()})
    address = str(receipt["contractAddress"])
    size = len(chain.w3.eth.get_code(Web3.to_checksum_address(address)))
    if size > EIP170_MAX_RUNTIME:  # only a devnet with a raised limit gets here
        raise ChainError(
            f"the verifier's runtime code is {size} bytes, over EIP-170's {EIP170_MAX_RUNTIME}"
        )
    return Deployed(address=address, gas_used=int(receipt["gasUsed"]), runtime_size=size)


def register_vka(chain: Chain, verifier: str, vka: bytes) -> int:
    """Register a VKA on a reusable verifier (idempotent); returns the gas used."""
    data = REGISTER_VKA + encode(["bytes32[]"], [vka_words(vka)])
    receipt = _send(chain, {"to": Web3.to_checksum_address(verifier), "data": "0x" + data.hex()})
    return int(receipt["gasUsed"])


def _calldata(artifacts: ZkArtifacts, proof: Proof, vka: bytes | None) -> bytes:
    if len(proof.instances) != artifacts.n_instances:
        raise ZkInputError(
            f"the proof has {len(proof.instances)} public instances; this circuit has "
            f"{artifacts.n_instances} ({artifacts.n_inputs} inputs + {artifacts.n_outputs} outputs)"
        )
    return encode_calldata(artifacts.verifier.kind, proof.proof, proof.instances, vka)


def verify_onchain(
    chain: Chain,
    verifier: str,
    artifacts: ZkArtifacts,
    proof: Proof,
    *,
    vka: bytes | None = None,
    send: bool = False,
) -> int:
    """Check ``proof`` with the deployed verifier; return its gas (estimated, or used if ``send``).

    Raises ``ProofRejectedError`` when the verifier reverts (its only way to say no).
    """
    data = _calldata(artifacts, proof, vka)
    tx = {"to": Web3.to_checksum_address(verifier), "data": "0x" + data.hex()}
    try:
        out = bytes(chain.w3.eth.call(tx))  # type: ignore[arg-type]
    except (ContractCustomError, ContractLogicError) as exc:
        raise ProofRejectedError(
            "the verifier contract rejected the proof (it reverted)",
            hint="the proof bytes or its public instances (input/output) do not match",
        ) from exc
    if len(out) < 32 or int.from_bytes(out[:32], "big") != 1:
        raise ProofRejectedError(f"the verifier returned {out[:64].hex()!r}, not success")
    if artifacts.verifier.kind == "reusable":
        digest = "0x" + out[32:64].hex()
        if digest != artifacts.verifier.vka_digest:
            raise ProofRejectedError(f"the verifier checked VKA {digest}, not this model's")
    if send:
        return int(_send(chain, tx)["gasUsed"])
    return int(chain.w3.eth.estimate_gas({**tx, "from": chain.address}))  # type: ignore[typeddict-item]
