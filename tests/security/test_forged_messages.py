"""A hostile queue writer (anyone with queue data rights) against the real functions, Key Vault emulator and
Azurite: a ``renewal-jobs`` message names a certificate and why, nothing more, and a ``deployments``
message is a claim the ledger and Key Vault must confirm before anything is signed and sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import function_app
from devtools.pump import QueuePump
from renewal import settings
from renewal.model import AttemptState


@pytest.fixture(autouse=True)
def wired(flow):
    function_app._service = flow.service
    yield
    function_app._service = None


@pytest.fixture
def listener():
    """Where a forged ticket points: it must never see a request."""
    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_GET = do_HEAD = do_POST  # noqa: N815 - http.server dispatches on these names

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def send(flow, queue: str, message: dict[str, Any] | str) -> None:
    body = message if isinstance(message, str) else json.dumps(message)
    flow.storage.queue_client(queue).send_message(body)


def pump(flow, queue: str) -> Any:
    handler = function_app.renewal_worker if queue == settings.JOBS_QUEUE else function_app.deploy_notifier
    return QueuePump(flow.storage, queue, handler, max_dequeue_count=1).run_until_idle(timeout=60)


def poisoned(flow, queue: str) -> int:
    client = flow.storage.queue_client(settings.poison_queue(queue))
    return client.get_queue_properties().approximate_message_count or 0


def test_a_job_naming_an_issuer_ticket_and_request_renews_only_through_the_configured_route(flow, listener):
    url, hits = listener
    flow.seed("kv-alpha", "web", days_left=5)
    forged = {
        "vault": "kv-alpha",
        "name": "web",
        "reason": "pending-followup",
        "issuer": "partner-ca",  # an issuer whose key is missing: would fail if it were used
        "ticket": {"order_url": f"{url}/order/1", "csr_sha256": "0" * 64},
        "request_id": "someone-elses-request",
    }
    send(flow, settings.JOBS_QUEUE, forged)
    assert pump(flow, settings.JOBS_QUEUE).processed == 1
    (row,) = flow.service.ledger.history("kv-alpha", "web")
    assert row.state is AttemptState.NOTIFIED and row.issuer == "corp-local"  # the configured default route
    assert row.request_id != "someone-elses-request" and hits == []
    assert len(flow.versions("web")) == 2


@pytest.mark.parametrize(
    "message",
    [
        {"vault": "kv-zulu", "name": "web", "reason": "sweep"},  # not a configured vault
        {"vault": "kv-alpha", "name": "../../x/y\u0000", "reason": "sweep"},
        {"vault": "kv-alpha", "name": "a" * 300, "reason": "sweep"},
        {"vault": "kv-alpha", "name": "web\n", "reason": "sweep"},
        {"vault": "kv-alpha", "name": "web", "reason": "because"},
        {"vault": "kv-alpha", "name": "web", "reason": "sweep", "force": "yes"},
        {"vault": "kv-alpha", "name": "web", "reason": "sweep", "version": "../v"},
        {"vault": ["kv-alpha"], "name": "web", "reason": "sweep"},
        "not json at all",
    ],
)
def test_an_invalid_job_changes_nothing_and_is_poisoned(flow, message):
    flow.seed("kv-alpha", "web", days_left=5)
    flow.kv.admin.reset_counters()
    send(flow, settings.JOBS_QUEUE, message)
    stats = pump(flow, settings.JOBS_QUEUE)
    assert stats.processed == 0 and poisoned(flow, settings.JOBS_QUEUE) == 1
    assert flow.kv.admin.counters().get("create", 0) == 0 and len(flow.versions("web")) == 1


def _renewed(flow, hook) -> tuple[Any, dict[str, Any]]:
    flow.seed("kv-alpha", "web", days_left=5)
    flow.service.force_renewal("kv-alpha", "web")
    pump(flow, settings.JOBS_QUEUE)
    (row,) = flow.service.ledger.history("kv-alpha", "web")
    client = flow.storage.queue_client(settings.DEPLOYMENTS_QUEUE)
    (message,) = client.receive_messages(max_messages=1)
    client.delete_message(message)  # the genuine notice is taken away; the tests send their own
    return row, json.loads(message.content)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda n, row: {**n, "vault": "kv-beta"}, id="another-vault"),
        pytest.param(lambda n, row: {**n, "request_id": "made-up"}, id="unknown-request"),
        pytest.param(lambda n, row: {**n, "new_version": "0" * 32}, id="unknown-version"),
        pytest.param(lambda n, row: {**n, "name": "../../x"}, id="traversal-name"),
    ],
)
def test_a_notice_the_ledger_does_not_confirm_is_never_delivered(flow, hook, forge):
    row, notice = _renewed(flow, hook)
    send(flow, settings.DEPLOYMENTS_QUEUE, forge(notice, row))
    pump(flow, settings.DEPLOYMENTS_QUEUE)
    assert hook.received == [] and poisoned(flow, settings.DEPLOYMENTS_QUEUE) == 1


def test_a_notice_for_an_old_version_is_dropped_and_a_forged_body_is_replaced_by_key_vaults(flow, hook):
    _row, notice = _renewed(flow, hook)
    forged = {**notice, "thumbprint_sha1": "ab" * 20, "certificate_id": "https://evil.example/certificates/web/x"}
    send(flow, settings.DEPLOYMENTS_QUEUE, forged)
    assert pump(flow, settings.DEPLOYMENTS_QUEUE).processed == 1
    (delivered,) = hook.received
    data = json.loads(delivered["body"])["data"]
    current = flow.current("web")
    assert data["certificate_id"] == current.id and data["thumbprint_sha1"] != "ab" * 20
    # A newer renewal makes this notice stale: replaying it must not roll deployers back.
    flow.service.force_renewal("kv-alpha", "web")
    pump(flow, settings.JOBS_QUEUE)
    pump(flow, settings.DEPLOYMENTS_QUEUE)  # the newer version's own notice
    hook.received.clear()
    send(flow, settings.DEPLOYMENTS_QUEUE, notice)
    assert pump(flow, settings.DEPLOYMENTS_QUEUE).processed == 1 and hook.received == []
