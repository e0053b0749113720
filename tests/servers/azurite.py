"""Azurite (blob, queue, table) as a session fixture, and a clean ``StorageEndpoints`` per test.

Fixtures:
- ``azurite`` (session): a running ``devtools.azurite.AzuriteServer`` on free loopback ports, with
  ``.connection_string`` and ``.env()`` (the app settings that point the app at it).
- ``storage`` (function): a ``renewal.azure.storage.StorageEndpoints`` for that Azurite (api-version pinned
  as the app would be), with every app queue (and -poison), the ledger table and the containers created
  and emptied, so no test sees another's messages, rows or blobs. Nothing global is patched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.azurite import AzuriteNotInstalledError, AzuriteServer, azurite_binary, running_azurite
from renewal.azure.storage import CONTAINERS, QUEUES, TABLES, StorageEndpoints
from tests.servers import unavailable


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    try:
        azurite_binary()
    except AzuriteNotInstalledError as exc:
        unavailable("azurite", str(exc))
    with running_azurite() as server:
        yield server


def empty_storage(storage: StorageEndpoints) -> None:
    """Delete every message, ledger entity and blob in the app's resources (leased blobs included)."""
    from azure.storage.blob import BlobLeaseClient

    for queue in QUEUES:
        storage.queue_client(queue, base64=False).clear_messages()
    for table in TABLES:
        client = storage.table_client(table)
        for entity in client.list_entities(select=["PartitionKey", "RowKey"]):
            client.delete_entity(entity["PartitionKey"], entity["RowKey"])
    for container in CONTAINERS:
        container_client = storage.container_client(container)
        for blob in container_client.list_blobs():
            blob_client = container_client.get_blob_client(blob.name)
            if blob.lease.state == "leased":
                BlobLeaseClient(blob_client).break_lease(lease_break_period=0)
            blob_client.delete_blob()


@pytest.fixture
def storage(azurite: AzuriteServer) -> Iterator[StorageEndpoints]:
    endpoints = StorageEndpoints.from_settings(azurite.env())
    endpoints.ensure_resources()
    empty_storage(endpoints)
    yield endpoints
