"""Where the app's storage lives, and factories for its queue, table and blob clients.

Locally ``AzureWebJobsStorage`` is a connection string (Azurite); in Azure it is the identity-based form
(``AzureWebJobsStorage__queueServiceUri`` ... + ``__clientId``) the Functions host itself reads, so the
app and the host always talk to the same account. SDK imports stay inside the factories: importing this
module must not slow the function app's cold start.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from renewal import settings
from renewal.errors import StorageNotConfigured

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.blob import BlobServiceClient, ContainerClient
    from azure.storage.queue import QueueClient, QueueServiceClient

QUEUES: tuple[str, ...] = (
    settings.JOBS_QUEUE,
    settings.poison_queue(settings.JOBS_QUEUE),
    settings.DEPLOYMENTS_QUEUE,
    settings.poison_queue(settings.DEPLOYMENTS_QUEUE),
)
TABLES: tuple[str, ...] = (
    settings.LEDGER_TABLE,
    settings.CREATE_BUDGET_TABLE,
    settings.VERSION_FACTS_TABLE,
    settings.RENEWAL_WINDOWS_TABLE,
    settings.ROLLOUTS_TABLE,
)
CONTAINERS: tuple[str, ...] = (settings.CLAIMS_CONTAINER, settings.DEADLETTER_CONTAINER)

# Accounts whose resources this process already ensured: creating them is idempotent but costs round trips.
_ensured: set[tuple[str, ...]] = set()
_ensured_lock = threading.Lock()


@dataclass
class StorageEndpoints:
    """One storage account: a connection string, or service URIs plus a token credential."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    blob_service_uri: str | None = None
    client_id: str | None = None
    api_version: str | None = None
    """Pinned queue/blob api-version (Azurite 3.35 refuses the SDK default); tables keep theirs."""
    credential: Any = None
    """Token credential for the URI form; built lazily (ManagedIdentityCredential) when not given."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _services: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> StorageEndpoints:
        env = dict(environ) if environ is not None else None
        conn = settings.STORAGE.read(env)
        api_version = settings.STORAGE_API_VERSION.read(env) or None
        if conn:
            return cls(connection_string=conn, api_version=api_version)
        uris = {
            "queue_service_uri": settings.STORAGE_QUEUE_URI.read(env) or None,
            "table_service_uri": settings.STORAGE_TABLE_URI.read(env) or None,
            "blob_service_uri": settings.STORAGE_BLOB_URI.read(env) or None,
        }
        if not any(uris.values()):
            raise StorageNotConfigured(
                f"set {settings.STORAGE.name} (connection string) or {settings.STORAGE_QUEUE_URI.name}, "
                f"{settings.STORAGE_TABLE_URI.name} and {settings.STORAGE_BLOB_URI.name}"
            )
        return cls(**uris, client_id=settings.STORAGE_CLIENT_ID.read(env) or None, api_version=api_version)

    @property
    def account_key(self) -> tuple[str, ...]:
        """Identifies the account (for caches); never contains the secret part of a connection string."""
        if self.connection_string:
            parts = dict(
                p.split("=", 1)
                for p in self.connection_string.split(";")
                if "=" in p and not p.startswith("AccountKey")
            )
            return tuple(sorted(f"{k}={v}" for k, v in parts.items()))
        return (self.queue_service_uri or "", self.table_service_uri or "", self.blob_service_uri or "")

    # -- credentials and service clients -------------------------------------------------------------

    def _token_credential(self) -> Any:
        if self.credential is None:
            from azure.identity import ManagedIdentityCredential

            self.credential = (
                ManagedIdentityCredential(client_id=self.client_id) if self.client_id else (ManagedIdentityCredential())
            )
        return self.credential

    def _uri(self, value: str | None, setting: settings.Setting) -> str:
        if not value:
            raise StorageNotConfigured(f"{setting.name} is not set (identity-based storage needs it)")
        return value

    def _service(self, kind: str) -> Any:
        with self._lock:
            client = self._services.get(kind)
            if client is None:
                client = self._services[kind] = self._build_service(kind)
            return client

    def _build_service(self, kind: str) -> Any:
        pinned = {"api_version": self.api_version} if self.api_version else {}
        if kind == "queue":
            from azure.storage.queue import QueueServiceClient

            if self.connection_string:
                return QueueServiceClient.from_connection_string(self.connection_string, **pinned)
            uri = self._uri(self.queue_service_uri, settings.STORAGE_QUEUE_URI)
            return QueueServiceClient(uri, credential=self._token_credential(), **pinned)
        if kind == "blob":
            from azure.storage.blob import BlobServiceClient

            if self.connection_string:
                return BlobServiceClient.from_connection_string(self.connection_string, **pinned)
            uri = self._uri(self.blob_service_uri, settings.STORAGE_BLOB_URI)
            return BlobServiceClient(uri, credential=self._token_credential(), **pinned)
        if kind == "table":
            from azure.data.tables import TableServiceClient

            if self.connection_string:
                return TableServiceClient.from_connection_string(self.connection_string)
            uri = self._uri(self.table_service_uri, settings.STORAGE_TABLE_URI)
            return TableServiceClient(uri, credential=self._token_credential())
        raise ValueError(kind)

    def queue_service(self) -> QueueServiceClient:
        return self._service("queue")

    def table_service(self) -> TableServiceClient:
        return self._service("table")

    def blob_service(self) -> BlobServiceClient:
        return self._service("blob")

    # -- per-resource clients -------------------------------------------------------------------------

    def queue_client(self, name: str, *, base64: bool = True) -> QueueClient:
        """A client for queue ``name``. Bodies are base64 text on the wire, as the Functions host expects;
        ``base64=False`` gives the raw wire text (poison handling, tests)."""
        if not base64:
            return self.queue_service().get_queue_client(name)
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        return self.queue_service().get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
        )

    def table_client(self, name: str) -> TableClient:
        return self.table_service().get_table_client(name)

    def container_client(self, name: str) -> ContainerClient:
        return self.blob_service().get_container_client(name)

    def ensure_resources(self, *, force: bool = False) -> None:
        """Create the app's queues (with their -poison twins), table and containers if missing.

        Idempotent; done once per account per process unless ``force``."""
        key = self.account_key
        with _ensured_lock:
            if key in _ensured and not force:
                return
        from azure.core.exceptions import ResourceExistsError

        for queue in QUEUES:
            try:
                self.queue_client(queue, base64=False).create_queue()
            except ResourceExistsError:
                pass
        for table in TABLES:
            self.table_service().create_table_if_not_exists(table)
        for container in CONTAINERS:
            try:
                self.container_client(container).create_container()
            except ResourceExistsError:
                pass
        with _ensured_lock:
            _ensured.add(key)
