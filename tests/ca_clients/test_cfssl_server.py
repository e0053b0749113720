"""The CFSSL client against a real ``cfssl serve`` (fixture ``cfssl_server``)."""

from __future__ import annotations

import itertools
import logging

import pytest
from cryptography import x509

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.registry import IssuerConfigError, build_client
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request
from tests.servers import free_port


def _client(section: dict):
    return build_client(section, ClientContext(secrets=DictSecretResolver()))


def _logged(caplog) -> str:
    return "\n".join(repr(r.__dict__) for r in caplog.records)


def _assert_chain(chain, server, *, with_root: bool = False) -> None:
    certs = chain.certificates
    issuing = x509.load_pem_x509_certificate(server.issuing_pem.encode())
    root = x509.load_pem_x509_certificate(server.root_pem.encode())
    assert list(certs[1:]) == ([issuing, root] if with_root else [issuing])
    for child, parent in itertools.pairwise(certs):
        child.verify_directly_issued_by(parent)
    (certs[-1] if not with_root else certs[-2]).verify_directly_issued_by(root)


@pytest.mark.parametrize("spec", ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384"])
def test_authsign_every_key_type(cfssl_server, spec):
    csr, _ = make_csr(key=make_key(spec), dns=["app.example.test", "api.example.test"])
    chain = _client(cfssl_server.issuer_section("cf")).sign(sign_request(csr))
    _assert_chain(chain, cfssl_server)
    san = chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"app.example.test", "api.example.test"}
    assert chain.issuer_name == "cf"


@pytest.mark.parametrize("source", ["info", "bundle"])
def test_open_profile_sign_with_each_chain_source(cfssl_server, source):
    csr, _ = make_csr()
    section = cfssl_server.issuer_section("cf-open", authenticated=False, chain_source=source)
    chain = _client(section).sign(sign_request(csr))
    _assert_chain(chain, cfssl_server)


def test_static_chain_above_the_issuing_ca(cfssl_server):
    csr, _ = make_csr()
    section = cfssl_server.issuer_section("cf", chain_source="info", chain_pem=cfssl_server.root_pem)
    _assert_chain(_client(section).sign(sign_request(csr)), cfssl_server, with_root=True)
    section = cfssl_server.issuer_section("cf", chain_source="none", chain_pem=cfssl_server.issuing_pem)
    _assert_chain(_client(section).sign(sign_request(csr)), cfssl_server)


def test_bundle_can_include_the_root(cfssl_server):
    csr, _ = make_csr()
    section = cfssl_server.issuer_section("cf", chain_source="bundle", include_root=True)
    _assert_chain(_client(section).sign(sign_request(csr)), cfssl_server, with_root=True)


def test_ip_and_email_sans_copied_and_a_dropped_uri_is_refused(cfssl_server):
    csr, _ = make_csr(ips=["10.1.2.3", "fd00::1"], emails=["ops@example.test"])
    chain = _client(cfssl_server.issuer_section("cf")).sign(sign_request(csr))
    san = chain.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(i) for i in san.get_values_for_type(x509.IPAddress)) == ["10.1.2.3", "fd00::1"]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]
    # Debian's cfssl 1.2.0 copies DNS, IP and e-mail names only; a leaf missing a requested
    # URI SAN is refused at the client, never returned as if issued.
    with_uri, _ = make_csr(uris=["spiffe://example.test/app"])
    with pytest.raises(PermanentCAError, match="left out requested subject alternative names"):
        _client(cfssl_server.issuer_section("cf")).sign(sign_request(with_uri))


def test_bad_hmac_key_is_permanent_and_never_shown(cfssl_server, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "0badc0de" * 4
    section = cfssl_server.issuer_section("cf", auth_key=cfssl_server.secret_file("wrong", wrong))
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="invalid token") as info:
        _client(section).sign(sign_request(csr))
    assert info.value.issuer == "cf"
    for secret in (wrong, cfssl_server.hmac_key_hex):
        assert secret not in str(info.value) and secret not in _logged(caplog)


def test_non_hex_key_is_permanent_without_echo(cfssl_server):
    section = cfssl_server.issuer_section("cf", auth_key=cfssl_server.secret_file("nothex", "s3cret-not-hex"))
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="must be hex") as info:
        _client(section).sign(sign_request(csr))
    assert "s3cret" not in str(info.value)


def test_authenticated_profile_on_open_endpoint_is_permanent(cfssl_server):
    section = cfssl_server.issuer_section("cf", authenticated=False, profile="server")
    csr, _ = make_csr()
    with pytest.raises(PermanentCAError, match="authentication required"):
        _client(section).sign(sign_request(csr))


def test_policy_violation_is_permanent_with_cfssl_message(cfssl_server):
    section = cfssl_server.issuer_section("cf", authenticated=False, profile="restricted")
    csr, _ = make_csr("evil.example.com")
    with pytest.raises(PermanentCAError, match=r"CFSSL sign refused: .*policy whitelist \(code 5500\)"):
        _client(section).sign(sign_request(csr))
    csr, _ = make_csr("app.example.test")
    _assert_chain(_client(section).sign(sign_request(csr)), cfssl_server)


def test_unparseable_csr_is_permanent(cfssl_server):
    with pytest.raises(PermanentCAError, match="CSR"):
        _client(cfssl_server.issuer_section("cf")).sign(sign_request(b"garbage"))


def test_unreachable_server_is_transient(cfssl_server):
    section = cfssl_server.issuer_section("cf", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    csr, _ = make_csr()
    with pytest.raises(TransientCAError, match="ConnectionError"):
        _client(section).sign(sign_request(csr))


def test_secrets_never_logged_on_success(cfssl_server, caplog):
    caplog.set_level(logging.DEBUG)
    csr, _ = make_csr()
    _client(cfssl_server.issuer_section("cf")).sign(sign_request(csr))
    assert "cfssl.signed" in _logged(caplog)
    assert cfssl_server.hmac_key_hex not in _logged(caplog)


def test_config_mistakes_name_the_field(cfssl_server):
    with pytest.raises(IssuerConfigError, match=r"issuer\.auth_key"):
        _client(cfssl_server.issuer_section("cf", auth_key=cfssl_server.hmac_key_hex))
    with pytest.raises(IssuerConfigError, match=r"issuer\.chain_source"):
        _client(cfssl_server.issuer_section("cf", chain_source="ocsp"))
    with pytest.raises(IssuerConfigError, match=r"issuer\.url"):
        _client(cfssl_server.issuer_section("cf", url="127.0.0.1:8888"))


def test_url_may_include_the_api_prefix(cfssl_server):
    csr, _ = make_csr()
    section = cfssl_server.issuer_section("cf", url=cfssl_server.base_url + "/api/v1/cfssl/")
    _assert_chain(_client(section).sign(sign_request(csr)), cfssl_server)
