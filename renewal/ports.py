"""What the flow needs from the outside world. ``renewal/azure/`` implements these over the SDKs;
tests may implement them in memory only where the real adapter is also tested against a server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from renewal.model import (
    AttemptState,
    CertificateListing,
    CertificateVersion,
    DeploymentNotice,
    LedgerRow,
    PendingOperation,
    PolicySpec,
    RenewalJob,
)


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


class Ledger(Protocol):
    def get(self, vault: str, name: str, request_id: str) -> LedgerRow | None: ...
    def upsert(self, row: LedgerRow) -> None: ...
    def history(self, vault: str, name: str) -> list[LedgerRow]: ...
    def recent(self, *, states: set[AttemptState] | None = None, limit: int = 100) -> list[LedgerRow]: ...


class ClaimStore(Protocol):
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> AbstractContextManager[bool]:
        """Context manager yielding True when this worker holds the certificate, False when another does."""
        ...


class Deployer(Protocol):
    name: str

    def deliver(self, notice: DeploymentNotice) -> None:
        """Raise to have the deployments queue retry the notice."""
        ...
