"""The rollout deployers' configuration and decisions: which references they act on, what they refuse,
which operation each service gets, how a long-running operation is followed, and the TLS probe.

The four rollouts run here against an in-memory ARM (resources as ARM spells them, scripted answers); the
ARM client runs against a local HTTPS server; the probe against local TLS servers."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import http.server
import json
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from renewal.azure.rollouts import build_rollout
from renewal.azure.rollouts.api_management import ApiManagementRollout
from renewal.azure.rollouts.app_service import AppServiceRollout
from renewal.azure.rollouts.application_gateway import ApplicationGatewayRollout, listener_server_names
from renewal.azure.rollouts.arm import ArmClient, ArmError, ArmReply, ArmUnreachable, OperationStatus
from renewal.azure.rollouts.front_door import FrontDoorRollout
from renewal.azure.rollouts.probe import presented_leaf, server_name_for, sha1_thumbprint
from renewal.azure.rollouts.references import NoticedCertificate, parse_vault_id, parse_vault_url
from renewal.azure.rollouts.rollout import (
    ec_key,
    not_exportable,
    not_pkcs12,
    not_publicly_trusted,
    pem_fingerprints,
)
from renewal.config import parse_config
from renewal.errors import ConfigError
from renewal.model import CertificateVersion, DeploymentNotice, PolicySpec, RolloutRecord, RolloutState

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-web"
GATEWAY = f"{RG}/providers/Microsoft.Network/applicationGateways/gw-1"
WEB_CERT = f"{RG}/providers/Microsoft.Web/certificates/web-cert"
APIM = f"{RG}/providers/Microsoft.ApiManagement/service/apim-1"
FD_SECRET = f"{RG}/providers/Microsoft.Cdn/profiles/fd-1/secrets/web-secret"
VAULT_HOST = "kv-alpha.vault.azure.net"
VAULT_ID = f"{RG}/providers/Microsoft.KeyVault/vaults/kv-alpha"
ARM = "https://arm.example.test"
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


# -- certificates --------------------------------------------------------------------------------------------
def self_signed(cn: str, *, key: Any = None, ca: bool = False) -> tuple[x509.Certificate, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NEW, _ = self_signed("web.example.test", key=RSA_KEY)
OLD, _ = self_signed("web.example.test", key=RSA_KEY)
NEW_DER, OLD_DER = NEW.public_bytes(serialization.Encoding.DER), OLD.public_bytes(serialization.Encoding.DER)
NEW_TP, OLD_TP = sha1_thumbprint(NEW_DER), sha1_thumbprint(OLD_DER)
PRIVATE_ROOT, _ = self_signed("Private Root", ca=True)


def public_root() -> x509.Certificate:
    with warnings.catch_warnings():  # certifi holds a root with a serial number newer cryptography warns about
        warnings.simplefilter("ignore")
        roots = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
    for cert in roots:
        if "ISRG Root X1" in cert.subject.rfc4514_string():
            return cert
    raise AssertionError("certifi has no ISRG Root X1")


PUBLIC_ROOT = public_root()


def notice(version: str = "v2", vault_url: str = f"https://{VAULT_HOST}") -> DeploymentNotice:
    return DeploymentNotice(
        vault="kv-alpha",
        name="web",
        new_version=version,
        old_version="v1",
        certificate_id=f"{vault_url}/certificates/web/{version}",
        thumbprint_sha1=hashlib.sha1(NEW_DER).hexdigest(),
        not_before=T0,
        not_after=T0 + dt.timedelta(days=90),
        issuer="corp",
        request_id="req-1",
    )


def current(policy: PolicySpec | None = None, der: bytes = NEW_DER) -> CertificateVersion:
    return CertificateVersion(
        vault="kv-alpha",
        name="web",
        version="v2",
        id=f"https://{VAULT_HOST}/certificates/web/v2",
        cer=der,
        enabled=True,
        not_before=T0,
        expires_on=T0 + dt.timedelta(days=90),
        created_on=T0,
        tags={},
        policy=policy or PolicySpec(subject="CN=web.example.test", content_type="application/x-pkcs12"),
    )


# -- configuration -------------------------------------------------------------------------------------------
BASE = {
    "vaults": [{"name": "kv-alpha", "url": f"https://{VAULT_HOST}"}],
    "issuers": [
        {"name": "corp", "type": "local", "ca_certificate": "/x", "ca_key": {"file": "/x"}, "trust_anchors": "system"}
    ],
    "default_issuer": "corp",
}


def deployer(section: dict[str, Any]) -> Any:
    return parse_config({**BASE, "deployers": [section]}).deployers[0]


def problems(section: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "deployers": [section]})
    return "\n".join(info.value.problems)


def test_each_kind_parses_with_its_defaults():
    gateway = deployer(
        {
            "type": "application_gateway",
            "name": "gw",
            "targets": [GATEWAY, {"id": GATEWAY + "-2", "probe": "10.1.2.3:443"}],
        }
    )
    assert gateway.target_ids == [GATEWAY, GATEWAY + "-2"]
    assert gateway.probe_for(GATEWAY) is None and gateway.probe_for(GATEWAY.upper() + "-2") == "10.1.2.3:443"
    assert (gateway.arm_endpoint, gateway.check_after_seconds, gateway.timeout_minutes) == (
        "https://management.azure.com",
        120,
        90,
    )
    assert (gateway.match, gateway.vault, gateway.fix_references, gateway.ca_bundle) == ("*", None, False, None)
    assert deployer({"type": "app_service", "name": "as", "targets": [WEB_CERT]}).public_roots is None
    assert deployer({"type": "api_management", "name": "am", "targets": [APIM], "fix_references": True}).fix_references
    front_door = deployer(
        {
            "type": "front_door",
            "name": "fd",
            "targets": [FD_SECRET],
            "public_roots": [certifi.where()],
            "vault": "kv-alpha",
        }
    )
    assert front_door.targets == [FD_SECRET]


@pytest.mark.parametrize(
    ("kind", "target", "expected"),
    [
        ("application_gateway", WEB_CERT, "targets[0].id: '/subscriptions/"),
        ("app_service", GATEWAY, "is not a Microsoft.Web/certificates resource id"),
        ("app_service", WEB_CERT.replace(SUB, "not-a-guid"), "targets[0]: '/subscriptions/not-a-guid"),
        ("api_management", APIM + "/hostnames/x", "Microsoft.ApiManagement/service resource id"),
        (
            "front_door",
            f"{RG}/providers/Microsoft.Cdn/profiles/fd-1",
            "providers/Microsoft.Cdn/profiles/<name>/secrets/<name>",
        ),
        ("front_door", "web-secret", "deployers[0].front_door.targets[0]"),
    ],
)
def test_a_target_of_the_wrong_shape_is_named(kind, target, expected):
    assert expected in problems({"type": kind, "name": "d", "targets": [target]})


def test_target_ids_compare_as_arm_does():
    section = {"type": "app_service", "name": "d", "targets": [WEB_CERT.replace("Microsoft.Web", "microsoft.web")]}
    assert deployer(section).targets
    assert "targets[1]" in problems({**section, "targets": [WEB_CERT, WEB_CERT.upper().replace(SUB.upper(), SUB)]})
    assert "at least 1 item" in problems({**section, "targets": []})


@pytest.mark.parametrize("probe", ["gw.example.test:443", "10.0.0.4:8443", "[2001:db8::1]:443"])
def test_good_probe_addresses(probe):
    assert deployer({"type": "application_gateway", "name": "g", "targets": [{"id": GATEWAY, "probe": probe}]})


@pytest.mark.parametrize(
    "probe", ["gw.example.test", "gw:0", "gw:99999", "gw:https", "2001:db8::1:443", "a/b:443", ":443"]
)
def test_bad_probe_addresses_are_named(probe):
    text = problems({"type": "application_gateway", "name": "g", "targets": [{"id": GATEWAY, "probe": probe}]})
    assert "deployers[0].application_gateway.targets[0].probe" in text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"arm_endpoint": "http://management.azure.com"}, "arm_endpoint: must be an https:// URL"),
        ({"arm_endpoint": "https://management.azure.com/subscriptions"}, "arm_endpoint: must be the endpoint alone"),
        ({"check_after_seconds": 4}, "check_after_seconds"),
        ({"timeout_minutes": 0}, "timeout_minutes"),
        ({"fix_references": True}, "fix_references: Extra inputs are not permitted"),
        ({"public_roots": ["/nonexistent/roots.pem"]}, "public_roots: [0]: cannot read"),
        ({"public_roots": []}, "public_roots"),
        ({"targets": [{"id": FD_SECRET}]}, "targets[0]"),
    ],
)
def test_front_door_settings_are_checked(overrides, expected):
    assert expected in problems({"type": "front_door", "name": "fd", "targets": [FD_SECRET], **overrides})


def test_gateway_target_objects_take_only_id_and_probe():
    assert "targets[0].port" in problems(
        {"type": "application_gateway", "name": "g", "targets": [{"id": GATEWAY, "port": 443}]}
    )
    assert "public_roots" in problems(
        {"type": "application_gateway", "name": "g", "targets": [GATEWAY], "public_roots": [certifi.where()]}
    )


def test_an_unknown_vault_is_named():
    assert "deployers[0].vault: unknown vault 'kv-nope'" in problems(
        {"type": "api_management", "name": "am", "targets": [APIM], "vault": "kv-nope"}
    )


# -- references ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "collection", "version"),
    [
        (f"https://{VAULT_HOST}/secrets/web", "secrets", None),
        (f"https://{VAULT_HOST}/secrets/web/", "secrets", None),
        (f"https://{VAULT_HOST}:443/secrets/web/0123abcd", "secrets", "0123abcd"),
        (f"https://{VAULT_HOST.upper()}/Secrets/web", "secrets", None),
        (f"https://{VAULT_HOST}/certificates/web", "certificates", None),
        (f"https://{VAULT_HOST}/certificates/web/v9", "certificates", "v9"),
    ],
)
def test_vault_urls_are_read(url, collection, version):
    reference = parse_vault_url(url)
    assert reference is not None
    assert (reference.netloc, reference.collection, reference.name, reference.version) == (
        VAULT_HOST,
        collection,
        "web",
        version,
    )
    assert reference.pinned is (version is not None)
    assert reference.misreferenced is (collection == "certificates")


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        f"http://{VAULT_HOST}/secrets/web",
        f"https://{VAULT_HOST}/keys/web",
        f"https://{VAULT_HOST}/secrets",
        42,
    ],
)
def test_other_strings_are_no_vault_url(url):
    assert parse_vault_url(url) is None


def test_a_url_reference_names_the_certificate_by_vault_host_and_name():
    ours = NoticedCertificate.of(notice())
    assert ours.netloc == VAULT_HOST and ours.label == "kv-alpha/web"
    assert ours.named_by_url(parse_vault_url(f"https://{VAULT_HOST}/secrets/WEB/abc"))
    assert ours.named_by_url(parse_vault_url(f"https://{VAULT_HOST}:443/secrets/web"))
    assert not ours.named_by_url(parse_vault_url("https://kv-beta.vault.azure.net/secrets/web"))
    assert not ours.named_by_url(parse_vault_url(f"https://{VAULT_HOST}/secrets/web-2"))
    local = NoticedCertificate.of(notice(vault_url="https://127.0.0.1:8443"))
    assert local.named_by_url(parse_vault_url("https://127.0.0.1:8443/secrets/web"))
    assert not local.named_by_url(parse_vault_url("https://127.0.0.1:8444/secrets/web"))
    # the configured vault name under a Key Vault DNS suffix is that vault too (its real address)
    assert local.named_by_url(parse_vault_url(f"https://{VAULT_HOST}/secrets/web"))
    assert not local.named_by_url(parse_vault_url("https://kv-alpha.example.test/secrets/web"))


def test_an_arm_vault_id_names_the_certificate_by_vault_name_and_secret_name():
    ours = NoticedCertificate.of(notice())
    assert parse_vault_id(VAULT_ID.lower()) is not None
    assert ours.named_by_vault_id(VAULT_ID, "web")
    assert ours.named_by_vault_id(f"{VAULT_ID}/secrets/web", None)
    assert ours.named_by_vault_id(f"{VAULT_ID}/secrets/web/versions/abc", None)
    assert not ours.named_by_vault_id(VAULT_ID, "web-2")
    assert not ours.named_by_vault_id(VAULT_ID.replace("kv-alpha", "kv-beta"), "web")
    assert not ours.named_by_vault_id(f"https://{VAULT_HOST}/secrets/web", None)
    assert not ours.named_by_vault_id(None, "web")
    # the vault's DNS name counts as its name; an IP literal (a local vault) leaves the configured name only
    renamed = NoticedCertificate.of(notice(vault_url="https://contoso-kv.vault.azure.net"))
    assert renamed.named_by_vault_id(VAULT_ID.replace("kv-alpha", "contoso-kv"), "web")
    assert NoticedCertificate.of(notice(vault_url="https://127.0.0.1:8443")).vault_names == {"kv-alpha"}


def test_a_pinned_or_misreferenced_secret_id_is_explained_with_its_fix():
    ours = NoticedCertificate.of(notice())
    pinned = parse_vault_url(f"https://{VAULT_HOST}/secrets/web/0123")
    text = ours.describe_pin("sslCertificates[web].keyVaultSecretId", pinned)
    assert "pinned to version 0123" in text and text.endswith(f"set it to https://{VAULT_HOST}/secrets/web")
    wrong = parse_vault_url(f"https://{VAULT_HOST}/certificates/web")
    assert "names the certificate, not its secret" in ours.describe_pin("x", wrong)


# -- can the target take it? -------------------------------------------------------------------------------------
def test_a_key_that_cannot_leave_the_vault_is_refused():
    assert not_exportable(current(PolicySpec(subject="CN=x", exportable=True)), "App Service") is None
    assert not_exportable(current(PolicySpec(subject="CN=x")), "App Service") is None
    assert "not exportable" in not_exportable(current(PolicySpec(subject="CN=x", exportable=False)), "App Service")
    assert "PFX" in not_exportable(current(PolicySpec(subject="CN=x", key_type="RSA-HSM")), "Front Door")


def test_only_pkcs12_is_taken_where_it_must_be():
    assert not_pkcs12(current(PolicySpec(subject="CN=x", content_type=None)), "API Management") is None
    reason = not_pkcs12(current(PolicySpec(subject="CN=x", content_type="application/x-pem-file")), "API Management")
    assert (
        reason
        == "the vault keeps it as application/x-pem-file: API Management takes only PKCS#12 (application/x-pkcs12)"
    )


def test_an_ec_key_is_seen_in_the_policy_or_the_certificate():
    assert ec_key(current(), "Front Door") is None
    assert ec_key(current(PolicySpec(subject="CN=x", key_type="EC", key_curve="P-256")), "Front Door")
    ec_leaf, _ = self_signed("ec.example.test")
    bare = CertificateVersion(
        **{**current().__dict__, "policy": None, "cer": ec_leaf.public_bytes(serialization.Encoding.DER)}
    )
    assert ec_key(bare, "Front Door") == "Front Door does not take EC keys (RSA only)"


def test_public_trust_compares_every_anchor_with_the_public_roots():
    public = pem_fingerprints(Path(certifi.where()).read_bytes())
    assert PUBLIC_ROOT.fingerprint(hashes.SHA256()) in public and len(public) > 100
    assert not_publicly_trusted("acme", [PUBLIC_ROOT], public, "Front Door", "browsers") is None
    reason = not_publicly_trusted("corp", [PUBLIC_ROOT, PRIVATE_ROOT], public, "Front Door", "browsers")
    assert reason.startswith("issuer 'corp' is not publicly trusted") and "CN=Private Root" in reason
    assert "cannot tell" in not_publicly_trusted("gone", [], public, "Front Door", "browsers")


# -- the TLS probe ---------------------------------------------------------------------------------------------------
@contextmanager
def tls_server(tmp_path: Path, by_name: dict[str | None, x509.Certificate], key: Any) -> Iterator[str]:
    """A TLS server presenting ``by_name[sni]`` (``by_name[None]`` for any other name, or none)."""
    contexts = {}
    for name, cert in by_name.items():
        stem = tmp_path / f"leaf-{name or 'default'}"
        stem.with_suffix(".pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(stem.with_suffix(".pem"))
        contexts[name] = context
    default = contexts[None]
    default.sni_callback = lambda sock, name, _ctx: setattr(sock, "context", contexts.get(name, default)) or None
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with default.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_the_probe_reads_the_leaf_served_for_a_server_name(tmp_path):
    with tls_server(tmp_path, {None: OLD, "web.example.test": NEW}, RSA_KEY) as address:
        assert sha1_thumbprint(presented_leaf(address, "web.example.test")) == NEW_TP
        assert sha1_thumbprint(presented_leaf(address, "other.example.test")) == OLD_TP
        assert sha1_thumbprint(presented_leaf(address, None)) == OLD_TP


def test_the_probe_fails_cleanly_without_a_server():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(OSError):
        presented_leaf(f"127.0.0.1:{port}", "web.example.test", timeout=2)


def test_server_names_for_listeners():
    assert server_name_for("*.example.test") == "renewal-probe.example.test"
    assert server_name_for("") is None and server_name_for("a.example.test") == "a.example.test"
    gateway = gateway_resource(f"https://{VAULT_HOST}/secrets/web")
    listeners = gateway["properties"]["httpListeners"]
    listeners.append(copy.deepcopy(listeners[0]))
    listeners[1]["properties"] = {**listeners[1]["properties"], "hostName": None, "hostNames": ["*.web.example.test"]}
    listeners.append(
        {
            "name": "other",
            "properties": {"protocol": "Https", "sslCertificate": {"id": f"{GATEWAY}/sslCertificates/other"}},
        }
    )
    ours = [(gateway["properties"]["sslCertificates"][0], parse_vault_url(f"https://{VAULT_HOST}/secrets/web"))]
    assert listener_server_names(gateway, ours) == ["web.example.test", "renewal-probe.web.example.test"]


# -- the rollouts against an in-memory ARM ---------------------------------------------------------------------------
def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A write that changes what it names and nothing else."""
    out = copy.deepcopy(old)
    for key, value in new.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class MemoryArm:
    """Resources by id; scripted replies per (method, id); operation statuses per URL."""

    endpoint = ARM

    def __init__(self, resources: dict[str, dict[str, Any]]) -> None:
        self.resources = copy.deepcopy(resources)
        self.calls: list[tuple[str, str, Any]] = []
        self.replies: dict[tuple[str, str], ArmReply | ArmError] = {}
        self.operations: dict[str, list[OperationStatus]] = {}
        self.on_write: dict[str, Any] = {}
        """id -> function(resource, body) that returns the resource after a write (the service's doing)."""

    def on_endpoint(self, url: str) -> bool:
        return url.startswith(ARM + "/")

    def _answer(self, method: str, resource_id: str, body: Any = None) -> ArmReply:
        self.calls.append((method, resource_id, copy.deepcopy(body)))
        scripted = self.replies.get((method, resource_id))
        if isinstance(scripted, ArmError):
            raise scripted
        if resource_id not in self.resources:
            raise ArmError(404, "ResourceNotFound", f"{resource_id} was not found")
        if method != "GET":
            apply = self.on_write.get(resource_id, merged)
            self.resources[resource_id] = apply(self.resources[resource_id], copy.deepcopy(body))
        if scripted is not None:
            return scripted
        return ArmReply(200, copy.deepcopy(self.resources[resource_id]), {})

    def get(self, resource_id: str, api_version: str) -> ArmReply:
        return self._answer("GET", resource_id)

    def patch(self, resource_id: str, api_version: str, body: dict[str, Any]) -> ArmReply:
        return self._answer("PATCH", resource_id, body)

    def put(self, resource_id: str, api_version: str, body: dict[str, Any]) -> ArmReply:
        return self._answer("PUT", resource_id, body)

    def operation_status(self, url: str) -> OperationStatus:
        self.calls.append(("POLL", url, None))
        return self.operations[url].pop(0)

    def writes(self) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] in ("PUT", "PATCH")]


