"""DeadLetterStore over blobs laid out as Event Grid writes them."""

from __future__ import annotations

import json
from typing import Any

from renewal import settings
from renewal.azure.deadletter import DeadLetterStore
from renewal.azure.storage import StorageEndpoints


def key_vault_event(name: str, event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
        "subject": name,
        "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
        "eventTime": "2030-01-01T00:00:00Z",
        "data": {"Id": f"https://kv-one.vault.azure.net/certificates/{name}/v1", "VaultName": "kv-one",
                 "ObjectType": "Certificate", "ObjectName": name, "Version": "v1", "NBF": 1, "EXP": 2},
        "dataVersion": "1",
        "metadataVersion": "1",
    }  # fmt: skip


def dead_lettered(event: dict[str, Any], reason: str = "MaxDeliveryAttemptsExceeded", attempts: int = 30) -> dict:
    return {
        **event,
        "deadLetterReason": reason,
        "deliveryAttempts": attempts,
        "lastDeliveryOutcome": "GenericError",
        "lastHttpStatusCode": 500,
        "publishTime": "2030-01-01T00:00:01Z",
        "lastDeliveryAttemptTime": "2030-01-02T00:00:00Z",
    }


def write(storage: StorageEndpoints, name: str, content: Any) -> None:
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    storage.container_client(settings.DEADLETTER_CONTAINER).upload_blob(name, data)


def test_list_read_and_remove(storage: StorageEndpoints) -> None:
    first = "KV-ONE-TOPIC/2030/01/02/00/0a1b2c3d-0000-0000-0000-000000000001.json"
    second = "KV-ONE-TOPIC/2030/01/03/05/0a1b2c3d-0000-0000-0000-000000000002.json"
    write(storage, second, [dead_lettered(key_vault_event("api", "e3"), "TimeToLiveExceeded", 7)])
    write(storage, first, [dead_lettered(key_vault_event("web", "e1")), dead_lettered(key_vault_event("db", "e2"))])
    store = DeadLetterStore(storage)

    listed = store.list()
    assert [(e.blob_name, e.index, e.event["id"]) for e in listed] == [
        (first, 0, "e1"),
        (first, 1, "e2"),
        (second, 0, "e3"),
    ]
    web = listed[0]
    assert web.reason == "MaxDeliveryAttemptsExceeded" and web.attempts == 30 and web.error is None
    assert web.event == key_vault_event("web", "e1")  # the original event, ready to replay
    assert web.delivery["lastHttpStatusCode"] == 500 and web.delivery["lastDeliveryOutcome"] == "GenericError"
    assert (listed[2].reason, listed[2].attempts) == ("TimeToLiveExceeded", 7)
    assert [e.event["id"] for e in store.read(second)] == ["e3"]
    assert [e.event["id"] for e in store.list(prefix="KV-ONE-TOPIC/2030/01/03/")] == ["e3"]

    assert store.remove(first) is True
    assert store.remove(first) is False  # already gone: replay is idempotent
    assert [e.event["id"] for e in store.list()] == ["e3"]
    assert store.read(first) == []


def test_unreadable_blob_is_listed_not_hidden(storage: StorageEndpoints) -> None:
    write(storage, "T/2030/01/01/00/bad.json", b"{truncated")
    write(storage, "T/2030/01/01/00/good.json", [dead_lettered(key_vault_event("web", "e1"))])
    listed = DeadLetterStore(storage).list()
    assert [(e.blob_name.rsplit("/", 1)[1], e.index) for e in listed] == [("bad.json", -1), ("good.json", 0)]
    assert listed[0].error is not None and listed[0].error.startswith("not JSON")
