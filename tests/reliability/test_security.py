"""Security promises 4 and 6 under success and failure: canary credentials never reach a log line, an
exception or a ledger row; admin routes refuse anonymous calls; web hooks to link-local or metadata
addresses are refused; certificate material is never read through the secrets API."""

from __future__ import annotations

import ast
import datetime as dt
import logging
from pathlib import Path

import pytest

import function_app
from devtools.functions_http import app_functions
from devtools.pump import QueuePump
from renewal import settings
from renewal.azure.deployers import check_target
from renewal.azure.secrets import ConfigSecretResolver
from renewal.config import parse_config
from renewal.errors import DeliveryRefused, SecretReferenceError
from renewal.service import RenewalService

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
CANARIES = {
    "CANARY_CFSSL_HMAC": "c0ffee00canary0cfssl0hmac0000000000000000000000000000000000000001",
    "CANARY_VAULT_TOKEN": "hvs.canary-vault-token-5d1e",
    "CANARY_EST_PASSWORD": "canary-est-password-91ab",
    "CANARY_ADCS_PASSWORD": "canary-adcs-password-77cd",
    "CANARY_EAB_KEY": "Y2FuYXJ5LWVhYi1rZXktMzNkZi1jYW5hcnktZWFiLWtleQ",
    "PARTNER_CA_KEY": "canary-local-ca-key-not-a-pem-4b2c",
    "HOOK_SIGNING_KEY": "hook-signing-canary-7f3a",
}
DEAD = "http://127.0.0.1:9"  # nothing listens: every remote issuer fails


def canary_issuers(flow) -> list[dict]:
    anchors = {"trust_anchors": [str(flow.ca_paths["root"])], "allow_insecure_http": True}
    return [{**section, **anchors} for section in [
        {"name": "cfssl-ca", "type": "cfssl", "url": DEAD, "auth_key": {"setting": "CANARY_CFSSL_HMAC"},
         "timeout_seconds": 1},
        {"name": "vault-ca", "type": "vault", "url": DEAD, "mount": "pki", "role": "web",
         "auth": {"method": "token", "token": {"setting": "CANARY_VAULT_TOKEN"}}, "timeout_seconds": 1},
        {"name": "est-ca", "type": "est", "url": DEAD, "username": "u",
         "password": {"setting": "CANARY_EST_PASSWORD"}, "timeout_seconds": 1},
        {"name": "adcs-ca", "type": "adcs", "url": DEAD, "template": "WebServer", "auth": "basic",
         "username": "u", "password": {"setting": "CANARY_ADCS_PASSWORD"}, "timeout_seconds": 1},
        {"name": "acme-ca", "type": "acme", "directory_url": DEAD + "/dir",
         "account_key": {"file": str(flow.ca_paths["ca_key"].parent / "acct.pem")},
         "eab_kid": "kid-1", "eab_hmac_key": {"setting": "CANARY_EAB_KEY"},
         "dns": {"provider": "challtestsrv", "url": DEAD}, "timeout_seconds": 1},
    ]]  # fmt: skip


