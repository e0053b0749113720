"""What the dashboard shows, gathered from the domain: every certificate with its state, expiry,
renew-at time and why, issuer, last ledger outcome and compliance findings; the failures; one
certificate's history.

The certificates come from the estate report (:mod:`renewal.operations.inventory` and
:mod:`renewal.operations.compliance`), the one source of "what is the state of each certificate": a
streamed listing, a read only of versions not kept in the version facts table, one ledger scan. This module
sorts that into the dashboard's states and weeks, and keeps the result for ``SNAPSHOT_SECONDS`` so that
paging, searching and filtering the list (each a GET of its own) do not rebuild the estate."""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from renewal import metrics
from renewal.model import (
    FAILING_STATES,
    IN_FLIGHT_STATES,
    AttemptState,
    BackupEntry,
    CertificateListing,
    LedgerRow,
    RolloutRecord,
)
from renewal.operations.compliance import Finding, rules_for
from renewal.operations.inventory import InventoryBuilder, InventoryEntry, LastRenewal
from renewal.operations.report import build_report
from renewal.operations.status import FailureReport

if TYPE_CHECKING:
    from renewal.service import RenewalService

STATES = ("expired", "failing", "renewing", "due", "healthy")
SEVERITIES = ("error", "warning")
HORIZON_DAYS = 90
WEEKS = 13
SNAPSHOT_SECONDS = 60.0
"""How long an overview's estate serves the next pages and filters (the page says when it was built)."""


@dataclass(frozen=True)
class CertificateRow:
    entry: InventoryEntry
    state: str
    findings: tuple[Finding, ...] = ()

    @property
    def vault(self) -> str:
        return self.entry.vault

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def expires_on(self) -> dt.datetime | None:
        return self.entry.expires_on

    @property
    def renew_at(self) -> dt.datetime | None:
        return self.entry.decision.renew_at

    @property
    def why(self) -> str:
        return self.entry.decision.reason

    @property
    def issuer(self) -> str | None:
        return self.entry.issuer

    @property
    def last(self) -> LastRenewal | None:
        return self.entry.last_renewal

    @property
    def severities(self) -> Counter[str]:
        return Counter(f.severity for f in self.findings)


@dataclass(frozen=True)
class WeekBucket:
    start: dt.datetime
    expiries: int
    renewals: int


@dataclass
class Estate:
    now: dt.datetime
    certificates: list[CertificateRow]
    failures: FailureReport
    weeks: list[WeekBucket]
    errors: list[str] = field(default_factory=list)
    reads: int = 0
    """Certificates read from Key Vault for this estate."""
    kept: int = 0
    """Certificates whose current version came from the version facts table."""
    backups_configured: bool = False
    last_drill: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.certificates)
        return {state: found.get(state, 0) for state in STATES}

    @property
    def finding_counts(self) -> dict[str, int]:
        found: Counter[str] = Counter()
        for row in self.certificates:
            found.update(row.severities)
        return {severity: found.get(severity, 0) for severity in SEVERITIES}


def state_of(entry: InventoryEntry, now: dt.datetime) -> str:
    """The dashboard's one-word state of an inventory entry."""
    last = entry.last_renewal
    if entry.expires_on is not None and entry.expires_on <= now:
        return "expired"
    if last is not None and last.state in FAILING_STATES:
        return "failing"
    if last is not None and last.state in IN_FLIGHT_STATES:
        return "renewing"
    return "due" if entry.decision.due else "healthy"