def accepted(operation: str = f"{ARM}/operations/op-1") -> ArmReply:
    return ArmReply(201, {}, {"Azure-AsyncOperation": operation, "Retry-After": "10"})


def rollout(kind: type, section: dict[str, Any], resources: dict[str, Any], *, clock=lambda: T0, roots=None) -> Any:
    config = deployer({"arm_endpoint": ARM, **section})
    built = build_rollout(
        config, credential_factory=lambda: None, issuer_roots=roots or (lambda issuer: [PUBLIC_ROOT]), clock=clock
    )
    assert isinstance(built, kind)
    built.arm = MemoryArm(resources)
    return built


def record(outcome: Any, started_at: dt.datetime = T0) -> RolloutRecord:
    return RolloutRecord.after(None, outcome, vault="kv-alpha", name="web", version="v2", now=started_at)


def gateway_resource(secret_id: str, *, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": GATEWAY,
        "name": "gw-1",
        "location": "westeurope",
        "tags": tags if tags is not None else {"team": "web"},
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/gw-id": {}},
        },
        "properties": {
            "provisioningState": "Succeeded",
            "sslCertificates": [
                {"name": "web", "id": f"{GATEWAY}/sslCertificates/web", "properties": {"keyVaultSecretId": secret_id}},
                {
                    "name": "other",
                    "id": f"{GATEWAY}/sslCertificates/other",
                    "properties": {"keyVaultSecretId": f"https://{VAULT_HOST}/secrets/other"},
                },
            ],
            "httpListeners": [
                {
                    "name": "https",
                    "id": f"{GATEWAY}/httpListeners/https",
                    "properties": {
                        "protocol": "Https",
                        "hostName": "web.example.test",
                        "sslCertificate": {"id": f"{GATEWAY}/sslCertificates/web"},
                    },
                }
            ],
        },
    }


