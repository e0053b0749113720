"""The estate: every certificate in every configured vault, with the issuer it routes to, when it
will be renewed and why, and how its last renewal went.

Reads stay low: each vault's list API is streamed (attributes and tags only), and each listed
certificate costs at most one ``get_current`` (policy + public certificate, needed by the
compliance rules), run on a bounded thread pool so thousands of certificates take seconds, not
minutes. The ledger is scanned once for the whole report rather than queried per certificate.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from renewal.config import RenewalConfig
from renewal.errors import NoRoute, NotFound
from renewal.flow.due import DueDecision, is_due
from renewal.flow.routing import route_issuer
from renewal.flow.scan import VaultScan
from renewal.model import AttemptState, CertificateListing, CertificateVersion, LedgerRow, utcnow
from renewal.observability import log_event
from renewal.ports import CertificateStore, Ledger

if TYPE_CHECKING:
    from renewal.service import RenewalService

log = logging.getLogger("renewal.operations.inventory")
DEFAULT_WORKERS = 32
LEDGER_SCAN_LIMIT = 10_000_000


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class LastRenewal:
    """The newest ledger row of a certificate."""

    request_id: str
    state: str
    issuer: str
    reason: str
    old_version: str | None
    new_version: str | None
    error: str | None
    started_at: dt.datetime | None
    updated_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: LedgerRow) -> LastRenewal:
        return cls(
            request_id=row.request_id,
            state=row.state,
            issuer=row.issuer,
            reason=row.reason,
            old_version=row.old_version,
            new_version=row.new_version,
            error=row.error,
            started_at=row.started_at,
            updated_at=row.updated_at,
        )

    @property
    def succeeded(self) -> bool:
        return AttemptState(self.state).succeeded

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "state": self.state,
            "issuer": self.issuer,
            "reason": self.reason,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "error": self.error,
            "started_at": _ts(self.started_at),
            "updated_at": _ts(self.updated_at),
        }


@dataclass(frozen=True)
class InventoryEntry:
    vault: str
    name: str
    version: str | None
    enabled: bool | None
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    tags: dict[str, str]
    issuer: str | None
    """The configured issuer the certificate routes to; None when routing fails (see route_problem)."""
    route_problem: str | None
    decision: DueDecision
    last_renewal: LastRenewal | None
    merged_by_service: bool
    """The current version was merged by this service (its chain was verified then, promise 2)."""
    current: CertificateVersion | None = field(default=None, repr=False, compare=False)
    """Policy and public certificate of the current version (None when the read failed)."""
    read_error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.vault}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        policy = self.current.policy if self.current is not None else None
        return {
            "vault": self.vault,
            "name": self.name,
            "version": self.version,
            "enabled": self.enabled,
            "not_before": _ts(self.not_before),
            "expires_on": _ts(self.expires_on),
            "issuer": self.issuer,
            "route_problem": self.route_problem,
            "due": self.decision.due,
            "renew_at": _ts(self.decision.renew_at),
            "renew_reason": self.decision.reason,
            "trigger": self.decision.trigger,
            "policy_issuer": policy.issuer_name if policy else None,
            "subject": policy.subject if policy else None,
            "last_renewal": self.last_renewal.to_dict() if self.last_renewal else None,
            "merged_by_service": self.merged_by_service,
            "read_error": self.read_error,
            "tags": dict(self.tags),
        }


@dataclass
class Inventory:
    generated_at: dt.datetime
    entries: list[InventoryEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Vault-level problems (a listing that failed part-way, an unreadable ledger)."""
    certificate_reads: int = 0

    def by_key(self) -> dict[str, InventoryEntry]:
        return {e.key: e for e in self.entries}


def latest_rows(ledger: Ledger | None) -> dict[tuple[str, str], LedgerRow]:
    """The newest ledger row per certificate, from one scan of the ledger."""
    if ledger is None:
        return {}
    newest: dict[tuple[str, str], LedgerRow] = {}
    for row in ledger.recent(limit=LEDGER_SCAN_LIMIT):  # newest first
        newest.setdefault((row.vault, row.name), row)
    return newest


def merged_versions(ledger: Ledger | None) -> set[tuple[str, str, str]]:
    """(vault, name, version) of every version this service merged."""
    if ledger is None:
        return set()
    return {
        (row.vault, row.name, row.new_version)
        for row in ledger.recent(states={AttemptState.NOTIFIED}, limit=LEDGER_SCAN_LIMIT)
        if row.new_version
    }


