"""Disaster recovery figures: the recovery point (a version's merge to its backup in the archive) and the time
to restore a 1,000-certificate vault into an empty one.

The emulator runs in its own process with Key Vault's limits and 20 ms per request; the archive is an Azurite
container. Recovery point: 40 due certificates are renewed by the real ``renewal_worker`` while the real
``deploy_notifier`` drains the deployments queue at the same time (two pumps, as the host runs both
triggers); for each new version, backed-up time minus the version's creation time, on the emulator's clock.
Restore: 1,000 certificates are backed up (``back_up_estate``), then restored into an empty vault of the same
geography by 16 threads; the floor it is compared with is the I/O a restore cannot avoid, measured in the same
run by the same pool: 1,000 archive blob reads each followed by a certificate read (one Key Vault request, as
a restore is).

Key Vault's bound for 1,000 restores: 2.5 s if a restore counts among "all other transactions" (4,000 per
10 s per vault); Microsoft's limits page does not name restores, and if they count as creates (20 per 10 s)
the bound is 500 s. Both are printed; the target is the per-request floor measured here.

Usage: ``python benchmarks/recovery.py [--certificates 1000] [--renewals 40]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DAY, Stopwatch, limited_emulator, local_issuers, policy_wire, renewal_service, verdict

NAME = "recovery"
THREADS = 16


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certificates", type=int, default=1000)
    parser.add_argument("--renewals", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import function_app
    from devtools.azurite import running_azurite
    from devtools.pump import QueuePump
    from renewal import settings
    from renewal.azure.storage import StorageEndpoints
    from renewal.operations.recovery import latest_entries, restore

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-recovery-")))
        kv = stack.enter_context(limited_emulator(["kv-src", "kv-dst"]))
        azurite = stack.enter_context(running_azurite(workdir / "azurite"))
        storage = StorageEndpoints.from_settings(azurite.env())
        storage.ensure_resources()
        env = {**azurite.env(), settings.BACKUP_STORAGE.name: azurite.env()["AzureWebJobsStorage"]}
        service = renewal_service(kv, local_issuers(workdir), storage_env=env, storage=storage)
        function_app._service = service
        now = int(kv.admin.now())

        # -- recovery point: renewals and their notices running side by side --------------------------------
        kv.admin.seed(
            "kv-src",
            count=args.renewals,
            prefix="due",
            not_before=now - 80 * DAY,
            expires=now + 10 * DAY,
            policy=policy_wire("due.example.test", trigger={"days_before_expiry": 30}),
        )
        service.sweep()
        notices = QueuePump(storage, settings.DEPLOYMENTS_QUEUE, function_app.deploy_notifier, concurrency=4)
        jobs = QueuePump(storage, settings.JOBS_QUEUE, function_app.renewal_worker, concurrency=4)
        done = threading.Event()

        def drain_notices() -> None:
            while not done.is_set():
                notices.run_until_idle(timeout=600)
                done.wait(0.2)
            notices.run_until_idle(timeout=600)

        drainer = threading.Thread(target=drain_notices)
        drainer.start()
        jobs.run_until_idle(timeout=600, wait_for_delayed=True)
        done.set()
        drainer.join()
        store = service.stores["kv-src"]
        lags = []
        for entry in latest_entries(service.backups, "kv-src").values():
            current = store.get_current(entry.name)
            if current is not None and current.version == entry.version and current.created_on:
                lags.append((entry.backed_up_at - current.created_on).total_seconds())
        lags.sort()
        p95 = lags[max(0, int(len(lags) * 0.95) - 1)] if lags else float("inf")
        print(f"recovery point over {len(lags)}/{args.renewals} renewals: median {statistics.median(lags):.2f}s, "
              f"p95 {p95:.2f}s, max {max(lags):.2f}s (merge to backup written)")  # fmt: skip
        verdict(f"{NAME}_point", f"p95 {p95:.2f}s from merge to backup, {len(lags)}/{args.renewals} backed up",
                p95 if len(lags) == args.renewals else float("inf"), 10.0,
                "<= 10 s with the deployments trigger running, every renewal backed up")  # fmt: skip

        # -- restore of a whole vault -------------------------------------------------------------------
        kv.admin.seed(
            "kv-src",
            count=args.certificates - args.renewals,
            prefix="app",
            not_before=now - 10 * DAY,
            expires=now + 300 * DAY,
            policy=policy_wire("app.example.test"),
        )
        watch = Stopwatch()
        report = service.back_up_estate()
        backup_seconds = watch.elapsed
        entries = list(latest_entries(service.backups, "kv-src").values())
        print(f"backup of the vault: {len(report.backed_up)} written, {report.already} already there, "
              f"{len(report.errors)} errors in {backup_seconds:.1f}s")  # fmt: skip

        with ThreadPoolExecutor(THREADS) as pool:
            # The floor: the I/O a restore cannot avoid (one archive read, one Key Vault request), done by the
            # same pool with a certificate read standing in for the restore request.
            watch = Stopwatch()
            list(pool.map(lambda e: (service.backups.read(e), store.get_current(e.name)), entries))
            floor = watch.elapsed
            target = service.recovery_target("kv-dst")
            kv.admin.reset_counters()
            watch = Stopwatch()
            results = list(pool.map(lambda e: restore(service.backups, target, e), entries))
            restore_seconds = watch.elapsed
        counters = kv.admin.counters("kv-dst")
        matched = sum(1 for r in results if r.matches)
        print(f"restore: {len(results)} certificates into an empty vault by {THREADS} threads in "
              f"{restore_seconds:.1f}s ({len(results) / restore_seconds:.0f}/s), {matched} thumbprints match; "
              f"Key Vault requests {sum(counters.values())}")  # fmt: skip
        print(f"floor: {len(entries)} archive reads + certificate reads by the same pool in {floor:.1f}s; "
              f"Key Vault's bound for "
              f"{len(entries)} restores: {len(entries) / 400:.1f}s (as other transactions) or "
              f"{len(entries) / 2:.0f}s (if restores count as creates)")  # fmt: skip
        ok = matched == len(entries) == args.certificates
        verdict(NAME, f"{restore_seconds:.1f}s to restore {matched}/{args.certificates} certificates "
                f"({restore_seconds / floor:.2f} x the I/O floor {floor:.1f}s)",
                restore_seconds if ok else float("inf"), 1.5 * floor,
                f"<= 1.5 x {floor:.1f}s, every thumbprint matching")  # fmt: skip
        function_app._service = None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
