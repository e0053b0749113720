"""What the flow needs from the outside world. ``renewal/azure/`` implements these over the SDKs;
tests may implement them in memory only where the real adapter is also tested against a server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .model import CertificateListing, CertificateVersion, DeploymentNotice, PendingOperation, PolicySpec, RenewalJob


class PendingOperationExists(Exception):
    """Key Vault answered 409: a pending operation is in progress for this certificate."""


class CertificateGone(Exception):
    """The certificate (or its pending operation) no longer exists."""


class MergeRejected(Exception):
    """Key Vault refused the merge (key mismatch, bad chain); carries the service message."""


class KeyVaultThrottled(Exception):
    """429 that outlived the store's own backoff."""


class CertificateStore(Protocol):
    """One Key Vault's certificates. Never touches the secrets API."""

    vault: str

    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]: ...
    def get_current(self, name: str) -> CertificateVersion | None: ...
    def get_policy(self, name: str) -> PolicySpec: ...
    def begin_pending(self, name: str, policy: PolicySpec, *, tags: dict[str, str]) -> PendingOperation: ...
    def get_pending(self, name: str) -> PendingOperation | None: ...
    def delete_pending(self, name: str) -> None: ...
    def merge(self, name: str, chain_der: list[bytes], *, tags: dict[str, str] | None = None) -> CertificateVersion: ...
    def list_versions(self, name: str) -> Iterator[CertificateListing]: ...
    def update_tags(self, name: str, version: str, tags: dict[str, str]) -> None: ...
    def update_policy(self, name: str, policy: PolicySpec) -> None: ...


class JobQueue(Protocol):
    def enqueue(self, job: RenewalJob, *, delay: dt.timedelta | None = None) -> None: ...


class NoticeQueue(Protocol):
    def enqueue(self, notice: DeploymentNotice) -> None: ...


@dataclass
class LedgerRow:
    """One renewal attempt's record in the ``renewals`` table (PartitionKey vault|name, RowKey request id)."""

    vault: str
    name: str
    request_id: str
    state: str
    """started | submitted | pending-at-ca | retrying | notified | failed | rejected | abandoned"""
    issuer: str = ""
    old_version: str | None = None
    new_version: str | None = None
    attempts: int = 0
    error: str | None = None
    reason: str = ""
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger(Protocol):
    def get(self, vault: str, name: str, request_id: str) -> LedgerRow | None: ...
    def upsert(self, row: LedgerRow) -> None: ...
    def history(self, vault: str, name: str) -> list[LedgerRow]: ...
    def recent(self, *, states: set[str] | None = None, limit: int = 100) -> list[LedgerRow]: ...


class ClaimStore(Protocol):
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> AbstractContextManager[bool]:
        """Context manager yielding True when this worker holds the certificate, False when another does."""
        ...


class Deployer(Protocol):
    name: str

    def deliver(self, notice: DeploymentNotice) -> None:
        """Raise to have the deployments queue retry the notice."""
        ...
