"""dns-01 for the ACME client: solvers that publish TXT records, and the propagation check.

A solver publishes ``_acme-challenge.<domain>`` TXT = ``validation`` and removes exactly that value
again (a wildcard and its base name share one record name, so values are added, never replaced).
Propagation is confirmed by asking the zone's authoritative servers (or configured nameservers)
directly, so the CA is only told to validate once every server answers with the value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import PermanentCAError, SecretResolver, TransientCAError
from .config_types import SecretRef

logger = logging.getLogger("ca_clients.acme")

CHALLENGE_LABEL = "_acme-challenge"


def challenge_fqdn(domain: str) -> str:
    """The TXT record name for ``domain`` (an identifier without ``*.``), without a trailing dot."""
    return f"{CHALLENGE_LABEL}.{domain.rstrip('.').removeprefix('*.')}"


@runtime_checkable
class DnsSolver(Protocol):
    """Publishes and withdraws dns-01 TXT values; ``domain`` is the identifier (no ``*.``)."""

    def present(self, domain: str, validation: str) -> None: ...

    def cleanup(self, domain: str, validation: str) -> None: ...


# --- configuration -------------------------------------------------------------------------------


AZURE_RESOURCE_MANAGERS = frozenset(
    {
        "https://management.azure.com",  # public cloud
        "https://management.usgovcloudapi.net",  # Azure US Government
        "https://management.chinacloudapi.cn",  # Azure operated by 21Vianet
    }
)


class _AzureZone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscription_id: str
    resource_group: str
    zone_name: str
    managed_identity_client_id: str | None = Field(
        default=None, description="client id of a user-assigned managed identity; default: DefaultAzureCredential"
    )
    ttl: int = Field(default=60, ge=1, le=86400)
    arm_endpoint: str | None = Field(default=None, description="Resource Manager URL for sovereign clouds")

    @field_validator("arm_endpoint")
    @classmethod
    def _an_azure_cloud(cls, value: str | None) -> str | None:
        # The ARM token goes to this URL: only the Azure clouds' own Resource Manager endpoints may have it.
        if value is not None and value.rstrip("/").lower() not in AZURE_RESOURCE_MANAGERS:
            raise ValueError(
                f"must be one of the Azure clouds' Resource Manager endpoints {sorted(AZURE_RESOURCE_MANAGERS)}"
            )
        return value


class AzureDnsConfig(_AzureZone):
    provider: Literal["azure"]


class AzurePrivateDnsConfig(_AzureZone):
    provider: Literal["azure_private"]


class WebhookDnsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["webhook"]
    url: str
    hmac_key: SecretRef = Field(default=None, description="secret reference; signs the body (HMAC-SHA256, hex)")
    signature_header: str = "X-Signature-SHA256"
    ca_bundle: str | None = None


class ChallTestSrvDnsConfig(BaseModel):
    """pebble-challtestsrv's management API; for test environments only."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["challtestsrv"]
    url: str


DnsConfig = Annotated[
    AzureDnsConfig | AzurePrivateDnsConfig | WebhookDnsConfig | ChallTestSrvDnsConfig,
    Field(discriminator="provider"),
]


class PropagationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float = Field(default=120.0, ge=0)
    interval_seconds: float = Field(default=2.0, gt=0)
    nameservers: list[str] | None = Field(
        default=None, description='"host" or "host:port"; default: the zone\'s authoritative NS'
    )


def build_solver(config: Any, *, secrets: SecretResolver, timeout: float, field: str) -> DnsSolver:
    if isinstance(config, AzureDnsConfig):
        return AzureDnsSolver(config)
    if isinstance(config, AzurePrivateDnsConfig):
        return AzurePrivateDnsSolver(config)
    if isinstance(config, WebhookDnsConfig):
        key = secrets.resolve(config.hmac_key, field=f"{field}.hmac_key").strip() if config.hmac_key else None
        return WebhookSolver(config, hmac_key=key, timeout=timeout)
    if isinstance(config, ChallTestSrvDnsConfig):
        return ChallTestSrvSolver(config.url, timeout=timeout)
    raise TypeError(f"unknown dns solver config {type(config).__name__}")


# --- solvers -------------------------------------------------------------------------------------


def _relative_name(fqdn: str, zone: str) -> str:
    fqdn, zone = fqdn.rstrip(".").lower(), zone.rstrip(".").lower()
    if fqdn == zone:
        return "@"
    if fqdn.endswith("." + zone):
        return fqdn[: -len(zone) - 1]
    raise PermanentCAError(f"{fqdn} is not inside the configured DNS zone {zone}")


