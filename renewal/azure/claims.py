"""One worker per certificate: an exclusive claim held as an infinite blob lease.

Each certificate has a small blob ``<vault>/<name>`` in the claims container. A claimant acquires an
infinite lease and then writes ``holder`` and ``expires`` (now + ttl) to the blob's metadata *under that
lease*; only once that write succeeds does it hold the claim. A claimant that finds the blob leased with an
expiry in the past (the holder crashed) breaks the lease - conditioned on the ETag it read, so a holder
that has just written fresh metadata cannot be broken - and acquires it. A holder whose lease was broken
before its metadata write fails that write and backs off, so exactly one claimant ends up holding it.

Expiry is compared with the injected clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from renewal import settings
from renewal.azure.storage import StorageEndpoints
from renewal.model import utcnow
from renewal.observability import log_event

log = logging.getLogger("renewal.azure.claims")

# Written when a blob is created or a claim released: an expiry in the past means "free to take over".
_LAPSED = "1970-01-01T00:00:00+00:00"
_ATTEMPTS = 4


@dataclass(frozen=True)
class HeldClaim:
    vault: str
    name: str
    blob: Any
    lease: Any


def claim_blob_name(vault: str, name: str) -> str:
    return f"{quote(vault, safe='')}/{quote(name, safe='')}"


def _default_holder() -> str:
    # Metadata values must be ASCII.
    host = socket.gethostname().encode("ascii", "replace").decode("ascii")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class BlobClaimStore:
    """ClaimStore over blob leases in the ``renewal-claims`` container."""

    def __init__(
        self,
        storage: StorageEndpoints,
        container: str = settings.CLAIMS_CONTAINER,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        holder: str | None = None,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.holder = holder or _default_holder()
        self._container = storage.container_client(container)

    @contextmanager
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> Iterator[bool]:
        held = self.acquire(vault, name, ttl=ttl)
        if held is None:
            yield False
            return
        try:
            yield True
        finally:
            self.release(held)

    def acquire(self, vault: str, name: str, *, ttl: dt.timedelta) -> HeldClaim | None:
        """Take the claim if free or lapsed; None when another worker holds it. Prefer ``claim()``."""
        blob = self._container.get_blob_client(claim_blob_name(vault, name))
        lease = self._acquire(blob, ttl)
        return HeldClaim(vault, name, blob, lease) if lease is not None else None

    def release(self, held: HeldClaim) -> None:
        self._release(held.blob, held.lease, held.vault, held.name)

    def holder_of(self, vault: str, name: str) -> tuple[str, dt.datetime] | None:
        """Who holds the claim and until when (None when free or lapsed): for status displays."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self._container.get_blob_client(claim_blob_name(vault, name)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        expires = _expiry(props.metadata)
        if props.lease.state != "leased" or expires <= self.clock():
            return None
        return props.metadata.get("holder", ""), expires

    # -- internals -----------------------------------------------------------------------------------

    def _acquire(self, blob: Any, ttl: dt.timedelta) -> Any | None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

        for attempt in range(_ATTEMPTS):
            lease = None
            try:
                lease = blob.acquire_lease(lease_duration=-1)
            except ResourceNotFoundError:
                self._create(blob)
                continue
            except ResourceExistsError:
                pass  # leased by someone: is their claim still live?
            if lease is not None:
                metadata = {"holder": self.holder, "expires": (self.clock() + ttl).isoformat()}
                try:
                    blob.set_blob_metadata(metadata, lease=lease)
                except HttpResponseError as exc:
                    # Normally: broken by a claimant that saw the previous (lapsed) metadata; it holds the
                    # claim now. Otherwise give the lease back so nobody waits for it.
                    log_event(log, "claim.lost_before_write", blob=blob.blob_name, status=exc.status_code)
                    try:
                        lease.release()
                    except HttpResponseError:
                        pass
                    return None
                return lease
            # Every break must be followed by an acquire attempt of ours; otherwise breaking could leave a
            # lapsed claim broken with nobody holding it. So the last attempt never breaks.
            if attempt == _ATTEMPTS - 1 or not self._break_if_lapsed(blob):
                return None
        return None

    def _create(self, blob: Any) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            blob.upload_blob(b"", overwrite=False, metadata={"holder": "", "expires": _LAPSED})
        except HttpResponseError as exc:
            if exc.status_code not in (409, 412):  # someone else created it first: fine
                raise

    def _break_if_lapsed(self, blob: Any) -> bool:
        """Break the lease when the holder's expiry passed; True when the caller should try again."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.storage.blob import BlobLeaseClient

        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return True
        if props.lease.state != "leased":
            return True  # released meanwhile
        if _expiry(props.metadata) > self.clock():
            return False  # a live claim
        try:
            BlobLeaseClient(blob).break_lease(
                lease_break_period=0, etag=props.etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            # 412: the holder wrote fresh metadata since we looked; 409: no lease left to break. Look again.
            if exc.status_code not in (409, 412):
                raise
        log_event(log, "claim.lapsed_taken_over", blob=blob.blob_name, previous=props.metadata.get("holder"))
        return True

    def _release(self, blob: Any, lease: Any, vault: str, name: str) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            blob.set_blob_metadata({"holder": "", "expires": _LAPSED}, lease=lease)
            lease.release()
        except HttpResponseError as exc:
            # Our claim lapsed and another worker took it over: nothing of ours to release.
            log_event(
                log, "claim.release_lost", level=logging.WARNING, vault=vault, certificate=name, status=exc.status_code
            )


def _expiry(metadata: dict[str, str]) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(metadata.get("expires", ""))
    except ValueError:
        # No or unreadable expiry: a holder between acquiring and writing, or a foreign writer. Treat as
        # lapsed only via the ETag-guarded break, which fails if that holder writes first.
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
