"""Scale-out at Key Vault's create limit: several worker PROCESSES (each its own queue pump, clients and
create pacer, as separate Function instances would be) drain one ``renewal-jobs`` queue for two vaults.

The emulator runs in its own process with the service limits enforced (20 creates per vault per 10 s, 429
without Retry-After). The nightly sweep enqueues the due jobs (one window's budget at once per vault, the
rest spread at Key Vault's pace). Every worker runs the real ``renewal_worker`` through
``devtools.pump.QueuePump``; the vault's create budget is shared through Azurite's table service
(``renewal/azure/create_budget.py``). A throttled job goes back to the queue without spending its dequeue
count. ``--kill-one`` kills one worker a few seconds in: its messages come back after their visibility
timeout and the others finish them.

Lower bound: per-vault certificates / 2 creates per second. Targets: every certificate renewed, 0 poisoned,
0 failed deliveries, wall <= 1.2 x bound (400 over 2 vaults: 100 s bound). ``--mass-event`` is the case of
a CA revoking many certificates or a policy making thousands due at once: 2,000 over 2 vaults (500 s bound),
wall <= 1.3 x bound.

Usage: ``python benchmarks/scale_out.py [--per-vault 200] [--workers 8] [--concurrency 4] [--kill-one]
[--mass-event]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DAY, Stopwatch, limited_emulator, local_issuers, policy_wire, renewal_service, verdict

NAME = "scale_out"
CREATES_PER_SECOND = 20 / 10


def worker(concurrency: int, timeout: float) -> int:
    """One 'instance': a service built from the environment, as the Functions host builds it."""
    logging.basicConfig(level=logging.ERROR)
    import function_app
    from devtools.pump import QueuePump
    from renewal import settings

    service = function_app.service()
    pump = QueuePump(service.storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=concurrency)
    stats = pump.run_until_idle(timeout=timeout, wait_for_delayed=True)
    transactions = sum(getattr(s._create_pacer, "transactions", 0) for s in service.stores.values())
    print(json.dumps({"processed": stats.processed, "failed": stats.failed, "poisoned": stats.poisoned,
                      "budget_transactions": transactions}), flush=True)  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-vault", type=int, default=200)
    parser.add_argument("--vaults", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kill-one", action="store_true")
    parser.add_argument("--mass-event", action="store_true", help="1,000 per vault, target 1.3 x bound")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.worker:
        return worker(args.concurrency, args.timeout)
    if args.mass_event:
        args.per_vault = 1000
    name, factor = (f"{NAME}_mass_event", 1.3) if args.mass_event else (NAME, 1.2)
    logging.basicConfig(level=logging.ERROR)

    from devtools.azurite import running_azurite
    from renewal import settings
    from renewal.azure.storage import StorageEndpoints

    vaults = [f"kv-scale-{i}" for i in range(args.vaults)]
    total = args.per_vault * len(vaults)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
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
        issuers = local_issuers(workdir)
        service = renewal_service(kv, issuers, storage_env=azurite.env(), storage=storage)
        before = {v: {c.name: c.expires_on for c in service.stores[v].list_certificates()} for v in vaults}
        report = service.sweep()
        print(f"sweep enqueued {len(report.due)} jobs (one window's budget per vault at once, the rest spread)")
        document = {
            "vaults": [{"name": n, "url": u} for n, u in kv.vault_urls.items()],
            "issuers": issuers,
            "default_issuer": "corp-local",
            # A killed worker's claims lapse after 30 s; jobs that meet them come back every 5-10 s.
            "defaults": {"claim_ttl_seconds": 30, "requeue_delay_seconds": 5},
        }
        env = {
            **os.environ,
            **azurite.env(),
            settings.CONFIG.name: json.dumps(document),
            settings.KEYVAULT_CREDENTIAL.name: "emulator",
            settings.KEYVAULT_CA_BUNDLE.name: kv.ca_bundle,
            settings.METRICS_EXPORTER.name: "none",
        }
        kv.admin.reset_counters()
        watch = Stopwatch()
        command = [sys.executable, __file__, "--worker", "--concurrency", str(args.concurrency)]
        procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
            for _ in range(args.workers)
        ]
        killed = 0
        if args.kill_one:
            time.sleep(8)
            procs[0].send_signal(signal.SIGKILL)
            killed = 1
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=args.timeout + 60)
            line = next((x for x in reversed(out.splitlines()) if x.startswith("{")), None)
            if line:
                results.append(json.loads(line))
        wall = watch.elapsed
        counters = {v: kv.admin.counters(v) for v in vaults}
        after = {v: {c.name: c.expires_on for c in service.stores[v].list_certificates()} for v in vaults}
        poison = storage.queue_client(settings.poison_queue(settings.JOBS_QUEUE)).get_queue_properties()
        poisoned = int(poison.approximate_message_count or 0)

    renewed = sum(1 for v in vaults for name, exp in after[v].items() if exp != before[v].get(name))
    creates = sum(c.get("create", 0) for c in counters.values())
    failed = sum(r["failed"] for r in results)
    budget = sum(r["budget_transactions"] for r in results)
    bound = args.per_vault / CREATES_PER_SECOND
    print(f"workers: {args.workers} processes x QueuePump(concurrency={args.concurrency}) -> renewal_worker"
          f"{f', {killed} killed 8 s in' if killed else ''}")  # fmt: skip
    print(f"renewed {renewed}/{total}; failed deliveries {failed}; poisoned {poisoned}; "
          f"create requests {creates} (429s: {creates - renewed})")  # fmt: skip
    print(f"create budget: {budget} table transactions = {budget / max(renewed, 1):.2f} per renewal")
    print(f"lower bound: {args.per_vault} creates per vault / {CREATES_PER_SECOND:g} per s = {bound:.0f}s; "
          f"wall {wall:.1f}s = {wall / bound:.2f} x")  # fmt: skip
    ok = renewed == total and poisoned == 0 and failed == 0
    if args.kill_one:
        # The killed worker's messages wait out their visibility timeout: what counts is that none is lost.
        verdict(f"{NAME}_kill_one", f"{renewed}/{total} renewed with one of {args.workers} workers killed, "
                f"{poisoned} poisoned, {failed} failed (wall {wall:.0f}s)", 0 if ok else 1, 0,
                "every certificate renewed, 0 poisoned")  # fmt: skip
        return 0
    value = wall if ok else float("inf")
    verdict(name, f"{wall:.1f}s for {renewed}/{total} renewed by {args.workers} processes, {poisoned} poisoned, "
            f"{failed} failed, {creates - renewed} 429s ({wall / bound:.2f} x bound)",
            value, factor * bound,
            f"<= {factor} x {bound:.0f}s = {factor * bound:.0f}s, 0 poisoned, 0 failed")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