def test_canaries_never_reach_logs_errors_or_ledger(flow, hook, caplog):
    issuers = canary_issuers(flow)
    document = make_config(flow.kv, flow.ca_paths, hook.url)
    document["issuers"] += issuers
    document["routes"] += [{"issuer": s["name"], "match": f"{s['name']}-*"} for s in issuers]
    environ = {**flow.environ, **CANARIES}
    service = RenewalService(
        parse_config(document),
        environ=environ,
        storage=flow.storage,
        clock=lambda: dt.datetime.fromtimestamp(flow.kv.admin.now(), dt.UTC),
        keyvault_options={"sleep": lambda _s: None},
    )
    function_app._service = service
    caplog.set_level(logging.DEBUG)  # every logger, azure-core and urllib3 included
    errors: list[str] = []
    try:
        names = ["web", "partner-api"] + [f"{s['name']}-web" for s in issuers]
        for name in names:
            flow.seed("kv-alpha", name, days_left=5)
            service.force_renewal("kv-alpha", name)
        original = function_app.renewal_worker

        def worker(msg):
            try:
                original(msg)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc} {exc.__cause__!r} {exc.__context__!r}")
                raise

        QueuePump(flow.storage, settings.JOBS_QUEUE, worker, concurrency=4).run_until_idle(timeout=120)
        QueuePump(flow.storage, settings.DEPLOYMENTS_QUEUE, function_app.deploy_notifier).run_until_idle(timeout=30)
    finally:
        function_app._service = None
    assert len(flow.versions("web")) == 2  # one renewal succeeded (and its web hook was signed)
    assert hook.received
    assert errors  # the others failed
    rows = [r for n in names for r in service.ledger.history("kv-alpha", n)]
    haystack = "\n".join([caplog.text, *errors, *(repr(r) for r in rows), *(str(h) for h in hook.received)])
    haystack += "\n".join(r.getMessage() + repr(getattr(r, "__dict__", {})) for r in caplog.records)
    for setting, value in CANARIES.items():
        assert value not in haystack, f"{setting} leaked"
    assert flow.kv.admin.counters()["get_secret"] == 0  # promise 4 at run time


def test_every_admin_route_needs_a_key():
    routes = [f for f in app_functions(function_app.app) if f.get_function_name().startswith("ops_")]
    assert len(routes) >= 4
    for function in routes:
        trigger = function.get_trigger()
        level = str(getattr(trigger, "auth_level", "")).upper()
        assert level.endswith(("FUNCTION", "ADMIN")), (function.get_function_name(), level)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://168.63.129.16/machine",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "https://link-local.example.test/hook",
    ],
)
def test_web_hooks_to_link_local_or_metadata_are_refused(url):
    def resolve(host: str) -> list[str]:
        return ["169.254.10.20"] if host == "link-local.example.test" else [host]

    with pytest.raises(DeliveryRefused):
        check_target(url, allow_private=True, resolve=resolve)


def test_a_secret_reference_into_a_certificate_vault_is_refused(flow):
    resolver = ConfigSecretResolver(
        configuration_vault="https://config-vault.vault.azure.net",
        certificate_vaults=set(flow.kv.vault_urls.values()),
        credential_factory=lambda: flow.kv.credential,
    )
    for url in flow.kv.vault_urls.values():
        with pytest.raises(SecretReferenceError, match="certificate vault"):
            resolver.resolve({"secret": url.rstrip("/") + "/secrets/web"}, field="issuers[0].password")
    assert flow.kv.admin.counters()["get_secret"] == 0


def product_files() -> list[Path]:
    files = [ROOT / "function_app.py"]
    for package in ("renewal", "ca_clients"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_no_certificate_material_through_the_secrets_api_in_product_code():
    offenders = []
    for path in product_files():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            module = None
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
            elif isinstance(node, ast.Import):
                module = ",".join(a.name for a in node.names)
            if module and "azure.keyvault.secrets" in module and rel != "renewal/azure/secrets.py":
                offenders.append(f"{rel}:{node.lineno} imports azure.keyvault.secrets")
            # ca_clients/vault.py: an AppRole ``secret_id`` is an issuer credential, not certificate material.
            approle = rel == "ca_clients/vault.py"
            if isinstance(node, ast.Attribute) and node.attr in ("secret_id", "sid") and not approle:
                offenders.append(f"{rel}:{node.lineno} reads .{node.attr}")
            if isinstance(node, ast.Name) and node.id == "secret_id" and not approle:
                offenders.append(f"{rel}:{node.lineno} uses secret_id")
            # rollouts/references.py reads and writes Key Vault references held in Azure resources' settings
            # (a gateway's keyVaultSecretId), sent to ARM only; tests/flow/test_azure_rollouts.py checks that every
            # secret read during a rollout is the stand-in service's, none the app's.
            references = rel == "renewal/azure/rollouts/references.py"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/secrets/" in node.value:
                if rel != "renewal/azure/secrets.py" and not references:
                    offenders.append(f"{rel}:{node.lineno} builds a /secrets/ path")
    assert not offenders, offenders
