"""A RenewalService wired to the real emulator (Key Vault over HTTPS), Azurite and a local CA."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ca_clients.local import create_ca_files
from renewal.config import parse_config
from renewal.service import RenewalService

DAY = 86_400


@dataclass
class HookReceiver:
    """A downstream deployer's web hook on loopback: records every POST."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    receiver = HookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(receiver.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


def policy_wire(name: str, *, sans: list[str] | None = None, trigger: dict[str, int] | None = None) -> dict[str, Any]:
    host = f"{name}.example.test"
    return {
        "issuer": {"name": "Unknown"},
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": False, "reuse_key": False},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": f"CN={host}", "sans": {"dns_names": sans or [host]}, "validity_months": 3},
        "lifetime_actions": [
            {"trigger": trigger or {"days_before_expiry": 30}, "action": {"action_type": "EmailContacts"}}
        ],
    }


@dataclass
class Flow:
    service: RenewalService
    kv: Any
    storage: Any
    ca_paths: dict[str, Any]
    environ: dict[str, str]

    def now(self) -> int:
        return int(self.kv.admin.now())

    def event(self, vault: str, name: str, version: str, *, event_id: str = "evt-1") -> dict[str, Any]:
        """A near-expiry event as Key Vault would send it for this emulator's vault."""
        return near_expiry_event(vault, name, version, event_id=event_id, base_url=self.kv.vault_urls.get(vault))

    def seed(
        self,
        vault: str,
        name: str,
        *,
        days_left: float,
        lifetime_days: float = 90,
        tags: dict | None = None,
        **policy_kw: Any,
    ) -> None:
        now = self.now()
        self.kv.admin.seed(
            vault,
            certificates=[{"name": name}],
            not_before=int(now - (lifetime_days - days_left) * DAY),
            expires=int(now + days_left * DAY),
            tags=tags or {},
            policy=policy_wire(name, **policy_kw),
        )

    def client(self, vault: str = "kv-alpha") -> Any:
        return self.kv.certificate_client(vault)

    def versions(self, name: str, vault: str = "kv-alpha") -> list[str]:
        return [p.version for p in self.client(vault).list_properties_of_certificate_versions(name)]

    def current(self, name: str, vault: str = "kv-alpha") -> Any:
        return self.client(vault).get_certificate(name)


def make_config(kv: Any, ca: dict[str, Any], hook_url: str | None, **extra: Any) -> dict[str, Any]:
    issuers = [
        {
            "name": "corp-local",
            "type": "local",
            "ca_certificate": str(ca["ca_certificate"]),
            "ca_key": {"file": str(ca["ca_key"])},
            "chain": str(ca["chain"]),
            "trust_anchors": [str(ca["root"])],
        },
        {
            "name": "partner-ca",
            "type": "local",
            "ca_certificate": str(ca["ca_certificate"]),
            "ca_key": {"setting": "PARTNER_CA_KEY"},
            "chain": str(ca["chain"]),
            "trust_anchors": [str(ca["root"])],
        },
    ]
    document: dict[str, Any] = {
        "vaults": [{"name": name, "url": url} for name, url in kv.vault_urls.items()],
        "issuers": issuers,
        "routes": [{"issuer": "partner-ca", "match": "partner-*"}],
        "default_issuer": "corp-local",
        "deployers": [],
        # A job that finds the certificate held by another worker comes back after ~1-2 s (not 10-20).
        "defaults": {"claim_ttl_seconds": 120, "requeue_delay_seconds": 1},
    }
    if hook_url:
        document["deployers"].append(
            {
                "type": "webhook",
                "name": "hook",
                "url": hook_url,
                "signing_key": {"setting": "HOOK_SIGNING_KEY"},
                "allow_private_addresses": True,
            }
        )
    document.update(extra)
    return document


@pytest.fixture
def flow(kv: Any, storage: Any, hook: HookReceiver, tmp_path: Any) -> Flow:
    ca = create_ca_files(tmp_path / "ca")
    environ = {
        "RENEWAL_KEYVAULT_CREDENTIAL": "emulator",
        "RENEWAL_KEYVAULT_CA_BUNDLE": kv.ca_bundle,
        "HOOK_SIGNING_KEY": "hook-signing-canary-7f3a",
    }
    config = parse_config(make_config(kv, ca, hook.url))
    service = RenewalService(
        config,
        environ=environ,
        storage=storage,
        clock=lambda: dt.datetime.fromtimestamp(kv.admin.now(), dt.UTC),
        keyvault_options={"sleep": lambda _s: None},
    )
    return Flow(service, kv, storage, ca, environ)


def near_expiry_event(
    vault: str, name: str, version: str, *, event_id: str = "evt-1", base_url: str | None = None
) -> dict[str, Any]:
    """A CertificateNearExpiry event in the Event Grid schema; ``data.Id`` lies in ``base_url`` (the vault's
    URL, which the service checks), by default the public cloud's."""
    base = (base_url or f"https://{vault}.vault.azure.net").rstrip("/")
    return {
        "id": event_id,
        "topic": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        f"Microsoft.KeyVault/vaults/{vault}",
        "subject": name,
        "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
        "eventTime": "2026-11-26T00:00:00Z",
        "dataVersion": "1",
        "data": {
            "Id": f"{base}/certificates/{name}/{version}",
            "VaultName": vault,
            "ObjectType": "Certificate",
            "ObjectName": name,
            "Version": version,
            "NBF": 1,
            "EXP": "2",
        },
    }


def json_body(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["body"])
