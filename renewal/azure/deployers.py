"""Tell downstream deployers that a new version is live: a signed web hook and an Event Grid topic.

Every notice carries ``idempotency_key`` (vault/name/version): delivery is at least once, so
receivers de-duplicate. A failed delivery raises, and the ``deployments`` queue retries it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ca_clients import SecretResolver
from renewal.azure.outbound import check_target, pinned_session, post
from renewal.config import EventGridDeployerConfig, WebhookDeployerConfig
from renewal.model import DeploymentNotice
from renewal.observability import log_event

log = logging.getLogger("renewal.deployers")
SIGNATURE_HEADER = "X-Renewal-Signature"
TIMESTAMP_HEADER = "X-Renewal-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE = "Renewal.CertificateVersionDeployed"


def sign_body(key: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookDeployer:
    def __init__(self, config: WebhookDeployerConfig, secrets: SecretResolver) -> None:
        self.name = config.name
        self.config = config
        self._secrets = secrets

    def _url(self) -> str:
        if self.config.url is not None:
            return self.config.url
        return self._secrets.resolve(self.config.url_secret, field=f"deployers.{self.name}.url_secret")

    def deliver(self, notice: DeploymentNotice) -> None:
        import requests

        field = "url" if self.config.url is not None else "url_secret"
        target = check_target(self._url(), allow_private=self.config.allow_private_addresses, field=field)
        if self.config.format == "teams":
            body = json.dumps(teams_message(notice)).encode()
        elif self.config.format == "slack":
            body = json.dumps(slack_message(notice)).encode()
        else:
            body = json.dumps({"type": EVENT_TYPE, "data": notice.to_dict()}, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: notice.idempotency_key,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.config.signing_key is not None:
            key = self._secrets.resolve(self.config.signing_key, field=f"deployers.{self.name}.signing_key")
            headers[SIGNATURE_HEADER] = sign_body(key.encode(), timestamp, body)
        try:
            response = post(
                target,
                data=body,
                headers=headers,
                timeout=self.config.timeout_seconds,
                verify=self.config.ca_bundle or True,
            )
        except requests.RequestException as exc:  # never the URL: for Teams and Slack it is the credential
            raise RuntimeError(f"web hook {self.name}: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"web hook {self.name}: HTTP {response.status_code}")
        log_event(
            log,
            "deploy.webhook_delivered",
            deployer=self.name,
            vault=notice.vault,
            certificate=notice.name,
            version=notice.new_version,
            status=response.status_code,
        )


def _facts(notice: DeploymentNotice) -> list[tuple[str, str]]:
    return [
        ("Certificate", f"{notice.vault}/{notice.name}"),
        ("New version", notice.new_version),
        ("Previous version", notice.old_version or "-"),
        ("Valid", f"{notice.not_before:%Y-%m-%d %H:%M}Z to {notice.not_after:%Y-%m-%d %H:%M}Z"),
        ("Issuer", notice.issuer),
        ("Thumbprint (SHA-1)", notice.thumbprint_sha1),
        ("Key Vault id", notice.certificate_id),
    ]


def teams_message(notice: DeploymentNotice) -> dict[str, Any]:
    """An Adaptive Card in the message envelope a Teams Workflows webhook trigger takes (Workflows accept
    Adaptive Cards only, not the retired connectors' MessageCard)."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "wrap": True,
                "text": f"Certificate renewed: {notice.vault}/{notice.name}",
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(notice)]},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves these three; names and ids come from outside.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notice: DeploymentNotice) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` for notifications, blocks for the channel."""
    title = f"Certificate renewed: {notice.vault}/{notice.name}"
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in _facts(notice)]
    return {
        "text": _slack_escape(title),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            *({"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)),
        ],
    }


class EventGridDeployer:
    def __init__(self, config: EventGridDeployerConfig, secrets: SecretResolver, credential_factory: Callable[[], Any]):
        self.name = config.name
        self.config = config
        self._secrets = secrets
        self._credential_factory = credential_factory
        self._client: Any = None

    def _publisher(self) -> Any:
        """A publisher bound to the endpoint's checked address (checked again whenever it is rebuilt)."""
        if self._client is None:
            from azure.core.pipeline.transport import RequestsTransport

            # azure-eventgrid 4.22's public client drops every keyword (transport, connection_verify) for a
            # basic topic before it builds the client it delegates to; that client takes them.
            from azure.eventgrid._legacy import EventGridPublisherClient

            target = check_target(
                self.config.endpoint, allow_private=self.config.allow_private_addresses, field="endpoint"
            )
            if self.config.access_key is not None:
                from azure.core.credentials import AzureKeyCredential

                key = self._secrets.resolve(self.config.access_key, field=f"deployers.{self.name}.access_key")
                credential: Any = AzureKeyCredential(key)
            else:
                credential = self._credential_factory()
            # azure-core passes connection_verify with each request, so REQUESTS_CA_BUNDLE cannot replace it.
            transport = RequestsTransport(
                session=pinned_session(target), session_owner=False, connection_verify=self.config.ca_bundle or True
            )
            self._client = EventGridPublisherClient(self.config.endpoint, credential, transport=transport)
        return self._client

    def deliver(self, notice: DeploymentNotice) -> None:
        from azure.core.messaging import CloudEvent

        event = CloudEvent(
            source=f"/renewal/vaults/{notice.vault}",
            type=EVENT_TYPE,
            subject=f"certificates/{notice.name}/{notice.new_version}",
            data=notice.to_dict(),
            id=hashlib.sha256(notice.idempotency_key.encode()).hexdigest(),
        )
        self._publisher().send([event])
        log_event(
            log,
            "deploy.eventgrid_published",
            deployer=self.name,
            vault=notice.vault,
            certificate=notice.name,
            version=notice.new_version,
        )
