"""Domain values that cross module boundaries: jobs, notices, certificate snapshots, policies."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

JobReason = Literal["event", "sweep", "operator", "replay", "pending-followup"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class RenewalJob:
    """One unit of work for the orchestrator: renew ``name`` in ``vault`` if (still) due."""

    vault: str
    name: str
    reason: JobReason
    force: bool = False
    trigger_id: str = ""
    """Event id, sweep run id or operator request id: for logs and de-duplication audits."""
    version: str = ""
    """The current version the trigger saw; if another version is current by the time the job runs,
    the certificate was renewed meanwhile and the job does nothing (keeps promise 1 for forced jobs)."""
    ticket: dict[str, Any] | None = None
    """Resume ticket of an earlier IssuancePending."""
    request_id: str = ""
    """Key Vault pending request id the ticket belongs to."""
    issuer: str = ""
    """Issuer the ticket belongs to (a ticket is only valid at the CA that made it)."""
    pending_polls: int = 0
    enqueued_at: dt.datetime | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["enqueued_at"] = _ts(self.enqueued_at)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenewalJob:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["enqueued_at"] = _parse_ts(values.get("enqueued_at"))
        return cls(**values)


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
