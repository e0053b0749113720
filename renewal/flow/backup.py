"""Backup on change: each new version's Key Vault backup goes to the archive in another region.

It runs in the deployments queue stage, before the deployers (so a failure is retried, poisoned and
replayed like any delivery, and the recovery point does not wait for slow deployers), and weekly for the
certificates the service did not renew itself (imported, renewed by Key Vault, or by hand), skipping
every one whose current version is already in the archive.

Key Vault's backup holds every version but names none, so a blob is filed under the version that was
current before and after the backup call; if the certificate changed in between, the try is refused
(BackupRaced) and the next one files the new state."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography import x509

from renewal import metrics
from renewal.errors import BackupRaced, StoreError
from renewal.model import BackupEntry, CertificateListing, CertificateVersion
from renewal.observability import log_event
from renewal.ports import BackupArchive, CertificateStore

log = logging.getLogger("renewal.flow.backup")


def back_up(
    store: CertificateStore,
    archive: BackupArchive,
    name: str,
    version: str,
    *,
    clock: Callable[[], dt.datetime],
    current: CertificateVersion | None = None,
    known_missing: bool = False,
) -> BackupEntry | None:
    """Archive the backup of ``name`` while ``version`` is its current version.

    Returns the archive entry (the existing one when this version is already backed up), or None when
    ``version`` is no longer current (its successor's own backup covers it). ``current``: the version the
    caller has just read (no second read); ``known_missing``: the caller's own archive listing lacks it (no
    second listing). Raises BackupRaced and the ports' StoreErrors: the caller's queue retries."""
    if not known_missing:
        existing = next((e for e in archive.entries(store.vault, name) if e.version == version), None)
        if existing is not None:
            return existing
    before = current if current is not None else store.get_current(name)
    if before is None or before.version != version:
        return None
    try:
        blob = store.backup(name)
        after = store.get_current(name)
        if after is None or after.version != version:
            raise BackupRaced(f"{store.vault}/{name} changed from {version} during its backup")
        leaf = x509.load_der_x509_certificate(before.cer)
        entry = BackupEntry(
            vault=store.vault,
            name=name,
            version=version,
            thumbprint=hashlib.sha1(before.cer).hexdigest(),  # noqa: S324 - x5t is SHA-1 by definition
            backed_up_at=clock(),
            not_after=leaf.not_valid_after_utc,
        )
        written = archive.put(entry, blob)
    except StoreError:
        age = (clock() - before.created_on).total_seconds() if before.created_on else 0.0
        metrics.backup_failed(store.vault, overdue=age > metrics.BACKUP_OVERDUE_HOURS * 3600)
        raise
    lag = (entry.backed_up_at - before.created_on).total_seconds() if before.created_on else None
    if written:
        metrics.backup_written(store.vault, lag)
    log_event(
        log,
        "backup.written" if written else "backup.exists",
        vault=store.vault,
        certificate=name,
        version=version,
        bytes=len(blob),
        seconds_after_version=lag,
    )
    return entry


@dataclass
class BackupSweepReport:
    backed_up: list[str] = field(default_factory=list)
    already: int = 0
    errors: list[str] = field(default_factory=list)
    oldest_missing_hours: float = 0.0
    """Age of the oldest current version that has no backup after this run (0 when none): the alert's input."""


def back_up_estate(
    stores: Mapping[str, CertificateStore],
    archive: BackupArchive,
    *,
    clock: Callable[[], dt.datetime],
    workers: int = 8,
) -> BackupSweepReport:
    """Back up every current version not yet in the archive: one listing per vault and one archive
    listing per vault, then, on ``workers`` threads, three Key Vault calls and one blob write for each
    certificate that is missing (read, backup, read again)."""
    report = BackupSweepReport()
    now = clock()
    lock = threading.Lock()

    def one(store: CertificateStore, listing: CertificateListing) -> None:
        entry, error = None, None
        try:
            current = store.get_current(listing.name)
            if current is not None:
                entry = back_up(
                    store, archive, listing.name, current.version, clock=clock, current=current, known_missing=True
                )
        except StoreError as exc:
            error = f"{store.vault}/{listing.name}: {exc}"
        with lock:
            if entry is not None:
                report.backed_up.append(f"{store.vault}/{listing.name}/{entry.version}")
                return
            if error is not None:
                report.errors.append(error)
            if listing.created_on is not None:
                age = (now - listing.created_on).total_seconds() / 3600
                report.oldest_missing_hours = max(report.oldest_missing_hours, age)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup") as pool:
        for vault, store in stores.items():
            try:
                archived: dict[str, set[str]] = {}
                for entry in archive.entries(vault):
                    archived.setdefault(entry.name, set()).add(entry.thumbprint)
                listings = [c for c in store.list_certificates() if not c.pending and c.thumbprint]
            except StoreError as exc:
                report.errors.append(f"{vault}: {exc}")
                continue
            missing = [c for c in listings if c.thumbprint not in archived.get(c.name, ())]
            report.already += len(listings) - len(missing)
            list(pool.map(lambda listing, s=store: one(s, listing), missing))
    log_event(
        log,
        "backup.sweep",
        backed_up=len(report.backed_up),
        already=report.already,
        errors=len(report.errors),
        oldest_missing_hours=round(report.oldest_missing_hours, 1),
    )
    return report
