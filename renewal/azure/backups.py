"""The backup archive (implements BackupArchive): Key Vault backup blobs in a storage account in another
region, one blob per vault / certificate / version, written once and never overwritten.

In Azure the container has a time-based retention policy (infra/app/backup.bicep), so not even the app's
own identity can change or delete a backup before it ages out; ``overwrite=False`` is the same rule on
the client side. What a restore needs to find the right blob (the version's thumbprint, when it was
written) rides in the blob's metadata, so listing the container is the index: no second store to drift.
Drill reports are blobs under ``_drills/`` (Key Vault names cannot start with ``_``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from renewal import settings
from renewal.errors import BackupMissing, StoreUnavailable
from renewal.model import BackupEntry

DRILL_PREFIX = "_drills/"
SUFFIX = ".kvbackup"


class BlobBackupArchive:
    def __init__(self, container: Any, *, create_container: bool = False) -> None:
        self._container = container
        self._create = create_container
        self._created = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, environ: Mapping[str, str], credential_client_id: str | None = None) -> BlobBackupArchive:
        """``RENEWAL_BACKUP_STORAGE``: an https blob endpoint (the app's managed identity) or a connection
        string (Azurite; the container is then created on first use, as infra creates it in Azure)."""
        from azure.storage.blob import BlobServiceClient

        value = settings.BACKUP_STORAGE.read(dict(environ)) or ""
        pinned = settings.STORAGE_API_VERSION.read(dict(environ))
        kwargs = {"api_version": pinned} if pinned else {}
        if value.startswith("https://"):
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=credential_client_id) if credential_client_id else (
                ManagedIdentityCredential()
            )  # fmt: skip
            service = BlobServiceClient(value, credential=credential, **kwargs)
            return cls(service.get_container_client(settings.BACKUP_CONTAINER))
        service = BlobServiceClient.from_connection_string(value, **kwargs)
        return cls(service.get_container_client(settings.BACKUP_CONTAINER), create_container=True)

    def _ready(self) -> Any:
        if self._create and not self._created:
            with self._lock:
                if not self._created:
                    from azure.core.exceptions import ResourceExistsError

                    try:
                        self._container.create_container()
                    except ResourceExistsError:
                        pass
                    self._created = True
        return self._container

    def put(self, entry: BackupEntry, backup: bytes) -> bool:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        metadata = {
            "thumbprint": entry.thumbprint,
            "backed_up_at": entry.backed_up_at.astimezone(dt.UTC).isoformat(),
            "not_after": entry.not_after.astimezone(dt.UTC).isoformat() if entry.not_after else "",
        }
        try:
            self._ready().upload_blob(entry.blob_name, backup, overwrite=False, metadata=metadata)
        except ResourceExistsError:
            return False
        except HttpResponseError as exc:
            raise StoreUnavailable(f"backup archive: writing {entry.blob_name} failed: {exc.message}") from exc
        return True

    def entries(self, vault: str | None = None, name: str | None = None) -> Iterator[BackupEntry]:
        from azure.core.exceptions import HttpResponseError

        prefix = f"{vault}/{name}/" if vault and name else f"{vault}/" if vault else None
        try:
            for blob in self._ready().list_blobs(name_starts_with=prefix, include=["metadata"]):
                entry = _entry_of(blob.name, blob.metadata or {})
                if entry is not None:
                    yield entry
        except HttpResponseError as exc:
            raise StoreUnavailable(f"backup archive: listing failed: {exc.message}") from exc

    def read(self, entry: BackupEntry) -> bytes:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            return self._ready().download_blob(entry.blob_name).readall()
        except ResourceNotFoundError as exc:
            raise BackupMissing("version", f"no backup blob {entry.blob_name}") from exc
        except HttpResponseError as exc:
            raise StoreUnavailable(f"backup archive: reading {entry.blob_name} failed: {exc.message}") from exc

    def record_drill(self, report: dict[str, Any]) -> None:
        stamp = str(report.get("finished_at") or dt.datetime.now(dt.UTC).isoformat())
        body = json.dumps(report, default=str, indent=2).encode()
        self._ready().upload_blob(f"{DRILL_PREFIX}{stamp}.json", body, overwrite=False)

    def last_drill(self) -> dict[str, Any] | None:
        names = sorted(b.name for b in self._ready().list_blobs(name_starts_with=DRILL_PREFIX))
        if not names:
            return None
        return json.loads(self._ready().download_blob(names[-1]).readall())


def _entry_of(blob_name: str, metadata: Mapping[str, str]) -> BackupEntry | None:
    parts = blob_name.split("/")
    if len(parts) != 3 or not parts[2].endswith(SUFFIX) or blob_name.startswith(DRILL_PREFIX):
        return None
    try:
        backed_up_at = dt.datetime.fromisoformat(metadata["backed_up_at"])
        not_after = dt.datetime.fromisoformat(metadata["not_after"]) if metadata.get("not_after") else None
    except (KeyError, ValueError):
        return None  # not written by this service: never restored by it
    return BackupEntry(
        vault=parts[0],
        name=parts[1],
        version=parts[2][: -len(SUFFIX)],
        thumbprint=metadata.get("thumbprint", ""),
        backed_up_at=backed_up_at,
        not_after=not_after,
    )
