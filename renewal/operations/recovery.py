"""Restore and the restore drill: the operator's half of disaster recovery.

``restore`` puts one certificate back from the archive into a vault (the same one after a deletion, or a
vault in another region of the same geography after a regional outage). ``drill`` proves the archive can
do that when nobody is under pressure: it restores a sample into a drill vault, checks each restored
current version against the archive's index and the ledger, times it, purges the copies and keeps a report
in the archive (the dashboard shows the last one)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from renewal.errors import BackupMissing, StoreError
from renewal.model import AttemptState, BackupEntry
from renewal.observability import log_event
from renewal.ports import BackupArchive, Ledger, RecoveryTarget

log = logging.getLogger("renewal.operations.recovery")


def latest_entries(archive: BackupArchive, vault: str | None = None) -> dict[tuple[str, str], BackupEntry]:
    """The newest backup of every certificate (by vault and name)."""
    latest: dict[tuple[str, str], BackupEntry] = {}
    for entry in archive.entries(vault):
        key = (entry.vault, entry.name)
        if key not in latest or entry.backed_up_at > latest[key].backed_up_at:
            latest[key] = entry
    return latest


def find_backup(archive: BackupArchive, vault: str, name: str, version: str | None = None) -> BackupEntry:
    entries = [e for e in archive.entries(vault, name) if version is None or e.version == version]
    if not entries:
        what = f"version {version} of {vault}/{name}" if version else f"{vault}/{name}"
        raise BackupMissing("version" if version else "name", f"no backup of {what} in the archive")
    return max(entries, key=lambda e: e.backed_up_at)


@dataclass(frozen=True)
class Restored:
    entry: BackupEntry
    target: str
    version: str
    thumbprint: str
    seconds: float

    @property
    def matches(self) -> bool:
        return self.thumbprint == self.entry.thumbprint


def restore(archive: BackupArchive, target: RecoveryTarget, entry: BackupEntry) -> Restored:
    """Restore one backup; raises RestoreRefused (the name exists there, or another subscription or
    geography), BackupMissing, StoreError."""
    started = time.perf_counter()
    current = target.restore(archive.read(entry))
    restored = Restored(
        entry=entry,
        target=target.vault,
        version=current.version,
        thumbprint=hashlib.sha1(current.cer).hexdigest(),  # noqa: S324 - x5t is SHA-1 by definition
        seconds=time.perf_counter() - started,
    )
    log_event(
        log,
        "recovery.restored",
        vault=entry.vault,
        certificate=entry.name,
        target=target.vault,
        version=restored.version,
        matches=restored.matches,
    )
    return restored


@dataclass
class DrillReport:
    drill_vault: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    sampled: int = 0
    restored: int = 0
    verified: int = 0
    """Restored current version equals the archive's thumbprint, and the ledger's last merge when it has one."""
    purged: int = 0
    seconds: float = 0.0
    restore_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.sampled > 0 and self.verified == self.sampled and self.purged == self.restored

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _ledger_version(ledger: Ledger, entry: BackupEntry) -> str | None:
    """The version the service last merged for this certificate, if it renewed it at all."""
    merged = [r for r in ledger.history(entry.vault, entry.name) if r.new_version and r.state == AttemptState.NOTIFIED]
    if not merged:
        return None
    return max(merged, key=lambda r: r.updated_at or dt.datetime.min.replace(tzinfo=dt.UTC)).new_version


def drill(
    archive: BackupArchive,
    ledger: Ledger,
    target: RecoveryTarget,
    *,
    sample: int | None,
    clock: Callable[[], dt.datetime],
    rng: random.Random | None = None,
) -> DrillReport:
    """Restore a sample of the newest backups into ``target``, verify, purge, record the report."""
    report = DrillReport(drill_vault=target.vault, started_at=clock())
    started = time.perf_counter()
    candidates = sorted(latest_entries(archive).values(), key=lambda e: (e.vault, e.name))
    chosen = (rng or random.Random()).sample(candidates, sample) if sample and sample < len(candidates) else candidates
    report.sampled = len(chosen)
    restored_names: list[str] = []
    for entry in chosen:
        label = f"{entry.vault}/{entry.name}"
        try:
            result = restore(archive, target, entry)
        except StoreError as exc:
            report.problems.append(f"{label}: restore failed: {exc}")
            continue
        report.restored += 1
        report.restore_seconds += result.seconds
        restored_names.append(entry.name)
        merged = _ledger_version(ledger, entry)
        if not result.matches:
            report.problems.append(f"{label}: restored {result.version}, the archive says {entry.version}")
        elif merged is not None and merged not in {e.version for e in archive.entries(entry.vault, entry.name)}:
            report.problems.append(f"{label}: the ledger's last merge {merged} has no backup")
        else:
            report.verified += 1
    for name in restored_names:
        try:
            target.delete_and_purge(name)
            report.purged += 1
        except StoreError as exc:
            report.problems.append(f"{target.vault}/{name}: purge failed, remove it by hand: {exc}")
    report.seconds = time.perf_counter() - started
    report.finished_at = clock()
    archive.record_drill(report.as_dict())
    log_event(
        log,
        "recovery.drill",
        level=logging.INFO if report.passed else logging.WARNING,
        drill_vault=target.vault,
        sampled=report.sampled,
        verified=report.verified,
        seconds=round(report.seconds, 2),
        problems=len(report.problems),
    )
    return report
