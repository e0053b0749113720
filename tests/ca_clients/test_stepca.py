"""The stepca client (JWK provisioner, /1.0/sign) and the ACME client against a real step-ca."""

from __future__ import annotations

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.registry import build_client
from tests.ca_support import DictSecretResolver, make_csr, make_key, sign_request


def build(section):
    return build_client(section, ClientContext(secrets=DictSecretResolver(), timeout_seconds=15))


def spki(obj) -> bytes:
    key = obj.public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("spec", ["EC-P256", "RSA-2048"])
def test_jwk_provisioner_signs_and_returns_the_chain_leaf_first(stepca, spec):
    csr, key = make_csr("app.example.test", key=make_key(spec), dns=["app.example.test", "api.example.test"])
    chain = build(stepca.jwk_section("step")).sign(sign_request(csr)).certificates
    assert spki(chain[0]) == spki(key)
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"app.example.test", "api.example.test"}
    assert chain[1].subject.rfc4514_string() == "CN=Renewal step-ca Issuing CA"
    chain[0].verify_directly_issued_by(chain[1])


def test_a_replayed_token_is_refused_permanently_with_a_clear_message(stepca):
    client = build(stepca.jwk_section("step")).inner
    csr_der, _ = make_csr("replay.example.test")
    csr = x509.load_der_x509_csr(csr_der)
    token = client.token(csr)
    body = {"csr": sign_request(csr_der).csr_pem.decode(), "ott": token}
    first = requests.post(stepca.url + "/1.0/sign", json=body, verify=stepca.ca_bundle, timeout=10)
    assert first.status_code == 201
    client.token = lambda _csr, **_kw: token  # the same one-time token again
    with pytest.raises(PermanentCAError, match="accepted once"):
        client.sign(sign_request(csr_der))


def test_an_expired_token_is_refused_permanently(stepca):
    client = build(stepca.jwk_section("step")).inner
    csr_der, _ = make_csr("late.example.test")
    stale = client.token(x509.load_der_x509_csr(csr_der), now=0)  # issued in 1970, expired since
    client.token = lambda _csr, **_kw: stale
    with pytest.raises(PermanentCAError, match="refused the token"):
        client.sign(sign_request(csr_der))


def test_a_key_the_provisioner_does_not_know_is_refused(stepca, tmp_path):
    from cryptography.hazmat.primitives import serialization

    other = tmp_path / "other.key"
    other.write_bytes(
        make_key("EC-P256").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    client = build(stepca.jwk_section("step", provisioner_key={"file": str(other)}))
    with pytest.raises(PermanentCAError):
        client.sign(sign_request(make_csr("app.example.test")[0]))


def test_an_unreachable_step_ca_is_transient_and_a_wrong_bundle_permanent(stepca, tmp_path):
    from devtools.processes import free_port

    down = build(stepca.jwk_section("step", url=f"https://127.0.0.1:{free_port()}", timeout_seconds=2))
    with pytest.raises(TransientCAError):
        down.sign(sign_request(make_csr("app.example.test")[0]))
    from emulator.crypto import make_tls_material

    elsewhere, _, _ = make_tls_material(tmp_path / "elsewhere")
    wrong = build(stepca.jwk_section("step", ca_bundle=str(elsewhere)))
    with pytest.raises(PermanentCAError, match="TLS"):
        wrong.sign(sign_request(make_csr("app.example.test")[0]))


def test_the_bundle_is_passed_per_request_whatever_requests_ca_bundle_says(stepca, tmp_path, monkeypatch):
    from emulator.crypto import make_tls_material

    elsewhere, _, _ = make_tls_material(tmp_path / "env-bundle")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(elsewhere))
    csr, key = make_csr("env.example.test")
    assert spki(build(stepca.jwk_section("step")).sign(sign_request(csr)).leaf) == spki(key)


def test_acme_client_against_step_cas_acme_provisioner_with_dns01(stepca):
    csr, key = make_csr("acme.example.test", dns=["acme.example.test", "www.acme.example.test"])
    chain = build(stepca.acme_section("step-acme")).sign(sign_request(csr)).certificates
    assert spki(chain[0]) == spki(key)
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["acme.example.test", "www.acme.example.test"]
    assert chain[1].subject.rfc4514_string() == "CN=Renewal step-ca Issuing CA"