GW_SECTION = {"type": "application_gateway", "name": "gw", "targets": [GATEWAY]}


def test_gateway_not_using_the_certificate_is_skipped():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/api")}
    )
    outcome = gw.roll_out(notice(), current(), GATEWAY, None)
    assert (outcome.state, outcome.detail) == (RolloutState.SKIPPED, "does not use kv-alpha/web")
    assert gw.arm.writes() == []


def test_gateway_refresh_is_a_tags_patch_that_keeps_other_tags():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
    )
    outcome = gw.roll_out(notice(), current(), GATEWAY, None)
    assert gw.arm.writes() == [("PATCH", GATEWAY, {"tags": {"team": "web", "renewal-refresh": "kv-alpha/web/v2"}})]
    assert outcome.state is RolloutState.DONE and outcome.thumbprint is None
    assert outcome.detail == "refresh requested (tag change); not verified: no probe address"


def test_gateway_refresh_tag_is_cut_to_256_characters():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
    )
    gw.roll_out(notice(version="v" * 300), current(), GATEWAY, None)
    assert len(gw.arm.writes()[0][2]["tags"]["renewal-refresh"]) == 256


@pytest.mark.parametrize(
    ("secret_id", "complaint"),
    [
        (f"https://{VAULT_HOST}/secrets/web/v1", "is pinned to version v1 and never rotates"),
        (f"https://{VAULT_HOST}/certificates/web", "names the certificate, not its secret"),
    ],
)
def test_gateway_pinned_reference_is_reported_with_the_fix(secret_id, complaint):
    gw = rollout(ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(secret_id)})
    outcome = gw.roll_out(notice(), current(), GATEWAY, None)
    assert outcome.state is RolloutState.FAILED and gw.arm.writes() == []
    assert outcome.detail.startswith(f"{GATEWAY}: sslCertificates[web].keyVaultSecretId {secret_id} ")
    assert complaint in outcome.detail and f"set it to https://{VAULT_HOST}/secrets/web" in outcome.detail
    assert "fix_references" in outcome.detail


