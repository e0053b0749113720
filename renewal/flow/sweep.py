"""The nightly safety net: list every configured vault (list API attributes only, streamed), decide
which certificates are due, and enqueue one job each. A policy is read only for a certificate that
is due by the default rule, to learn whether its own trigger says otherwise."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from renewal import metrics, settings
from renewal.config import RenewalConfig
from renewal.errors import CertificateGone
from renewal.flow.due import DueDecision, is_due
from renewal.flow.orchestrator import STALE_TRIGGER_SUFFIX
from renewal.flow.routing import routed_issuer_or_none
from renewal.flow.scan import VaultScan
from renewal.model import IN_FLIGHT_STATES, CertificateListing, RenewalJob, utcnow
from renewal.observability import log_event
from renewal.ports import CertificateStore, JobQueue, Ledger

log = logging.getLogger("renewal.flow.sweep")
FOLLOW_UP_PER_VAULT = 8
"""Policy reads and enqueues in flight per vault while its listing streams on."""
# "submitted" covers a worker that died between merge and notice: the re-driven job sends the notice.


@dataclass(frozen=True)
class SweepEntry:
    vault: str
    name: str
    version: str | None
    expires_on: dt.datetime | None
    decision: DueDecision
    enqueued: bool


@dataclass
class SweepReport:
    started_at: dt.datetime
    scanned: int = 0
    due: list[SweepEntry] = field(default_factory=list)
    later: list[SweepEntry] = field(default_factory=list)
    """Not-due entries, kept only when the sweep is asked to collect them (CLI tables)."""
    not_due_count: int = 0
    skipped: int = 0
    policy_reads: int = 0
    stale_resumed: int = 0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _enqueued: dict[str, int] = field(default_factory=dict, repr=False)

    def spread(self, vault: str) -> dt.timedelta | None:
        """The delay of a vault's next due job: one window's create budget goes at once, the rest follows at
        Key Vault's pace, so a mass renewal does not release thousands of creates into one window."""
        with self._lock:
            index = self._enqueued.get(vault, 0)
            self._enqueued[vault] = index + 1
        beyond = index - settings.KEYVAULT_CREATE_LIMIT + 1
        if beyond <= 0:
            return None
        pace = settings.KEYVAULT_CREATE_WINDOW_SECONDS / settings.KEYVAULT_CREATE_LIMIT
        return dt.timedelta(seconds=min(beyond * pace, 6 * 86_400))


