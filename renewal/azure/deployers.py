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

    def deliver(self, notice: DeploymentNotice) -> None:
        import requests

        target = check_target(self.config.url, allow_private=self.config.allow_private_addresses)
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
        except requests.RequestException as exc:
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
