"""The AD CS web enrollment client against the loopback certsrv server (HTTPS, Basic and NTLM)."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca_clients import ClientContext, IssuancePending, PermanentCAError, TransientCAError
from ca_clients.adcs import parse_pkcs7_or_cert
from ca_clients.registry import IssuerConfigError, build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request
from tests.servers.adcs_server import DENIED_MESSAGE


def _build(section: dict):
    return build_client(section, ClientContext(secrets=DictSecretResolver()))


def _assert_chain(chain, csr_der: bytes) -> None:
    def spki(o):
        return o.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    assert spki(chain.leaf) == spki(x509.load_der_x509_csr(csr_der))
    for cert, issuer in zip(chain.certificates, chain.certificates[1:], strict=False):
        cert.verify_directly_issued_by(issuer)
    assert len(chain.certificates) == 3


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_issued(adcs_server, auth):
    csr, _ = make_csr("app.example.test")
    start = len(adcs_server.log)
    chain = _build(adcs_server.issuer_section("adcs", auth=auth)).sign(sign_request(csr))
    _assert_chain(chain, csr)
    assert chain.issuer_name == "adcs"
    assert [(m, p) for m, p, _ in adcs_server.log[start:]] == [("POST", "certfnsh.asp"), ("GET", "certnew.p7b")]
    assert {scheme for *_, scheme in adcs_server.log[start:]} == {auth}


def test_pending_then_issued(adcs_server):
    client = _build(adcs_server.issuer_section("adcs", template="PendingApproval", pending_retry_seconds=1800))
    csr, _ = make_csr("pending.app.example.test")
    with pytest.raises(IssuancePending) as first:
        client.sign(sign_request(csr))
    req_id = first.value.ticket["req_id"]
    assert first.value.retry_after == dt.timedelta(seconds=1800)
    # Still pending on the poll: the same ticket comes back, no new submission.
    with pytest.raises(IssuancePending) as again:
        client.sign(sign_request(csr, ticket=first.value.ticket))
    assert again.value.ticket["req_id"] == req_id
    adcs_server.approve(req_id)
    chain = client.sign(sign_request(csr, ticket=again.value.ticket))
    _assert_chain(chain, csr)
    assert [p for m, p, _ in adcs_server.log if m == "POST"].count("certfnsh.asp") >= 1


def test_pending_then_denied_by_manager(adcs_server):
    client = _build(adcs_server.issuer_section("adcs", template="PendingApproval"))
    csr, _ = make_csr("pending.app.example.test")
    with pytest.raises(IssuancePending) as pending:
        client.sign(sign_request(csr))
    adcs_server.deny(pending.value.ticket["req_id"], "Denied by CORP\\pki-manager")
    with pytest.raises(PermanentCAError, match=r"Denied by CORP\\pki-manager"):
        client.sign(sign_request(csr, ticket=pending.value.ticket))


def test_denied_carries_disposition_message(adcs_server):
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError) as err:
        _build(adcs_server.issuer_section("adcs", template="Denied")).sign(sign_request(csr))
    assert DENIED_MESSAGE in err.value.message


def test_unknown_template_is_denied(adcs_server):
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError, match="NoSuchTemplate"):
        _build(adcs_server.issuer_section("adcs", template="NoSuchTemplate")).sign(sign_request(csr))


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_wrong_password_is_permanent_and_not_echoed(adcs_server, tmp_path, auth):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-42")
    section = adcs_server.issuer_section("adcs", auth=auth) | {"password": {"file": str(wrong)}}
    csr, _ = make_csr("app.example.test")
    client = _build(section)
    with pytest.raises(PermanentCAError, match="HTTP 401") as err:
        client.sign(sign_request(csr))
    assert "not-the-password-42" not in str(err.value)
    assert "not-the-password-42" not in repr(client.inner)


def test_kerberos_without_requests_gssapi_names_the_package(adcs_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "requests_gssapi", None)  # import fails like on a host without it
    section = adcs_server.issuer_section("adcs", auth="kerberos")
    del section["username"], section["password"]
    with pytest.raises(IssuerConfigError) as err:
        _build(section)
    assert "requests-gssapi" in str(err.value)
    assert "issuers.adcs.auth" in str(err.value)


def test_config_problems_name_fields():
    with pytest.raises(IssuerConfigError) as err:
        _build({"name": "a", "type": "adcs", "url": "https://ca/certsrv", "auth": "ntlm"})
    assert "issuer.template" in str(err.value)
    with pytest.raises(IssuerConfigError, match="username and password"):
        _build({"name": "a", "type": "adcs", "url": "https://ca/certsrv", "template": "WebServer", "auth": "ntlm"})
    with pytest.raises(IssuerConfigError, match=r"issuer\.password"):
        _build({"name": "a", "type": "adcs", "url": "https://ca/certsrv", "template": "T", "password": "literal"})


def test_p7b_forms(adcs_server):
    from cryptography.hazmat.primitives.serialization import pkcs7

    certs = [adcs_server.ca.issuing, adcs_server.ca.root]
    der = pkcs7.serialize_certificates(certs, Encoding.DER)
    assert len(parse_pkcs7_or_cert(der)) == 2
    assert len(parse_pkcs7_or_cert(pkcs7.serialize_certificates(certs, Encoding.PEM))) == 2
    assert len(parse_pkcs7_or_cert(adcs_server.ca.issuing.public_bytes(Encoding.PEM))) == 1
    with pytest.raises(ValueError):
        parse_pkcs7_or_cert(b"<html>nope</html>")


def test_server_error_is_transient(adcs_server):
    section = adcs_server.issuer_section("adcs") | {"url": adcs_server.url.replace("/certsrv", "/missing")}
    csr, _ = make_csr("app.example.test")
    # A wrong path is a config mistake: permanent, with the server's words.
    with pytest.raises(PermanentCAError, match="HTTP 404"):
        _build(section).sign(sign_request(csr))
    assert TransientCAError  # 5xx, timeouts and garbage run in tests/conformance against the fault server