class Sweep:
    def __init__(
        self,
        *,
        config: RenewalConfig,
        stores: Mapping[str, CertificateStore],
        jobs: JobQueue,
        ledger: Ledger | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.stores = stores
        self.jobs = jobs
        self.ledger = ledger
        self.clock = clock

    def run(
        self,
        *,
        dry_run: bool = False,
        collect_all: bool = False,
        vaults: Iterable[str] | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> SweepReport:
        now = self.clock()
        report = SweepReport(started_at=now)
        run_id = f"sweep-{now:%Y%m%dT%H%M%S}"
        names = list(vaults) if vaults is not None else [v.name for v in self.config.vaults]

        def vault_failed(vault: str, exc: BaseException) -> None:
            with report._lock:
                report.errors.append(f"{vault}: {type(exc).__name__}: {exc}")
            log_event(log, "sweep.vault_failed", level=logging.ERROR, vault=vault, error=str(exc))

        def triage(vault: str, listing: CertificateListing) -> tuple[bool, DueDecision | None]:
            """Due-ness from the listing, decided once; only due certificates need the pool."""
            if listing.pending or listing.enabled is False:
                return False, None
            decision = is_due(
                now=now,
                not_before=listing.not_before,
                expires_on=listing.expires_on,
                tags=listing.tags,
                default_fraction=self.config.renew_fraction(vault),
            )
            return decision.due, decision

        def handle(store: CertificateStore, listing: CertificateListing, decision: DueDecision | None) -> None:
            self._handle(store, listing, decision, now, run_id, report, dry_run, collect_all, progress)

        # Only certificates due on their listing's own attributes need a policy read or an enqueue: those run
        # on the shared pool so each listing keeps streaming pages (bounded per vault).
        VaultScan(
            self.stores,
            workers=min(32, FOLLOW_UP_PER_VAULT * max(1, len(names))),
            in_flight_per_vault=FOLLOW_UP_PER_VAULT * 2,
            name="sweep",
        ).run(
            names,
            triage=triage,
            handle=handle,
            vault_failed=vault_failed,
        )
        if self.ledger is not None:
            self._resume_stale(now, run_id, report, dry_run)
        log_event(
            log,
            "sweep.finished",
            run_id=run_id,
            scanned=report.scanned,
            due=len(report.due),
            not_due=report.not_due_count,
            policy_reads=report.policy_reads,
            stale_resumed=report.stale_resumed,
            errors=len(report.errors),
            dry_run=dry_run,
        )
        return report

    def _handle(
        self,
        store: CertificateStore,
        listing: CertificateListing,
        listed: DueDecision | None,
        now: dt.datetime,
        run_id: str,
        report: SweepReport,
        dry_run: bool,
        collect_all: bool,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        vault = store.vault
        entry = self._decide(store, listing, listed, now, report)
        if entry is None:
            return
        metrics.observe_certificate(
            listing, entry.decision, routed_issuer_or_none(self.config, vault, listing.name, listing.tags), now
        )
        if entry.decision.due and not dry_run:
            job = RenewalJob(
                vault=vault,
                name=listing.name,
                reason="sweep",
                trigger_id=run_id,
                version=listing.version or "",
                enqueued_at=now,
            )
            self.jobs.enqueue(job, delay=report.spread(vault))
            entry = SweepEntry(entry.vault, entry.name, entry.version, entry.expires_on, entry.decision, True)
        with report._lock:
            report.scanned += 1
            if entry.decision.due:
                report.due.append(entry)
            else:
                report.not_due_count += 1
                if collect_all:
                    report.later.append(entry)
        if progress is not None:
            progress(vault, 1)

    def _decide(
        self,
        store: CertificateStore,
        listing: CertificateListing,
        listed: DueDecision | None,
        now: dt.datetime,
        report: SweepReport,
    ) -> SweepEntry | None:
        """The decision from the listing (None: pending or disabled, skipped), refined by the policy's own
        trigger when only the default rule made it due."""
        if listed is None:
            with report._lock:
                report.skipped += 1
            return None
        decision = listed
        if decision.due and decision.trigger == "default":
            try:
                policy = store.get_policy(listing.name)
            except CertificateGone:
                return None
            with report._lock:
                report.policy_reads += 1
            if policy.lifetime_triggers:
                decision = is_due(
                    now=now,
                    not_before=listing.not_before,
                    expires_on=listing.expires_on,
                    tags=listing.tags,
                    policy_triggers=policy.lifetime_triggers,
                    default_fraction=self.config.renew_fraction(store.vault),
                )
        return SweepEntry(listing.vault, listing.name, listing.version, listing.expires_on, decision, False)

    def _resume_stale(self, now: dt.datetime, run_id: str, report: SweepReport, dry_run: bool) -> None:
        assert self.ledger is not None
        threshold = now - dt.timedelta(hours=self.config.defaults.stale_pending_after_hours)
        for row in self.ledger.recent(states=set(IN_FLIGHT_STATES), limit=1000):
            if row.vault not in self.stores or (row.updated_at or row.started_at or now) > threshold:
                continue
            if not dry_run:
                self.jobs.enqueue(
                    RenewalJob(
                        vault=row.vault, name=row.name, reason="sweep", trigger_id=f"{run_id}{STALE_TRIGGER_SUFFIX}"
                    )
                )
            report.stale_resumed += 1
