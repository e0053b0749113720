"""Keeps the dashboard's overview cheap to reload: the inventory reads each certificate once per
build, and an operator reloads the overview often. A certificate whose listed current version is the
one read on an earlier view is not read again for ``POLICY_TTL``; its listing (fetched on every view)
still supplies the fresh tags and enabled flag. A renewal (a new version: new created, not-before and
expiry times in the listing) is therefore seen on the next view, and only a policy edited in place can
be up to ``POLICY_TTL`` old on the overview (the certificate page always reads afresh).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from renewal.model import CertificateListing, CertificateVersion
from renewal.ports import CertificateStore

if TYPE_CHECKING:
    from renewal.service import RenewalService

POLICY_TTL = 300.0


@dataclasses.dataclass
class ReadCounts:
    """Reads of one overview: from Key Vault, or reused from an earlier view."""

    fresh: int = 0
    reused: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, fresh: int = 0, reused: int = 0) -> None:
        with self._lock:
            self.fresh += fresh
            self.reused += reused


def same_version(listing: CertificateListing, read: CertificateVersion) -> bool:
    """Whether the listed current version is the one read. Key Vault's list items name no version, so
    without one the version's created, not-before and expiry times must all match (a renewal makes a
    version with new ones)."""
    if listing.version:
        return listing.version == read.version
    stamps = (listing.created_on, listing.not_before, listing.expires_on)
    return None not in stamps and stamps == (read.created_on, read.not_before, read.expires_on)


class RecentReads:
    """Current versions read by earlier overviews, per (vault, name), with the time they were read."""

    def __init__(self, *, ttl: float = POLICY_TTL, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.monotonic = ttl, monotonic
        self._lock = threading.Lock()
        self._reads: dict[tuple[str, str], tuple[float, CertificateVersion]] = {}

    def stores(self, stores: dict[str, CertificateStore], counts: ReadCounts) -> dict[str, CertificateStore]:
        """``stores`` whose ``get_current`` answers from this memo when the listed version matches."""
        return {vault: _RememberingStore(store, self, counts) for vault, store in stores.items()}  # type: ignore[misc]

    def get(self, vault: str, listing: CertificateListing | None) -> CertificateVersion | None:
        if listing is None:
            return None
        with self._lock:
            found = self._reads.get((vault, listing.name))
        if found is None or not same_version(listing, found[1]) or self.monotonic() - found[0] > self.ttl:
            return None
        # Attributes that can change without a new version come from the fresh listing.
        return dataclasses.replace(found[1], tags=dict(listing.tags), enabled=bool(listing.enabled))

    def put(self, vault: str, current: CertificateVersion) -> None:
        with self._lock:
            self._reads[(vault, current.name)] = (self.monotonic(), current)

    def keep_only(self, seen: set[tuple[str, str]]) -> None:
        """Forget certificates the last listing no longer holds (deleted ones)."""
        with self._lock:
            for key in [k for k in self._reads if k not in seen]:
                del self._reads[key]


class _RememberingStore:
    """A certificate store seen through :class:`RecentReads`: listing and reads only."""

    def __init__(self, store: CertificateStore, memo: RecentReads, counts: ReadCounts) -> None:
        self._store, self._memo, self._counts = store, memo, counts
        self._listed: dict[str, CertificateListing] = {}
        self.vault = store.vault

    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]:
        for listing in self._store.list_certificates(include_pending=include_pending):
            self._listed[listing.name] = listing
            yield listing

    @property
    def listed(self) -> set[tuple[str, str]]:
        return {(self.vault, name) for name in self._listed}

    def get_current(self, name: str) -> CertificateVersion | None:
        remembered = self._memo.get(self.vault, self._listed.get(name))
        if remembered is not None:
            self._counts.add(reused=1)
            return remembered
        current = self._store.get_current(name)
        self._counts.add(fresh=1)
        if current is not None:
            self._memo.put(self.vault, current)
        return current

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._store, attribute)


_per_service: weakref.WeakKeyDictionary[Any, RecentReads] = weakref.WeakKeyDictionary()
_per_service_lock = threading.Lock()


def recent_reads(service: RenewalService) -> RecentReads:
    """The memo of one RenewalService (one per process in the Functions host)."""
    with _per_service_lock:
        memo = _per_service.get(service)
        if memo is None:
            memo = _per_service[service] = RecentReads()
        return memo
