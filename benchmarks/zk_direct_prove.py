"""The baseline that bench_zk.py times verinfer against: ezkl.gen_witness + ezkl.prove, alone.

    python benchmarks/zk_direct_prove.py '{"data": ..., "compiled": ..., "pk": ..., "srs": ...,
                                           "witness": ..., "proof": ..., "result": ...}'

It imports nothing but ezkl and the standard library, makes the same two calls with the same
keywords as verinfer's prove worker, writes its timings and peak RSS to ``result`` and leaves
with ``os._exit`` (as the worker does). No time or memory limit, no solc shim, no calldata.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main() -> None:
    job = json.loads(sys.argv[1])
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    import ezkl

    timings["import_ezkl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ezkl.gen_witness(
        data=job["data"], model=job["compiled"], output=job["witness"], vk_path=None, srs_path=None
    )
    timings["gen_witness"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ezkl.prove(
        witness=job["witness"],
        model=job["compiled"],
        pk_path=job["pk"],
        proof_path=job["proof"],
        srs_path=job["srs"],
    )
    timings["prove"] = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(job["result"], "w") as f:
        json.dump({"timings": timings, "max_rss_bytes": rss}, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
