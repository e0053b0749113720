"""Domain values that cross module boundaries: jobs, notices, certificate snapshots, policies."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from renewal.errors import JobRejected

JobReason = Literal["event", "sweep", "operator", "replay", "pending-followup"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class RenewalJob:
    """One unit of work for the orchestrator: renew ``name`` in ``vault`` if (still) due.

    A job names a certificate and why, nothing more (DESIGN.md promise 7): which CA signs, which resume
    ticket applies and which pending request is meant come from the configuration, the ledger and Key
    Vault when the job runs."""

    vault: str
    name: str
    reason: JobReason
    force: bool = False
    trigger_id: str = ""
    """Event id, sweep run id or operator request id: for logs and de-duplication audits."""
    version: str = ""
    """The current version the trigger saw; if another version is current by the time the job runs,
    the certificate was renewed meanwhile and the job does nothing (keeps promise 1 for forced jobs)."""
    requeues: int = 0
    """How often this job went back to the queue without failing (Key Vault throttled it, or another worker
    held the certificate); bounded by the configuration."""
    enqueued_at: dt.datetime | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["enqueued_at"] = _ts(self.enqueued_at)
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class DeploymentNotice:
    """Told to deployers when a new version is live. ``idempotency_key`` lets receivers de-duplicate."""

    vault: str
    name: str
    new_version: str
    old_version: str | None
    certificate_id: str
    thumbprint_sha1: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    request_id: str
    occurred_at: dt.datetime = field(default_factory=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"{self.vault}/{self.name}/{self.new_version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("not_before", "not_after", "occurred_at"):
            data[key] = _ts(getattr(self, key))
        data["idempotency_key"] = self.idempotency_key
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentNotice:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("not_before", "not_after", "occurred_at"):
            values[key] = _parse_ts(values.get(key))
        return cls(**values)


# -- queue messages: parsed like events, every refusal names its field -------------------------------------
VAULT_NAME = re.compile(r"^[0-9a-zA-Z-]{3,24}$")
"""Key Vault's own rule for vault names."""
CERTIFICATE_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
"""Key Vault's own rule for certificate names."""
OBJECT_ID = re.compile(r"^[0-9a-zA-Z-]{1,64}$")
"""Versions and pending request ids."""
JOB_REASONS = ("event", "sweep", "operator", "replay", "pending-followup")
_TRIGGER_ID = re.compile(r"^[\x21-\x7e]{0,200}$")