def _azure_credential(client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


class _AzureTxtSolver:
    """Read-modify-write of one TXT record set with ETag preconditions (other orders share it)."""

    attempts = 5

    def __init__(self, config: _AzureZone, *, credential: Any = None, client_options: dict[str, Any] | None = None):
        self.config = config
        self._credential = credential
        self._client_options = dict(client_options or {})
        if config.arm_endpoint:
            self._client_options.setdefault("base_url", config.arm_endpoint)
        self._client: Any = None

    def present(self, domain: str, validation: str) -> None:
        self._update(domain, lambda values: values if validation in values else [*values, validation])

    def cleanup(self, domain: str, validation: str) -> None:
        self._update(domain, lambda values: [v for v in values if v != validation])

    def _update(self, domain: str, change: Callable[[list[str]], list[str]]) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError

        name = _relative_name(challenge_fqdn(domain), self.config.zone_name)
        for _ in range(self.attempts):
            etag, values = self._read(name)
            wanted = change(values)
            if wanted == values and etag is not None:
                return
            try:
                if not wanted:
                    if etag is not None:
                        self._delete(name, etag)
                else:
                    self._write(name, wanted, etag)
                return
            except (ResourceModifiedError, ResourceExistsError):
                continue  # someone else changed the record set in between: read again
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue
                raise _azure_error(exc) from exc
        raise TransientCAError(f"TXT record {name} in {self.config.zone_name} kept changing; gave up")

    def _read(self, name: str) -> tuple[str | None, list[str]]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            record = self._get(name)
        except ResourceNotFoundError:
            return None, []
        except HttpResponseError as exc:
            raise _azure_error(exc) from exc
        values = ["".join(r.value or []) for r in (record.txt_records or [])]
        return record.etag, values

    def _dns(self) -> Any:
        if self._client is None:
            self._client = self._make_client(
                self._credential or _azure_credential(self.config.managed_identity_client_id)
            )
        return self._client

    def _make_client(self, credential: Any) -> Any:
        raise NotImplementedError

    def _get(self, name: str) -> Any:
        raise NotImplementedError

    def _write(self, name: str, values: list[str], etag: str | None) -> None:
        raise NotImplementedError

    def _delete(self, name: str, etag: str) -> None:
        raise NotImplementedError


def _azure_error(exc: Any) -> Exception:
    status = getattr(exc, "status_code", None) or 0
    message = f"Azure DNS answered {status}: {getattr(exc, 'message', '') or type(exc).__name__}"
    if status in (401, 403, 404, 400):
        return PermanentCAError(message)
    return TransientCAError(message)


class AzureDnsSolver(_AzureTxtSolver):
    """Public Azure DNS zones (``azure-mgmt-dns``); the identity needs DNS Zone Contributor on the zone."""

    def _make_client(self, credential: Any) -> Any:
        from azure.mgmt.dns import DnsManagementClient

        return DnsManagementClient(credential, self.config.subscription_id, **self._client_options)

    def _get(self, name: str) -> Any:
        return self._dns().record_sets.get(self.config.resource_group, self.config.zone_name, name, "TXT")

    def _write(self, name: str, values: list[str], etag: str | None) -> None:
        from azure.mgmt.dns.models import RecordSet, TxtRecord

        record = RecordSet(ttl=self.config.ttl, txt_records=[TxtRecord(value=[v]) for v in values])
        self._dns().record_sets.create_or_update(
            self.config.resource_group,
            self.config.zone_name,
            name,
            "TXT",
            record,
            if_match=etag,
            if_none_match=None if etag else "*",
        )

    def _delete(self, name: str, etag: str) -> None:
        self._dns().record_sets.delete(self.config.resource_group, self.config.zone_name, name, "TXT", if_match=etag)


class AzurePrivateDnsSolver(_AzureTxtSolver):
    """Azure Private DNS zones (``azure-mgmt-privatedns``); needs Private DNS Zone Contributor.

    A private zone is only visible inside its linked VNets, so the ACME server must resolve through
    them (an internal CA), and ``propagation.nameservers`` should name a resolver that sees the zone.
    """

    def _make_client(self, credential: Any) -> Any:
        from azure.mgmt.privatedns import PrivateDnsManagementClient

        return PrivateDnsManagementClient(credential, self.config.subscription_id, **self._client_options)

    def _get(self, name: str) -> Any:
        return self._dns().record_sets.get(self.config.resource_group, self.config.zone_name, "TXT", name)

    def _write(self, name: str, values: list[str], etag: str | None) -> None:
        from azure.core import MatchConditions
        from azure.mgmt.privatedns.models import RecordSet, TxtRecord

        record = RecordSet(ttl=self.config.ttl, txt_records=[TxtRecord(value=[v]) for v in values])
        self._dns().record_sets.create_or_update(
            self.config.resource_group,
            self.config.zone_name,
            "TXT",
            name,
            record,
            etag=etag,
            match_condition=MatchConditions.IfNotModified if etag else MatchConditions.IfMissing,
        )

    def _delete(self, name: str, etag: str) -> None:
        from azure.core import MatchConditions

        self._dns().record_sets.delete(
            self.config.resource_group,
            self.config.zone_name,
            "TXT",
            name,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )


class WebhookSolver:
    """POSTs ``{"action": "present"|"cleanup", "fqdn", "value"}`` to a DNS automation endpoint.

    With ``hmac_key`` the exact body bytes are signed: header ``X-Signature-SHA256`` = hex HMAC-SHA256.
    Any 2xx is success; 5xx/connection errors are transient, other statuses permanent.
    """

    def __init__(self, config: WebhookDnsConfig, *, hmac_key: str | None, timeout: float) -> None:
        self.config = config
        self._key = hmac_key.encode() if hmac_key else None
        self.timeout = timeout

    def present(self, domain: str, validation: str) -> None:
        self._send("present", domain, validation)

    def cleanup(self, domain: str, validation: str) -> None:
        self._send("cleanup", domain, validation)

    def _send(self, action: str, domain: str, validation: str) -> None:
        body = json.dumps({"action": action, "fqdn": challenge_fqdn(domain), "value": validation}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers[self.config.signature_header] = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        try:
            response = requests.post(
                self.config.url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                verify=self.config.ca_bundle or True,
            )
        except requests.RequestException as exc:
            raise TransientCAError(f"DNS web hook unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise TransientCAError(f"DNS web hook answered {response.status_code} to {action}")
        if not response.ok:
            raise PermanentCAError(f"DNS web hook refused {action} ({response.status_code}): {response.text[:200]}")


class ChallTestSrvSolver:
    """pebble-challtestsrv (``/set-txt``, ``/clear-txt``): test environments only.

    ``/clear-txt`` drops every value of the name, which is fine for a mock DNS.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def present(self, domain: str, validation: str) -> None:
        self._post("/set-txt", {"host": challenge_fqdn(domain) + ".", "value": validation})

    def cleanup(self, domain: str, validation: str) -> None:
        self._post("/clear-txt", {"host": challenge_fqdn(domain) + "."})

    def _post(self, path: str, body: dict[str, str]) -> None:
        try:
            requests.post(self.url + path, json=body, timeout=self.timeout).raise_for_status()
        except requests.RequestException as exc:
            raise TransientCAError(f"challtestsrv {path} failed: {exc}") from exc


# --- propagation ---------------------------------------------------------------------------------


class PropagationChecker:
    """Waits until every authoritative server (or every configured nameserver) serves a TXT value."""

    def __init__(
        self,
        config: PropagationConfig,
        *,
        query_timeout: float = 3.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.query_timeout = query_timeout
        self._sleep = sleep
        self._clock = clock

    def wait(self, fqdn: str, value: str) -> None:
        deadline = self._clock() + self.config.timeout_seconds
        servers = self.servers_for(fqdn)
        missing = list(servers)
        while True:
            missing = [s for s in missing if not self.serves(s, fqdn, value)]
            if not missing:
                logger.info(
                    "acme.dns.propagated fqdn=%s servers=%d",
                    fqdn,
                    len(servers),
                    extra={"event": "acme.dns.propagated", "fqdn": fqdn, "servers": len(servers)},
                )
                return
            if self._clock() + self.config.interval_seconds > deadline:
                shown = ", ".join(f"{host}:{port}" for host, port in missing)
                raise TransientCAError(f"TXT {fqdn} not visible on {shown} within {self.config.timeout_seconds:g}s")
            self._sleep(self.config.interval_seconds)

    def servers_for(self, fqdn: str) -> list[tuple[str, int]]:
        if self.config.nameservers:
            return [_host_port(s) for s in self.config.nameservers]
        return self._authoritative(fqdn)

    def _authoritative(self, fqdn: str) -> list[tuple[str, int]]:
        import dns.exception
        import dns.resolver

        try:
            zone = dns.resolver.zone_for_name(fqdn.rstrip(".") + ".")
            servers: list[tuple[str, int]] = []
            for ns in dns.resolver.resolve(zone, "NS"):
                for rdtype in ("A", "AAAA"):
                    try:
                        servers += [(a.to_text(), 53) for a in dns.resolver.resolve(ns.target, rdtype)]
                    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                        continue
        except dns.exception.DNSException as exc:
            raise TransientCAError(f"could not find the authoritative servers for {fqdn}: {exc}") from exc
        if not servers:
            raise TransientCAError(f"no authoritative server addresses found for {fqdn}")
        return sorted(set(servers))

    def serves(self, server: tuple[str, int], fqdn: str, value: str) -> bool:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.query
        import dns.rdatatype

        query = dns.message.make_query(fqdn.rstrip(".") + ".", dns.rdatatype.TXT)
        host, port = server
        try:
            answer = dns.query.udp(query, host, port=port, timeout=self.query_timeout)
            if answer.flags & dns.flags.TC:
                answer = dns.query.tcp(query, host, port=port, timeout=self.query_timeout)
        except (dns.exception.DNSException, OSError):
            return False  # unreachable or slow server: keep waiting until the deadline
        for rrset in answer.answer:
            if rrset.rdtype != dns.rdatatype.TXT:
                continue
            if any(b"".join(r.strings).decode(errors="replace") == value for r in rrset):
                return True
        return False


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        host, _, port = text[1:].partition("]:")
        return host, int(port or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53
