"""The Vault/OpenBao PKI client against a real OpenBao dev server (fixture ``openbao``)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import pytest
from cryptography import x509

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.registry import IssuerConfigError, build_client
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request
from tests.servers import free_port


def _logged(caplog) -> str:
    """Messages and structured fields of every record, so a secret in ``extra`` is caught too."""
    return "\n".join(repr(r.__dict__) for r in caplog.records)


def _client(section: dict):
    return build_client(section, ClientContext(secrets=DictSecretResolver()))


def _assert_chain(chain, root_pem: str, *, length: int = 3) -> None:
    root = x509.load_pem_x509_certificate(root_pem.encode())
    certs = chain.certificates
    assert len(certs) == length
    for child, parent in itertools.pairwise(certs):
        child.verify_directly_issued_by(parent)
    assert certs[-1] == root


@pytest.mark.parametrize("spec", ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384"])
def test_sign_role_returns_leaf_intermediate_root(openbao, spec):
    csr, _ = make_csr("app.example.test", key=make_key(spec), dns=["app.example.test", "www.app.example.test"])
    chain = _client(openbao.issuer_section("bao")).sign(sign_request(csr))
    _assert_chain(chain, openbao.root_pem)
    san = chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"app.example.test", "www.app.example.test"}
    assert chain.issuer_name == "bao"


def test_sign_copies_ip_email_and_uri_sans(openbao):
    csr, _ = make_csr(
        "app.example.test",
        ips=["10.1.2.3"],
        emails=["ops@example.test"],
        uris=["spiffe://example.test/app"],
    )
    chain = _client(openbao.issuer_section("bao")).sign(sign_request(csr))
    san = chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.test/app"]


@pytest.mark.parametrize("with_role", [True, False])
def test_sign_verbatim(openbao, with_role):
    csr, _ = make_csr("verbatim.example.test", key=make_key("RSA-2048"))
    section = openbao.issuer_section("bao", mode="sign-verbatim")
    if not with_role:
        del section["role"]
    chain = _client(section).sign(sign_request(csr))
    _assert_chain(chain, openbao.root_pem)
    assert chain.leaf.subject.rfc4514_string() == "CN=verbatim.example.test"


def test_ttl_follows_requested_validity(openbao):
    csr, _ = make_csr()
    chain = _client(openbao.issuer_section("bao")).sign(sign_request(csr, validity=dt.timedelta(days=3)))
    lifetime = chain.leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=3) - dt.timedelta(minutes=5) < lifetime <= dt.timedelta(days=3)


@pytest.mark.parametrize("auth", ["token", "approle", "jwt"])
def test_auth_methods(openbao, auth):
    csr, _ = make_csr()
    chain = _client(openbao.issuer_section(f"bao-{auth}", auth=auth)).sign(sign_request(csr))
    _assert_chain(chain, openbao.root_pem)


def test_revoked_token_triggers_one_fresh_login(openbao):
    import hvac

    client = _client(openbao.issuer_section("bao"))
    csr, _ = make_csr()
    client.sign(sign_request(csr))
    first = client.inner._token
    hvac.Client(url=openbao.addr, token=openbao.root_token).auth.token.revoke(first)
    chain = client.sign(sign_request(csr))
    _assert_chain(chain, openbao.root_pem)
    assert client.inner._token != first


def test_namespace(openbao):
    section = openbao.issuer_section("bao-ns", auth="token", mount="pki", namespace=openbao.namespace)
    csr, _ = make_csr()
    chain = _client(section).sign(sign_request(csr))
    _assert_chain(chain, openbao.namespace_root_pem, length=2)
    # The same mount does not exist outside the namespace: the header is what routes the call.
    del section["namespace"]
    with pytest.raises(PermanentCAError, match="path not found"):
        _client(section).sign(sign_request(csr))


def test_role_refuses_name_with_vault_message(openbao):
    csr, _ = make_csr("evil.example.com")
    with pytest.raises(PermanentCAError, match="not allowed by this role") as info:
        _client(openbao.issuer_section("bao")).sign(sign_request(csr))
    assert info.value.issuer == "bao"


def test_csr_with_broken_signature_is_permanent(openbao):
    csr, _ = make_csr()
    tampered = csr[:-1] + bytes([csr[-1] ^ 0x01])  # last byte of the signature
    with pytest.raises(PermanentCAError, match=r"request signature invalid") as info:
        _client(openbao.issuer_section("bao")).sign(sign_request(tampered))
    assert info.value.issuer == "bao"


def test_unparseable_csr_is_permanent(openbao):
    with pytest.raises(PermanentCAError, match="CSR"):
        _client(openbao.issuer_section("bao")).sign(sign_request(b"not a csr"))


def test_bad_token_is_permanent_and_never_shown(openbao, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "hvs.not-a-real-token-4242"
    path = tmp_path / "bad-token"
    path.write_text(bad)
    section = openbao.issuer_section("bao", auth="token")
    section["auth"]["token"] = {"file": str(path)}
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="permission denied") as info:
        _client(section).sign(sign_request(csr))
    assert bad not in str(info.value) and bad not in _logged(caplog)


def test_bad_secret_id_is_permanent(openbao, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "00000000-1111-2222-3333-444444444444"
    path = tmp_path / "bad-secret-id"
    path.write_text(bad)
    section = openbao.issuer_section("bao")
    section["auth"]["secret_id"] = {"file": str(path)}
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="login refused") as info:
        _client(section).sign(sign_request(csr))
    assert bad not in str(info.value) and bad not in _logged(caplog)


def test_secrets_never_logged_on_success(openbao, caplog):
    caplog.set_level(logging.DEBUG)
    csr, _ = make_csr()
    for auth in ("approle", "token", "jwt"):
        _client(openbao.issuer_section("bao", auth=auth)).sign(sign_request(csr))
    for secret in (openbao.root_token, openbao.approle_secret_id):
        assert secret not in _logged(caplog)
    assert "vault.signed" in _logged(caplog)


def test_unreachable_server_is_transient(openbao):
    section = openbao.issuer_section("bao", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    csr, _ = make_csr()
    with pytest.raises(TransientCAError, match="ConnectionError"):
        _client(section).sign(sign_request(csr))


def test_config_mistakes_name_the_field(openbao):
    section = openbao.issuer_section("bao")
    del section["role"]
    with pytest.raises(IssuerConfigError, match="role is required"):
        _client(section)
    section = openbao.issuer_section("bao", auth="token")
    section["auth"]["token"] = "literal-token"
    with pytest.raises(IssuerConfigError, match=r"issuer\.auth\.token\.token"):
        _client(section)
