"""The nightly safety net: list every configured vault (list API attributes only, streamed), decide
which certificates are due, and enqueue one job each. A policy is read only for a certificate that
is due by the default rule, to learn whether its own trigger says otherwise.

For a certificate routed to an ACME issuer whose CA publishes renewal information (RFC 9773 ARI,
renewal/flow/ari.py), the CA's suggested window counts too. Kept windows are loaded once per vault; a
certificate whose version has no window kept, or whose window's Retry-After has passed, is asked about on
the follow-up pool (its current version is read only the first time, to name it: ``ari_reads``). A moment
chosen inside a window that comes before the next sweep gets a job delayed to that moment (RFC 9773 §4.2:
wake up at the chosen time). No ARI failure stops the sweep: the policy decides then."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from renewal import metrics, settings
from renewal.config import RenewalConfig
from renewal.errors import CertificateGone
from renewal.flow.ari import ARI_TRIGGER, RenewalTiming, apply_window
from renewal.flow.due import MIRRORED_TRIGGER_TAG, DueDecision, format_trigger, is_due
from renewal.flow.orchestrator import STALE_TRIGGER_SUFFIX
from renewal.flow.routing import routed_issuer_or_none
from renewal.flow.scan import VaultScan
from renewal.model import IN_FLIGHT_STATES, CertificateListing, RenewalJob, RenewalWindow, utcnow
from renewal.observability import log_event
from renewal.ports import CertificateStore, JobQueue, Ledger, RenewalWindows

if TYPE_CHECKING:
    from ca_clients import CAClient

log = logging.getLogger("renewal.flow.sweep")
FOLLOW_UP_PER_VAULT = 8
"""Policy reads, ARI checks and enqueues in flight per vault while its listing streams on."""
SWEEP_PERIOD = dt.timedelta(hours=24)
"""The nightly schedule: an ARI moment sooner than this gets a delayed job instead of waiting for the next
sweep (the queue keeps a delayed message up to 7 days)."""
SCHEDULE_MARGIN = dt.timedelta(minutes=1)
"""A scheduled job arrives this long after its moment, so its re-check finds the moment passed."""
# "submitted" covers a worker that died between merge and notice: the re-driven job sends the notice.


@dataclass(frozen=True)
class ListingNote:
    """What the listing alone says about one certificate, and what the follow-up still has to do."""

    listed: DueDecision
    """The decision from the listing's dates and tags (the policy may refine it)."""
    ari_issuer: str | None = None
    """The routed issuer, when its CA publishes renewal information."""
    window: RenewalWindow | None = None
    """The window kept for the listed version."""
    ask: bool = False
    """Ask the CA (nothing fresh kept): on the follow-up pool."""


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
    policy_edits: int = 0
    """Policies re-read by the rolling recheck whose trigger was not the mirrored tag's (edited in place)."""
    ari_checks: int = 0
    """Times a CA was asked for a certificate's renewal information (RFC 9773)."""
    ari_reads: int = 0
    """Certificates read to name them for ARI (only when no window is kept for the listed version)."""
    ari_failures: int = 0
    """ARI reads or checks that failed (the policy decided for those certificates)."""
    ari_scheduled: int = 0
    """Not-yet-due certificates whose ARI moment comes before the next sweep: a job delayed to that moment."""
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
        issuers: Callable[[str], CAClient] | None = None,
        renewal_windows: RenewalWindows | None = None,
    ) -> None:
        """``issuers`` (the CA clients by issuer name) turns on ARI for ACME-routed certificates, with
        ``renewal_windows`` keeping the CAs' answers between sweeps and instances."""
        self.config = config
        self.stores = stores
        self.jobs = jobs
        self.ledger = ledger
        self.clock = clock
        self.issuers = issuers
        self.renewal_windows = renewal_windows

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

        timing = (
            RenewalTiming(config=self.config, issuers=self.issuers, windows=self.renewal_windows, now=now, bulk=True)
            if self.issuers is not None
            else None
        )

        def triage(vault: str, listing: CertificateListing) -> tuple[bool, ListingNote | None]:
            """Due-ness from the listing (and the window kept for it), decided once; only certificates that
            are due, need a policy read (the default rule, or tonight's share of the rolling recheck), an ARI
            check or a scheduled job need the pool."""
            if listing.pending or listing.enabled is False:
                return False, None
            decision = is_due(
                now=now,
                not_before=listing.not_before,
                expires_on=listing.expires_on,
                tags=listing.tags,
                default_fraction=self.config.renew_fraction(vault),
            )
            note = ListingNote(decision)
            if timing is not None and listing.thumbprint and decision.trigger not in ("expired", "unknown"):
                issuer = timing.ari_issuer(vault, listing.name, listing.tags)
                if issuer is not None:
                    kept = timing.kept(vault, listing.name, issuer, listing.thumbprint)
                    note = ListingNote(decision, issuer, kept, timing.needs_asking(issuer, kept, vault))
                    decision = apply_window(decision, kept, now)
            recheck = note.listed.trigger == "policy-tag" and self._recheck_tonight(vault, listing, now)
            return note.ask or decision.due or recheck or self._schedulable(decision, now), note

        def handle(store: CertificateStore, listing: CertificateListing, note: ListingNote | None) -> None:
            self._handle(store, listing, note, timing, now, run_id, report, dry_run, collect_all, progress)

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
        if timing is not None:
            report.ari_checks, report.ari_reads, report.ari_failures = timing.checks, timing.reads, timing.failures
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
            policy_edits=report.policy_edits,
            ari_checks=report.ari_checks,
            ari_reads=report.ari_reads,
            ari_failures=report.ari_failures,
            ari_scheduled=report.ari_scheduled,
            stale_resumed=report.stale_resumed,
            errors=len(report.errors),
            dry_run=dry_run,
        )
        return report

    @staticmethod
    def _schedulable(decision: DueDecision, now: dt.datetime) -> bool:
        """An ARI moment that comes before the next sweep: worth a job delayed to it."""
        return (
            not decision.due
            and decision.trigger == ARI_TRIGGER
            and decision.renew_at is not None
            and decision.renew_at - now < SWEEP_PERIOD
        )

    def _handle(
        self,
        store: CertificateStore,
        listing: CertificateListing,
        note: ListingNote | None,
        timing: RenewalTiming | None,
        now: dt.datetime,
        run_id: str,
        report: SweepReport,
        dry_run: bool,
        collect_all: bool,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        vault = store.vault
        entry = self._decide(store, listing, note, timing, now, report, dry_run=dry_run)
        if entry is None:
            return
        metrics.observe_certificate(
            listing, entry.decision, routed_issuer_or_none(self.config, vault, listing.name, listing.tags), now
        )
        scheduled = self._schedulable(entry.decision, now)
        if (entry.decision.due or scheduled) and not dry_run:
            job = RenewalJob(
                vault=vault,
                name=listing.name,
                reason="sweep",
                trigger_id=run_id,
                version=listing.version or "",
                enqueued_at=now,
            )
            if scheduled:
                assert entry.decision.renew_at is not None
                delay: dt.timedelta | None = entry.decision.renew_at - now + SCHEDULE_MARGIN
            else:
                delay = report.spread(vault)
            self.jobs.enqueue(job, delay=delay)
            entry = SweepEntry(entry.vault, entry.name, entry.version, entry.expires_on, entry.decision, True)
        with report._lock:
            report.scanned += 1
            if scheduled:
                report.ari_scheduled += 1
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
        note: ListingNote | None,
        timing: RenewalTiming | None,
        now: dt.datetime,
        report: SweepReport,
        *,
        dry_run: bool = False,
    ) -> SweepEntry | None:
        """The decision from the listing (None: pending or disabled, skipped), refined by the policy's own
        trigger when only the default rule made it due or when the rolling recheck reads it tonight, then by
        the CA's window (asked for here when nothing fresh is kept)."""
        if note is None:
            with report._lock:
                report.skipped += 1
            return None
        decision = note.listed
        if decision.trigger == "policy-tag" and not decision.due and self._recheck_tonight(store.vault, listing, now):
            rechecked = self._recheck_policy(store, listing, now, report, dry_run=dry_run)
            if rechecked is None:
                return None
            decision = rechecked
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
        window = note.window
        if note.ask and timing is not None and note.ari_issuer is not None:
            window = timing.ask(store.vault, listing.name, note.ari_issuer, kept=note.window, store=store)
        decision = apply_window(decision, window, now)
        return SweepEntry(listing.vault, listing.name, listing.version, listing.expires_on, decision, False)

    def _recheck_tonight(self, vault: str, listing: CertificateListing, now: dt.datetime) -> bool:
        """Each certificate's policy is re-read once every ``policy_recheck_days`` nights (a stable share a
        night): Key Vault's listing does not show a policy edited in place (its ``updated`` time stays)."""
        days = self.config.defaults.policy_recheck_days
        if days <= 0:
            return False
        bucket = int.from_bytes(hashlib.sha256(f"{vault}/{listing.name}".encode()).digest()[:4], "big") % days
        return bucket == now.date().toordinal() % days

    def _recheck_policy(
        self,
        store: CertificateStore,
        listing: CertificateListing,
        now: dt.datetime,
        report: SweepReport,
        *,
        dry_run: bool,
    ) -> DueDecision | None:
        """The decision from the policy itself; a trigger edited in place is mirrored onto the version's tag,
        so the nights between rechecks follow it too. None when the certificate is gone."""
        try:
            policy = store.get_policy(listing.name)
        except CertificateGone:
            return None
        with report._lock:
            report.policy_reads += 1
        decision = is_due(
            now=now,
            not_before=listing.not_before,
            expires_on=listing.expires_on,
            tags=listing.tags,
            policy_triggers=policy.lifetime_triggers or None,
            default_fraction=self.config.renew_fraction(store.vault),
        )
        if not policy.lifetime_triggers:
            return decision
        mirrored = format_trigger(policy.lifetime_triggers[0])
        if listing.tags.get(MIRRORED_TRIGGER_TAG) == mirrored:
            return decision
        with report._lock:
            report.policy_edits += 1
        log_event(
            log,
            "sweep.policy_edited",
            vault=store.vault,
            certificate=listing.name,
            version=listing.version,
            tag=listing.tags.get(MIRRORED_TRIGGER_TAG),
            policy=mirrored,
            due=decision.due,
        )
        if not dry_run:
            try:  # a listing names no version: "" is the current one (the listing's tags are the current's)
                store.update_tags(listing.name, listing.version or "", {**listing.tags, MIRRORED_TRIGGER_TAG: mirrored})
            except Exception as exc:  # noqa: BLE001 - tonight's decision stands; the next recheck writes it
                log_event(log, "sweep.mirror_failed", level=logging.WARNING, certificate=listing.name, error=str(exc))
        return decision

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
