"""The RenewalOrchestrator: one job -> at most one new version, in the steps of DESIGN.md.

    run          2 claim the certificate (one worker per certificate); the other steps run inside it
    _read        1 the current version and any pending operation, read in parallel
    _why_not     1 stop if the certificate is gone, renewed meanwhile or not due (the CA's ARI window counts)
    _open        3 create a pending version with issuer Unknown (or resume the one that exists)
    _sign        4 the CSR to the CA client the routing rules (or the ledger, for a pending request) name,
                   naming the certificate it replaces where the CA publishes renewal information (RFC 9773)
    _verify      5 the issued chain against the issuing CA's anchors, the CSR and the policy
    _merge       6 merge the chain: the new version goes live
    _notify      7 the deployment notice, then the ledger row says so

A failure records its reason on the attempt's ledger row and raises :class:`RenewalFailed`, so the queue
retries and finally poisons the job (promise 3); nothing before merge touches the live version (promise 2).
The job message only names the certificate: the issuer, the resume ticket and the pending request come
from the configuration, the ledger and Key Vault (promise 7).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_clients import (
    CAClient,
    CertificateIdentity,
    IssuancePending,
    IssuedChain,
    PermanentCAError,
    SignRequest,
    TransientCAError,
)
from renewal import metrics
from renewal.config import RenewalConfig
from renewal.errors import (
    CertificateGone,
    ChainRejected,
    KeyVaultThrottled,
    MergeRejected,
    NoRoute,
    PendingOperationExists,
    RenewalFailed,
    StoreUnavailable,
)
from renewal.flow.ari import RenewalTiming, apply_window
from renewal.flow.attempt import Attempt, RenewalOutcome, Snapshot, csr_names, policy_names, validity_of
from renewal.flow.deploy import notice_of
from renewal.flow.due import MIRRORED_TRIGGER_TAG, format_trigger, is_due
from renewal.flow.journal import RenewalJournal
from renewal.flow.routing import route_issuer
from renewal.flow.verification import VerifiedChain, verify_chain
from renewal.model import (
    IN_FLIGHT_STATES,
    SETTLED_STATES,
    AttemptState,
    CertificateVersion,
    LedgerRow,
    PendingOperation,
    PolicySpec,
    RenewalJob,
    utcnow,
)
from renewal.ports import CertificateStore, ClaimStore, JobQueue, Ledger, NoticeQueue, RenewalWindows

__all__ = ["STALE_TRIGGER_SUFFIX", "RenewalFailed", "RenewalOrchestrator", "RenewalOutcome"]

_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="renewal-read")
"""Overlaps the two independent reads of step 1; each costs a full Key Vault round trip."""

STALE_TRIGGER_SUFFIX = "-stale"
"""Jobs the sweep enqueues for stale in-flight ledger rows carry this at the end of their trigger_id."""


class RenewalOrchestrator:
    def __init__(
        self,
        *,
        config: RenewalConfig,
        stores: Mapping[str, CertificateStore],
        issuers: Callable[[str], CAClient],
        trust_anchors: Callable[[str], Sequence[x509.Certificate]],
        ledger: Ledger,
        claims: ClaimStore,
        jobs: JobQueue,
        notices: NoticeQueue,
        clock: Callable[[], dt.datetime] = utcnow,
        journal: RenewalJournal | None = None,
        renewal_windows: RenewalWindows | None = None,
    ) -> None:
        self.config = config
        self.stores = stores
        self.issuers = issuers
        self.trust_anchors = trust_anchors
        self.ledger = ledger
        self.claims = claims
        self.jobs = jobs
        self.notices = notices
        self.clock = clock
        self.journal = journal or RenewalJournal()
        self.renewal_windows = renewal_windows
        """The CAs' renewal windows the sweep keeps (RFC 9773 ARI); read, and refreshed when stale, by step 1."""

    # -- the job ----------------------------------------------------------------------------------------
    def run(self, job: RenewalJob) -> RenewalOutcome:
        store = self.stores.get(job.vault)
        if store is None:
            raise RenewalFailed(f"vault: {job.vault!r} is not configured", permanent=True)
        ttl = dt.timedelta(seconds=self.config.defaults.claim_ttl_seconds)
        with self.claims.claim(job.vault, job.name, ttl=ttl) as held:  # step 2
            if not held:
                return self._held_elsewhere(job)
            try:
                return self._renew(job, store)
            except KeyVaultThrottled as exc:
                return self._wait_for_capacity(job, exc)
            except StoreUnavailable as exc:
                raise RenewalFailed(str(exc), permanent=False) from exc

    def _held_elsewhere(self, job: RenewalJob) -> RenewalOutcome:
        """Another worker holds the certificate. It usually finishes in seconds and this job then finds the
        work done; but a worker that died keeps its claim until the claim's time runs out, so the job comes
        back later instead of being dropped (a bounded number of times: then the sweep's stale re-check)."""
        outcome = RenewalOutcome("claimed-elsewhere", "another worker holds this certificate")
        if job.requeues < self.config.defaults.max_requeues:
            self._requeue(job)
        self.journal.stopped(job, outcome)
        return outcome

    def _requeue(self, job: RenewalJob) -> dt.timedelta:
        """The same job back on the queue, later, as a new message (no dequeue count spent)."""
        delay = dt.timedelta(seconds=self.config.defaults.requeue_delay_seconds * (1 + random.random()))
        self.jobs.enqueue(replace(job, requeues=job.requeues + 1, enqueued_at=self.clock()), delay=delay)
        return delay

    def _wait_for_capacity(self, job: RenewalJob, throttled: KeyVaultThrottled) -> RenewalOutcome:
        """Throttling is not a failure: the job goes back to the queue with a delay (a new message, so the
        host deletes this one and no dequeue count is spent), and an attempt in flight says why it waits.
        Past ``max_requeues`` it takes the normal retry path, so it cannot circle unseen."""
        defaults = self.config.defaults
        if job.requeues >= defaults.max_requeues:
            raise RenewalFailed(f"{throttled} ({job.requeues} waits for capacity)", permanent=False) from throttled
        for row in self.ledger.history(job.vault, job.name)[:1]:
            if row.state in IN_FLIGHT_STATES:
                row.wait_for_capacity(str(throttled), self.clock())
                self.ledger.upsert(row)
        delay = self._requeue(job)
        outcome = RenewalOutcome("waiting-for-capacity", f"Key Vault throttled: {throttled}")
        self.journal.stopped(job, outcome, retry_after=round(delay.total_seconds(), 1))
        return outcome

    def _renew(self, job: RenewalJob, store: CertificateStore) -> RenewalOutcome:
        seen = self._read(store, job.name)
        timing = RenewalTiming(config=self.config, issuers=self.issuers, windows=self.renewal_windows, now=self.clock())
        if seen.active is None:
            stop = self._finish_interrupted(job, seen) or self._why_not(job, seen, timing)
            if stop is not None:
                return stop
        attempt = self._open(job, store, seen)
        # A new order names the certificate it replaces; a resumed one was placed already.
        replaces = timing.replaces(attempt.current, attempt.issuer) if attempt.resume_ticket() is None else None
        issued = self._sign(attempt, replaces=replaces)
        if isinstance(issued, RenewalOutcome):
            return issued
        verified = self._verify(attempt, issued)
        merged = self._merge(attempt, verified)
        self._notify(job, attempt.row, merged)
        return RenewalOutcome("renewed", new_version=merged.version, request_id=attempt.request_id)

    # -- step 1 ------------------------------------------------------------------------------------------
    @staticmethod
    def _read(store: CertificateStore, name: str) -> Snapshot:
        operation = _READS.submit(store.get_pending, name)
        current = store.get_current(name)
        return Snapshot(current=current, operation=operation.result())

    def _why_not(self, job: RenewalJob, seen: Snapshot, timing: RenewalTiming) -> RenewalOutcome | None:
        """Why this job must not renew now (gone, renewed meanwhile, not due), or None to go on. Due-ness is
        the sweep's: the policy, and the CA's window for an ACME issuer with ARI (kept, else asked)."""
        current = seen.current
        if current is None:
            return self._stopped(job, RenewalOutcome("gone", "certificate not found"))
        if job.version and job.version != current.version:
            outcome = RenewalOutcome("already-renewed", f"version {current.version} is current now")
            return self._stopped(job, outcome, version=current.version)
        policy = current.policy
        decision = is_due(
            now=self.clock(),
            not_before=current.not_before,
            expires_on=current.expires_on,
            tags=current.tags,
            policy_triggers=policy.lifetime_triggers if policy else None,
            default_fraction=self.config.renew_fraction(job.vault),
        )
        if not job.force and not decision.due and decision.trigger not in ("expired", "unknown"):
            issuer = timing.ari_issuer(job.vault, job.name, current.tags)
            if issuer is not None:
                decision = apply_window(decision, timing.window_for(current, issuer), self.clock())
        if job.force or decision.due:
            return None
        return self._stopped(job, RenewalOutcome("not-due", decision.reason), version=current.version)

    def _stopped(self, job: RenewalJob, outcome: RenewalOutcome, **fields: object) -> RenewalOutcome:
        """Nothing to do. For the sweep's stale re-check, close in-flight ledger rows whose pending
        operation no longer exists, so they are not re-checked every night."""
        self.journal.stopped(job, outcome, **fields)
        if job.trigger_id.endswith(STALE_TRIGGER_SUFFIX):
            for row in self.ledger.history(job.vault, job.name):
                if row.state in IN_FLIGHT_STATES:
                    row.abandon(f"no pending operation in progress ({outcome.status})", self.clock())
                    self.ledger.upsert(row)
                    self.journal.note("renewal.abandoned", job, request_id=row.request_id)
        return outcome

    def _finish_interrupted(self, job: RenewalJob, seen: Snapshot) -> RenewalOutcome | None:
        """A worker that died after merge (step 6) but before its notice (step 7) left the ledger row in
        flight and the operation completed: the new version exists, so finish the bookkeeping and send the
        one notice instead of losing it (the version is already current, so the job is no longer due)."""
        current, operation = seen.current, seen.operation
        if current is None or operation is None or operation.status.lower() != "completed":
            return None
        row = self.ledger.get(job.vault, job.name, operation.request_id) if operation.request_id else None
        if row is None or row.state in SETTLED_STATES:
            return None
        if (row.new_version or current.version) != current.version or current.version == row.old_version:
            return None
        row.merged(current.version)
        self._notify(job, row, current, detail="resumed")
        return RenewalOutcome("renewed", "bookkeeping finished", new_version=current.version, request_id=row.request_id)

    # -- step 3 ------------------------------------------------------------------------------------------
    def _open(self, job: RenewalJob, store: CertificateStore, seen: Snapshot) -> Attempt:
        """The attempt on the pending request: the existing one if its CSR still fits the policy, else a
        new one. A new one is created only once an issuer is known, so a routing error leaves no version."""
        current = seen.current
        policy = current.policy if current is not None and current.policy is not None else store.get_policy(job.name)
        operation, issuer = seen.active, None
        if operation is not None and operation.csr_der and csr_names(operation.csr_der) != policy_names(policy):
            # The policy changed under a pending CSR: that CSR can never verify; start over.
            self.journal.note("renewal.stale_csr", job, request_id=operation.request_id)
            store.delete_pending(job.name)
            operation = None
        created = False
        if operation is None:
            issuer = self._route(job, current)
            operation, created = self._begin(job, store, policy, current)
        if not operation.csr_der:
            raise RenewalFailed("the pending operation has no CSR", permanent=False)
        # A request Key Vault has just created has no ledger row yet: no read for it on the critical path.
        known = None if created else self.ledger.get(job.vault, job.name, operation.request_id)
        row = known or LedgerRow(
            vault=job.vault,
            name=job.name,
            request_id=operation.request_id,
            state=AttemptState.STARTED,
            old_version=current.version if current else None,
            reason=job.reason,
            started_at=self.clock(),
        )
        issuer = issuer or self._issuer_holding(row) or self._route(job, current)
        return Attempt(job, store, current, operation, policy, issuer, row)

    def _begin(
        self, job: RenewalJob, store: CertificateStore, policy: PolicySpec, current: CertificateVersion | None
    ) -> tuple[PendingOperation, bool]:
        """The pending operation, and whether this call created it (False: it existed, 409)."""
        tags = dict(current.tags) if current else {}
        try:
            operation = store.begin_pending(job.name, replace(policy, issuer_name="Unknown"), tags=tags)
            self.journal.note("renewal.pending_created", job, request_id=operation.request_id)
            return operation, True
        except PendingOperationExists:
            operation = store.get_pending(job.name)  # 409: resume the operation that already exists
            if operation is None or not operation.in_progress:
                raise RenewalFailed(
                    "create answered 409 but no pending operation is in progress", permanent=False
                ) from None
            self.journal.note("renewal.pending_resumed", job, request_id=operation.request_id)
            return operation, False
        except CertificateGone as exc:
            raise RenewalFailed(str(exc), permanent=True) from exc

    def _route(self, job: RenewalJob, current: CertificateVersion | None) -> str:
        try:
            return route_issuer(self.config, job.vault, job.name, current.tags if current else {})
        except NoRoute as exc:
            raise RenewalFailed(str(exc), permanent=True) from exc

    def _issuer_holding(self, row: LedgerRow) -> str | None:
        """A request the CA answered "pending" for stays with that CA while it is still configured."""
        if row.ticket is not None and row.issuer in self.config.issuer_names():
            return row.issuer
        return None

    # -- step 4 ------------------------------------------------------------------------------------------
    def _sign(self, attempt: Attempt, *, replaces: str | None = None) -> IssuedChain | RenewalOutcome:
        ticket = attempt.resume_ticket()
        if ticket is None and attempt.row.ticket is not None:
            self.journal.ticket_dropped(attempt, "the kept ticket is another issuer's or another CSR's")
        attempt.row.submitted(attempt.issuer, self.clock())
        self.ledger.upsert(attempt.row)
        try:
            client = self.issuers(attempt.issuer)
        except Exception as exc:
            raise self._fail(
                attempt, AttemptState.FAILED, f"issuer {attempt.issuer} could not be set up: {exc}"
            ) from exc
        request = SignRequest(
            csr_der=attempt.csr_der,
            identity=CertificateIdentity(attempt.job.vault, attempt.job.name, attempt.request_id),
            validity=validity_of(attempt.policy),
            ticket=ticket,
            replaces=replaces,
        )
        try:
            with metrics.ca_request(attempt.issuer):
                return client.sign(request)
        except IssuancePending as pending:
            return self._follow_up_later(attempt, pending)
        except PermanentCAError as exc:
            raise self._fail(attempt, AttemptState.FAILED, f"CA {attempt.issuer} refused: {exc.message}") from exc
        except TransientCAError as exc:
            message = f"CA {attempt.issuer} unavailable: {exc.message}"
            raise self._fail(attempt, AttemptState.RETRYING, message, permanent=False) from exc

    def _follow_up_later(self, attempt: Attempt, pending: IssuancePending) -> RenewalOutcome:
        """The CA answers later: keep its ticket on the ledger row and poll with a delayed job that, like
        every job, names only the certificate."""
        row = attempt.row
        if row.pending_polls >= self.config.defaults.max_pending_polls:
            raise self._fail(
                attempt, AttemptState.FAILED, f"still pending at {attempt.issuer} after {row.pending_polls} polls"
            )
        row.pending_at_ca(pending.ticket, csr_sha256=attempt.csr_sha256, now=self.clock())
        self.ledger.upsert(row)
        follow_up = replace(attempt.job, reason="pending-followup", enqueued_at=self.clock())
        self.jobs.enqueue(follow_up, delay=pending.retry_after)
        self.journal.pending_at_ca(attempt, pending.retry_after)
        return RenewalOutcome("pending", str(pending), request_id=attempt.request_id)

    # -- step 5 ------------------------------------------------------------------------------------------
    def _verify(self, attempt: Attempt, issued: IssuedChain) -> VerifiedChain:
        issuing = issued.issuer_name or attempt.issuer  # a fallback CA's chain meets that CA's anchors
        try:
            return verify_chain(
                issued.certificates,
                csr_der=attempt.csr_der,
                policy=attempt.policy,
                now=self.clock(),
                trust_anchors=self.trust_anchors(issuing),
            )
        except ChainRejected as exc:
            message = f"chain from {issuing} not merged: {exc}"
            raise self._fail(attempt, AttemptState.REJECTED, message, check=exc.check) from exc

    # -- step 6 ------------------------------------------------------------------------------------------
    def _merge(self, attempt: Attempt, verified: VerifiedChain) -> CertificateVersion:
        tags = dict(attempt.current.tags) if attempt.current else {}
        if attempt.policy.lifetime_triggers:
            tags[MIRRORED_TRIGGER_TAG] = format_trigger(attempt.policy.lifetime_triggers[0])
        chain = [c.public_bytes(Encoding.DER) for c in verified.certificates]
        try:
            merged = attempt.store.merge(attempt.job.name, chain, tags=tags)
        except MergeRejected as exc:
            raise self._fail(attempt, AttemptState.REJECTED, str(exc)) from exc
        except CertificateGone as exc:
            message = f"pending operation vanished before merge: {exc}"
            raise self._fail(attempt, AttemptState.RETRYING, message, permanent=False) from exc
        # No ledger write between merge and notice: a worker that dies here leaves the row in flight with
        # the operation completed, and _finish_interrupted (next delivery, or the sweep) sends the notice.
        attempt.row.merged(merged.version)
        self.journal.merged(attempt, merged.version, self.clock())
        return merged

    # -- step 7 ------------------------------------------------------------------------------------------
    def _notify(self, job: RenewalJob, row: LedgerRow, version: CertificateVersion, detail: str = "") -> None:
        self.notices.enqueue(notice_of(row, version, occurred_at=self.clock()))
        row.notified(self.clock())
        self.ledger.upsert(row)
        self.journal.notified(job, row, version.version, detail)

    # -- failures ----------------------------------------------------------------------------------------
    def _fail(
        self, attempt: Attempt, state: AttemptState, error: str, *, permanent: bool = True, check: str | None = None
    ) -> RenewalFailed:
        """Record the failure on the attempt's ledger row; the caller raises what this returns."""
        attempt.row.fail(state, error, self.clock())
        self.ledger.upsert(attempt.row)
        self.journal.failed(attempt.row, check=check)
        return RenewalFailed(error, permanent=permanent)