def test_gateway_pinned_reference_is_repaired_by_a_full_put_followed_to_its_end():
    clock = [T0]
    gw = rollout(
        ApplicationGatewayRollout,
        {**GW_SECTION, "fix_references": True},
        {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web/v1")},
        clock=lambda: clock[0],
    )
    gw.arm.replies[("PUT", GATEWAY)] = accepted()
    gw.arm.operations[f"{ARM}/operations/op-1"] = [OperationStatus("InProgress"), OperationStatus("Succeeded")]
    first = gw.roll_out(notice(), current(), GATEWAY, None)
    assert first.state is RolloutState.IN_PROGRESS and first.operation == f"{ARM}/operations/op-1"
    assert first.check_after_seconds == 120
    [(method, _, body)] = gw.arm.writes()
    assert method == "PUT"
    secrets = {c["name"]: c["properties"]["keyVaultSecretId"] for c in body["properties"]["sslCertificates"]}
    assert secrets == {"web": f"https://{VAULT_HOST}/secrets/web", "other": f"https://{VAULT_HOST}/secrets/other"}
    assert body["tags"] == {"team": "web", "renewal-refresh": "kv-alpha/web/v2"}
    assert body["identity"] == gateway_resource("x")["identity"]
    assert "provisioningState" not in body["properties"], "read-only fields stay out of the PUT"
    clock[0] = T0 + dt.timedelta(minutes=5)
    second = gw.roll_out(notice(), current(), GATEWAY, record(first))
    assert second.state is RolloutState.IN_PROGRESS and second.operation == first.operation
    assert second.detail == first.detail
    third = gw.roll_out(notice(), current(), GATEWAY, record(second))
    assert third.state is RolloutState.DONE
    assert third.detail == "secret id repaired by a full PUT; not verified: no probe address"
    assert len(gw.arm.writes()) == 1


def test_gateway_put_refused_for_the_identity_names_the_missing_role():
    gw = rollout(
        ApplicationGatewayRollout,
        {**GW_SECTION, "fix_references": True},
        {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web/v1")},
    )
    gw.arm.replies[("PUT", GATEWAY)] = ArmError(
        403,
        "LinkedAuthorizationFailed",
        "The client has permission to perform action on scope gw, however it does not have permission to perform "
        "action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s)",
    )
    outcome = gw.roll_out(notice(), current(), GATEWAY, None)
    assert outcome.state is RolloutState.FAILED
    assert outcome.detail.startswith(f"{GATEWAY}: HTTP 403 LinkedAuthorizationFailed: ")
    assert "Managed Identity Operator (f1a07417-d97a-45cb-824c-7a7467783830)" in outcome.detail
    assert "userAssignedIdentities/gw-id" in outcome.detail


def test_gateway_failed_operation_is_reported():
    gw = rollout(
        ApplicationGatewayRollout,
        {**GW_SECTION, "fix_references": True},
        {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web/v1")},
    )
    gw.arm.replies[("PUT", GATEWAY)] = accepted()
    gw.arm.operations[f"{ARM}/operations/op-1"] = [
        OperationStatus("Failed", "ApplicationGatewayKeyVaultSecretException", "cannot read the secret")
    ]
    first = gw.roll_out(notice(), current(), GATEWAY, None)
    outcome = gw.roll_out(notice(), current(), GATEWAY, record(first))
    assert outcome.state is RolloutState.FAILED
    assert (
        outcome.detail
        == f"{GATEWAY}: the operation Failed: ApplicationGatewayKeyVaultSecretException: cannot read the secret"
    )


def test_gateway_probe_sees_the_new_leaf_or_waits(tmp_path):
    section = {**GW_SECTION, "targets": [{"id": GATEWAY, "probe": "placeholder:1"}]}
    with tls_server(tmp_path, {None: OLD, "web.example.test": OLD}, RSA_KEY) as old_address:
        section["targets"][0]["probe"] = old_address
        gw = rollout(
            ApplicationGatewayRollout, section, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
        )
        waiting = gw.roll_out(notice(), current(), GATEWAY, None)
        assert waiting.state is RolloutState.IN_PROGRESS and waiting.operation is None
        assert f"(SNI web.example.test) still presents {OLD_TP}, waiting for {NEW_TP}" in waiting.detail
        assert waiting.detail.startswith("refresh requested (tag change); ")
        again = gw.roll_out(notice(), current(), GATEWAY, record(waiting))
        assert again.state is RolloutState.IN_PROGRESS
        assert len(gw.arm.writes()) == 1, "the tag is set once per version"
        late = rollout(
            ApplicationGatewayRollout,
            section,
            {GATEWAY: gw.arm.resources[GATEWAY]},
            clock=lambda: T0 + dt.timedelta(minutes=91),
        )
        expired = late.roll_out(notice(), current(), GATEWAY, record(again))
        assert expired.state is RolloutState.FAILED
        assert expired.detail.startswith(f"{GATEWAY}: still in progress after 90 minutes (refresh requested")
    with tls_server(tmp_path, {None: OLD, "web.example.test": NEW}, RSA_KEY) as new_address:
        section["targets"][0]["probe"] = new_address
        gw = rollout(
            ApplicationGatewayRollout, section, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
        )
        bound = gw.roll_out(notice(), current(), GATEWAY, None)
        assert (bound.state, bound.thumbprint) == (RolloutState.DONE, NEW_TP)
        assert bound.detail == f"already bound (TLS probe {new_address} (SNI web.example.test) presents it)"
        assert gw.arm.writes() == []
        followed = gw.roll_out(notice(), current(), GATEWAY, record(waiting))
        assert (
            followed.detail
            == f"refresh requested (tag change); TLS probe {new_address} (SNI web.example.test) presents it"
        )


def test_gateway_busy_is_in_progress_and_not_found_fails():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
    )
    gw.arm.replies[("PATCH", GATEWAY)] = ArmError(
        409, "AnotherOperationInProgress", "Another operation on this or dependent resource is in progress."
    )
    busy = gw.roll_out(notice(), current(), GATEWAY, None)
    assert (busy.state, busy.operation, busy.check_after_seconds) == (RolloutState.IN_PROGRESS, None, 120)
    assert "busy with another operation (AnotherOperationInProgress)" in busy.detail
    del gw.arm.replies[("PATCH", GATEWAY)]
    assert gw.roll_out(notice(), current(), GATEWAY, record(busy)).state is RolloutState.DONE
    missing = gw.roll_out(notice(), current(), GATEWAY.replace("gw-1", "gw-9"), None)
    assert missing.state is RolloutState.FAILED
    gone = GATEWAY.replace("gw-1", "gw-9")
    assert missing.detail == f"{gone}: HTTP 404 ResourceNotFound: {gone} was not found"


def test_an_operation_url_off_the_arm_endpoint_is_never_polled():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
    )
    forged = RolloutRecord(
        **{
            **record(gw.roll_out(notice(), current(), GATEWAY, None)).__dict__,
            "state": RolloutState.IN_PROGRESS,
            "operation": "https://evil.example.test/op",
        }
    )
    outcome = gw.roll_out(notice(), current(), GATEWAY, forged)
    assert outcome.state is RolloutState.FAILED and "is not on https://arm.example.test; not polled" in outcome.detail
    assert not [c for c in gw.arm.calls if c[0] == "POLL"]


def test_gateway_skips_a_certificate_it_cannot_read():
    gw = rollout(
        ApplicationGatewayRollout, GW_SECTION, {GATEWAY: gateway_resource(f"https://{VAULT_HOST}/secrets/web")}
    )
    pem = current(PolicySpec(subject="CN=x", content_type="application/x-pem-file"))
    outcome = gw.roll_out(notice(), pem, GATEWAY, None)
    assert outcome.state is RolloutState.SKIPPED and "takes only PKCS#12" in outcome.detail
    assert gw.arm.writes() == []


# -- App Service ---------------------------------------------------------------------------------------------------
def web_certificate(thumbprint: str = OLD_TP, status: str = "Succeeded", vault_id: str = VAULT_ID) -> dict[str, Any]:
    return {
        "id": WEB_CERT,
        "name": "web-cert",
        "location": "westeurope",
        "properties": {
            "keyVaultId": vault_id,
            "keyVaultSecretName": "web",
            "keyVaultSecretStatus": status,
            "thumbprint": thumbprint,
            "serverFarmId": f"{RG}/providers/Microsoft.Web/serverfarms/plan",
            "hostNames": ["web.example.test"],
            "subjectName": "web.example.test",
        },
    }


AS_SECTION = {"type": "app_service", "name": "as", "targets": [WEB_CERT]}


def test_app_service_sync_is_a_re_put_of_the_same_reference():
    app = rollout(AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate()})
    app.arm.on_write[WEB_CERT] = lambda old, new: {**old, "properties": {**old["properties"], "thumbprint": NEW_TP}}
    outcome = app.roll_out(notice(), current(), WEB_CERT, None)
    assert app.arm.writes() == [
        (
            "PUT",
            WEB_CERT,
            {
                "location": "westeurope",
                "properties": {
                    "keyVaultId": VAULT_ID,
                    "keyVaultSecretName": "web",
                    "serverFarmId": f"{RG}/providers/Microsoft.Web/serverfarms/plan",
                },
            },
        )
    ]
    assert (outcome.state, outcome.thumbprint) == (RolloutState.DONE, NEW_TP)
    assert (
        outcome.detail
        == f"re-read from the vault by a certificate re-PUT; thumbprint {NEW_TP}, keyVaultSecretStatus Succeeded"
    )


