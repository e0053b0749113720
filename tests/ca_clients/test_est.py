"""The EST client against the loopback EST server (real HTTPS, Basic and client-certificate auth)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca_clients import ClientContext, IssuancePending, PermanentCAError, TransientCAError
from ca_clients.est import parse_certs_only, parse_retry_after
from ca_clients.registry import IssuerConfigError, build_client
from tests.ca_support import DictSecretResolver, make_csr, sign_request
from tests.servers.est_server import certs_only


def _build(section: dict, **extra):
    return build_client(section, ClientContext(secrets=DictSecretResolver(), extra=extra))


def _spki(obj) -> bytes:
    return obj.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _assert_chain(chain, csr_der: bytes) -> None:
    from cryptography import x509

    assert _spki(chain.leaf) == _spki(x509.load_der_x509_csr(csr_der))
    for cert, issuer in zip(chain.certificates, chain.certificates[1:], strict=False):
        cert.verify_directly_issued_by(issuer)
    assert chain.certificates[-1].issuer == chain.certificates[-1].subject


@pytest.mark.parametrize("auth", ["basic", "client_cert", "both"])
def test_enroll_with_each_auth(est_server, auth):
    section = est_server.issuer_section("est", auth=auth)
    csr, _ = make_csr("app.example.test")
    chain = _build(section).sign(sign_request(csr))
    _assert_chain(chain, csr)
    assert len(chain.certificates) == 3
    assert chain.issuer_name == "est"
    assert est_server.requests_for(section["label"]) == [("simpleenroll", "POST")]


def test_simplereenroll_uses_its_endpoint(est_server):
    section = est_server.issuer_section("est", operation="simplereenroll")
    csr, _ = make_csr("re.app.example.test")
    _assert_chain(_build(section).sign(sign_request(csr)), csr)
    assert est_server.requests_for(section["label"]) == [("simplereenroll", "POST")]


def test_leaf_only_answer_is_completed_from_cacerts(est_server):
    section = est_server.issuer_section("est", mode="leaf-only")
    client = _build(section)
    for host in ("a.app.example.test", "b.app.example.test"):
        csr, _ = make_csr(host)
        chain = client.sign(sign_request(csr))
        _assert_chain(chain, csr)
        assert len(chain.certificates) == 3
    # /cacerts is fetched once and cached.
    assert est_server.requests_for(section["label"]).count(("cacerts", "GET")) == 1


def test_pem_pkcs7_answer(est_server):
    section = est_server.issuer_section("est", pem=True, mode="leaf-only")
    csr, _ = make_csr("pem.app.example.test")
    _assert_chain(_build(section).sign(sign_request(csr)), csr)


def test_pending_then_issued_by_resending(est_server):
    section = est_server.issuer_section("est", mode="pending", pending_times=2, retry_after="7")
    client = _build(section)
    csr, _ = make_csr("slow.app.example.test")
    with pytest.raises(IssuancePending) as first:
        client.sign(sign_request(csr))
    assert first.value.retry_after == dt.timedelta(seconds=7)
    assert first.value.ticket["attempts"] == 1
    with pytest.raises(IssuancePending) as second:
        client.sign(sign_request(csr, ticket=first.value.ticket))
    assert second.value.ticket["attempts"] == 2
    chain = client.sign(sign_request(csr, ticket=second.value.ticket))
    _assert_chain(chain, csr)
    assert est_server.requests_for(section["label"]).count(("simpleenroll", "POST")) == 3


def test_pending_with_http_date(est_server):
    section = est_server.issuer_section("est", mode="pending", pending_times=1, retry_after="http-date")
    csr, _ = make_csr("date.app.example.test")
    with pytest.raises(IssuancePending) as pending:
        _build(section).sign(sign_request(csr))
    assert dt.timedelta(seconds=20) < pending.value.retry_after <= dt.timedelta(seconds=31)


@pytest.mark.parametrize(
    ("status", "text", "outcome"),
    [
        (400, "Bad Request: CSR subject not permitted by policy", PermanentCAError),
        (401, "unauthorized", PermanentCAError),
        (403, "forbidden by RA", PermanentCAError),
        (404, "no such CA label", PermanentCAError),
        (500, "internal error", TransientCAError),
        (503, "busy", TransientCAError),
    ],
)
def test_error_statuses(est_server, status, text, outcome):
    section = est_server.issuer_section("est", mode="error", error_status=status, error_text=text)
    csr, _ = make_csr("err.app.example.test")
    with pytest.raises(outcome) as err:
        _build(section).sign(sign_request(csr))
    assert text in err.value.message
    assert f"HTTP {status}" in err.value.message


def test_wrong_password_is_permanent_and_not_echoed(est_server, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-42")
    section = est_server.issuer_section("est") | {"password": {"file": str(wrong)}}
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError) as err:
        _build(section).sign(sign_request(csr))
    assert "401" in err.value.message
    assert "not-the-password-42" not in str(err.value)
    assert "not-the-password-42" not in repr(_build(section))


def test_missing_client_cert_is_permanent(est_server):
    section = est_server.issuer_section("est", auth="client_cert")
    del section["client_certificate"], section["client_key"]
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError, match="403"):
        _build(section).sign(sign_request(csr))


def test_garbage_is_transient(est_server):
    section = est_server.issuer_section("est", mode="garbage")
    csr, _ = make_csr("app.example.test")
    with pytest.raises(TransientCAError, match="not a certs-only PKCS#7"):
        _build(section).sign(sign_request(csr))


def test_untrusted_server_is_refused(est_server):
    section = est_server.issuer_section("est")
    del section["ca_bundle"]
    csr, _ = make_csr("app.example.test")
    with pytest.raises(PermanentCAError, match="TLS handshake"):
        _build(section).sign(sign_request(csr))


def test_csr_goes_out_as_base64_pkcs10(est_server):
    # The server rejects anything but base64 DER with 400; a bare 200 proves the encoding.
    section = est_server.issuer_section("est", auth="none")
    csr, _ = make_csr("app.example.test")
    _assert_chain(_build(section).sign(sign_request(csr)), csr)


def test_config_problems_name_fields():
    with pytest.raises(IssuerConfigError) as err:
        _build({"name": "e", "type": "est", "url": "ftp://x", "username": "u", "operation": "enroll"})
    text = str(err.value)
    assert "issuer.url" in text
    assert "issuer.operation" in text
    with pytest.raises(IssuerConfigError, match="password"):
        _build({"name": "e", "type": "est", "url": "https://x", "password": "literal"})


def test_retry_after_forms():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    default = dt.timedelta(seconds=60)
    assert parse_retry_after("120", now=now, default=default) == dt.timedelta(seconds=120)
    assert parse_retry_after("Thu, 01 Jan 2026 00:05:00 GMT", now=now, default=default) == dt.timedelta(minutes=5)
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now, default=default) == dt.timedelta(0)
    assert parse_retry_after("soon", now=now, default=default) == default
    assert parse_retry_after(None, now=now, default=default) == default


def test_parse_certs_only_forms(est_server):
    certs = [est_server.ca.issuing, est_server.ca.root]
    der_b64 = certs_only(certs)
    assert len(parse_certs_only(der_b64)) == 2
    assert len(parse_certs_only(certs_only(certs, pem=True))) == 2
    assert len(parse_certs_only(base64.b64decode(der_b64))) == 2
    for junk in (b"", b"hello world", base64.b64encode(b"\x30\x03\x02\x01\x00")):
        with pytest.raises(ValueError):
            parse_certs_only(junk)