def _object(body: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobRejected("body", f"not {what} ({exc})") from None
    if not isinstance(data, dict):
        raise JobRejected("body", f"{what} must be a JSON object")
    return data


def _matching(data: dict[str, Any], key: str, pattern: re.Pattern[str], *, required: bool = True) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise JobRejected(key, "required string is missing")
        return ""
    if not isinstance(value, str):
        raise JobRejected(key, f"must be a string, not {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise JobRejected(key, f"{value[:80]!r} does not match {pattern.pattern}")
    return value


def _moment(data: dict[str, Any], key: str, *, required: bool = False) -> dt.datetime | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise JobRejected(key, "must be an ISO 8601 time")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise JobRejected(key, f"{value[:40]!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _known_vault(vault: str, configured_vaults: Collection[str] | None) -> None:
    if configured_vaults is not None and vault not in configured_vaults:
        raise JobRejected("vault", f"{vault!r} is not a configured vault")


def parse_job(body: str | bytes, *, configured_vaults: Collection[str] | None = None) -> RenewalJob:
    """A ``renewal-jobs`` message, validated like an event. Fields a job does not carry (an issuer, a resume
    ticket, a request id, as older or forged messages may hold) are ignored: they decide nothing."""
    data = _object(body, "a renewal job")
    vault = _matching(data, "vault", VAULT_NAME)
    _known_vault(vault, configured_vaults)
    name = _matching(data, "name", CERTIFICATE_NAME)
    reason = data.get("reason")
    if reason not in JOB_REASONS:
        raise JobRejected("reason", f"unknown value {str(reason)[:40]!r} (one of {', '.join(JOB_REASONS)})")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise JobRejected("force", f"must be true or false, not {type(force).__name__}")
    waits = data.get("requeues", 0)
    if isinstance(waits, bool) or not isinstance(waits, int) or not 0 <= waits <= 10_000:
        raise JobRejected("requeues", "must be a whole number from 0 to 10000")
    return RenewalJob(
        vault=vault,
        name=name,
        reason=reason,
        force=force,
        trigger_id=_matching(data, "trigger_id", _TRIGGER_ID, required=False),
        version=_matching(data, "version", OBJECT_ID, required=False),
        requeues=waits,
        enqueued_at=_moment(data, "enqueued_at"),
    )


def parse_notice(body: str | bytes, *, configured_vaults: Collection[str] | None = None) -> DeploymentNotice:
    """A ``deployments`` message. Only its vault, name, new version and request id are read as a claim to
    check: the notice deployers get is rebuilt from the ledger and Key Vault (``renewal.flow.deploy``)."""
    data = _object(body, "a deployment notice")
    vault = _matching(data, "vault", VAULT_NAME)
    _known_vault(vault, configured_vaults)
    try:
        return DeploymentNotice(
            vault=vault,
            name=_matching(data, "name", CERTIFICATE_NAME),
            new_version=_matching(data, "new_version", OBJECT_ID),
            request_id=_matching(data, "request_id", OBJECT_ID),
            old_version=_matching(data, "old_version", OBJECT_ID, required=False) or None,
            certificate_id=str(data.get("certificate_id") or ""),
            thumbprint_sha1=str(data.get("thumbprint_sha1") or ""),
            not_before=_moment(data, "not_before", required=True),  # type: ignore[arg-type]
            not_after=_moment(data, "not_after", required=True),  # type: ignore[arg-type]
            issuer=str(data.get("issuer") or ""),
            occurred_at=_moment(data, "occurred_at") or utcnow(),
        )
    except JobRejected:
        raise
    except (TypeError, ValueError) as exc:
        raise JobRejected("body", f"not a deployment notice ({exc})") from None


@dataclass(frozen=True)
class SubjectAlternativeNames:
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    upns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.dns_names or self.emails or self.upns or self.uris or self.ip_addresses)


@dataclass(frozen=True)
class LifetimeTrigger:
    lifetime_percentage: int | None = None
    days_before_expiry: int | None = None
    action: str = "EmailContacts"


@dataclass(frozen=True)
class PolicySpec:
    """The parts of a Key Vault certificate policy the renewal flow reads and re-submits."""

    subject: str
    sans: SubjectAlternativeNames = SubjectAlternativeNames()
    issuer_name: str = "Unknown"
    key_type: str = "RSA"
    key_size: int | None = 2048
    key_curve: str | None = None
    exportable: bool | None = None
    reuse_key: bool | None = None
    content_type: str | None = None
    ekus: tuple[str, ...] = ()
    key_usage: tuple[str, ...] = ()
    validity_months: int | None = None
    lifetime_triggers: tuple[LifetimeTrigger, ...] = ()
    certificate_transparency: bool | None = None
    certificate_type: str | None = None

    @property
    def common_name(self) -> str | None:
        """The CN of the policy's X.500 subject ("CN=app.example.com, O=Contoso")."""
        for part in self.subject.replace(";", ",").split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().upper() == "CN":
                return value.strip()
        return None


@dataclass(frozen=True)
class CertificateListing:
    """What the list API returns for one certificate: no policy, no material."""

    vault: str
    name: str
    version: str | None
    enabled: bool | None
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    created_on: dt.datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    pending: bool = False
    """True when the list item exists only as a pending operation (no completed version yet)."""
    thumbprint: str | None = None
    """SHA-1 of the current version's DER (lower-case hex, from the list's ``x5t``); None when pending."""


@dataclass(frozen=True)
class CertificateVersion:
    """The current (or a given) completed version, with its public certificate."""

    vault: str
    name: str
    version: str
    id: str
    cer: bytes
    enabled: bool
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    created_on: dt.datetime | None
    tags: dict[str, str]
    policy: PolicySpec | None = None
    leaf: LeafFacts | None = None
    """The certificate's facts when a kept version carries them (else the certificate is parsed)."""


@dataclass(frozen=True)
class PendingOperation:
    vault: str
    name: str
    request_id: str
    status: str
    csr_der: bytes | None
    issuer_name: str | None = None
    cancellation_requested: bool = False
    error: str | None = None

    @property
    def in_progress(self) -> bool:
        return self.status.lower() == "inprogress"


@dataclass(frozen=True)
class RenewalWindow:
    """What the CA said about renewing one certificate version (RFC 9773 ARI), kept until ``recheck_at`` (its
    Retry-After, within bounds) so a sweep over thousands of certificates does not ask the CA for each one
    every night."""

    vault: str
    name: str
    thumbprint: str
    """The version it is about: SHA-1 of its DER, lower-case hex (what the listing's ``x5t`` says)."""
    issuer: str
    """The configured issuer that was asked."""
    cert_id: str
    """The RFC 9773 identifier of that version; empty when ARI cannot name it (no Authority Key Identifier)."""
    checked_at: dt.datetime
    recheck_at: dt.datetime
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    """The suggested window; both None when the CA suggests none (it does not know this certificate)."""
    explanation_url: str | None = None

    @property
    def suggested(self) -> bool:
        return self.start is not None and self.end is not None


class AttemptState(StrEnum):
    """Where one renewal attempt (one pending request in Key Vault) stands. Stored as its value."""

    STARTED = "started"
    """The pending version exists; nothing has been sent to a CA yet."""
    SUBMITTED = "submitted"
    """The CSR went to the CA (also: merged, the notice not yet queued)."""
    PENDING_AT_CA = "pending-at-ca"
    """The CA accepted the request and answers later; a delayed follow-up job polls it."""
    RETRYING = "retrying"
    """A transient failure (CA or Key Vault unavailable); the queue retries the job."""
    WAITING_FOR_CAPACITY = "waiting-for-capacity"
    """Key Vault throttled the attempt; the job waits in the queue for the vault's create budget."""
    NOTIFIED = "notified"
    """Merged, and the deployment notice is queued: the attempt succeeded."""
    FAILED = "failed"
    """The CA refused, or the issuer cannot be used: needs a fix, then replay."""
    REJECTED = "rejected"
    """The issued chain did not pass verification, or Key Vault refused the merge."""
    ABANDONED = "abandoned"
    """In flight once, but its pending operation is gone: closed by the sweep's stale re-check."""

    @property
    def in_flight(self) -> bool:
        return self in IN_FLIGHT_STATES

    @property
    def failing(self) -> bool:
        return self in FAILING_STATES

    @property
    def succeeded(self) -> bool:
        return self is AttemptState.NOTIFIED


IN_FLIGHT_STATES = frozenset(
    {
        AttemptState.STARTED,
        AttemptState.SUBMITTED,
        AttemptState.PENDING_AT_CA,
        AttemptState.RETRYING,
        AttemptState.WAITING_FOR_CAPACITY,
    }
)
"""Work that should still finish; the sweep re-drives rows left here too long."""
FAILING_STATES = frozenset({AttemptState.FAILED, AttemptState.REJECTED, AttemptState.RETRYING})
"""What an operator must look at."""
SETTLED_STATES = frozenset({AttemptState.NOTIFIED, AttemptState.FAILED, AttemptState.REJECTED})
"""Attempts no later delivery may reopen."""


@dataclass
class LedgerRow:
    """One renewal attempt's record in the ``renewals`` table (PartitionKey vault|name, RowKey request id).

    The transitions below are the only way the flow changes ``state``."""

    vault: str
    name: str
    request_id: str
    state: AttemptState
    issuer: str = ""
    old_version: str | None = None
    new_version: str | None = None
    attempts: int = 0
    error: str | None = None
    reason: str = ""
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = AttemptState(self.state)

    @property
    def ticket(self) -> dict[str, Any] | None:
        """The resume ticket of the CA that answered "pending" for this request, if any."""
        value = self.extra.get("ticket")
        return value if isinstance(value, dict) else None

    def submitted(self, issuer: str, now: dt.datetime) -> None:
        self.issuer, self.attempts, self.state, self.updated_at = issuer, self.attempts + 1, AttemptState.SUBMITTED, now

    @property
    def pending_polls(self) -> int:
        """How often the CA answered "pending" for this request."""
        polls = self.extra.get("polls", 0)
        return polls if isinstance(polls, int) else 0

    def pending_at_ca(self, ticket: dict[str, Any], *, csr_sha256: str, now: dt.datetime) -> None:
        """The CA will answer later: keep its ticket with the hash of the CSR it belongs to."""
        self.state, self.updated_at = AttemptState.PENDING_AT_CA, now
        self.extra.update(ticket=ticket, ticket_csr_sha256=csr_sha256, polls=self.pending_polls + 1)

    def fail(self, state: AttemptState, error: str, now: dt.datetime) -> None:
        if state not in FAILING_STATES:
            raise ValueError(f"{state} is not a failure state")
        self.state, self.error, self.updated_at = state, error, now

    def merged(self, version: str) -> None:
        """The new version is live; the row stays SUBMITTED until the notice is queued."""
        self.new_version, self.error = version, None
        for key in ("ticket", "ticket_csr_sha256"):
            self.extra.pop(key, None)

    def notified(self, now: dt.datetime) -> None:
        self.state, self.updated_at = AttemptState.NOTIFIED, now

    def wait_for_capacity(self, note: str, now: dt.datetime) -> None:
        self.state, self.error, self.updated_at = AttemptState.WAITING_FOR_CAPACITY, note, now

    def abandon(self, note: str, now: dt.datetime) -> None:
        self.state, self.updated_at = AttemptState.ABANDONED, now
        self.error = f"{self.error or 'interrupted'}; {note}"


@dataclass(frozen=True)
class BackupEntry:
    """One Key Vault backup blob in the backup archive: written when ``version`` was the certificate's
    current version (the blob itself holds every version, key and policy, encrypted by Key Vault)."""

    vault: str
    name: str
    version: str
    thumbprint: str
    """SHA-1 hex of ``version``'s certificate: what a restore must bring back as the current version."""
    backed_up_at: dt.datetime
    not_after: dt.datetime | None = None

    @property
    def blob_name(self) -> str:
        return f"{self.vault}/{self.name}/{self.version}.kvbackup"


@dataclass(frozen=True)
class LeafFacts:
    """What the compliance rules read from a version's certificate. A version never changes, so these are
    kept with it and a view of a large estate need not parse every certificate again."""

    key_type: str
    """"RSA", "EC", or the key class's name for anything else."""
    key_bits: int | None
    curve: str | None
    signature_hash: str | None
    """The signature's hash ("sha256", "sha1", ...); None for algorithms without one (Ed25519)."""
    signature_algorithm: str
    issuer: str
    """The issuer's name, RFC 4514."""
    self_issued: bool
    """Issuer equals subject and the certificate's own key verifies its signature."""


@dataclass(frozen=True)
class KeptVersion:
    """A certificate version as an earlier read saw it, kept so operators' views need not read it again.

    The certificate of a version never changes; its policy can be edited in place, so ``read_at`` says how
    old the policy part is."""

    current: CertificateVersion
    thumbprint: str
    read_at: dt.datetime


class RolloutState(StrEnum):
    """Where one deployer target stands for one certificate version (DESIGN.md, "Deployers")."""

    DONE = "done"
    """The target took the version: the thumbprint it reports bound is the version's (or a notice was sent)."""
    IN_PROGRESS = "in_progress"
    """An operation is under way; the notice comes back after a delay to look again."""
    SKIPPED = "skipped"
    """The target cannot take this certificate, or does not use it; the detail says why."""
    FAILED = "failed"
    """Needs a fix (a role, a pinned reference, a refused operation); retried, then poisoned for replay."""

    @property
    def settled(self) -> bool:
        """Nothing more to do for this target and version (a later pass leaves it alone)."""
        return self in (RolloutState.DONE, RolloutState.SKIPPED)


@dataclass(frozen=True)
class RolloutOutcome:
    """A deployer's answer for one target."""

    deployer: str
    target: str
    """The target's resource id; a notifier's own name."""
    state: RolloutState
    detail: str = ""
    thumbprint: str | None = None
    """DONE: the thumbprint the target reports bound (upper-case hex SHA-1)."""
    check_after_seconds: int | None = None
    """IN_PROGRESS: look again after this long."""
    operation: str | None = None
    """IN_PROGRESS: the long-running operation's status URL, polled on the next pass."""


@dataclass(frozen=True)
class RolloutRecord:
    """The ledger's record of a target's last outcome for one certificate version."""

    vault: str
    name: str
    version: str
    deployer: str
    target: str
    state: RolloutState
    detail: str
    thumbprint: str | None
    operation: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    attempts: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.deployer, self.target)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["started_at"], data["updated_at"] = _ts(self.started_at), _ts(self.updated_at)
        return data

    @classmethod
    def after(
        cls,
        previous: RolloutRecord | None,
        outcome: RolloutOutcome,
        *,
        vault: str,
        name: str,
        version: str,
        now: dt.datetime,
    ) -> RolloutRecord:
        """The record once ``outcome`` is known. The clock (``started_at``) runs while the target stays in
        progress; a first pass, or a re-drive after a failure, starts it again."""
        ongoing = previous is not None and previous.state is RolloutState.IN_PROGRESS
        return cls(
            vault=vault,
            name=name,
            version=version,
            deployer=outcome.deployer,
            target=outcome.target,
            state=RolloutState(outcome.state),
            detail=outcome.detail,
            thumbprint=outcome.thumbprint,
            operation=outcome.operation if outcome.state is RolloutState.IN_PROGRESS else None,
            started_at=previous.started_at if ongoing and previous is not None else now,
            updated_at=now,
            attempts=(previous.attempts if previous is not None else 0) + 1,
        )