def test_app_service_already_bound_and_not_ours():
    app = rollout(AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate(NEW_TP.lower())})
    bound = app.roll_out(notice(), current(), WEB_CERT, None)
    assert (bound.state, bound.thumbprint, app.arm.writes()) == (RolloutState.DONE, NEW_TP, [])
    assert bound.detail.startswith("already bound (thumbprint")
    other = rollout(
        AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate(vault_id=VAULT_ID.replace("kv-alpha", "kv-beta"))}
    )
    assert other.roll_out(notice(), current(), WEB_CERT, None).detail == "does not use kv-alpha/web"


def test_app_service_skips_a_private_ca():
    app = rollout(AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate()}, roots=lambda issuer: [PRIVATE_ROOT])
    outcome = app.roll_out(notice(), current(), WEB_CERT, None)
    assert outcome.state is RolloutState.SKIPPED and app.arm.writes() == []
    assert outcome.detail.startswith("issuer 'corp' is not publicly trusted: App Service serves clients")


def test_app_service_configured_public_roots_replace_certifi(tmp_path):
    roots = tmp_path / "roots.pem"
    roots.write_bytes(PRIVATE_ROOT.public_bytes(serialization.Encoding.PEM))
    section = {**AS_SECTION, "public_roots": [str(roots)]}
    app = rollout(AppServiceRollout, section, {WEB_CERT: web_certificate(NEW_TP)}, roots=lambda issuer: [PRIVATE_ROOT])
    assert app.roll_out(notice(), current(), WEB_CERT, None).state is RolloutState.DONE
    public = rollout(AppServiceRollout, section, {WEB_CERT: web_certificate(NEW_TP)})
    assert public.roll_out(notice(), current(), WEB_CERT, None).state is RolloutState.SKIPPED


