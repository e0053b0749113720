"""Vault client paths OpenBao cannot show: Azure auth, expiry re-login, 403/429/5xx/sealed answers.

A small local HTTP server plays Vault: it records every request (path, headers, JSON body) and
answers from a script; the sign answer is a real certificate for the CSR from a throwaway CA.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request

MI_TOKEN = "eyJ0eXAiOiJKV1QifQ.mi-token-payload.sig"
CLIENT_TOKEN = "s.recorded-client-token"


def _ca() -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Recorder CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass
class FakeVault:
    """Scripted answers: ``script[path]`` is a list of (status, body) popped per call, else the default."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    lease_seconds: int = 600
    ca: tuple[Any, x509.Certificate] = field(default_factory=_ca)
    tls_ca_pem: str = ""

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self.script.get(path):
            return self.script[path].pop(0)
        if "/login" in path:
            n = sum(1 for r in self.requests if "/login" in r["path"]) - 1  # this one is recorded
            return 200, {"auth": {"client_token": f"{CLIENT_TOKEN}-{n}", "lease_duration": self.lease_seconds}}
        if "/sign" in path:
            return 200, {"data": self._issue(body["csr"])}
        return 404, {"errors": []}

    def _issue(self, csr_pem: str) -> dict[str, Any]:
        key, ca_cert = self.ca
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for ext in csr.extensions:  # like Vault: the CSR's SANs go into the leaf
            if isinstance(ext.value, x509.SubjectAlternativeName):
                builder = builder.add_extension(ext.value, critical=ext.critical)
        leaf = builder.sign(key, hashes.SHA256())
        pem = serialization.Encoding.PEM
        ca_pem = ca_cert.public_bytes(pem).decode()
        return {"certificate": leaf.public_bytes(pem).decode(), "issuing_ca": ca_pem, "serial_number": "01"}

    def logins(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "/login" in r["path"]]

    def signs(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "/sign" in r["path"]]


def _tls_context(tmp_path) -> tuple[Any, str]:
    """A server TLS context for 127.0.0.1 and the PEM of the CA that signed it."""
    import ipaddress
    import ssl

    ca_key, ca_cert = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "tls.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.pem", tmp_path / "tls.key")
    return context, ca_cert.public_bytes(pem).decode()


