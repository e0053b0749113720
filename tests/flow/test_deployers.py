"""Deployers over real sockets: the Event Grid topic publisher (real azure-eventgrid SDK) and web hook rules."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emulator.crypto import make_tls_material
from renewal.azure.deployers import EventGridDeployer, WebhookDeployer, check_target
from renewal.config import EventGridDeployerConfig, WebhookDeployerConfig
from renewal.errors import DeliveryFailed, DeliveryRefused
from renewal.flow.deploy import deliver_notice
from renewal.model import DeploymentNotice
from tests.ca_support import DictSecretResolver

NOTICE = DeploymentNotice(
    vault="kv-alpha",
    name="web",
    new_version="v2",
    old_version="v1",
    certificate_id="https://kv-alpha.vault.azure.net/certificates/web/v2",
    thumbprint_sha1="ab" * 20,
    not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    not_after=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
    issuer="corp-local",
    request_id="r1",
)


TOPIC_TLS: dict = {}
"""The topic's TLS bundle and the opt-in for its loopback address, filled by the ``topic`` fixture."""


@pytest.fixture
def topic(tmp_path):
    """An Event Grid topic stand-in over HTTPS (the key travels with every event, so never plain HTTP)."""
    received = []
    ca, cert, key = make_tls_material(tmp_path / "topic-tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((dict(self.headers), json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    TOPIC_TLS.update(ca_bundle=str(ca), allow_private_addresses=True)
    yield f"https://localhost:{server.server_address[1]}/api/events", received
    server.shutdown()
    server.server_close()


def test_event_grid_topic_receives_a_cloud_event_with_a_stable_id(topic):
    url, received = topic
    config = EventGridDeployerConfig(
        type="eventgrid", name="topic", endpoint=url, access_key={"setting": "TOPIC_KEY"}, **TOPIC_TLS
    )
    deployer = EventGridDeployer(config, DictSecretResolver({"TOPIC_KEY": "topic-key-canary"}), lambda: None)
    deliver_notice(NOTICE, [deployer])
    deliver_notice(NOTICE, [deployer])  # at least once: the receiver de-duplicates by id
    (headers, events1), (_, events2) = received
    assert {k.lower(): v for k, v in headers.items()}["aeg-sas-key"] == "topic-key-canary"
    event = events1[0]
    assert event["type"] == "Renewal.CertificateVersionDeployed" and event["specversion"] == "1.0"
    assert event["data"]["idempotency_key"] == "kv-alpha/web/v2"
    assert event["id"] == events2[0]["id"]


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "168.63.129.16", "fe80::1", "fd00:ec2::254", "0.0.0.0", "169.254.10.10"]
)
def test_link_local_and_metadata_targets_are_always_refused(address):
    with pytest.raises(DeliveryRefused, match=r"metadata|link-local"):
        check_target("http://hook.example/x", allow_private=True, resolve=lambda _h: [address])


def test_private_targets_need_opt_in():
    with pytest.raises(DeliveryRefused, match="allow_private_addresses"):
        check_target("http://127.0.0.1:9/x", allow_private=False)
    check_target("http://127.0.0.1:9/x", allow_private=True)
    check_target("https://hook.example/x", allow_private=False, resolve=lambda _h: ["20.50.60.70"])


def test_a_refused_or_failing_hook_fails_the_notice_so_the_queue_retries():
    config = WebhookDeployerConfig(type="webhook", name="meta", url="http://169.254.169.254/latest")
    with pytest.raises(DeliveryFailed, match="meta"):
        deliver_notice(NOTICE, [WebhookDeployer(config, DictSecretResolver())])
    closed = WebhookDeployerConfig(
        type="webhook", name="down", url="http://127.0.0.1:9/hook", allow_private_addresses=True, timeout_seconds=2
    )
    with pytest.raises(DeliveryFailed, match="down"):
        deliver_notice(NOTICE, [WebhookDeployer(closed, DictSecretResolver())])


def test_deployers_apply_only_to_their_vault_and_names(topic):
    url, received = topic
    other = EventGridDeployerConfig(
        type="eventgrid", name="t", endpoint=url, access_key={"setting": "K"}, vault="kv-beta", **TOPIC_TLS
    )
    names = EventGridDeployerConfig(
        type="eventgrid", name="t2", endpoint=url, access_key={"setting": "K"}, match="api-*", **TOPIC_TLS
    )
    resolver = DictSecretResolver({"K": "k"})
    assert (
        deliver_notice(
            NOTICE, [EventGridDeployer(other, resolver, lambda: None), EventGridDeployer(names, resolver, lambda: None)]
        )
        == []
    )
    assert received == []


@pytest.mark.parametrize("kind", ["teams", "slack"])
def test_teams_and_slack_webhooks_get_their_own_message_and_the_url_stays_a_secret(hook, kind):
    secrets = DictSecretResolver({"CHAT_HOOK_URL": hook.url})
    config = WebhookDeployerConfig(
        type="webhook",
        name="chat",
        url_secret={"setting": "CHAT_HOOK_URL"},
        format=kind,
        allow_private_addresses=True,
    )
    hook.status = 202 if kind == "teams" else 200  # what a Teams workflow and Slack answer
    assert deliver_notice(NOTICE, [WebhookDeployer(config, secrets)]) == ["chat"]
    (delivery,) = hook.received
    body = json.loads(delivery["body"])
    assert "X-Renewal-Signature" not in delivery["headers"]
    if kind == "teams":
        (attachment,) = body["attachments"]
        assert body["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == "Certificate renewed: kv-alpha/web"
        facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
        assert facts["New version"] == "v2" and facts["Thumbprint (SHA-1)"] == "ab" * 20
    else:
        assert body["text"] == "Certificate renewed: kv-alpha/web"
        assert body["blocks"][0]["type"] == "header"
        assert any("*New version*\nv2" == f["text"] for f in body["blocks"][1]["fields"])

    hook.status = 404  # a deleted workflow: the delivery fails and the queue retries; the URL is not in the error
    with pytest.raises(DeliveryFailed) as info:
        deliver_notice(NOTICE, [WebhookDeployer(config, secrets)])
    assert hook.url not in str(info.value) and "HTTP 404" in str(info.value)


def test_a_chat_webhook_config_refuses_a_signature_and_needs_exactly_one_url():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="takes no signature"):
        WebhookDeployerConfig(
            type="webhook", name="t", url="https://x.example/h", format="teams", signing_key={"setting": "K"}
        )
    with pytest.raises(ValidationError, match="exactly one of url and url_secret"):
        WebhookDeployerConfig(type="webhook", name="t")
    with pytest.raises(ValidationError, match="exactly one of url and url_secret"):
        WebhookDeployerConfig(type="webhook", name="t", url="https://x.example/h", url_secret={"setting": "U"})


def test_slack_markup_in_names_is_escaped():
    from renewal.azure.deployers import slack_message

    hostile = DeploymentNotice(**{**NOTICE.__dict__, "name": "a<!channel>b"})
    body = slack_message(hostile)
    assert "<!channel>" not in body["text"] and "&lt;!channel&gt;" in body["text"]
    assert all("<!channel>" not in f["text"] for f in body["blocks"][1]["fields"])