def test_app_service_that_cannot_read_the_vault_fails_with_the_role_to_grant():
    app = rollout(AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate()})
    app.arm.on_write[WEB_CERT] = lambda old, new: {
        **old,
        "properties": {**old["properties"], "keyVaultSecretStatus": "AzureServiceUnauthorizedToAccessKeyVault"},
    }
    outcome = app.roll_out(notice(), current(), WEB_CERT, None)
    assert outcome.state is RolloutState.FAILED
    assert "keyVaultSecretStatus AzureServiceUnauthorizedToAccessKeyVault" in outcome.detail
    assert "abfa0a7c-a6b6-4736-8310-5855508787cd" in outcome.detail and "Key Vault Certificate User" in outcome.detail


def test_app_service_unchanged_thumbprint_after_the_sync_fails_naming_both():
    app = rollout(AppServiceRollout, AS_SECTION, {WEB_CERT: web_certificate()})
    outcome = app.roll_out(notice(), current(), WEB_CERT, None)
    assert outcome.detail == f"{WEB_CERT}: thumbprint {OLD_TP} after the certificate re-PUT, expected {NEW_TP}"


# -- API Management --------------------------------------------------------------------------------------------------
def apim_service(key_vault_id: str = f"https://{VAULT_HOST}/secrets/web", thumbprint: str = OLD_TP) -> dict[str, Any]:
    return {
        "id": APIM,
        "name": "apim-1",
        "location": "westeurope",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "provisioningState": "Succeeded",
            "hostnameConfigurations": [
                {
                    "type": "Proxy",
                    "hostName": "apim-1.azure-api.net",
                    "certificateSource": "BuiltIn",
                    "defaultSslBinding": False,
                },
                {
                    "type": "Proxy",
                    "hostName": "api.example.test",
                    "keyVaultId": key_vault_id,
                    "certificateSource": "KeyVault",
                    "certificate": {
                        "thumbprint": thumbprint,
                        "expiry": "2030-03-01T00:00:00Z",
                        "subject": "CN=api.example.test",
                    },
                    "certificateStatus": "Completed",
                },
                {
                    "type": "Portal",
                    "hostName": "portal.example.test",
                    "keyVaultId": f"https://{VAULT_HOST}/secrets/portal",
                    "certificateSource": "KeyVault",
                    "certificate": {"thumbprint": "AB" * 20},
                    "certificateStatus": "Completed",
                },
            ],
        },
    }


