"""The critical path of one renewal, counted: Key Vault round trips and storage calls from the Event Grid event
to the merge, and how many of them wait on each other.

Set-up: the emulator in its own process (Key Vault's limits, 20 ms per request), Azurite, the local CA. A
certificate 10 days from expiry gets a ``CertificateNearExpiry`` event delivered to the real
``on_certificate_event``; the job is run by the real ``renewal_worker`` through the host-like queue pump. Every
HTTP request the Azure SDKs send in this process is recorded at the transport (start, end, service); calls
whose times overlap ran concurrently, so the number of sequential round trips is the number of groups of
overlapping calls, in time order, up to and including the merge.

The floor for Key Vault is 3 (the current version and the pending operation read together, create, merge).
Storage calls (queue, claim blob, ledger, create budget) are listed; the target is the Key Vault count.
``event_to_merge_acme.py`` gives the same path's latency through ACME, for information.

Usage: ``python benchmarks/critical_path.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DAY, limited_emulator, local_issuers, policy_wire, renewal_service, verdict

NAME = "critical_path"
KEYVAULT_FLOOR = 3


@dataclass(frozen=True)
class Call:
    service: str
    what: str
    start: float
    end: float


class Recorder:
    """Wraps the SDKs' requests transport: every request, its service (by port) and its times."""

    def __init__(self, keyvault_ports: set[int]) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._ports = keyvault_ports
        self._original = RequestsTransport.send
        recorder = self

        def send(transport, request, **kwargs):  # type: ignore[no-untyped-def]
            start = time.monotonic()
            try:
                return recorder._original(transport, request, **kwargs)
            finally:
                url = urlsplit(request.url)
                service = "keyvault" if url.port in recorder._ports else "storage"
                what = (
                    f"{request.method} {url.path.rstrip('/').split('/', 3)[-1] if service == 'storage' else url.path}"
                )
                with recorder._lock:
                    recorder.calls.append(Call(service, what, start, time.monotonic()))

        RequestsTransport.send = send  # type: ignore[method-assign]

    def close(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        RequestsTransport.send = self._original  # type: ignore[method-assign]


def sequential(calls: list[Call]) -> int:
    """Groups of overlapping calls, in time order: the round trips that waited on each other."""
    groups, end = 0, float("-inf")
    for call in sorted(calls, key=lambda c: c.start):
        if call.start >= end:
            groups += 1
            end = call.end
        else:
            end = max(end, call.end)
    return groups


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import function_app
    from devtools.azurite import running_azurite
    from devtools.host import event_grid_event
    from devtools.pump import QueuePump
    from renewal import settings
    from renewal.azure.storage import StorageEndpoints

    figures = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-path-")))
        kv = stack.enter_context(limited_emulator(["kv-path"]))
        azurite = stack.enter_context(running_azurite(workdir / "azurite"))
        storage = StorageEndpoints.from_settings(azurite.env())
        storage.ensure_resources()
        service = renewal_service(kv, local_issuers(workdir), storage_env=azurite.env(), storage=storage)
        function_app._service = service
        pump = QueuePump(storage, settings.JOBS_QUEUE, function_app.renewal_worker)
        ports = {urlsplit(url).port for url in kv.vault_urls.values()}
        for run in range(args.runs + 1):  # the first run warms connections and clients; it is not counted
            now = int(kv.admin.now())
            name = f"app-{run}"
            kv.admin.seed(
                "kv-path",
                certificates=[{"name": name}],
                not_before=now - 80 * DAY,
                expires=now + 10 * DAY,
                policy=policy_wire("app.example.test", trigger={"days_before_expiry": 30}),
            )
            version = kv.certificate_client("kv-path").get_certificate(name).properties.version
            event = {
                "id": f"evt-{run}",
                "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-path",
                "subject": name,
                "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
                "eventTime": "2026-12-04T00:00:00Z",
                "dataVersion": "1",
                "data": {
                    "Id": f"{kv.vault_urls['kv-path'].rstrip('/')}/certificates/{name}/{version}",
                    "VaultName": "kv-path",
                    "ObjectType": "Certificate",
                    "ObjectName": name,
                    "Version": version,
                    "NBF": now - 80 * DAY,
                    "EXP": now + 10 * DAY,
                },
            }
            recorder = Recorder(ports)
            try:
                function_app.on_certificate_event(event_grid_event(event))
                stats = pump.run_until_idle(timeout=60)
            finally:
                recorder.close()
            assert stats.processed == 1 and stats.failed == 0, stats
            merge = next(c for c in recorder.calls if c.service == "keyvault" and c.what.endswith("/pending/merge"))
            path = [c for c in recorder.calls if c.start <= merge.start]
            keyvault = [c for c in path if c.service == "keyvault"]
            stored = [c for c in path if c.service == "storage"]
            if run == 0:
                continue
            figures.append((sequential(keyvault), len(keyvault), sequential(stored), len(stored), sequential(path)))
            if run == 1:
                print("event to merge, one run (ms from the event; K = Key Vault, S = storage):")
                origin = path[0].start if path else 0.0
                for c in sorted(path, key=lambda c: c.start):
                    print(f"  {(c.start - origin) * 1000:7.1f}-{(c.end - origin) * 1000:7.1f}  "
                          f"{'K' if c.service == 'keyvault' else 'S'}  {c.what}")  # fmt: skip
        function_app._service = None

    kv_seq = max(f[0] for f in figures)
    median = {i: statistics.median(f[i] for f in figures) for i in range(5)}
    print(f"over {len(figures)} renewals (medians): Key Vault requests {median[1]:g}, sequential {kv_seq} (most); "
          f"storage calls {median[3]:g}, sequential {median[2]:g}; all sequential steps {median[4]:g}")  # fmt: skip
    verdict(NAME, f"{kv_seq} sequential Key Vault round trips from event to merge (the most of {len(figures)} runs)",
            kv_seq, KEYVAULT_FLOOR, f"<= {KEYVAULT_FLOOR}: current + pending read together, create, merge")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