@pytest.fixture(params=["http"])
def fake_vault(request, tmp_path) -> Iterator[FakeVault]:
    state = FakeVault()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            state.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )
            status, answer = state.answer(self.path, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = _handle  # noqa: N815 - http.server names

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = request.param
    if scheme == "https":
        context, state.tls_ca_pem = _tls_context(tmp_path)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class FakeManagedIdentity:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(MI_TOKEN, 2**31)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _build(section: dict, **extra: Any):
    return build_client(section, ClientContext(secrets=DictSecretResolver(), extra=extra))


def _section(url: str, auth: dict, **more: Any) -> dict:
    section = {"name": "fake", "type": "vault", "url": url, "mount": "pki", "role": "web", "auth": auth}
    return section | {"allow_insecure_http": url.startswith("http://")} | more


AZURE_AUTH = {
    "method": "azure",
    "role": "renewal",
    "client_id": "11111111-2222-3333-4444-555555555555",
    "subscription_id": "sub-1",
    "resource_group_name": "rg-renewal",
    "vmss_name": "func-workers",
}


def test_azure_login_sends_managed_identity_token_and_namespace(fake_vault, caplog):
    caplog.set_level(logging.DEBUG)
    credential = FakeManagedIdentity()
    client = _build(_section(fake_vault.url, AZURE_AUTH, namespace="team/a"), azure_credential=credential)
    csr, _ = make_csr()
    chain = client.sign(sign_request(csr))
    assert len(chain.certificates) == 2
    assert credential.scopes == [("https://management.azure.com/",)]
    (login,) = fake_vault.logins()
    assert login["path"] == "/v1/auth/azure/login"
    assert login["body"] == {
        "role": "renewal",
        "jwt": MI_TOKEN,
        "subscription_id": "sub-1",
        "resource_group_name": "rg-renewal",
        "vmss_name": "func-workers",
    }
    (sign,) = fake_vault.signs()
    assert sign["path"] == "/v1/pki/sign/web"
    assert sign["headers"]["X-Vault-Token"] == f"{CLIENT_TOKEN}-0"
    assert login["headers"]["X-Vault-Namespace"] == sign["headers"]["X-Vault-Namespace"] == "team/a"
    logged = "\n".join(repr(r.__dict__) for r in caplog.records)
    assert "vault.login" in logged
    assert MI_TOKEN not in logged and CLIENT_TOKEN not in logged


def test_azure_default_credential_is_managed_identity(monkeypatch):
    import azure.identity

    made: list[dict[str, Any]] = []

    class Recording(FakeManagedIdentity):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            made.append(kwargs)

    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", Recording)
    from ca_clients.vault import Config, VaultPKIClient

    client = VaultPKIClient(
        "x",
        Config.model_validate({"url": "http://x", "role": "r", "auth": AZURE_AUTH}),
        ClientContext(secrets=DictSecretResolver()),
    )
    assert client._managed_identity_token("https://management.azure.com/", AZURE_AUTH["client_id"]) == MI_TOKEN
    assert made == [{"client_id": AZURE_AUTH["client_id"]}]


def test_jwt_login_with_managed_identity_token(fake_vault):
    credential = FakeManagedIdentity()
    auth = {"method": "jwt", "role": "renewal", "mount": "entra", "resource": "api://openbao"}
    client = _build(_section(fake_vault.url, auth), azure_credential=credential)
    csr, _ = make_csr()
    client.sign(sign_request(csr))
    (login,) = fake_vault.logins()
    assert login["path"] == "/v1/auth/entra/login"
    assert login["body"] == {"role": "renewal", "jwt": MI_TOKEN}
    assert credential.scopes == [("api://openbao",)]


def test_token_is_cached_then_renewed_at_expiry(fake_vault, tmp_path):
    clock = Clock()
    fake_vault.lease_seconds = 120
    secret_id = tmp_path / "secret-id"
    secret_id.write_text("sid-value\n")
    auth = {"method": "approle", "role_id": "rid", "secret_id": {"file": str(secret_id)}}
    client = _build(_section(fake_vault.url, auth), clock=clock)
    csr, _ = make_csr()
    client.sign(sign_request(csr))
    client.sign(sign_request(csr))
    assert len(fake_vault.logins()) == 1
    assert fake_vault.logins()[0]["body"] == {"role_id": "rid", "secret_id": "sid-value"}
    clock.now += 120 - 30  # inside the renewal margin
    client.sign(sign_request(csr))
    assert len(fake_vault.logins()) == 2
    assert [s["headers"]["X-Vault-Token"] for s in fake_vault.signs()] == [
        f"{CLIENT_TOKEN}-0",
        f"{CLIENT_TOKEN}-0",
        f"{CLIENT_TOKEN}-1",
    ]


def test_403_logs_in_again_once(fake_vault, tmp_path):
    fake_vault.script["/v1/pki/sign/web"] = [(403, {"errors": ["permission denied"]})]
    secret_id = tmp_path / "secret-id"
    secret_id.write_text("sid")
    client = _build(
        _section(fake_vault.url, {"method": "approle", "role_id": "r", "secret_id": {"file": str(secret_id)}})
    )
    csr, _ = make_csr()
    client.sign(sign_request(csr))
    assert len(fake_vault.logins()) == 2 and len(fake_vault.signs()) == 2


def test_403_twice_is_permanent(fake_vault, tmp_path):
    fake_vault.script["/v1/pki/sign/web"] = [(403, {"errors": ["permission denied"]})] * 2
    token = tmp_path / "token"
    token.write_text("s.static-token")
    client = _build(_section(fake_vault.url, {"method": "token", "token": {"file": str(token)}}))
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="permission denied") as info:
        client.sign(sign_request(csr))
    assert "s.static-token" not in str(info.value)
    assert len(fake_vault.signs()) == 2


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (503, {"errors": ["Vault is sealed"]}, "Vault is sealed"),
        (429, {"errors": ['request path "pki/sign/web": rate limit quota exceeded']}, "rate limit"),
        (500, {"errors": ["internal error"]}, "internal error"),
        (502, b"<html>bad gateway</html>", "Vault sign failed"),
        (504, b"gateway timeout", "Vault sign failed"),
    ],
)
def test_server_side_failures_are_transient(fake_vault, tmp_path, status, body, words):
    fake_vault.script["/v1/pki/sign/web"] = [(status, body)]
    token = tmp_path / "token"
    token.write_text("s.static-token")
    client = _build(_section(fake_vault.url, {"method": "token", "token": {"file": str(token)}}))
    csr, _ = make_csr()
    with pytest.raises(TransientCAError, match=words):
        client.sign(sign_request(csr))