def reread(new_thumbprint: str) -> Any:
    """What API Management does once an update succeeds: our versionless entries show the new certificate."""

    def apply(old: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        hostnames = copy.deepcopy(body["properties"]["hostnameConfigurations"])
        for entry in hostnames:
            if entry.get("keyVaultId") == f"https://{VAULT_HOST}/secrets/web":
                entry["certificate"] = {**entry.get("certificate", {}), "thumbprint": new_thumbprint}
        return {**old, "properties": {**old["properties"], "hostnameConfigurations": hostnames}}

    return apply


AM_SECTION = {"type": "api_management", "name": "am", "targets": [APIM]}


def test_apim_update_sends_the_full_hostname_list_and_is_followed():
    am = rollout(ApiManagementRollout, AM_SECTION, {APIM: apim_service()})
    am.arm.replies[("PATCH", APIM)] = ArmReply(
        202, {}, {"Azure-AsyncOperation": f"{ARM}/operations/apim", "Retry-After": "300"}
    )
    am.arm.on_write[APIM] = reread(NEW_TP)
    am.arm.operations[f"{ARM}/operations/apim"] = [OperationStatus("Succeeded")]
    first = am.roll_out(notice(), current(), APIM, None)
    [(method, _, body)] = am.arm.writes()
    assert method == "PATCH" and body == {
        "properties": {"hostnameConfigurations": apim_service()["properties"]["hostnameConfigurations"]}
    }
    assert (first.state, first.check_after_seconds) == (RolloutState.IN_PROGRESS, 300)
    assert first.detail == "hostname update started (api.example.test) (waiting for the operation)"
    done = am.roll_out(notice(), current(), APIM, record(first))
    assert (done.state, done.thumbprint) == (RolloutState.DONE, NEW_TP)
    assert done.detail == f"hostnames updated; api.example.test report thumbprint {NEW_TP}"


def test_apim_pinned_key_vault_id_is_reported_or_repaired_alone():
    pinned = f"https://{VAULT_HOST}/secrets/web/v1"
    am = rollout(ApiManagementRollout, AM_SECTION, {APIM: apim_service(pinned)})
    failed = am.roll_out(notice(), current(), APIM, None)
    assert failed.state is RolloutState.FAILED and am.arm.writes() == []
    assert f"hostnameConfigurations[api.example.test].keyVaultId {pinned} is pinned to version v1" in failed.detail
    fixing = rollout(ApiManagementRollout, {**AM_SECTION, "fix_references": True}, {APIM: apim_service(pinned)})
    fixing.arm.on_write[APIM] = reread(NEW_TP)
    done = fixing.roll_out(notice(), current(), APIM, None)
    [(_, _, body)] = fixing.arm.writes()
    expected = apim_service()["properties"]["hostnameConfigurations"]
    assert body["properties"]["hostnameConfigurations"] == expected, "only our entry changed: made versionless"
    assert (done.state, done.thumbprint) == (RolloutState.DONE, NEW_TP)


def test_apim_already_bound_skipped_and_wrong_after_update():
    am = rollout(ApiManagementRollout, AM_SECTION, {APIM: apim_service(thumbprint=NEW_TP)})
    bound = am.roll_out(notice(), current(), APIM, None)
    assert bound.detail == f"already bound (api.example.test report thumbprint {NEW_TP})" and am.arm.writes() == []
    other = rollout(
        ApiManagementRollout, AM_SECTION, {APIM: apim_service("https://kv-beta.vault.azure.net/secrets/web")}
    )
    assert other.roll_out(notice(), current(), APIM, None).state is RolloutState.SKIPPED
    stale = rollout(ApiManagementRollout, AM_SECTION, {APIM: apim_service()})
    wrong = stale.roll_out(notice(), current(), APIM, None)
    assert wrong.state is RolloutState.FAILED
    assert f"api.example.test: thumbprint {OLD_TP}, certificateStatus Completed; expected {NEW_TP}" in wrong.detail


# -- Front Door --------------------------------------------------------------------------------------------------
def fd_secret(
    *, latest: bool = False, version: str = "v1", thumbprint: str = OLD_TP, kind: str = "CustomerCertificate"
) -> dict[str, Any]:
    return {
        "id": FD_SECRET,
        "name": "web-secret",
        "properties": {
            "provisioningState": "Succeeded",
            "deploymentStatus": "NotStarted",
            "parameters": {
                "type": kind,
                "secretSource": {"id": f"{VAULT_ID}/secrets/web"},
                "secretVersion": version,
                "useLatestVersion": latest,
                "subject": "web.example.test",
                "thumbprint": thumbprint,
            },
        },
    }


def moved(old: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    params = {**old["properties"]["parameters"], **body["properties"]["parameters"], "thumbprint": NEW_TP}
    params["secretVersion"] = "v2"
    return {**old, "properties": {**old["properties"], "parameters": params}}


FD_SECTION = {"type": "front_door", "name": "fd", "targets": [FD_SECRET]}


def test_front_door_pinned_secret_gets_the_new_version():
    fd = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret()})
    fd.arm.replies[("PUT", FD_SECRET)] = accepted(f"{ARM}/operations/fd")
    fd.arm.on_write[FD_SECRET] = moved
    fd.arm.operations[f"{ARM}/operations/fd"] = [OperationStatus("Succeeded")]
    first = fd.roll_out(notice(), current(), FD_SECRET, None)
    assert fd.arm.writes() == [
        (
            "PUT",
            FD_SECRET,
            {
                "properties": {
                    "parameters": {
                        "type": "CustomerCertificate",
                        "secretSource": {"id": f"{VAULT_ID}/secrets/web"},
                        "useLatestVersion": False,
                        "secretVersion": "v2",
                    }
                }
            },
        )
    ]
    assert first.state is RolloutState.IN_PROGRESS
    assert first.detail == "secret PUT with secretVersion v2 (was v1) (waiting for the operation)"
    done = fd.roll_out(notice(), current(), FD_SECRET, record(first))
    assert (done.state, done.thumbprint) == (RolloutState.DONE, NEW_TP)
    assert done.detail == f"secret moved to the new version; secret reports thumbprint {NEW_TP} (secretVersion v2)"


def test_front_door_latest_version_secret_is_put_again_unchanged():
    fd = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret(latest=True)})
    fd.arm.on_write[FD_SECRET] = moved
    done = fd.roll_out(notice(), current(), FD_SECRET, None)
    [(_, _, body)] = fd.arm.writes()
    assert body["properties"]["parameters"] == {
        "type": "CustomerCertificate",
        "secretSource": {"id": f"{VAULT_ID}/secrets/web"},
        "useLatestVersion": True,
    }
    assert (done.state, done.thumbprint) == (RolloutState.DONE, NEW_TP)


def test_front_door_mismatch_after_success_names_both_thumbprints():
    fd = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret()})
    fd.arm.replies[("PUT", FD_SECRET)] = accepted(f"{ARM}/operations/fd")
    fd.arm.operations[f"{ARM}/operations/fd"] = [OperationStatus("Succeeded")]
    first = fd.roll_out(notice(), current(), FD_SECRET, None)
    failed = fd.roll_out(notice(), current(), FD_SECRET, record(first))
    assert failed.state is RolloutState.FAILED
    assert (
        failed.detail
        == f"{FD_SECRET}: thumbprint {OLD_TP} after the secret update (secretVersion v2), expected {NEW_TP}"
    )


