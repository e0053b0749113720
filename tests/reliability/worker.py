"""A renewal worker in its own process, for crash-recovery tests (run with ``python -m``).

It reads a JSON spec from the file named by ``RENEWAL_WORKER_SPEC`` (config document, app settings, the
Azurite settings and the emulator admin URL), builds a RenewalService, and drains the jobs queue through
the host-like queue pump into ``function_app.renewal_worker``.

``RENEWAL_CRASH_AT`` arms one crash point. The hook lives only here, in thin wrappers around the
certificate store, the CA client and the notice queue, and kills this process with SIGKILL: no
exception, no ``finally``, no claim release - what a host VM dying looks like.

Crash points (DESIGN.md steps): ``after-create`` (step 3 returned), ``after-csr`` (the CSR was read and
the ledger says submitted; the CA was not called yet), ``after-ca`` (step 4 answered, nothing merged),
``after-merge`` (step 6 returned, no ledger or notice), ``before-notice`` (ledger says merged; step 7 not
done).

Time scaling: the host hides a running message for 10 minutes; here the pump hides it for
``in_flight_visibility`` seconds (spec), so the message of a killed worker reappears after a few
seconds. The claim lapses when the emulator clock (the service clock) is moved past the claim TTL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

CRASH_POINTS = ("after-create", "after-csr", "after-ca", "after-merge", "before-notice")


def crash(point: str) -> None:
    sys.stdout.write(f"CRASH {point}\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingStore:
    def __init__(self, inner: Any, crash_at: str) -> None:
        self._inner, self._crash_at = inner, crash_at
        self.vault = inner.vault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def begin_pending(self, *args: Any, **kwargs: Any) -> Any:
        op = self._inner.begin_pending(*args, **kwargs)
        if self._crash_at == "after-create":
            crash("after-create")
        return op

    def merge(self, *args: Any, **kwargs: Any) -> Any:
        merged = self._inner.merge(*args, **kwargs)
        if self._crash_at == "after-merge":
            crash("after-merge")
        return merged


class CrashingIssuer:
    def __init__(self, inner: Any, crash_at: str) -> None:
        self._inner, self._crash_at = inner, crash_at
        self.name = inner.name

    def sign(self, request: Any) -> Any:
        if self._crash_at == "after-csr":
            crash("after-csr")
        issued = self._inner.sign(request)
        if self._crash_at == "after-ca":
            crash("after-ca")
        return issued


class CrashingNotices:
    def __init__(self, inner: Any, crash_at: str) -> None:
        self._inner, self._crash_at = inner, crash_at

    def enqueue(self, notice: Any) -> None:
        if self._crash_at == "before-notice":
            crash("before-notice")
        self._inner.enqueue(notice)


def build_service(spec: dict[str, Any], crash_at: str | None) -> Any:
    from emulator.testing import AdminClient
    from renewal.azure.storage import StorageEndpoints
    from renewal.config import parse_config
    from renewal.service import RenewalService

    admin = AdminClient(spec["admin_url"], spec["ca_bundle"])
    service = RenewalService(
        parse_config(spec["config"]),
        environ=spec["environ"],
        storage=StorageEndpoints.from_settings(spec["storage_env"]),
        clock=lambda: dt.datetime.fromtimestamp(admin.now(), dt.UTC),
        keyvault_options={"sleep": lambda _s: None},
    )
    if crash_at:
        service._stores = {name: CrashingStore(store, crash_at) for name, store in service.stores.items()}
        real_issuer = service.issuer
        service.issuer = lambda name: CrashingIssuer(real_issuer(name), crash_at)  # type: ignore[method-assign]
        service.__dict__["notices"] = CrashingNotices(service.notices, crash_at)
    return service


def main() -> int:
    spec = json.loads(Path(os.environ["RENEWAL_WORKER_SPEC"]).read_text())
    crash_at = os.environ.get("RENEWAL_CRASH_AT") or None
    if crash_at is not None and crash_at not in CRASH_POINTS:
        raise SystemExit(f"RENEWAL_CRASH_AT: unknown crash point {crash_at!r}")

    import devtools.pump as pump
    import function_app
    from renewal import settings

    pump.IN_FLIGHT_VISIBILITY = int(spec.get("in_flight_visibility", 3))
    service = build_service(spec, crash_at)
    function_app._service = service
    stats = pump.QueuePump(service.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(
        timeout=float(spec.get("timeout", 60)), wait_for_delayed=True
    )
    sys.stdout.write("STATS " + json.dumps(stats.__dict__) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
