"""The estate: every certificate in every configured vault, with the issuer it routes to, when it
will be renewed and why, and how its last renewal went.

Reads stay low: each vault's list API is streamed (attributes, tags and the current version's thumbprint).
A version never changes once created, so what the compliance rules need from it (public certificate,
attributes, policy) is kept in the version facts table after its first read: a listed certificate whose
thumbprint matches the kept row costs no Key Vault request; only versions not seen before (and policies
read longer ago than ``policy_max_age``, since a policy can be edited in place) are read, on a bounded
thread pool. The ledger is scanned once for the whole report rather than queried per certificate.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from renewal.config import RenewalConfig
from renewal.errors import NoRoute, NotFound
from renewal.flow.ari import RenewalTiming, thumbprint_of
from renewal.flow.due import DueDecision, is_due
from renewal.flow.routing import route_issuer
from renewal.flow.scan import VaultScan, fewer_collections
from renewal.model import AttemptState, CertificateListing, CertificateVersion, KeptVersion, LedgerRow, utcnow
from renewal.observability import log_event
from renewal.operations.certificate_facts import with_leaf_facts
from renewal.ports import CertificateStore, Ledger, RenewalWindows, VersionFacts

if TYPE_CHECKING:
    from renewal.service import RenewalService

log = logging.getLogger("renewal.operations.inventory")
DEFAULT_WORKERS = 32
LEDGER_SCAN_LIMIT = 10_000_000
POLICY_MAX_AGE = dt.timedelta(hours=24)
"""A kept policy older than this is read again (Key Vault's list says nothing of policy edits)."""


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
    kept_reused: int = 0
    """Certificates whose current version came from the version facts table, not from Key Vault."""

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
        facts: VersionFacts | None = None,
        refresh: bool = False,
        policy_max_age: dt.timedelta = POLICY_MAX_AGE,
        renewal_windows: RenewalWindows | None = None,
    ) -> None:
        self.config = config
        self.stores = stores
        self.ledger = ledger
        self.clock = clock
        self.max_workers = max(1, max_workers)
        self.read_certificates = read_certificates
        self.facts = facts if read_certificates else None
        self.refresh = refresh
        self.policy_max_age = policy_max_age
        self.renewal_windows = renewal_windows
        """The CAs' renewal windows the sweep keeps (ARI): shown, never asked for here."""

    def build(
        self,
        *,
        vaults: Iterable[str] | None = None,
        progress: Callable[[str, int], None] | None = None,
        on_entry: Callable[[InventoryEntry], None] | None = None,
    ) -> Inventory:
        """``on_entry`` sees each entry as it is made, on the scan's threads (so per-entry work such as the
        compliance rules runs while other threads wait on Key Vault)."""
        with fewer_collections():  # the whole view, the kept rows' loading included
            return self._build(vaults, progress, on_entry)

    def _build(
        self,
        vaults: Iterable[str] | None,
        progress: Callable[[str, int], None] | None,
        on_entry: Callable[[InventoryEntry], None] | None,
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
        kept = _KeptPerVault(self.facts, now, lock)
        timing = RenewalTiming(config=self.config, issuers=None, windows=self.renewal_windows, now=now, bulk=True)
        if not self.refresh:  # a refresh reads every certificate (and keeps what it read)
            kept.start(names)

        def triage(vault: str, listing: CertificateListing) -> tuple[bool, KeptVersion | None]:
            if not self.read_certificates:
                return False, None
            row = None if self.refresh else kept.usable(vault, listing, self.policy_max_age)
            return row is None, row  # only versions not kept (or kept too long ago) need the pool

        def handle(store: CertificateStore, listing: CertificateListing, row: KeptVersion | None) -> None:
            kept.listed(store.vault, listing.name)
            entry = self.entry_for(store, listing, now, rows, merged, kept=row, timing=timing)
            if row is None and entry.current is not None:
                kept.add(store.vault, entry.current)
            if on_entry is not None:
                on_entry(entry)
            with lock:
                inventory.entries.append(entry)
                if row is not None:
                    inventory.kept_reused += 1
                elif entry.current is not None or entry.read_error is not None:
                    inventory.certificate_reads += 1
            if progress is not None:
                progress(listing.vault, 1)

        failed: set[str] = set()

        def vault_failed(vault: str, exc: BaseException) -> None:
            failed.add(vault)
            problem = str(exc) if isinstance(exc, NotFound) else f"{vault}: listing failed: {type(exc).__name__}: {exc}"
            with lock:
                inventory.errors.append(problem)

        VaultScan(
            self.stores, workers=self.max_workers, in_flight_per_vault=self.max_workers * 2, name="inventory"
        ).run(names, triage=triage, handle=handle, vault_failed=vault_failed)
        kept.prune(failed)
        kept.flush()
        inventory.entries.sort(key=lambda e: (e.vault, e.name))
        log_event(
            log,
            "inventory.built",
            vaults=len(names),
            certificates=len(inventory.entries),
            reads=inventory.certificate_reads,
            kept=inventory.kept_reused,
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
        *,
        kept: KeptVersion | None = None,
        timing: RenewalTiming | None = None,
    ) -> InventoryEntry:
        vault, name = store.vault, listing.name
        current: CertificateVersion | None = None
        read_error: str | None = None
        if kept is not None:
            # Tags and the enabled flag change without a new version: the fresh listing has them.
            current = replace(kept.current, tags=dict(listing.tags), enabled=bool(listing.enabled))
        elif self.read_certificates:
            try:
                current = store.get_current(name)
            except Exception as exc:  # noqa: BLE001 - one unreadable certificate must not stop the report
                read_error = f"get_current: {type(exc).__name__}: {exc}"
            current = with_leaf_facts(current) if current is not None else None
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
        if timing is not None:
            thumbprint = thumbprint_of(current.cer) if current is not None else listing.thumbprint
            decision = timing.with_kept_window(decision, vault=vault, name=name, tags=tags, thumbprint=thumbprint)
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


class _KeptPerVault:
    """The version facts of each vault, loaded in the background while the vaults are listed (the listing
    waits on Key Vault, the load on Table storage), and the versions read in this build, written back in
    transactions of 100 as they fill."""

    def __init__(self, facts: VersionFacts | None, now: dt.datetime, lock: threading.Lock) -> None:
        self.facts, self.now, self.lock = facts, now, lock
        self._loading: dict[str, Future[dict[str, KeptVersion]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="facts") if facts is not None else None
        self._pending: dict[str, list[CertificateVersion]] = {}
        self._listed: dict[str, set[str]] = {}

    def listed(self, vault: str, name: str) -> None:
        with self.lock:
            self._listed.setdefault(vault, set()).add(name)

    def prune(self, failed: set[str]) -> None:
        """Forget kept rows of certificates a complete listing no longer shows (deleted ones)."""
        if self.facts is None:
            return
        for vault in list(self._loading):
            if vault in failed:
                continue
            gone = sorted(set(self._loaded(vault)) - self._listed.get(vault, set()))
            if gone:
                try:
                    self.facts.forget(vault, gone)
                except Exception as exc:  # noqa: BLE001 - stale rows cost a little memory, never a wrong view
                    log_event(log, "inventory.facts_not_pruned", level=logging.WARNING, vault=vault, error=str(exc))

    def start(self, vaults: Iterable[str]) -> None:
        if self.facts is not None and self._pool is not None:
            for vault in vaults:
                self._loading[vault] = self._pool.submit(self.facts.load, vault)

    def _loaded(self, vault: str) -> dict[str, KeptVersion]:
        future = self._loading.get(vault)
        if future is None:
            return {}
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - without kept facts the view reads Key Vault, as before
            log_event(log, "inventory.facts_unavailable", level=logging.WARNING, vault=vault, error=str(exc))
            self._loading.pop(vault, None)
            return {}

    def usable(self, vault: str, listing: CertificateListing, max_age: dt.timedelta) -> KeptVersion | None:
        if self.facts is None or not listing.thumbprint:
            return None
        row = self._loaded(vault).get(listing.name)
        if row is None or row.thumbprint != listing.thumbprint or self.now - row.read_at > max_age:
            return None
        return row

    def add(self, vault: str, current: CertificateVersion) -> None:
        if self.facts is None:
            return
        with self.lock:
            batch = self._pending.setdefault(vault, [])
            batch.append(current)
            full = batch[:] if len(batch) >= 100 else None
            if full:
                batch.clear()
        if full:
            self._write(vault, full)

    def flush(self) -> None:
        for vault, batch in list(self._pending.items()):
            if batch:
                self._write(vault, batch)
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _write(self, vault: str, versions: list[CertificateVersion]) -> None:
        assert self.facts is not None
        try:
            self.facts.keep(vault, versions, read_at=self.now)
        except Exception as exc:  # noqa: BLE001 - the view is right; only the next one will read again
            log_event(log, "inventory.facts_not_kept", level=logging.WARNING, vault=vault, error=str(exc))


def build_inventory(
    service: RenewalService,
    *,
    vaults: Iterable[str] | None = None,
    max_workers: int = DEFAULT_WORKERS,
    progress: Callable[[str, int], None] | None = None,
    refresh: bool = False,
    on_entry: Callable[[InventoryEntry], None] | None = None,
) -> Inventory:
    """The inventory of a :class:`renewal.service.RenewalService`'s configured vaults; ``refresh`` reads
    every certificate from Key Vault instead of reusing kept versions."""
    return InventoryBuilder(
        config=service.config,
        stores=service.stores,
        ledger=service.ledger,
        clock=service.clock,
        max_workers=max_workers,
        facts=service.version_facts,
        refresh=refresh,
        renewal_windows=service.renewal_windows,
    ).build(vaults=vaults, progress=progress, on_entry=on_entry)
