"""Renewal throughput at Key Vault's create limit: 200 due certificates over 2 vaults.

The emulator runs in its own process with the service limits enforced (20 certificate creates and 4,000
other requests per vault per 10 s, 429 without Retry-After) and 20 ms per request. The nightly sweep
enqueues the 200 jobs on Azurite's ``renewal-jobs`` queue; the real ``renewal_worker`` function drains it
through ``devtools.pump.QueuePump`` (the host's queue-trigger rules, 16 messages at once like the host's
default batchSize), signing with the local CA. 429s are absorbed by the service's own handling (no
test-side sleep injection); they are counted from the emulator's counters (create requests beyond the
200 that succeeded).

Lower bound: 100 creates per vault at 20 per 10 s = 2 per second -> 50 s. Target: all 200 renewed with zero
failed deliveries, wall time (pump start to queue idle) <= 1.2 x 50 s.

Usage: ``python benchmarks/renewal_throughput.py [--per-vault 100] [--concurrency 16]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DAY, Stopwatch, limited_emulator, local_issuers, policy_wire, renewal_service, verdict

NAME = "renewal_throughput"
CREATES_PER_SECOND = 20 / 10


def dates(store) -> dict:
    """Each certificate's current expiry and creation time (list items carry no version)."""
    return {c.name: (c.expires_on, c.created_on) for c in store.list_certificates()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-vault", type=int, default=100)
    parser.add_argument("--vaults", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import function_app
    from devtools.azurite import running_azurite
    from devtools.pump import QueuePump
    from renewal import settings
    from renewal.azure.storage import StorageEndpoints

    vaults = [f"kv-rate-{i}" for i in range(args.vaults)]
    total = args.per_vault * len(vaults)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-renew-")))
        kv = stack.enter_context(limited_emulator(vaults))
        azurite = stack.enter_context(running_azurite(workdir / "azurite"))
        storage = StorageEndpoints.from_settings(azurite.env())
        storage.ensure_resources()
        now = int(kv.admin.now())
        for vault in vaults:
            kv.admin.seed(
                vault,
                count=args.per_vault,
                prefix="app",
                not_before=now - 80 * DAY,
                expires=now + 10 * DAY,
                policy=policy_wire("app.example.test", trigger={"days_before_expiry": 30}),
            )
        service = renewal_service(kv, local_issuers(workdir), storage_env=azurite.env(), storage=storage)
        function_app._service = service
        before = {v: dates(service.stores[v]) for v in vaults}
        report = service.sweep()
        print(f"sweep enqueued {len(report.due)} jobs")
        pump = QueuePump(storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=args.concurrency)
        kv.admin.reset_counters()
        watch = Stopwatch()
        stats = pump.run_until_idle(timeout=600, wait_for_delayed=True)
        wall = watch.elapsed
        counters = {v: kv.admin.counters(v) for v in vaults}
        after = {v: dates(service.stores[v]) for v in vaults}

    renewed = sum(1 for v in vaults for name, dates in after[v].items() if dates != before[v].get(name))
    creates = sum(c["create"] for c in counters.values())
    throttled = creates - renewed
    bound = args.per_vault / CREATES_PER_SECOND
    print(f"runner: devtools.pump.QueuePump(concurrency={args.concurrency}) -> renewal_worker over Azurite")
    print(f"renewed {renewed}/{total}; pump: processed {stats.processed}, failed deliveries {stats.failed}, "
          f"poisoned {stats.poisoned}")  # fmt: skip
    print(f"create requests {creates} (429 absorbed: {throttled}); merges {sum(c['merge'] for c in counters.values())}")
    print(f"lower bound: {args.per_vault} creates per vault / {CREATES_PER_SECOND:g} per s = {bound:.0f}s; "
          f"wall {wall:.1f}s = {wall / bound:.2f} x")  # fmt: skip
    ok = renewed == total and stats.failed == 0 and stats.poisoned == 0
    value = wall if ok else float("inf")
    verdict(NAME, f"{wall:.1f}s for {renewed}/{total} renewed, {stats.failed} failed ({wall / bound:.2f} x bound)",
            value, 1.2 * bound, f"<= 1.2 x {bound:.0f}s = {1.2 * bound:.0f}s, zero failures")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
