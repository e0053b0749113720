"""The ACME client against OpenBao's PKI ACME server: EAB required, dns-01 checked through challtestsrv."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca_clients import ClientContext, PermanentCAError
from ca_clients.acme_dns import challenge_fqdn
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request


class OpenBaoAcme:
    def __init__(self, openbao: Any, challtestsrv: Any, workdir: Path) -> None:
        self.openbao = openbao
        self.challtestsrv = challtestsrv
        self.workdir = workdir
        self.directory_url = f"{openbao.addr}/v1/{openbao.pki_mount}/roles/{openbao.role}/acme/directory"

    def _write(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            f"{self.openbao.addr}/v1/{path}", json=body, headers={"X-Vault-Token": self.openbao.root_token}, timeout=10
        )
        assert response.ok, f"{path}: {response.status_code} {response.text}"
        return response.json() if response.content else {}

    def configure(self) -> None:
        mount = self.openbao.pki_mount
        self._write(f"{mount}/config/cluster", {"path": f"{self.openbao.addr}/v1/{mount}"})
        self._write(
            f"sys/mounts/{mount}/tune",
            {
                "allowed_response_headers": ["Location", "Replay-Nonce", "Link", "Last-Modified", "Retry-After"],
                "passthrough_request_headers": ["If-Modified-Since"],
            },
        )
        self._write(
            f"{mount}/config/acme",
            {
                "enabled": True,
                "eab_policy": "always-required",
                "dns_resolver": self.challtestsrv.nameserver,
            },
        )

    def new_eab(self) -> tuple[str, str]:
        # An EAB credential is bound to the directory it was made for (here the role's).
        data = self._write(f"{self.openbao.pki_mount}/roles/{self.openbao.role}/acme/new-eab", {})["data"]
        return data["id"], data["key"]

    def section(self, name: str, *, account_key: Path | None = None, **overrides: Any) -> dict[str, Any]:
        kid, key = self.new_eab()
        key_file = self.workdir / f"eab-{kid}"
        key_file.write_text(key)
        key_file.chmod(0o600)
        section: dict[str, Any] = {
            "name": name,
            "type": "acme",
            "directory_url": self.directory_url,
            "account_key": {"file": str(account_key or self.workdir / f"account-{uuid.uuid4().hex[:8]}.pem")},
            "eab_kid": kid,
            "eab_hmac_key": {"file": str(key_file)},
            "dns": {"provider": "challtestsrv", "url": self.challtestsrv.management_url},
            "propagation": {"nameservers": [self.challtestsrv.nameserver], "timeout_seconds": 20},
            "validation_timeout_seconds": 60,
            "finalize_wait_seconds": 15,
            "allow_insecure_http": True,  # OpenBao's dev listener is plain HTTP (loopback, tests only)
        }
        section.update(overrides)
        return section


@pytest.fixture(scope="module")
def openbao_acme(openbao, challtestsrv, tmp_path_factory: pytest.TempPathFactory) -> OpenBaoAcme:
    acme = OpenBaoAcme(openbao, challtestsrv, tmp_path_factory.mktemp("openbao-acme"))
    acme.configure()
    return acme


def build(section: dict[str, Any]):
    return build_client(section, ClientContext(secrets=DictSecretResolver(), timeout_seconds=15))


def spki(obj: Any) -> bytes:
    return obj.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("key_spec", ["EC-P256", "RSA-2048"])
def test_openbao_acme_issues_with_eab_and_dns01(openbao_acme: OpenBaoAcme, key_spec: str) -> None:
    name = f"app-{uuid.uuid4().hex[:8]}.example.test"
    csr, key = make_csr(name, key=make_key(key_spec))
    chain = build(openbao_acme.section("bao-acme")).sign(sign_request(csr))

    assert spki(chain.leaf) == spki(key)
    assert chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [name]
    root = x509.load_pem_x509_certificate(openbao_acme.openbao.root_pem.encode())
    assert chain.certificates[-1] == root  # OpenBao sends leaf + intermediate + root
    for child, parent in zip(chain.certificates, chain.certificates[1:], strict=False):
        child.verify_directly_issued_by(parent)
    assert openbao_acme.challtestsrv.txt(challenge_fqdn(name)) == []


def test_openbao_existing_account_is_found_without_spending_a_new_eab(openbao_acme: OpenBaoAcme) -> None:
    account = openbao_acme.workdir / f"shared-{uuid.uuid4().hex[:6]}.pem"
    section = openbao_acme.section("bao-shared", account_key=account)
    first = build(section)
    first.sign(sign_request(make_csr(f"a-{uuid.uuid4().hex[:6]}.example.test")[0]))
    # Same account key, same (already consumed, single-use) EAB credential: lookup must find the account.
    second = build(section)
    second.sign(sign_request(make_csr(f"b-{uuid.uuid4().hex[:6]}.example.test")[0]))
    assert first.inner.account_url == second.inner.account_url


def test_openbao_name_outside_role_is_permanent(openbao_acme: OpenBaoAcme) -> None:
    csr, _ = make_csr("app.evil.example")
    with pytest.raises(PermanentCAError):
        build(openbao_acme.section("bao-evil")).sign(sign_request(csr))


def test_openbao_without_eab_is_permanent(openbao_acme: OpenBaoAcme) -> None:
    section = openbao_acme.section("bao-no-eab")
    del section["eab_kid"], section["eab_hmac_key"]
    with pytest.raises(PermanentCAError, match="externalAccountRequired"):
        build(section).sign(sign_request(make_csr("x.example.test")[0]))
