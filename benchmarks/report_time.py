"""Time of the estate report (inventory + compliance) over 4 vaults x 5,000 certificates.

The emulator runs in a subprocess with service throttling off, Azurite holds the ledger; the report
is built exactly as ``python -m renewal report`` builds it (list every vault, one ``get_current``
per certificate on a bounded pool, one ledger scan, every compliance rule).

Usage: ``python benchmarks/report_time.py [--vaults 4] [--per-vault 5000] [--workers 32]``. The last
line is ``report_time: <seconds>s for <N> certificates (target 60) PASS|FAIL``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vaults", type=int, default=4)
    parser.add_argument("--per-vault", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()

    from ca_clients.local import create_ca_files
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
        kv.admin.set_knobs(throttling=False)
        ca = create_ca_files(Path(scratch) / "ca")
        now = int(kv.admin.now())
        seeded_at = time.monotonic()
        for vault in vaults:
            for start in range(0, args.per_vault, 1000):  # bulk, 1,000 per admin call
                kv.admin.seed(
                    vault,
                    count=min(1000, args.per_vault - start),
                    start=start,
                    prefix="cert",
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
        config = parse_config(
            {
                "vaults": [{"name": name, "url": url} for name, url in kv.vault_urls.items()],
                "issuers": [
                    {
                        "name": "corp-local",
                        "type": "local",
                        "ca_certificate": str(ca["ca_certificate"]),
                        "ca_key": {"file": str(ca["ca_key"])},
                        "chain": str(ca["chain"]),
                        "trust_anchors": [str(ca["root"])],
                    }
                ],
                "default_issuer": "corp-local",
            }
        )
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
        kv.admin.reset_counters()
        started = time.monotonic()
        report = build_report(service, max_workers=args.workers)
        elapsed = time.monotonic() - started
        counters = kv.admin.counters()
    total = len(report.inventory.entries)
    expected = args.vaults * args.per_vault
    print(
        f"certificates {total}, get_certificate {counters.get('get_certificate')}, list pages {counters.get('list')}, "
        f"findings {len(report.findings)}, inventory errors {len(report.inventory.errors)}"
    )
    ok = total == expected and not report.inventory.errors and elapsed <= TARGET_SECONDS
    verdict = "PASS" if ok else "FAIL"
    print(f"report_time: {elapsed:.1f}s for {total} certificates (target {TARGET_SECONDS:.0f}) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
