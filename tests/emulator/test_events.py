"""Event Grid: handshakes, payloads, clock-driven expiry events, retries and dead-lettering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.keyvault.certificates import CertificatePolicy

from emulator.testing import EmulatorHandle
from tests.emulator.support import TestCA, receiver

NEW = "Microsoft.KeyVault.CertificateNewVersionCreated"
NEAR = "Microsoft.KeyVault.CertificateNearExpiry"
EXPIRED = "Microsoft.KeyVault.CertificateExpired"


def test_new_version_event_in_event_grid_schema(kv: EmulatorHandle) -> None:
    with receiver() as hook:
        kv.admin.subscribe("kv-alpha", "renewal", hook.url)
        client = kv.certificate_client("kv-alpha")
        cert = client.begin_create_certificate("ev1", CertificatePolicy.get_default()).result()
        assert kv.admin.flush_events(10)
        [event] = hook.events(NEW)
        request = hook.notifications[0]
    assert request["headers"]["aeg-event-type"] == "Notification"
    assert isinstance(request["body"], list)
    assert event["topic"].endswith("/resourceGroups/emulator-rg/providers/Microsoft.KeyVault/vaults/kv-alpha")
    assert event["topic"].startswith("/subscriptions/")
    assert event["subject"] == "ev1" and event["dataVersion"] == "1" and event["metadataVersion"] == "1"
    data = event["data"]
    assert data["Id"] == cert.id and data["VaultName"] == "kv-alpha" and data["ObjectType"] == "Certificate"
    assert data["ObjectName"] == "ev1" and data["Version"] == cert.properties.version
    assert data["EXP"] == int(cert.properties.expires_on.timestamp())
    assert data["NBF"] == int(cert.properties.not_before.timestamp())


def test_cloud_events_schema_filter_and_merge_event(kv: EmulatorHandle) -> None:
    with receiver() as hook:
        kv.admin.subscribe("kv-beta", "ce", hook.url, schema="CloudEventSchemaV1_0", event_types=[NEW])
        client = kv.certificate_client("kv-beta")
        op = client.begin_create_certificate("ev2", CertificatePolicy(issuer_name="Unknown", subject="CN=ev2")).result()
        kv.admin.flush_events(10)
        assert hook.events() == []  # nothing until the merge
        ca = TestCA()
        client.merge_certificate("ev2", [ca.sign(op.csr, days=10), ca.der])
        kv.admin.advance_clock(days=11)  # NearExpiry/Expired are filtered out for this subscription
        kv.admin.flush_events(10)
        events = hook.events()
    assert [e["type"] for e in events] == [NEW]
    assert events[0]["specversion"] == "1.0" and events[0]["source"].endswith("/vaults/kv-beta")


def test_handshake_failure_refuses_the_subscription(kv: EmulatorHandle) -> None:
    with receiver() as hook:
        hook.validate = False
        for schema in ("EventGridSchema", "CloudEventSchemaV1_0"):
            with pytest.raises(RuntimeError, match="400"):
                kv.admin.subscribe("kv-alpha", "bad", hook.url, schema=schema)


def test_clock_moves_fire_near_expiry_and_expired_once(kv: EmulatorHandle) -> None:
    now = int(kv.admin.now())
    kv.admin.seed("kv-alpha", count=2, prefix="exp", expires=now + 40 * 86400)
    with receiver() as hook:
        kv.admin.subscribe("kv-alpha", "renewal", hook.url)
        assert kv.admin.advance_clock(days=5) == 0
        assert kv.admin.advance_clock(days=6) == 2  # now 29 days before expiry
        kv.admin.flush_events(10)
        assert sorted(e["subject"] for e in hook.events(NEAR)) == ["exp-0", "exp-1"]
        assert kv.admin.advance_clock(days=1) == 0  # once per version
        assert kv.admin.advance_clock(days=30) == 2
        kv.admin.flush_events(10)
        assert len(hook.events(EXPIRED)) == 2 and len(hook.events(NEAR)) == 2
    client = kv.certificate_client("kv-alpha")
    assert client.get_certificate("exp-0").properties.expires_on.timestamp() < kv.admin.now()


def test_retries_then_success(kv: EmulatorHandle) -> None:
    kv.admin.set_knobs(event_time_scale=0.001)  # 10 s, 30 s, 1 min ... become 10 ms, 30 ms, 60 ms
    with receiver() as hook:
        hook.statuses = [503, 500, 429]
        kv.admin.subscribe("kv-alpha", "renewal", hook.url)
        kv.certificate_client("kv-alpha").begin_create_certificate("r1", CertificatePolicy.get_default()).result()
        assert kv.admin.flush_events(10)
        assert [n["status"] for n in hook.notifications] == [503, 500, 429, 200]
        assert [n["headers"]["aeg-delivery-count"] for n in hook.notifications] == ["0", "1", "2", "3"]
    attempts = [d["attempt"] for d in kv.admin.deliveries()]
    assert attempts == [1, 2, 3, 4]


@pytest.mark.parametrize("status", [400, 401, 413])
def test_non_retried_statuses_dead_letter_at_once(kv: EmulatorHandle, tmp_path: Path, status: int) -> None:
    with receiver() as hook:
        hook.statuses = [status]
        kv.admin.subscribe("kv-alpha", "renewal", hook.url, dead_letter_dir=tmp_path)
        kv.certificate_client("kv-alpha").begin_create_certificate("d1", CertificatePolicy.get_default()).result()
        assert kv.admin.flush_events(10)
        assert len(hook.notifications) == 1
    [blob] = list(tmp_path.rglob("*.json"))
    [record] = json.loads(blob.read_text())
    assert record["eventType"] == NEW and record["deliveryAttempts"] == 1
    assert record["deadLetterReason"] and str(status) in record["lastDeliveryOutcome"]
    assert blob.relative_to(tmp_path).parts[:2] == ("KV-ALPHA", "RENEWAL")


def test_max_attempts_dead_letter(kv: EmulatorHandle, tmp_path: Path) -> None:
    kv.admin.set_knobs(event_time_scale=0.001)
    with receiver() as hook:
        hook.statuses = [503] * 10
        kv.admin.subscribe("kv-alpha", "renewal", hook.url, max_delivery_attempts=3, dead_letter_dir=tmp_path)
        kv.certificate_client("kv-alpha").begin_create_certificate("d2", CertificatePolicy.get_default()).result()
        assert kv.admin.flush_events(10)
        assert len(hook.notifications) == 3
    [record] = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded" and record["deliveryAttempts"] == 3