def weekly(rows: list[CertificateRow], now: dt.datetime) -> list[WeekBucket]:
    """Expiries and scheduled renewals per week for the next 90 days; overdue renewals count in week 1."""
    expiries, renewals = [0] * WEEKS, [0] * WEEKS
    horizon = now + dt.timedelta(days=HORIZON_DAYS)
    for row in rows:
        if row.expires_on is not None and now < row.expires_on <= horizon:
            expiries[min(WEEKS - 1, (row.expires_on - now).days // 7)] += 1
        if row.renew_at is not None and row.renew_at <= horizon and row.state != "expired":
            renewals[max(0, min(WEEKS - 1, (row.renew_at - now).days // 7))] += 1
    return [WeekBucket(now + dt.timedelta(days=7 * i), expiries[i], renewals[i]) for i in range(WEEKS)]


_snapshots: weakref.WeakKeyDictionary[Any, tuple[float, Estate]] = weakref.WeakKeyDictionary()
_snapshot_lock = threading.Lock()


def gather(service: RenewalService, *, fresh: bool = False) -> Estate:
    """The estate, rebuilt when ``fresh`` or older than SNAPSHOT_SECONDS (one build at a time per service:
    a burst of page views waits for the one build instead of starting its own)."""
    with _snapshot_lock:
        held = _snapshots.get(service)
        if held is not None and not fresh and time.monotonic() - held[0] <= SNAPSHOT_SECONDS:
            return held[1]
        estate = _build(service)
        _snapshots[service] = (time.monotonic(), estate)
        return estate


def forget(service: RenewalService) -> None:
    """Drop the service's snapshot (after a change the next view must show)."""
    with _snapshot_lock:
        _snapshots.pop(service, None)


def _build(service: RenewalService) -> Estate:
    """The estate report (inventory + compliance rules, built exactly as ``python -m renewal report`` builds
    it), sorted into the dashboard's rows."""
    from concurrent.futures import ThreadPoolExecutor

    # The failed work and the last drill are other stores' answers: fetched while the vaults are listed.
    with ThreadPoolExecutor(2, thread_name_prefix="estate") as pool:
        failures = pool.submit(service.failures)
        drill = pool.submit(service.backups.last_drill) if service.backups is not None else None
        report = build_report(service)
    inventory = report.inventory
    now = inventory.generated_at
    rows = []
    for entry in inventory.entries:
        # The gauges are fed from what the dashboard saw, as the sweep feeds them (no extra reads).
        metrics.observe_certificate(entry, entry.decision, entry.issuer, now)
        rows.append(CertificateRow(entry, state_of(entry, now), tuple(report.by_certificate.get(entry.key, ()))))
    rows.sort(key=lambda r: (r.expires_on or now, r.vault, r.name))
    errors = list(inventory.errors)
    last_drill = None
    if drill is not None:
        try:
            last_drill = drill.result()
        except Exception as exc:  # noqa: BLE001 - the archive being unreachable must not hide the estate
            errors.append(f"backup archive: {exc}")
    return Estate(
        now=now,
        certificates=rows,
        failures=failures.result(),
        weeks=weekly(rows, now),
        errors=errors,
        reads=inventory.certificate_reads,
        kept=inventory.kept_reused,
        backups_configured=service.backups is not None,
        last_drill=last_drill,
    )


@dataclass
class CertificateDetail:
    row: CertificateRow
    versions: list[CertificateListing]
    ledger: list[LedgerRow]
    backups: list[BackupEntry] | None = None
    """Newest first; None when no backup archive is configured."""
    rollouts: list[RolloutRecord] = field(default_factory=list)
    """Every deployer target's outcome per version, newest first."""

    @property
    def vault(self) -> str:
        return self.row.vault

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def current(self) -> Any:
        return self.row.entry.current


def certificate(service: RenewalService, vault: str, name: str) -> CertificateDetail | None:
    """One certificate's inventory entry, findings, versions and full ledger history; None when the
    vault holds no completed version of it. The entry is built by the inventory's own code, from the
    certificate's ledger history instead of a scan of the whole ledger."""
    store = service.stores.get(vault)
    if store is None:
        return None
    now = service.clock()
    history = service.ledger.history(vault, name)
    newest = max(history, key=lambda r: (r.updated_at or r.started_at or now, r.request_id), default=None)
    latest = {(vault, name): newest} if newest is not None else {}
    merged = {(vault, name, r.new_version) for r in history if AttemptState(r.state).succeeded and r.new_version}

    def entry_of(listing: CertificateListing, *, read_certificates: bool = True) -> InventoryEntry:
        builder = InventoryBuilder(
            config=service.config, stores=service.stores, clock=service.clock, read_certificates=read_certificates
        )
        return builder.entry_for(store, listing, now, latest, merged)

    entry = entry_of(CertificateListing(vault, name, None, None, None, None, None))
    if entry.current is None and entry.read_error is None:
        return None
    versions = sorted(store.list_versions(name), key=lambda v: v.created_on or v.not_before or now, reverse=True)
    if entry.read_error is not None and versions:
        # The read failed: judge the newest version's listed attributes instead, and keep the error.
        entry = replace(entry_of(versions[0], read_certificates=False), read_error=entry.read_error)
    findings = tuple(rules_for(service).check(entry))
    backups = None
    if service.backups is not None:
        backups = sorted(service.backups.entries(vault, name), key=lambda b: b.backed_up_at, reverse=True)
    rollouts = service.rollout_log.history(vault, name) if service.rollout_log is not None else []
    row = CertificateRow(entry, state_of(entry, now), findings)
    return CertificateDetail(row, versions, history, backups, rollouts)
