"""Follow the coordinator's events, trailing the head, in bounded block ranges.

One ``eth_getLogs`` per range asks for InferenceRequested, InferenceFulfilled and Refunded at
once (topic0 OR-list). A range is recorded in one SQLite transaction together with the cursor
(the last block fully handled), so a crash replays at most one range, and replaying is
harmless because jobs are keyed by request id. A log that does not decode is logged and
recorded as a failed job; the watcher never stops on one.

Requests assigned to this node become jobs. So do, with ``take_over_orphans``, mode-none
requests for a model this node serves in mode none but assigned to another node: they are
recorded on ``standby`` (the service takes one over only if its assignee lets the assignment
window pass) and forgotten when the request settles.

Confirmations: an event in block ``b`` is handled once ``head >= b + confirmations - 1``
(1 = as soon as it is mined; the devnet default, where automine makes no further blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract

from verinfer.chain.inference import InferenceMode
from verinfer.node.config import NodeConfig
from verinfer.node.jobs import Close, JobLog, JobState, NewJob

__all__ = ["PollResult", "Watcher"]

log = structlog.get_logger(__name__)

_WATCHED = ("InferenceRequested", "InferenceFulfilled", "Refunded", "ConsensusClosed")
_OPEN = (JobState.SEEN, JobState.COMPUTED)
_OPEN_OR_COMMITTED = (JobState.SEEN, JobState.COMPUTED, JobState.COMMITTED)


def _closed_after_reveal(request_id: str) -> Close:
    """The ballot closed after this node revealed: its job is done (and paid if it agreed)."""
    return Close(request_id, JobState.CONFIRMED, "revealed", (JobState.REVEALED,))


@dataclass(frozen=True)
class PollResult:
    from_block: int
    to_block: int
    new_jobs: int
    closed: int
    malformed: int


def _topic(contract: Contract, name: str) -> HexBytes:
    event = getattr(contract.events, name)
    abi = event().abi
    types = ",".join(_type(i) for i in abi["inputs"])
    return HexBytes(Web3.keccak(text=f"{name}({types})"))


def _type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return f"({','.join(_type(c) for c in param['components'])}){param['type'][5:]}"
    return str(param["type"])


class Watcher:
    """Turns coordinator events into jobs for the node ``node_address``."""

    def __init__(
        self,
        w3: Web3,
        coordinator: Contract,
        jobs: JobLog,
        config: NodeConfig,
        node_address: str,
        *,
        start_block: int = 0,
    ) -> None:
        self.w3 = w3
        self.coordinator = coordinator
        self.jobs = jobs
        self.config = config
        self.node = to_checksum_address(node_address)
        self.start_block = start_block
        self.topics = {_topic(coordinator, n): n for n in _WATCHED}

    def safe_head(self, head: int) -> int:
        return head - (self.config.confirmations - 1)

    def poll(self, head: int, *, max_ranges: int = 10) -> list[PollResult]:
        """Handle every range from the cursor up to the safe head (at most ``max_ranges``)."""
        results: list[PollResult] = []
        target = self.safe_head(head)
        for _ in range(max_ranges):
            cursor = self.jobs.cursor()
            start = self.start_block if cursor is None else cursor + 1
            if start > target:
                break
            end = min(target, start + self.config.max_block_range - 1)
            results.append(self.handle_range(start, end))
        return results

    def handle_range(self, start: int, end: int) -> PollResult:
        logs = self.w3.eth.get_logs(
            {
                "address": self.coordinator.address,
                "fromBlock": start,
                "toBlock": end,
                "topics": [list(self.topics)],
            }
        )
        new_jobs, closes, malformed = self.interpret(logs)
        inserted = self.jobs.record_range(new_jobs, closes, end)
        for request_id in inserted:
            job = self.jobs.get(request_id)
            if job is not None and job.state == JobState.FAILED:
                log.warning("job.malformed", request_id=request_id, error=job.error)
            elif job is not None and job.state == JobState.STANDBY:
                log.debug("job.standby", request_id=request_id, block=job.block)
            else:
                log.info("job.seen", request_id=request_id, block=job.block if job else None)
        return PollResult(start, end, len(inserted), len(closes), malformed)

    def interpret(self, logs: Sequence[Any]) -> tuple[list[NewJob], list[Close], int]:
        """Jobs to add and requests to close from raw logs; never raises on a bad log."""
        new_jobs: list[NewJob] = []
        closes: list[Close] = []
        malformed = 0
        for raw in logs:
            topics = raw.get("topics") or []
            name = self.topics.get(HexBytes(topics[0])) if topics else None
            if name is None:
                continue
            try:
                event = getattr(self.coordinator.events, name)().process_log(raw)
                args = event["args"]
                request_id = str(int(args["requestId"]))
            except Exception as exc:  # noqa: BLE001 - any decoding failure is data, not a crash
                malformed += 1
                job = self._malformed(raw, name, exc)
                if job is not None:
                    new_jobs.append(job)
                continue
            # A delivered consensus output still takes (and pays) the remaining reveals, so
            # InferenceFulfilled closes only jobs that never committed; ConsensusClosed and
            # Refunded end the ballot, so they close committed jobs too.
            if name == "InferenceFulfilled":
                closes.append(Close(request_id, JobState.CONFIRMED, "fulfilled_by_other", _OPEN))
            elif name == "Refunded":
                closes.append(Close(request_id, JobState.EXPIRED, "refunded", _OPEN_OR_COMMITTED))
                closes.append(_closed_after_reveal(request_id))
            elif name == "ConsensusClosed":
                closes.append(
                    Close(request_id, JobState.CONFIRMED, "closed_without_us", _OPEN_OR_COMMITTED)
                )
                closes.append(_closed_after_reveal(request_id))
            else:
                job = self._requested(request_id, args, int(raw["blockNumber"]))
                if job is not None:
                    new_jobs.append(job)
        return new_jobs, closes, malformed

    def _requested(self, request_id: str, args: Any, block: int) -> NewJob | None:
        assigned = {to_checksum_address(a) for a in args["assigned"]}
        model_id, mode = int(args["modelId"]), int(args["mode"])
        served = self.config.served(model_id)
        if self.node not in assigned:
            standby = (
                self.config.take_over_orphans
                and mode == InferenceMode.NONE
                and served is not None
                and bool(served.mode_mask & InferenceMode.NONE)
            )
            if not standby:
                return None
            return NewJob(
                request_id=request_id, model_id=model_id, mode=mode, block=block,
                deadline=int(args["deadline"]), input=bytes(args["input"]),
                fee=int(args["fee"]), standby=True,
            )  # fmt: skip
        error = None
        if served is None:
            error = f"assigned model {model_id}, which this node's config does not serve"
        elif not served.mode_mask & mode:
            error = f"assigned mode {mode} for model {model_id}, not in this node's config"
        return NewJob(
            request_id=request_id,
            model_id=model_id,
            mode=mode,
            block=block,
            deadline=int(args["deadline"]),
            input=bytes(args["input"]),
            fee=int(args["fee"]),
            error=error,
        )

    def _malformed(self, raw: Any, name: str, exc: Exception) -> NewJob | None:
        topics = raw.get("topics") or []
        block = int(raw.get("blockNumber") or 0)
        where = f"block {block} log {raw.get('logIndex')}"
        if len(topics) > 1:
            request_id = str(int.from_bytes(HexBytes(topics[1]), "big"))
        else:
            tx = HexBytes(raw.get("transactionHash") or b"").hex()
            request_id = f"malformed:{tx}:{raw.get('logIndex')}"
        log.warning("event.malformed", name=name, where=where, error=str(exc)[:200])
        if name != "InferenceRequested":
            return None
        return NewJob(
            request_id=request_id,
            model_id=0,
            mode=0,
            block=block,
            deadline=0,
            input=b"",
            error=f"malformed {name} event at {where}: {type(exc).__name__}",
        )
