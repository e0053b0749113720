"""StorageEndpoints: settings forms, pinned api-version, base64 queue clients, idempotent ensure."""

from __future__ import annotations

import pytest

from devtools.azurite import API_VERSION, AzuriteServer
from renewal import settings
from renewal.azure.storage import CONTAINERS, QUEUES, TABLES, StorageEndpoints
from renewal.errors import StorageNotConfigured


def test_connection_string_form_pins_api_version() -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RENEWAL_STORAGE_API_VERSION": "2025-11-05"}
    storage = StorageEndpoints.from_settings(env)
    assert storage.connection_string == "UseDevelopmentStorage=true"
    assert storage.queue_client("q").api_version == "2025-11-05"
    assert storage.container_client("c").api_version == "2025-11-05"


def test_identity_form_uses_managed_identity_with_client_id() -> None:
    env = {
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
        "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    }
    storage = StorageEndpoints.from_settings(env)
    assert storage.connection_string is None and storage.client_id == env["AzureWebJobsStorage__clientId"]
    queue = storage.queue_client(settings.JOBS_QUEUE)
    assert queue.url == "https://acct.queue.core.windows.net/renewal-jobs"
    from azure.identity import ManagedIdentityCredential

    assert isinstance(storage.credential, ManagedIdentityCredential)
    assert storage.table_client("renewals").url.startswith("https://acct.table.core.windows.net")


def test_missing_settings_name_what_to_set() -> None:
    with pytest.raises(StorageNotConfigured, match="AzureWebJobsStorage"):
        StorageEndpoints.from_settings({})
    partial = StorageEndpoints.from_settings(
        {"AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net"}
    )
    with pytest.raises(StorageNotConfigured, match="AzureWebJobsStorage__blobServiceUri"):
        partial.container_client("x")


def test_account_key_never_contains_the_secret(azurite: AzuriteServer) -> None:
    key = StorageEndpoints(connection_string=azurite.connection_string).account_key
    assert not any("AccountKey" in part for part in key)


def test_ensure_resources_creates_everything_idempotently(azurite: AzuriteServer) -> None:
    storage = StorageEndpoints.from_settings(azurite.env())
    storage.ensure_resources(force=True)
    storage.ensure_resources(force=True)  # second run finds everything and is fine
    storage.ensure_resources()  # cached: no round trips
    queues = {q.name for q in storage.queue_service().list_queues()}
    assert set(QUEUES) <= queues and "renewal-jobs-poison" in queues
    assert set(TABLES) <= {t.name for t in storage.table_service().list_tables()}
    assert set(CONTAINERS) <= {c.name for c in storage.blob_service().list_containers()}


def test_env_pins_the_version_azurite_accepts(azurite: AzuriteServer) -> None:
    assert azurite.env()["RENEWAL_STORAGE_API_VERSION"] == API_VERSION
    assert f"QueueEndpoint=http://127.0.0.1:{azurite.queue_port}/devstoreaccount1" in azurite.connection_string


def test_importing_the_adapters_loads_no_sdk() -> None:
    """Cold start: SDKs load inside the factories, never at import time."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, renewal.azure.storage, renewal.azure.queues, renewal.azure.ledger, renewal.azure.claims, "
        "renewal.azure.deadletter; print(sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'requests')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.strip() == "[]"