def test_front_door_skips_ec_keys_managed_certificates_and_private_cas():
    ec_policy = current(PolicySpec(subject="CN=x", key_type="EC", key_curve="P-256"))
    fd = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret()})
    assert fd.roll_out(notice(), ec_policy, FD_SECRET, None).detail == "Front Door does not take EC keys (RSA only)"
    managed = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret(kind="ManagedCertificate")})
    assert managed.roll_out(notice(), current(), FD_SECRET, None).detail.startswith(
        "does not use kv-alpha/web (a ManagedCertificate"
    )
    private = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret()}, roots=lambda issuer: [PRIVATE_ROOT])
    assert "not publicly trusted" in private.roll_out(notice(), current(), FD_SECRET, None).detail
    assert fd.arm.writes() == managed.arm.writes() == private.arm.writes() == []


def test_build_rollout_picks_the_class_for_the_config():
    for section, kind in [
        (GW_SECTION, ApplicationGatewayRollout),
        (AS_SECTION, AppServiceRollout),
        (AM_SECTION, ApiManagementRollout),
        (FD_SECTION, FrontDoorRollout),
    ]:
        built = rollout(kind, section, {})
        assert built.name == section["name"] and built.targets() == section["targets"] and built.kind == section["type"]


# -- the ARM client against a local HTTPS server ---------------------------------------------------------------------
class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        _Token.scopes = scopes
        return AccessToken("token-for-tests", 4_000_000_000)


@pytest.fixture(scope="module")
def arm_server(tmp_path_factory):
    """A tiny HTTPS server: GET answers what was recorded for a path, or the status a test set."""
    from emulator.crypto import make_tls_material

    ca_file, cert_file, key_file = make_tls_material(tmp_path_factory.mktemp("arm"))
    seen: list[dict[str, Any]] = []
    answers: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append(
                {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            if not self.headers.get("Authorization"):
                status, payload, headers = (
                    401,
                    {"error": {"code": "AuthenticationFailed", "message": "no token"}},
                    {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.example.test", '
                        'error="invalid_token"'
                    },
                )
            else:
                status, payload, headers = answers.get(
                    self.path.split("?")[0],
                    (404, {"error": {"code": "ResourceNotFound", "message": "nothing here"}}, {}),
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PATCH = _answer  # noqa: N815 - http.server dispatches on these names

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(ca_file), seen, answers
    server.shutdown()
    server.server_close()


def test_arm_client_sends_the_token_and_reads_answers_and_errors(arm_server):
    endpoint, ca, seen, answers = arm_server
    answers[GATEWAY] = (200, {"id": GATEWAY, "tags": {}}, {})
    answers[APIM] = (202, {}, {"Azure-AsyncOperation": f"{endpoint}/operations/x", "Retry-After": "15"})
    answers["/operations/x"] = (200, {"status": "Failed", "error": {"code": "Boom", "message": "it broke"}}, {})
    answers[WEB_CERT] = (409, {"error": {"code": "AnotherOperationInProgress", "message": "busy"}}, {})
    client = ArmClient(endpoint, _Token, ca_bundle=ca)
    reply = client.get(GATEWAY, "2026-03-01")
    assert (reply.status, reply.body["id"]) == (200, GATEWAY)
    assert seen[-1]["auth"] == "Bearer token-for-tests" and seen[-1]["path"] == f"{GATEWAY}?api-version=2026-03-01"
    assert _Token.scopes == (f"{endpoint}/.default",)
    started = client.patch(APIM, "2024-05-01", {"properties": {"hostnameConfigurations": []}})
    assert (started.async_operation, started.retry_after) == (f"{endpoint}/operations/x", 15)
    assert seen[-1]["body"] == {"properties": {"hostnameConfigurations": []}}
    status = client.operation_status(started.async_operation)
    assert (status.status, status.error_code, status.error_message, status.succeeded) == (
        "Failed",
        "Boom",
        "it broke",
        False,
    )
    with pytest.raises(ArmError) as info:
        client.put(WEB_CERT, "2025-05-01", {})
    assert (info.value.status, info.value.code, info.value.message) == (409, "AnotherOperationInProgress", "busy")
    with pytest.raises(ArmError) as info:
        client.get(FD_SECRET, "2026-10-01")
    assert str(info.value) == "HTTP 404 ResourceNotFound: nothing here"
    with pytest.raises(ValueError, match="not on"):
        client.operation_status("https://elsewhere.example.test/operations/x")


def test_arm_client_trusts_only_its_bundle(arm_server):
    endpoint, _ca, _seen, _answers = arm_server
    with pytest.raises(ArmUnreachable, match=f"no answer from {endpoint}: ServiceRequestError: .*CERTIFICATE_VERIFY"):
        ArmClient(endpoint, _Token, ca_bundle=certifi.where()).get(GATEWAY, "2026-03-01")


def test_arm_not_answering_fails_a_first_pass_and_keeps_an_operation_followed():
    class Silent(MemoryArm):
        def _answer(self, method: str, resource_id: str, body: Any = None) -> ArmReply:
            raise ArmUnreachable(f"no answer from {ARM}: ServiceResponseError: timed out")

        def operation_status(self, url: str) -> OperationStatus:
            raise ArmUnreachable(f"no answer from {ARM}: ServiceResponseError: timed out")

    fd = rollout(FrontDoorRollout, FD_SECTION, {FD_SECRET: fd_secret()})
    fd.arm.replies[("PUT", FD_SECRET)] = accepted(f"{ARM}/operations/fd")
    started = fd.roll_out(notice(), current(), FD_SECRET, None)
    fd.arm = Silent({})
    first = fd.roll_out(notice(), current(), FD_SECRET, None)
    assert first.state is RolloutState.FAILED
    assert first.detail == f"{FD_SECRET}: no answer from {ARM}: ServiceResponseError: timed out"
    waiting = fd.roll_out(notice(), current(), FD_SECRET, record(started))
    assert (waiting.state, waiting.operation) == (RolloutState.IN_PROGRESS, f"{ARM}/operations/fd")
    again = fd.roll_out(notice(), current(), FD_SECRET, record(waiting))
    assert again.detail == waiting.detail == f"{started.detail}; no answer from {ARM}: ServiceResponseError: timed out"


def test_importing_the_function_app_loads_no_rollout_module_and_no_azure_mgmt_package():
    """Cold start: the rollouts and ARM's pipeline are imported on first use, inside the deployer."""
    import subprocess
    import sys

    code = (
        "import sys, function_app\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('azure.mgmt', 'renewal.azure.rollouts')))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == ""
