"""Tell downstream deployers that a new version is live: a signed web hook and an Event Grid topic.

Every notice carries ``idempotency_key`` (vault/name/version): delivery is at least once, so
receivers de-duplicate. A failed delivery raises, and the ``deployments`` queue retries it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ca_clients import SecretResolver
from renewal.config import EventGridDeployerConfig, WebhookDeployerConfig
from renewal.errors import DeliveryRefused
from renewal.model import DeploymentNotice
from renewal.observability import log_event

log = logging.getLogger("renewal.deployers")
SIGNATURE_HEADER = "X-Renewal-Signature"
TIMESTAMP_HEADER = "X-Renewal-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE = "Renewal.CertificateVersionDeployed"

# Cloud metadata and platform endpoints: never a web hook target, whatever the config says.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("168.63.129.16"),
    ipaddress.ip_address("fd00:ec2::254"),
}


def check_target(url: str, *, allow_private: bool, resolve: Callable[[str], list[str]] | None = None) -> None:
    host = urlparse(url).hostname or ""
    resolver = resolve or (lambda h: [info[4][0] for info in socket.getaddrinfo(h, None)])
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host)]
        except OSError as exc:
            raise DeliveryRefused(f"url: cannot resolve {host!r}: {exc}") from None
    for address in addresses:
        if address in _METADATA or address.is_link_local or address.is_unspecified or address.is_multicast:
            raise DeliveryRefused(f"url: {host} resolves to {address}, a link-local or metadata address")
        if (address.is_loopback or address.is_private) and not allow_private:
            raise DeliveryRefused(
                f"url: {host} resolves to private address {address}; set allow_private_addresses to permit it"
            )


def sign_body(key: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookDeployer:
    def __init__(self, config: WebhookDeployerConfig, secrets: SecretResolver, *, session: Any = None) -> None:
        self.name = config.name
        self.config = config
        self._secrets = secrets
        self._session = session

    def deliver(self, notice: DeploymentNotice) -> None:
        import requests

        check_target(self.config.url, allow_private=self.config.allow_private_addresses)
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
        session = self._session or requests
        try:
            response = session.post(
                self.config.url, data=body, headers=headers, timeout=self.config.timeout_seconds, allow_redirects=False
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
        if self._client is None:
            from azure.eventgrid import EventGridPublisherClient

            if self.config.access_key is not None:
                from azure.core.credentials import AzureKeyCredential

                key = self._secrets.resolve(self.config.access_key, field=f"deployers.{self.name}.access_key")
                credential: Any = AzureKeyCredential(key)
            else:
                credential = self._credential_factory()
            self._client = EventGridPublisherClient(self.config.endpoint, credential)
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
