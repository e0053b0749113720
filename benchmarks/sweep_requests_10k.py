"""Key Vault requests one sweep makes over 10,000 certificates (the renewal-service issue's figure).

One vault of 10,000 certificates with the mix of ``sweep_scale.py`` (5% due: by the default rule, by the
mirrored trigger tag, expired; plus some due by default whose policy says later), in the emulator as a
separate process with the service limits enforced and 20 ms per request. Requests are counted by the
emulator. Target: list pages (ceil(N / 25)) + at most one policy read per certificate due by the default
rule; both are printed. Jobs go to an in-memory queue (only Key Vault requests are counted here).

Usage: ``python benchmarks/sweep_requests_10k.py [--count 10000]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Stopwatch, limited_emulator, local_issuers, renewal_service, verdict
from sweep_scale import MemoryJobQueue, seed_vault

NAME = "sweep_requests_10k"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()

    from renewal.azure.keyvault import PAGE_SIZE
    from renewal.flow.sweep import Sweep

    vault = "kv-estate"
    with tempfile.TemporaryDirectory(prefix="bench-10k-") as workdir, limited_emulator([vault]) as kv:
        groups = seed_vault(kv, vault, args.count)
        service = renewal_service(kv, local_issuers(Path(workdir)))
        jobs = MemoryJobQueue()
        kv.admin.reset_counters()
        watch = Stopwatch()
        report = Sweep(config=service.config, stores=service.stores, jobs=jobs, clock=service.clock).run()
        wall = watch.elapsed
        counters = {op: n for op, n in kv.admin.counters(vault).items() if n}

    pages = math.ceil(args.count / PAGE_SIZE)
    due_default = groups["due-default"] + groups["due-default-policy-later"]
    due = groups["due-default"] + groups["due-tag"] + groups["expired"]
    bound = pages + due_default
    requests = sum(counters.values())
    print(f"scanned {report.scanned}, due {len(report.due)} (expected {due}), enqueued {len(jobs.jobs)}, {wall:.2f}s")
    print(f"requests by operation: {counters}")
    print(f"list pages: {counters.get('list', 0)} (ceil({args.count}/{PAGE_SIZE}) = {pages}); policy reads: "
          f"{counters.get('get_policy', 0)} (due by the default rule: {due_default}; due in all: {due})")  # fmt: skip
    correct = report.scanned == args.count and len(report.due) == due and not report.errors
    if not correct:
        print(f"sweep result wrong: errors {report.errors}")
    verdict(NAME, f"{requests} requests for {args.count} certificates", requests if correct else float("inf"),
                 bound, f"<= {pages} list pages + {due_default} policy reads = {bound}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
