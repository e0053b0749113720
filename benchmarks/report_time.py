"""Time of the estate report (inventory + compliance) over 4 vaults x 5,000 certificates, first and second run.

The emulator runs in a subprocess with service throttling off, Azurite holds the ledger and the version facts;
the report is built exactly as ``python -m renewal report`` builds it (list every vault, one ``get_current`` per
certificate whose version is not kept yet, one ledger scan, every compliance rule).

First run: every version is new, so every certificate is read (and kept): no slower than the report was before
versions were kept, measured in the same run: the revision the issue measured (``FILED_AT``), from a ``git
archive`` of it, against the same emulator and Azurite. What keeping costs is printed too: the first run against
today's report with the version facts off (every certificate read, nothing kept).
Second run, nothing changed: Key Vault requests must be the list pages alone, the
findings identical, and the wall time <= 1.5 x the listing of the same estate measured in the same run (every
vault listed at once, as the sweep does).

Usage: ``python benchmarks/report_time.py [--vaults 4] [--per-vault 5000] [--workers 32]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import local_issuers, seed_in_bulk, verdict

FILED_AT = "4a54176"
"""The last revision before the version facts: the report the issue measured (52.5 s then). The first run with
facts is compared with it, run from a ``git archive`` of that revision against the same emulator and Azurite."""


def report_at_revision(revision: str, *, workers: int, environ: dict[str, str]) -> dict[str, Any]:
    """``build_report`` of another revision of this repository, timed in its own process (the figure excludes
    the interpreter's start and imports, as the runs here do)."""
    root = Path(__file__).resolve().parent.parent
    probe = (
        "import json, time\n"
        "from renewal.operations.report import build_report\n"
        "from renewal.service import RenewalService\n"
        "service = RenewalService.from_environment()\n"
        "started = time.monotonic()\n"
        f"report = build_report(service, max_workers={workers})\n"
        "print(json.dumps({'seconds': time.monotonic() - started, 'certificates': len(report.inventory.entries),"
        " 'errors': len(report.inventory.errors), 'findings': len(report.findings)}))\n"
    )
    with tempfile.TemporaryDirectory(prefix="report-at-") as tree:
        archive = subprocess.run(["git", "-C", str(root), "archive", revision], capture_output=True, check=False)
        if archive.returncode != 0:
            return {"error": f"git archive {revision}: {archive.stderr.decode(errors='replace').strip()}"}
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWAL_")} | environ
        run = subprocess.run(
            [sys.executable, "-c", probe], cwd=tree, env=env, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
        return json.loads(run.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Outcome:
    """What the verdicts need of one report (the report itself is dropped: see ``main``)."""

    entries: int
    errors: int
    findings: list[dict[str, Any]]

    @classmethod
    def of(cls, report: Any) -> Outcome:
        return cls(len(report.inventory.entries), len(report.inventory.errors), [f.to_dict() for f in report.findings])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vaults", type=int, default=4)
    parser.add_argument("--per-vault", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added per Key Vault request, as harness.py")
    args = parser.parse_args()

    from devtools.azurite import running_azurite
    from emulator.testing import running_emulator
    from renewal.azure.storage import StorageEndpoints
    from renewal.config import parse_config
    from renewal.operations.report import build_report
    from renewal.service import RenewalService

    vaults = [f"kv-bench-{i}" for i in range(args.vaults)]
    with (
        tempfile.TemporaryDirectory(prefix="report-bench-") as scratch,
        running_emulator(vaults, subprocess_mode=True, throttling=False) as kv,
        running_azurite() as azurite,
    ):
        kv.admin.set_knobs(throttling=False, latency_ms=args.latency_ms)
        now = int(kv.admin.now())
        seeded_at = time.monotonic()
        for vault in vaults:
            seed_in_bulk(
                kv,
                vault,
                args.per_vault,
                not_before=now - 30 * 86400,
                expires=now + 60 * 86400,
                policy={
                    "issuer": {"name": "Unknown"},
                    "key_props": {"kty": "RSA", "key_size": 2048, "exportable": False},
                    "x509_props": {"subject": "CN=bench.example.test", "validity_months": 3},
                    "lifetime_actions": [
                        {"trigger": {"days_before_expiry": 30}, "action": {"action_type": "EmailContacts"}}
                    ],
                },
            )
        print(f"seeded {args.vaults * args.per_vault} certificates in {time.monotonic() - seeded_at:.1f}s")
        document = {
            "vaults": [{"name": name, "url": url} for name, url in kv.vault_urls.items()],
            "issuers": local_issuers(Path(scratch)),
            "default_issuer": "corp-local",
        }
        config = parse_config(document)
        storage = StorageEndpoints.from_settings(azurite.env())
        storage.ensure_resources()
        service = RenewalService(
            config,
            environ={"RENEWAL_KEYVAULT_CREDENTIAL": "emulator", "RENEWAL_KEYVAULT_CA_BUNDLE": kv.ca_bundle},
            storage=storage,
            clock=lambda: dt.datetime.fromtimestamp(kv.admin.now(), dt.UTC),
        )
        # The emulator builds a seeded certificate's DER lazily, on its first listing; do that before the
        # clock starts, so the figure is the report's time and not the emulator's one-off seeding cost.
        warm_at = time.monotonic()
        for vault in vaults:
            sum(1 for _ in kv.certificate_client(vault).list_properties_of_certificates(max_page_size=25))
        print(f"emulator warmed (certificates built) in {time.monotonic() - warm_at:.1f}s")

        # The listing alone, every vault at once as the sweep lists them: the floor a report cannot beat.
        def list_all() -> int:
            with ThreadPoolExecutor(len(vaults)) as pool:
                return sum(pool.map(lambda v: sum(1 for _ in service.stores[v].list_certificates()), vaults))

        started = time.monotonic()
        listed = list_all()
        listing = time.monotonic() - started
        print(f"listing alone: {listed} certificates in {listing:.1f}s")

        # The report as it was before versions were kept: every certificate read, nothing kept.
        baseline_service = RenewalService(
            config,
            environ={"RENEWAL_KEYVAULT_CREDENTIAL": "emulator", "RENEWAL_KEYVAULT_CA_BUNDLE": kv.ca_bundle},
            storage=storage,
            clock=lambda: dt.datetime.fromtimestamp(kv.admin.now(), dt.UTC),
        )
        baseline_service.__dict__["version_facts"] = None
        started = time.monotonic()
        baseline = build_report(baseline_service, max_workers=args.workers)
        baseline_s = time.monotonic() - started
        print(f"baseline report (version facts off): {baseline_s:.1f}s, {baseline.inventory.certificate_reads} reads")
        before = report_at_revision(
            FILED_AT,
            workers=args.workers,
            environ={
                **azurite.env(),
                "RENEWAL_CONFIG": json.dumps(document),
                "RENEWAL_KEYVAULT_CREDENTIAL": "emulator",
                "RENEWAL_KEYVAULT_CA_BUNDLE": kv.ca_bundle,
            },
        )
        print(f"the report at {FILED_AT} (before versions were kept): {before}")
        # Each run's report is dropped before the next starts: 20,000 entries left alive make every later
        # collection of the garbage collector slower, which would be charged to the run measured next.
        del baseline, baseline_service
        gc.collect()

        runs = []
        for label in ("first", "second"):
            kv.admin.reset_counters()
            started = time.monotonic()
            report = build_report(service, max_workers=args.workers)
            elapsed = time.monotonic() - started
            counters = kv.admin.counters()
            runs.append((label, Outcome.of(report), elapsed, counters))
            print(
                f"{label} report: {elapsed:.1f}s, certificates {len(report.inventory.entries)}, get_certificate "
                f"{counters.get('get_certificate', 0)}, list pages {counters.get('list', 0)}, kept versions reused "
                f"{report.inventory.kept_reused}, findings {len(report.findings)}, inventory errors "
                f"{len(report.inventory.errors)}"
            )
            del report
            gc.collect()
        # The dashboard over the same estate (versions kept by the reports), through the Functions HTTP adapter.
        import function_app
        from devtools.functions_http import serving

        function_app._service = service
        with serving(function_app.app) as server:
            kv.admin.reset_counters()
            started = time.monotonic()
            overview = requests.get(server.url("ops/dashboard"), timeout=600)
            overview_s = time.monotonic() - started
            overview_reads = kv.admin.counters().get("get_certificate", 0)
            started = time.monotonic()
            filtered = requests.get(server.url("ops/dashboard") + "&q=cert-1&vault=kv-bench-1&page=3", timeout=60)
            page_s = time.monotonic() - started
        function_app._service = None
        rows = filtered.text.count('<tr><td><a href="')
        print(f"dashboard overview: {overview_s:.1f}s ({len(overview.text) // 1024} KiB, status "
              f"{overview.status_code}, {overview_reads} certificate reads); page 3 of a search in one vault: "
              f"{page_s:.2f}s, {rows} rows")  # fmt: skip
    expected = args.vaults * args.per_vault
    (_, first, first_s, _), (_, second, second_s, second_counters) = runs
    same = first.findings == second.findings
    print(f"findings identical in both runs: {same}")
    ok_first = first.entries == expected and not first.errors
    ok_before = before.get("certificates") == expected and not before.get("errors")
    before_s = float(before.get("seconds", "nan"))
    print(
        f"keeping the versions costs the first run {first_s - baseline_s:.1f}s over today's report with the version "
        f"facts off ({baseline_s:.1f}s): {first_s / baseline_s:.2f} x"
    )
    verdict(
        "report_time_first",
        f"{first_s:.1f}s = {first_s / before_s:.2f} x the report at {FILED_AT} ({before_s:.1f}s) for "
        f"{first.entries} certificates, every one read once and kept",
        first_s if ok_first and ok_before else float("inf"),
        before_s,
        f"<= the report before versions were kept ({FILED_AT}), same run",
    )
    verdict(
        "dashboard_overview",
        f"{overview_s:.1f}s = {overview_s / listing:.2f} x the listing for {expected} certificates, "
        f"{overview_reads} reads",
        overview_s if overview.status_code == 200 and overview_reads == 0 else float("inf"),
        1.5 * listing,
        f"<= 1.5 x the listing = {1.5 * listing:.1f}s, versions kept",
    )
    verdict(
        "dashboard_page",
        f"{page_s:.2f}s for a page of {rows} filtered certificates",
        page_s if filtered.status_code == 200 and rows == 50 else float("inf"),
        1.0,
        "<= 1 s, a full page of 50",
    )
    reads = second_counters.get("get_certificate", 0)
    kv_requests = sum(second_counters.values())
    pages = second_counters.get("list", 0)
    print(f"second run: {kv_requests} Key Vault requests = {pages} list pages + {reads} certificate reads")
    ok_second = second.entries == expected and reads == 0 and kv_requests == pages and same
    verdict(
        "report_time",
        f"second run {second_s:.1f}s = {second_s / listing:.2f} x the listing ({listing:.1f}s), "
        f"{kv_requests} Key Vault requests, all list pages",
        second_s if ok_second else float("inf"),
        1.5 * listing,
        f"<= 1.5 x the listing = {1.5 * listing:.1f}s, list pages only, same findings",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
