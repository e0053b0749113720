"""Key Vault's documented event payloads, decoded by azure.functions' own Event Grid converter (what the
Python worker does), handed to the real ``on_certificate_event``: one job per valid event, none for the
rest, and no exception (an exception would make Event Grid retry and dead-letter the delivery)."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

import function_app
from devtools.eventgrid_host import to_function_event
from renewal import settings

TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{}"


@pytest.fixture(autouse=True)
def wired(flow):
    function_app._service = flow.service
    yield
    function_app._service = None


def grid(flow, event_type="Microsoft.KeyVault.CertificateNearExpiry", vault="kv-alpha", name="web", **data):
    base = flow.kv.vault_urls.get(vault, f"https://{vault}.vault.azure.net").rstrip("/")
    payload = {
        "Id": f"{base}/certificates/{name}/0123abcd",
        "VaultName": vault,
        "ObjectType": "Certificate",
        "ObjectName": name,
        "Version": "0123abcd",
        "NBF": 1_767_225_600,
        "EXP": 1_798_761_600,
        **data,
    }
    return {
        "id": "evt-grid",
        "topic": TOPIC.format(vault),
        "subject": name,
        "eventType": event_type,
        "eventTime": "2026-12-02T10:00:00.1234567Z",
        "data": payload,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def cloud(flow, **kwargs):
    event = grid(flow, **kwargs)
    data = {**event["data"], "NBF": str(event["data"]["NBF"]), "EXP": str(event["data"]["EXP"])}
    return {
        "specversion": "1.0",
        "id": "evt-cloud",
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": "2026-12-02T10:00:00.1234567Z",
        "data": data,
    }


def queued(flow) -> list[dict]:
    client = flow.storage.queue_client(settings.JOBS_QUEUE)
    return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]


def deliver(payload) -> None:
    function_app.on_certificate_event(to_function_event(payload))


def test_the_converter_hands_the_function_a_cloud_event_for_the_cloudevents_schema(flow):
    assert isinstance(to_function_event(cloud(flow)), func.CloudEvent)
    assert isinstance(to_function_event(grid(flow)), func.EventGridEvent)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda f: grid(f), id="event-grid-numeric-nbf-exp"),
        pytest.param(lambda f: cloud(f), id="cloudevents-string-nbf-exp"),
        pytest.param(lambda f: grid(f, event_type="Microsoft.KeyVault.CertificateExpired"), id="expired"),
        pytest.param(lambda f: cloud(f, event_type="Microsoft.KeyVault.CertificateExpired"), id="expired-cloud"),
    ],
)
def test_each_valid_event_queues_exactly_one_job_for_its_certificate(flow, make):
    deliver(make(flow))
    jobs = queued(flow)
    assert [(j["vault"], j["name"], j["reason"], j["version"]) for j in jobs] == [
        ("kv-alpha", "web", "event", "0123abcd")
    ]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda f: grid(f, event_type="Microsoft.KeyVault.SecretNearExpiry", ObjectType="Secret"), id="secret"
        ),
        pytest.param(lambda f: cloud(f, event_type="Microsoft.KeyVault.SecretNearExpiry"), id="secret-cloud"),
        pytest.param(lambda f: grid(f, vault="kv-zulu"), id="unconfigured-vault"),
        pytest.param(lambda f: grid(f, Id="https://evil.example.net/certificates/web/0123abcd"), id="spoofed-id"),
        pytest.param(
            lambda f: cloud(f, Id="https://evil.example.net/certificates/web/0123abcd"), id="spoofed-id-cloud"
        ),
        pytest.param(lambda f: grid(f, ObjectName="../../x/y"), id="traversal-name"),
        pytest.param(lambda f: grid(f, ObjectName="web\u0000"), id="nul-name"),
        pytest.param(lambda f: {k: v for k, v in grid(f).items() if k != "data"}, id="no-data"),
        pytest.param(lambda f: {**grid(f), "data": {"VaultName": "kv-alpha"}}, id="missing-fields"),
        pytest.param(lambda f: {**cloud(f), "type": None}, id="no-type"),
        pytest.param(lambda f: grid(f, EXP="tomorrow"), id="bad-exp"),
    ],
)
def test_other_events_queue_nothing_and_raise_nothing(flow, make):
    deliver(make(flow))
    assert queued(flow) == []
