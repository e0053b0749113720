"""What the dashboard shows, gathered from the domain: every certificate with its state, expiry,
renew-at time and why, and the last ledger outcome; the failures; one certificate's history.

Due decisions come from a dry sweep (the same rules the nightly sweep applies; nothing is enqueued)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ports import LedgerRow
from ..replay import FailureReport, list_failures
from ..routing import NoRoute, route_issuer
from ..sweep import IN_FLIGHT_STATES

STATES = ("expired", "failing", "renewing", "due", "healthy")
FAILED_STATES = frozenset({"failed", "rejected", "retrying"})
HORIZON_DAYS = 90
WEEKS = 13


@dataclass(frozen=True)
class CertificateRow:
    vault: str
    name: str
    version: str | None
    state: str
    expires_on: dt.datetime | None
    renew_at: dt.datetime | None
    why: str
    issuer: str
    last: LedgerRow | None


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

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.certificates)
        return {state: found.get(state, 0) for state in STATES}


def _state(expires_on: dt.datetime | None, due: bool, last: LedgerRow | None, now: dt.datetime) -> str:
    if expires_on is not None and expires_on <= now:
        return "expired"
    if last is not None and last.state in FAILED_STATES:
        return "failing"
    if last is not None and last.state in IN_FLIGHT_STATES:
        return "renewing"
    return "due" if due else "healthy"


def _issuer(service: Any, vault: str, name: str, tags: dict[str, str], last: LedgerRow | None) -> str:
    try:
        return route_issuer(service.config, vault, name, tags)
    except NoRoute:
        return last.issuer if last is not None else ""


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


def gather(service: Any) -> Estate:
    now = service.clock()
    report = service.sweep(dry_run=True, collect_all=True)
    latest: dict[tuple[str, str], LedgerRow] = {}
    for row in service.ledger.recent(limit=5000):  # newest first
        latest.setdefault((row.vault, row.name), row)
    tags: dict[tuple[str, str], dict[str, str]] = {}
    errors = list(report.errors)
    for vault, store in service.stores.items():
        try:
            for listing in store.list_certificates():
                tags[(vault, listing.name)] = listing.tags
        except Exception as exc:  # noqa: BLE001 - one vault's failure is shown, not raised
            errors.append(f"{vault}: {type(exc).__name__}: {exc}")
    rows = []
    for entry in sorted([*report.due, *report.later], key=lambda e: (e.expires_on or now, e.vault, e.name)):
        key = (entry.vault, entry.name)
        last = latest.get(key)
        rows.append(
            CertificateRow(
                vault=entry.vault,
                name=entry.name,
                version=entry.version,
                state=_state(entry.expires_on, entry.decision.due, last, now),
                expires_on=entry.expires_on,
                renew_at=entry.decision.renew_at,
                why=entry.decision.reason,
                issuer=_issuer(service, entry.vault, entry.name, tags.get(key, {}), last),
                last=last,
            )
        )
    return Estate(now=now, certificates=rows, failures=list_failures(service), weeks=weekly(rows, now), errors=errors)


@dataclass
class CertificateDetail:
    vault: str
    name: str
    current: Any
    versions: list[Any]
    ledger: list[LedgerRow]


def certificate(service: Any, vault: str, name: str) -> CertificateDetail | None:
    store = service.stores.get(vault)
    if store is None:
        return None
    current = store.get_current(name)
    if current is None:
        return None
    now = service.clock()
    versions = sorted(store.list_versions(name), key=lambda v: v.created_on or v.not_before or now, reverse=True)
    return CertificateDetail(vault, name, current, versions, service.ledger.history(vault, name))
