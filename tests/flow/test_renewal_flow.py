"""The product path end to end: Event Grid event -> queue -> orchestrator -> Key Vault (emulator)
-> local CA -> verified merge -> ledger -> deployments queue -> signed web hook."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import azure.functions as func
import pytest
from cryptography import x509

import function_app
from devtools.eventgrid_host import to_function_event
from devtools.pump import QueuePump
from renewal import settings
from renewal.azure.deployers import SIGNATURE_HEADER, TIMESTAMP_HEADER

from .conftest import near_expiry_event


@pytest.fixture(autouse=True)
def wired(flow):
    function_app._service = flow.service
    yield
    function_app._service = None


def grid_event(payload: dict) -> func.EventGridEvent | func.CloudEvent:
    """What the Python worker passes the function: the payload decoded by azure.functions' own converter."""
    return to_function_event(payload)


def pump(flow, queue=settings.JOBS_QUEUE, handler=None, **kw):
    handler = handler or (function_app.renewal_worker if queue == settings.JOBS_QUEUE else function_app.deploy_notifier)
    return QueuePump(flow.storage, queue, handler, **kw).run_until_idle(timeout=60, wait_for_delayed=True)


def test_near_expiry_event_renews_merges_and_notifies(flow, hook):
    flow.seed("kv-alpha", "web", days_left=20)
    old = flow.current("web")
    function_app.on_certificate_event(grid_event(flow.event("kv-alpha", "web", old.properties.version)))

    stats = pump(flow)
    assert stats.processed == 1 and stats.poisoned == 0

    new = flow.current("web")
    assert new.properties.version != old.properties.version
    assert len(flow.versions("web")) == 2
    leaf = x509.load_der_x509_certificate(new.cer)
    assert leaf.subject.rfc4514_string() == "CN=web.example.test"
    assert leaf.issuer.rfc4514_string() == "CN=Renewal Dev Issuing CA"
    assert new.properties.tags["renewal-policy-trigger"] == "days_before_expiry=30"

    rows = flow.service.ledger.history("kv-alpha", "web")
    assert [(r.state, r.old_version, r.new_version, r.issuer) for r in rows] == [
        ("notified", old.properties.version, new.properties.version, "corp-local")
    ]

    assert pump(flow, settings.DEPLOYMENTS_QUEUE).processed == 1
    assert len(hook.received) == 1
    delivered = hook.received[0]
    body = json.loads(delivered["body"])
    assert body["data"]["idempotency_key"] == f"kv-alpha/web/{new.properties.version}"
    headers = {k.lower(): v for k, v in delivered["headers"].items()}
    expected = (
        "sha256="
        + hmac.new(
            b"hook-signing-canary-7f3a",
            headers[TIMESTAMP_HEADER.lower()].encode() + b"." + delivered["body"],
            hashlib.sha256,
        ).hexdigest()
    )
    assert headers[SIGNATURE_HEADER.lower()] == expected

    # A second delivery of the same event finds the certificate renewed and does nothing.
    function_app.on_certificate_event(
        grid_event(flow.event("kv-alpha", "web", old.properties.version, event_id="evt-2"))
    )
    assert pump(flow).processed == 1
    assert len(flow.versions("web")) == 2


def test_not_due_certificate_is_left_alone(flow):
    flow.seed("kv-alpha", "healthy", days_left=80)
    flow.service.handle_event(flow.event("kv-alpha", "healthy", flow.current("healthy").properties.version))
    pump(flow)
    assert len(flow.versions("healthy")) == 1
    assert flow.kv.admin.counters().get("create", 0) == 0


def test_malformed_and_foreign_events_are_rejected_with_the_field(flow, caplog):
    caplog.set_level(logging.INFO, logger="renewal")
    bad = flow.event("kv-alpha", "web", "v1")
    bad["data"]["EXP"] = "tomorrow"
    assert flow.service.handle_event(bad).status == "rejected"
    foreign = near_expiry_event("kv-zulu", "web", "v1")
    foreign["topic"] = foreign["topic"].replace("kv-alpha", "kv-zulu")
    result = flow.service.handle_event(foreign)
    assert result.status == "rejected" and "kv-zulu" in result.detail
    function_app.on_certificate_event(grid_event(foreign))  # the binding never raises on bad input
    messages = [r.getMessage() for r in caplog.records if "event.rejected" in r.getMessage()]
    assert any("data.EXP" in m for m in messages) and any("data.VaultName" in m for m in messages)
    assert flow.storage.queue_client(settings.JOBS_QUEUE).get_queue_properties().approximate_message_count == 0


def test_renewal_never_reads_the_secrets_api(flow):
    flow.seed("kv-alpha", "web", days_left=5)
    flow.service.force_renewal("kv-alpha", "web")
    pump(flow)
    counters = flow.kv.admin.counters()
    assert counters.get("merge") == 1
    assert not any("secret" in op and n for op, n in counters.items()), counters