class InventoryBuilder:
    def __init__(
        self,
        *,
        config: RenewalConfig,
        stores: Mapping[str, CertificateStore],
        ledger: Ledger | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        max_workers: int = DEFAULT_WORKERS,
        read_certificates: bool = True,
    ) -> None:
        self.config = config
        self.stores = stores
        self.ledger = ledger
        self.clock = clock
        self.max_workers = max(1, max_workers)
        self.read_certificates = read_certificates

    def build(
        self, *, vaults: Iterable[str] | None = None, progress: Callable[[str, int], None] | None = None
    ) -> Inventory:
        now = self.clock()
        inventory = Inventory(generated_at=now)
        names = list(vaults) if vaults is not None else [v.name for v in self.config.vaults]
        try:
            rows = latest_rows(self.ledger)
            merged = merged_versions(self.ledger)
        except Exception as exc:  # noqa: BLE001 - the estate is still worth showing without its history
            inventory.errors.append(f"ledger: {type(exc).__name__}: {exc}")
            rows, merged = {}, set()
        lock = threading.Lock()

        def handle(store: CertificateStore, listing: CertificateListing, _note: object) -> None:
            entry = self.entry_for(store, listing, now, rows, merged)
            with lock:
                inventory.entries.append(entry)
                if entry.current is not None or entry.read_error is not None:
                    inventory.certificate_reads += 1
            if progress is not None:
                progress(listing.vault, 1)

        def vault_failed(vault: str, exc: BaseException) -> None:
            problem = str(exc) if isinstance(exc, NotFound) else f"{vault}: listing failed: {type(exc).__name__}: {exc}"
            with lock:
                inventory.errors.append(problem)

        # Every listing needs the certificate read (when enabled): all of them go to the readers' pool.
        VaultScan(
            self.stores, workers=self.max_workers, in_flight_per_vault=self.max_workers * 2, name="inventory"
        ).run(
            names,
            triage=lambda _vault, _listing: (self.read_certificates, None),
            handle=handle,
            vault_failed=vault_failed,
        )
        inventory.entries.sort(key=lambda e: (e.vault, e.name))
        log_event(
            log,
            "inventory.built",
            vaults=len(names),
            certificates=len(inventory.entries),
            reads=inventory.certificate_reads,
            errors=len(inventory.errors),
        )
        return inventory

    def entry_for(
        self,
        store: CertificateStore,
        listing: CertificateListing,
        now: dt.datetime,
        rows: Mapping[tuple[str, str], LedgerRow],
        merged: set[tuple[str, str, str]],
    ) -> InventoryEntry:
        vault, name = store.vault, listing.name
        current: CertificateVersion | None = None
        read_error: str | None = None
        if self.read_certificates:
            try:
                current = store.get_current(name)
            except Exception as exc:  # noqa: BLE001 - one unreadable certificate must not stop the report
                read_error = f"get_current: {type(exc).__name__}: {exc}"
        tags = dict(current.tags if current is not None else listing.tags)
        try:
            issuer, problem = route_issuer(self.config, vault, name, tags), None
        except NoRoute as exc:
            issuer, problem = None, str(exc)
        policy = current.policy if current is not None else None
        decision = is_due(
            now=now,
            not_before=current.not_before if current is not None else listing.not_before,
            expires_on=current.expires_on if current is not None else listing.expires_on,
            tags=tags,
            policy_triggers=policy.lifetime_triggers if policy is not None else None,
            default_fraction=self.config.renew_fraction(vault),
        )
        row = rows.get((vault, name))
        version = current.version if current is not None else listing.version
        return InventoryEntry(
            vault=vault,
            name=name,
            version=version,
            enabled=current.enabled if current is not None else listing.enabled,
            not_before=current.not_before if current is not None else listing.not_before,
            expires_on=current.expires_on if current is not None else listing.expires_on,
            tags=tags,
            issuer=issuer,
            route_problem=problem,
            decision=decision,
            last_renewal=LastRenewal.from_row(row) if row is not None else None,
            merged_by_service=bool(version) and (vault, name, version or "") in merged,
            current=current,
            read_error=read_error,
        )


def build_inventory(
    service: RenewalService,
    *,
    vaults: Iterable[str] | None = None,
    max_workers: int = DEFAULT_WORKERS,
    progress: Callable[[str, int], None] | None = None,
) -> Inventory:
    """The inventory of a :class:`renewal.service.RenewalService`'s configured vaults."""
    return InventoryBuilder(
        config=service.config,
        stores=service.stores,
        ledger=service.ledger,
        clock=service.clock,
        max_workers=max_workers,
    ).build(vaults=vaults, progress=progress)
