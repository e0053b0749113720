"""The RenewalOrchestrator: one job -> at most one new version, following DESIGN.md steps 1-7.

1 read current version + policy; stop if no longer due    5 verify the chain against CSR and policy
2 claim the certificate (one worker per certificate)      6 merge the chain (new version goes live)
3 create a pending version with issuer Unknown, or resume 7 ledger row + DeploymentNotice
4 CSR -> the routed CA client

Failures raise :class:`RenewalFailed` after the ledger row records the reason, so the queue retries
and finally poisons the job (promise 3); nothing before merge touches the live version (promise 2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_clients import (
    CAClient,
    CertificateIdentity,
    IssuancePending,
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
)
from renewal.flow.due import MIRRORED_TRIGGER_TAG, format_trigger, is_due
from renewal.flow.routing import route_issuer
from renewal.flow.verification import verify_chain
from renewal.model import (
    CertificateVersion,
    DeploymentNotice,
    LedgerRow,
    PendingOperation,
    PolicySpec,
    RenewalJob,
    utcnow,
)
from renewal.observability import log_event
from renewal.ports import CertificateStore, ClaimStore, JobQueue, Ledger, NoticeQueue

log = logging.getLogger("renewal.flow.orchestrator")

_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="renewal-read")
"""Overlaps the two independent reads of step 1; each costs a full Key Vault round trip."""

STALE_TRIGGER_SUFFIX = "-stale"
"""Jobs the sweep enqueues for stale in-flight ledger rows carry this at the end of their trigger_id."""

OutcomeStatus = Literal["renewed", "pending", "not-due", "already-renewed", "claimed-elsewhere", "gone"]


@dataclass(frozen=True)
class RenewalOutcome:
    status: OutcomeStatus
    detail: str = ""
    new_version: str | None = None
    request_id: str | None = None


def _validity(policy: PolicySpec) -> dt.timedelta | None:
    return dt.timedelta(days=round(policy.validity_months * 30.4375)) if policy.validity_months else None


def _csr_names(csr_der: bytes) -> tuple[str | None, set[str]]:
    csr = x509.load_der_x509_csr(csr_der)
    cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    try:
        dns = set(
            csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        dns = set()
    return (str(cn[0].value) if cn else None), {d.lower() for d in dns}


def _policy_names(policy: PolicySpec) -> tuple[str | None, set[str]]:
    from renewal.flow.verification import _policy_common_name

    return _policy_common_name(policy.subject), {d.lower() for d in policy.sans.dns_names}


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

    # -- entry point ------------------------------------------------------------------------------
    def run(self, job: RenewalJob) -> RenewalOutcome:
        store = self.stores.get(job.vault)
        if store is None:
            raise RenewalFailed(f"vault: {job.vault!r} is not configured", permanent=True)
        ttl = dt.timedelta(seconds=self.config.defaults.claim_ttl_seconds)
        with self.claims.claim(job.vault, job.name, ttl=ttl) as held:
            if not held:
                self._log("renewal.claimed_elsewhere", job)
                return RenewalOutcome("claimed-elsewhere", "another worker holds this certificate")
            try:
                return self._renew(job, store)
            except KeyVaultThrottled as exc:
                raise RenewalFailed(str(exc), permanent=False) from exc

    # -- steps ----------------------------------------------------------------------------------------
    def _renew(self, job: RenewalJob, store: CertificateStore) -> RenewalOutcome:
        now = self.clock()
        # Step 1: the current version (with its policy) and any pending operation, read in parallel.
        pending_read = _READS.submit(store.get_pending, job.name)
        current = store.get_current(job.name)
        pending = pending_read.result()
        active = pending if pending is not None and pending.in_progress else None
        policy = current.policy if current is not None and current.policy is not None else None

        if active is None:
            if current is None:
                self._log("renewal.gone", job, detail="certificate not found")
                return self._stop(job, RenewalOutcome("gone", "certificate not found"))
            finished = self._finish_interrupted(job, current, pending)
            if finished is not None:
                return finished
            if job.version and job.version != current.version and not job.force:
                self._log("renewal.already_renewed", job, version=current.version)
                return self._stop(job, RenewalOutcome("already-renewed", f"version {current.version} is current now"))
            decision = is_due(
                now=now,
                not_before=current.not_before,
                expires_on=current.expires_on,
                tags=current.tags,
                policy_triggers=policy.lifetime_triggers if policy else None,
                default_fraction=self._default_fraction(job.vault),
            )
            if not (job.force or decision.due):
                self._log("renewal.not_due", job, version=current.version, detail=decision.reason)
                return self._stop(job, RenewalOutcome("not-due", decision.reason))
            if job.force and job.version and job.version != current.version:
                return RenewalOutcome("already-renewed", f"version {current.version} is current now")
            policy = policy or store.get_policy(job.name)
            issuer_name = self._route(job, current)
            active = self._begin(job, store, policy, current)  # step 3
        else:
            policy = policy or store.get_policy(job.name)
            issuer_name = (
                job.issuer if job.issuer and job.request_id == active.request_id else self._route(job, current)
            )
            if active.csr_der and _csr_names(active.csr_der) != _policy_names(policy):
                # The policy changed under a pending CSR: that CSR can never verify; start over.
                self._log("renewal.stale_csr", job, request_id=active.request_id)
                store.delete_pending(job.name)
                active = self._begin(job, store, policy, current)
        return self._issue_and_merge(job, store, current, active, policy, issuer_name, now)

    def _begin(
        self, job: RenewalJob, store: CertificateStore, policy: PolicySpec, current: CertificateVersion | None
    ) -> PendingOperation:
        tags = dict(current.tags) if current else {}
        try:
            op = store.begin_pending(job.name, replace(policy, issuer_name="Unknown"), tags=tags)
            self._log("renewal.pending_created", job, request_id=op.request_id)
        except PendingOperationExists:
            op = store.get_pending(job.name)  # 409: resume the operation that already exists
            if op is None or not op.in_progress:
                raise RenewalFailed(
                    "create answered 409 but no pending operation is in progress", permanent=False
                ) from None
            self._log("renewal.pending_resumed", job, request_id=op.request_id)
        except CertificateGone as exc:
            raise RenewalFailed(str(exc), permanent=True) from exc
        return op

    def _route(self, job: RenewalJob, current: CertificateVersion | None) -> str:
        try:
            return route_issuer(self.config, job.vault, job.name, current.tags if current else {})
        except NoRoute as exc:
            raise RenewalFailed(str(exc), permanent=True) from exc

    def _issue_and_merge(
        self,
        job: RenewalJob,
        store: CertificateStore,
        current: CertificateVersion | None,
        op: PendingOperation,
        policy: PolicySpec,
        issuer_name: str,
        now: dt.datetime,
    ) -> RenewalOutcome:
        fields = {"request_id": op.request_id, "issuer": issuer_name}
        row = self.ledger.get(job.vault, job.name, op.request_id) or LedgerRow(
            vault=job.vault,
            name=job.name,
            request_id=op.request_id,
            state="started",
            old_version=current.version if current else None,
            reason=job.reason,
            started_at=now,
        )
        if not op.csr_der:
            raise RenewalFailed("the pending operation has no CSR", permanent=False)
        ticket = job.ticket if job.request_id == op.request_id and job.issuer == issuer_name else None
        if ticket is None and row.issuer == issuer_name:
            ticket = row.extra.get("ticket")
        row.issuer, row.attempts, row.updated_at, row.state = issuer_name, row.attempts + 1, now, "submitted"
        self.ledger.upsert(row)

        request = SignRequest(
            csr_der=op.csr_der,
            identity=CertificateIdentity(job.vault, job.name, op.request_id),
            validity=_validity(policy),
            ticket=ticket,
        )
        try:
            client = self.issuers(issuer_name)
        except Exception as exc:
            self._fail(row, "failed", f"issuer {issuer_name} could not be set up: {exc}")
            raise RenewalFailed(row.error or "", permanent=True) from exc
        try:
            issued = metrics.timed_sign(client, request, issuer_name)  # step 4
        except IssuancePending as pending:
            return self._follow_up_later(job, row, op, issuer_name, pending)
        except PermanentCAError as exc:
            self._fail(row, "failed", f"CA {issuer_name} refused: {exc.message}")
            raise RenewalFailed(row.error or "", permanent=True) from exc
        except TransientCAError as exc:
            self._fail(row, "retrying", f"CA {issuer_name} unavailable: {exc.message}")
            raise RenewalFailed(row.error or "", permanent=False) from exc

        try:  # step 5
            verified = verify_chain(
                issued.certificates,
                csr_der=op.csr_der,
                policy=policy,
                now=self.clock(),
                trust_anchors=self.trust_anchors(issuer_name),
            )
        except ChainRejected as exc:
            self._fail(row, "rejected", f"chain from {issuer_name} not merged: {exc}")
            log_event(log, "renewal.chain_rejected", level=logging.WARNING, **self._ids(job), **fields, check=exc.check)
            raise RenewalFailed(row.error or "", permanent=True) from exc

        tags = dict(current.tags) if current else {}
        if policy.lifetime_triggers:
            tags[MIRRORED_TRIGGER_TAG] = format_trigger(policy.lifetime_triggers[0])
        try:  # step 6
            merged = store.merge(job.name, [c.public_bytes(Encoding.DER) for c in verified.certificates], tags=tags)
        except MergeRejected as exc:
            self._fail(row, "rejected", str(exc))
            raise RenewalFailed(str(exc), permanent=True) from exc
        except CertificateGone as exc:
            self._fail(row, "retrying", f"pending operation vanished before merge: {exc}")
            raise RenewalFailed(row.error or "", permanent=False) from exc
        # No ledger write between merge and notice: a worker that dies here leaves the row in flight with
        # the operation completed, and _finish_interrupted (next delivery, or the sweep) sends the notice.
        row.new_version, row.error = merged.version, None
        row.extra.pop("ticket", None)
        self._log("renewal.merged", job, version=merged.version, old_version=row.old_version, **fields)
        metrics.renewal_merged(job, issuer_name, row.started_at, self.clock())

        self._notify(job, row, merged, verified.leaf)  # step 7
        return RenewalOutcome("renewed", new_version=merged.version, request_id=op.request_id)

    def _stop(self, job: RenewalJob, outcome: RenewalOutcome) -> RenewalOutcome:
        """Nothing to do. For the sweep's stale re-check, close in-flight ledger rows whose pending
        operation no longer exists, so they are not re-checked every night."""
        if job.trigger_id.endswith(STALE_TRIGGER_SUFFIX):
            for row in self.ledger.history(job.vault, job.name):
                if row.state in ("started", "submitted", "pending-at-ca", "retrying"):
                    row.state, row.updated_at = "abandoned", self.clock()
                    row.error = f"{row.error or 'interrupted'}; no pending operation in progress ({outcome.status})"
                    self.ledger.upsert(row)
                    self._log("renewal.abandoned", job, request_id=row.request_id)
        return outcome

    def _finish_interrupted(
        self, job: RenewalJob, current: CertificateVersion, pending: PendingOperation | None
    ) -> RenewalOutcome | None:
        """A worker that died after merge (step 6) but before its notice (step 7) left the ledger row in
        flight and the operation completed: the new version exists, so finish the bookkeeping and send the
        one notice instead of losing it (the version is already current, so the job is no longer due)."""
        if pending is None or pending.status.lower() != "completed" or not pending.request_id:
            return None
        row = self.ledger.get(job.vault, job.name, pending.request_id)
        if row is None or row.state in ("notified", "failed", "rejected"):
            return None
        if (row.new_version or current.version) != current.version or current.version == row.old_version:
            return None
        row.new_version, row.error = current.version, None
        row.extra.pop("ticket", None)
        self._notify(job, row, current, x509.load_der_x509_certificate(current.cer), detail="resumed")
        return RenewalOutcome("renewed", "bookkeeping finished", new_version=current.version, request_id=row.request_id)

    def _notify(
        self, job: RenewalJob, row: LedgerRow, version: CertificateVersion, leaf: x509.Certificate, detail: str = ""
    ) -> None:
        """Step 7: the notice for the merged version, then the ledger row says so."""
        notice = DeploymentNotice(
            vault=job.vault,
            name=job.name,
            new_version=version.version,
            old_version=row.old_version,
            certificate_id=version.id,
            thumbprint_sha1=hashlib.sha1(version.cer).hexdigest(),  # noqa: S324 - x5t is SHA-1 by definition
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            issuer=row.issuer,
            request_id=row.request_id,
            occurred_at=self.clock(),
        )
        self.notices.enqueue(notice)
        row.state, row.updated_at = "notified", self.clock()
        self.ledger.upsert(row)
        self._log(
            "renewal.notified",
            job,
            version=version.version,
            request_id=row.request_id,
            issuer=row.issuer,
            detail=detail or None,
        )

    def _follow_up_later(
        self, job: RenewalJob, row: LedgerRow, op: PendingOperation, issuer: str, pending: IssuancePending
    ) -> RenewalOutcome:
        polls = job.pending_polls + 1
        if polls > self.config.defaults.max_pending_polls:
            self._fail(row, "failed", f"still pending at {issuer} after {polls - 1} polls")
            raise RenewalFailed(row.error or "", permanent=True)
        row.state, row.updated_at = "pending-at-ca", self.clock()
        row.extra["ticket"] = pending.ticket
        self.ledger.upsert(row)
        follow_up = replace(
            job,
            reason="pending-followup",
            ticket=pending.ticket,
            request_id=op.request_id,
            issuer=issuer,
            pending_polls=polls,
            enqueued_at=self.clock(),
        )
        self.jobs.enqueue(follow_up, delay=pending.retry_after)
        metrics.renewal_finished("pending", issuer)
        self._log(
            "renewal.pending_at_ca",
            job,
            request_id=op.request_id,
            issuer=issuer,
            retry_after=pending.retry_after.total_seconds(),
        )
        return RenewalOutcome("pending", str(pending), request_id=op.request_id)

    # -- small helpers ------------------------------------------------------------------------------
    def _fail(self, row: LedgerRow, state: str, error: str) -> None:
        row.state, row.error, row.updated_at = state, error, self.clock()
        self.ledger.upsert(row)
        metrics.renewal_finished(state, row.issuer)
        log_event(
            log,
            "renewal.failed",
            level=logging.WARNING,
            vault=row.vault,
            certificate=row.name,
            request_id=row.request_id,
            issuer=row.issuer,
            state=state,
            error=error,
        )

    def _default_fraction(self, vault: str) -> float:
        vault_config = self.config.vault(vault)
        if vault_config is not None and vault_config.renew_at_lifetime_fraction:
            return vault_config.renew_at_lifetime_fraction
        return self.config.defaults.renew_at_lifetime_fraction

    @staticmethod
    def _ids(job: RenewalJob) -> dict[str, str]:
        return {"vault": job.vault, "certificate": job.name, "job_reason": job.reason, "trigger_id": job.trigger_id}

    def _log(self, event: str, job: RenewalJob, **fields: object) -> None:
        merged = {"version": job.version or None, "request_id": job.request_id or None, **fields}
        log_event(log, event, **self._ids(job), **merged)
