"""What the flow needs from the outside world. ``renewal/azure/`` implements these over the SDKs;
tests may implement them in memory only where the real adapter is also tested against a server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from renewal.model import (
    AttemptState,
    BackupEntry,
    CertificateListing,
    CertificateVersion,
    DeploymentNotice,
    KeptVersion,
    LedgerRow,
    PendingOperation,
    PolicySpec,
    RenewalJob,
    RenewalWindow,
    RolloutOutcome,
    RolloutRecord,
)


class CertificateStore(Protocol):
    """One Key Vault's certificates. Never touches the secrets API.

    Every method may raise KeyVaultThrottled (429 after the store's own backoff) and StoreUnavailable (5xx,
    connection failures); begin_pending raises PendingOperationExists (409) and CertificateGone; merge raises
    MergeRejected (Key Vault refused the chain) and CertificateGone (no pending operation); get_policy raises
    CertificateGone. Absence is None from get_current and get_pending, not an error."""

    vault: str

    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]: ...
    def get_current(self, name: str) -> CertificateVersion | None: ...
    def get_policy(self, name: str) -> PolicySpec: ...
    def begin_pending(self, name: str, policy: PolicySpec, *, tags: dict[str, str]) -> PendingOperation: ...
    def get_pending(self, name: str) -> PendingOperation | None: ...
    def delete_pending(self, name: str) -> None: ...
    def merge(self, name: str, chain_der: list[bytes], *, tags: dict[str, str] | None = None) -> CertificateVersion: ...
    def list_versions(self, name: str) -> Iterator[CertificateListing]: ...
    def update_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Replace one version's tags (``version`` "": the current version's)."""
        ...

    def update_policy(self, name: str, policy: PolicySpec) -> None: ...
    def backup(self, name: str) -> bytes:
        """Key Vault's opaque backup of every version, key and policy; CertificateGone when absent."""
        ...


class RecoveryTarget(Protocol):
    """A vault restores and drills write into (a certificate vault, or a recovery vault of the config).

    restore raises RestoreRefused (the name exists, live or soft-deleted; another subscription or
    geography); both may raise KeyVaultThrottled and StoreUnavailable."""

    vault: str

    def restore(self, backup: bytes) -> CertificateVersion: ...
    def get_current(self, name: str) -> CertificateVersion | None: ...
    def delete_and_purge(self, name: str) -> None: ...


class VersionFacts(Protocol):
    """What the operators' views need from each certificate's current version, kept after the first read
    (the ``versionfacts`` table). Every method may raise StoreUnavailable."""

    def load(self, vault: str) -> dict[str, KeptVersion]:
        """Every kept version of the vault, by certificate name (one query, paged)."""
        ...

    def keep(self, vault: str, versions: Sequence[CertificateVersion], *, read_at: dt.datetime) -> None: ...
    def forget(self, vault: str, names: Sequence[str]) -> None: ...


class RenewalWindows(Protocol):
    """The CAs' suggested renewal windows (RFC 9773 ARI), one per certificate, shared by every instance (the
    ``renewalwindows`` table). Every method may raise StoreUnavailable."""

    def load(self, vault: str) -> dict[str, RenewalWindow]:
        """Every kept window of the vault, by certificate name (one query, paged)."""
        ...

    def get(self, vault: str, name: str) -> RenewalWindow | None: ...
    def keep(self, window: RenewalWindow) -> None:
        """Write (replace) the certificate's window."""
        ...


class BackupArchive(Protocol):
    """Backup blobs, kept in a storage account in another region; written once, never overwritten.
    Every method may raise StoreUnavailable."""

    def put(self, entry: BackupEntry, backup: bytes) -> bool:
        """Write one backup; False (and nothing written) when this version's backup already exists."""
        ...

    def entries(self, vault: str | None = None, name: str | None = None) -> Iterator[BackupEntry]: ...
    def read(self, entry: BackupEntry) -> bytes: ...
    def record_drill(self, report: dict[str, Any]) -> None: ...
    def last_drill(self) -> dict[str, Any] | None: ...


class JobQueue(Protocol):
    def enqueue(self, job: RenewalJob, *, delay: dt.timedelta | None = None) -> None: ...


class NoticeQueue(Protocol):
    def enqueue(self, notice: DeploymentNotice, *, delay: dt.timedelta | None = None) -> None: ...


class Ledger(Protocol):
    """Renewal attempts, one row per pending request (the ``renewals`` table). Raises StoreError subclasses
    only for storage failures; a missing row is None."""

    def get(self, vault: str, name: str, request_id: str) -> LedgerRow | None: ...
    def upsert(self, row: LedgerRow) -> None: ...
    def history(self, vault: str, name: str) -> list[LedgerRow]: ...
    def recent(self, *, states: set[AttemptState] | None = None, limit: int = 100) -> list[LedgerRow]: ...


class ClaimStore(Protocol):
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> AbstractContextManager[bool]:
        """Context manager yielding True when this worker holds the certificate, False when another does."""
        ...


class Deployer(Protocol):
    """A notifier: told of a new version once (a web hook, an Event Grid topic); its one target is itself."""

    name: str

    def deliver(self, notice: DeploymentNotice) -> None:
        """Raise to have the deployments queue retry the notice."""
        ...


class TargetRollout(Protocol):
    """A deployer that rolls a version out to Azure resources and reads back what each one has bound."""

    name: str

    def targets(self) -> list[str]: ...

    def roll_out(
        self, notice: DeploymentNotice, current: CertificateVersion, target: str, previous: RolloutRecord | None
    ) -> RolloutOutcome:
        """One pass over one target; ``previous`` is its last record for this version (None the first time)."""
        ...


class RolloutLog(Protocol):
    """Each deployer target's last outcome per certificate version (the ``rollouts`` table)."""

    def of_version(self, vault: str, name: str, version: str) -> dict[tuple[str, str], RolloutRecord]: ...
    def record(self, record: RolloutRecord) -> None: ...
    def history(self, vault: str, name: str) -> list[RolloutRecord]: ...
    def unsettled(self, *, limit: int = 100) -> list[RolloutRecord]: ...


class PoisonMessageView(Protocol):
    id: str
    inserted_on: dt.datetime | None
    payload: Any | None


class PoisonQueueStore(Protocol):
    """The poison queues of ``renewal-jobs`` and ``deployments`` (Azure Storage queues in Azure)."""

    def list_poison(self, queue_name: str = ..., *, limit: int = ...) -> Sequence[PoisonMessageView]: ...

    def requeue_poison(
        self,
        queue_name: str = ...,
        *,
        ids: Collection[str] | None = None,
        transform: Callable[[Any], str | None] | None = None,
        limit: int = ...,
    ) -> int:
        """Moves messages back to their queue; nothing is removed before it is re-queued. Raises StoreError."""
        ...

    def depths(self) -> dict[str, int]:
        """Approximate message count of each queue and its poison queue."""
        ...


class DeadLetteredEventView(Protocol):
    blob_name: str
    index: int
    event: dict[str, Any]
    error: str | None


class DeadLetterStore(Protocol):
    """Event Grid's dead-lettered events (blobs in Azure)."""

    def list(self, prefix: str | None = None) -> Sequence[DeadLetteredEventView]: ...
    def blob_names(self, prefix: str | None = None) -> list[str]: ...
    def remove(self, blob_name: str) -> bool: ...
