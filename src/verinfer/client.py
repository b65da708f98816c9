"""Ask the network for an inference from Python: quantize, encode, pay, wait, decode.

    client = InferenceClient.connect()                  # devnet / $VERINFER_RPC_URL
    result = client.request(1, image, mode="consensus", wait=True)
    result.outputs[0]                                    # floats, as the runtime computes them

Inputs are quantized exactly as the runtime does, with the model's registered program (its
``program_hash`` must equal the registry's, or the request is refused before paying).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.inference import (
    CoordinatorClient,
    InferenceMode,
    RequestInfo,
    RequestStatus,
)
from verinfer.chain.token import Token
from verinfer.errors import ChainError, ConfigError, ModelError
from verinfer.models.programs import ProgramCache, quantize_inputs
from verinfer.models.registry import ModelRecord, RegistryClient
from verinfer.runtime import Program
from verinfer.store import open_store
from verinfer.store.local import Store

__all__ = ["InferenceClient", "RequestResult", "RequestTimeoutError"]

DEFAULT_DEADLINE_S = 600
DEFAULT_TIMEOUT_S = 120.0


class RequestTimeoutError(ChainError):
    """``wait`` gave up before the request was fulfilled or refunded."""


@dataclass
class RequestResult:
    """A request and, once settled, its outcome."""

    request_id: int
    model_id: int
    mode: str
    status: str
    fee: int = 0
    tx: str | None = None
    block: int | None = None
    assigned: list[str] = field(default_factory=list)
    deadline: int = 0
    output: bytes | None = None
    output_hash: str | None = None
    outputs: list[NDArray[np.float64]] | None = None
    outputs_q: list[NDArray[np.int32]] | None = None
    refunded: int | None = None
    # Delivered the empty output: the nodes could not run the input (protocol-requests.md).
    invalid_input: bool = False
    # Optimistic with early delivery: the requester contract also gets the claimed output at
    # the claim (provisional) and a correction if the claim loses.
    early: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "request_id": self.request_id, "model_id": self.model_id, "mode": self.mode,
            "status": self.status, "fee": self.fee, "tx": self.tx, "block": self.block,
            "assigned": self.assigned, "deadline": self.deadline,
            "output": "0x" + self.output.hex() if self.output is not None else None,
            "output_hash": self.output_hash, "refunded": self.refunded,
            "invalid_input": self.invalid_input, "early": self.early,
        }  # fmt: skip
        if self.outputs is not None:
            data["outputs"] = [o.tolist() for o in self.outputs]
        return data


class InferenceClient:
    """Requests inferences at the coordinator and reads their results."""

    def __init__(
        self,
        chain: Chain,
        *,
        coordinator: str,
        registry: str,
        token: str,
        store: Store | None = None,
    ) -> None:
        self.chain = chain
        self.coordinator = CoordinatorClient(chain, coordinator)
        self.registry = RegistryClient(chain, registry)
        self.token = Token(chain, token)
        self.programs = ProgramCache(store or open_store())
        self._blocks: dict[int, int] = {}
        self._records: dict[int, ModelRecord] = {}

    @classmethod
    def from_chain(cls, chain: Chain, *, store: Store | None = None) -> InferenceClient:
        """Addresses from the address book of ``chain``."""
        return cls(
            chain,
            coordinator=deployed_address(chain, "InferenceCoordinator"),
            registry=deployed_address(chain, "ModelRegistry"),
            token=deployed_address(chain, "PaymentToken"),
            store=store,
        )

    @classmethod
    def connect(
        cls, rpc_url: str | None = None, keystore: Path | None = None, *, store: Store | None = None
    ) -> InferenceClient:
        return cls.from_chain(connect(rpc_url, keystore), store=store)

    def program(self, model_id: int) -> Program:
        """The model's verified program (a model's content fields never change: cached)."""
        record = self._records.get(model_id)
        if record is None:
            record = self._records[model_id] = self.registry.get(model_id)
        return self.programs.get(record)

    def encode_inputs(
        self,
        model_id: int,
        inputs: NDArray[Any] | dict[str, Any],
        mode: str | InferenceMode = InferenceMode.NONE,
    ) -> bytes:
        """The request bytes for ``inputs``: quantized with the model's program, encoded.

        Mode zk: one inline tensor quantized at the model's circuit input scale (the registry's
        ``zkConfig``), which is what the circuit's public input instances are."""
        if InferenceMode.parse(mode) == InferenceMode.ZK:
            return self._encode_zk(model_id, inputs)
        return encode_tensors(quantize_inputs(self.program(model_id), inputs))

    def _encode_zk(self, model_id: int, inputs: NDArray[Any] | dict[str, Any]) -> bytes:
        verifier, scale, _ = self.registry.zk_config(model_id)
        if int(verifier, 16) == 0:
            raise ModelError(
                f"model {model_id} has no zk circuit", hint="request it in another mode"
            )
        program = self.program(model_id)
        if len(program.inputs) != 1:
            raise ModelError(f"mode zk takes models with one input; model {model_id} has more")
        tensor = program.inputs[0]
        values = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if (isinstance(inputs, dict) and len(inputs) != 1) or x.size != tensor.size:
            raise ModelError(
                f"mode zk takes one input of {tensor.size} values; got {x.size}",
                hint=f"pass an array shaped {list(tensor.shape)}",
            )
        if not np.all(np.isfinite(x)):
            raise ModelError("the input holds NaN or infinity")
        q = np.clip(np.round(np.ldexp(x, scale)), -(2**31), 2**31 - 1).astype(np.int64)
        return encode_tensors([(q, scale)])

    def request(
        self,
        model_id: int,
        inputs: NDArray[Any] | dict[str, Any],
        mode: str | InferenceMode = "none",
        *,
        redundancy: int | None = None,
        max_fee: int | None = None,
        deadline_s: int = DEFAULT_DEADLINE_S,
        callback_gas_limit: int = 0,
        wait: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        early: bool = False,
    ) -> RequestResult:
        """Pay for and send a request; with ``wait``, block until it settles.

        ``early`` (mode optimistic only) asks for early delivery: a requester contract also
        gets the claimed output at the claim (``onProvisionalInference``) and ``onCorrection``
        if a dispute overturns it; ``wait`` still returns the final result."""
        m = InferenceMode.parse(mode)
        m.byte(early=early)  # validates the flag before anything is paid
        k = redundancy if redundancy is not None else (3 if m == InferenceMode.CONSENSUS else 1)
        if m in (InferenceMode.NONE, InferenceMode.OPTIMISTIC, InferenceMode.ZK) and k != 1:
            raise ConfigError(
                f"mode {m.name.lower()} is answered by one node: redundancy must be 1"
            )
        data = self.encode_inputs(model_id, inputs, m)
        fee = self.coordinator.quote(model_id, m, k)
        if max_fee is None:
            max_fee = fee
        elif fee > max_fee:
            raise ConfigError(
                f"the request costs {self.token.format(fee)} but max fee is "
                f"{self.token.format(max_fee)}",
                hint="raise --max-fee",
            )
        now = int(self.chain.w3.eth.get_block("latest")["timestamp"])
        sent = self.coordinator.request(
            model_id, data, m, max_fee=max_fee, deadline=now + deadline_s,
            callback_gas_limit=callback_gas_limit, redundancy=k, token=self.token, early=early,
        )  # fmt: skip
        self._blocks[sent.request_id] = sent.block
        result = RequestResult(
            request_id=sent.request_id, model_id=model_id, mode=m.name.lower(),
            status=RequestStatus.PENDING.name.lower(), fee=sent.fee, tx=sent.tx,
            block=sent.block, assigned=sent.assigned, deadline=sent.deadline, early=early,
        )  # fmt: skip
        if wait:
            settled = self.wait(sent.request_id, timeout=timeout)
            settled.tx, settled.assigned, settled.fee = sent.tx, sent.assigned, sent.fee
            return settled
        return result

    def status(self, request_id: int) -> RequestResult:
        """The request as the chain has it now, with the decoded output once fulfilled."""
        info = self.coordinator.get_request(request_id)
        if info.status == RequestStatus.NONE:
            raise ChainError(f"request {request_id} does not exist", hint="check the request id")
        return self._result(info)

    def wait(
        self, request_id: int, *, timeout: float = DEFAULT_TIMEOUT_S, poll: float = 0.2
    ) -> RequestResult:
        """Poll until the request is fulfilled or refunded; decode the output to floats."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.coordinator.get_request(request_id)
            if info.status.settled:
                return self._result(info)
            if time.monotonic() > deadline:
                raise RequestTimeoutError(
                    f"request {request_id} is still {info.status.name.lower()} after {timeout}s",
                    hint=f"check later with `verinfer request status {request_id}`",
                )
            time.sleep(poll)

    def _result(self, info: RequestInfo) -> RequestResult:
        result = RequestResult(
            request_id=info.request_id, model_id=info.model_id,
            mode=InferenceMode(info.mode).name.lower()
            if info.mode in set(InferenceMode) else str(info.mode),
            status=info.status.name.lower(), fee=info.escrow, deadline=info.deadline,
            early=info.early,
        )  # fmt: skip
        if not info.status.settled:
            return result
        event = self.coordinator.settlement(
            info.request_id, from_block=self._blocks.get(info.request_id, 0)
        )
        if event is None:
            return result
        result.block = int(event["block"])
        if event["event"] == "Refunded":
            result.refunded = int(event["amount"])
            return result
        result.output = bytes(event["output"])
        result.output_hash = "0x" + bytes(event["outputHash"]).hex()
        if not result.output:  # the nodes' verdict: the input does not fit the model
            result.invalid_input = True
            return result
        result.outputs_q, result.outputs = self.decode_output(info.model_id, result.output)
        return result

    def decode_output(
        self, model_id: int, output: bytes
    ) -> tuple[list[NDArray[np.int32]], list[NDArray[np.float64]]]:
        """(integers, floats) per model output, shaped as the program's outputs."""
        program = self.program(model_id)
        tensors = decode_tensors(output)
        if len(tensors) != len(program.outputs):
            raise ModelError(
                f"the output holds {len(tensors)} tensors, the model has {len(program.outputs)}"
            )
        ints: list[NDArray[np.int32]] = []
        floats: list[NDArray[np.float64]] = []
        for tensor, (values, scale) in zip(program.outputs, tensors, strict=True):
            q = np.asarray(values, dtype=np.int32).reshape(tensor.shape)
            ints.append(q)
            floats.append(np.ldexp(q.astype(np.float64), -int(scale)))
        return ints, floats