def test_login_refusal_is_permanent_and_login_outage_transient(fake_vault, tmp_path):
    secret_id = tmp_path / "secret-id"
    secret_id.write_text("sid-secret-value")
    auth = {"method": "approle", "role_id": "r", "secret_id": {"file": str(secret_id)}}
    fake_vault.script["/v1/auth/approle/login"] = [
        (400, {"errors": ["invalid role or secret ID"]}),
        (503, {"errors": ["Vault is sealed"]}),
    ]
    client = _build(_section(fake_vault.url, auth))
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="invalid role or secret ID") as info:
        client.sign(sign_request(csr))
    assert "sid-secret-value" not in str(info.value)
    with pytest.raises(TransientCAError, match="sealed"):
        client.sign(sign_request(csr))


def test_login_403_is_permanent(fake_vault):
    fake_vault.script["/v1/auth/jwt/login"] = [(403, {"errors": ["permission denied"]})]
    jwt = {"method": "jwt", "role": "renewal", "resource": "api://openbao"}
    client = _build(_section(fake_vault.url, jwt), azure_credential=FakeManagedIdentity())
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="Vault login refused: permission denied") as info:
        client.sign(sign_request(csr))
    assert MI_TOKEN not in str(info.value)
    assert fake_vault.signs() == []


def test_managed_identity_failure_is_transient(fake_vault):
    class Broken:
        def get_token(self, *scopes: str, **kwargs: Any):
            raise RuntimeError("IMDS unreachable")

    client = _build(_section(fake_vault.url, AZURE_AUTH), azure_credential=Broken())
    csr, _ = make_csr()
    with pytest.raises(TransientCAError, match="managed-identity token"):
        client.sign(sign_request(csr))


def test_answer_without_certificate_is_transient(fake_vault, tmp_path):
    fake_vault.script["/v1/pki/sign/web"] = [(200, {"data": {}, "warnings": ["odd"]})]
    token = tmp_path / "token"
    token.write_text("s.t")
    client = _build(_section(fake_vault.url, {"method": "token", "token": {"file": str(token)}}))
    csr, _ = make_csr()
    with pytest.raises(TransientCAError, match="without a certificate"):
        client.sign(sign_request(csr))


@pytest.mark.parametrize("fake_vault", ["https"], indirect=True)
def test_ca_bundle_is_what_tls_trusts(fake_vault, tmp_path):
    token = tmp_path / "token"
    token.write_text("s.t")
    auth = {"method": "token", "token": {"file": str(token)}}
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="TLS verification failed"):
        _build(_section(fake_vault.url, auth)).sign(sign_request(csr))
    assert _build(_section(fake_vault.url, auth, ca_bundle=fake_vault.tls_ca_pem)).sign(sign_request(csr))
    bundle = tmp_path / "ca.pem"
    bundle.write_text(fake_vault.tls_ca_pem)
    assert _build(_section(fake_vault.url, auth, ca_bundle=str(bundle))).sign(sign_request(csr))


@pytest.mark.parametrize(
    ("kind", "section"),
    [
        ("vault", {"type": "vault", "url": "http://vault.corp.test:8200", "mount": "pki", "role": "web",
                   "auth": {"method": "token", "token": {"setting": "T"}}}),
        ("acme", {"type": "acme", "directory_url": "http://acme.corp.test/directory", "account_key": {"setting": "K"},
                  "dns": {"provider": "challtestsrv", "url": "http://127.0.0.1:8055"}}),
        ("adcs", {"type": "adcs", "url": "http://ca.corp.test/certsrv", "template": "WebServer", "auth": "basic",
                  "username": "u", "password": {"setting": "P"}}),
        ("est", {"type": "est", "url": "http://est.corp.test/.well-known/est", "username": "u",
                 "password": {"setting": "P"}}),
    ],
)  # fmt: skip
def test_credentials_never_go_over_plain_http_without_the_named_opt_out(kind, section):
    from ca_clients.registry import validate_section

    problems = [str(p) for p in validate_section({"name": "x", **section}, path="issuers[0]")]
    assert any("plain HTTP" in p and p.startswith("issuers[0].") for p in problems), problems
    assert validate_section({"name": "x", **section, "allow_insecure_http": True}, path="issuers[0]") == []
