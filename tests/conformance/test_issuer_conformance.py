"""Issuer conformance (after cert-manager's): every CA client, through the registry, keeps the contract.

Each case runs against every target in ``conftest.TARGETS``: key types, SAN kinds (supported ones
are issued, the others refused as permanent), chain order, and the CA failing in the ways that
happen in production, each mapped to the outcome the orchestrator expects.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca_clients import ClientContext, IssuedChain, PermanentCAError, TransientCAError
from ca_clients.registry import build_client
from tests.ca_support import KEY_SPECS, DictSecretResolver, make_csr, make_key, sign_request
from tests.conformance.conftest import Target
from tests.servers import free_port

FAULT_TIMEOUT_SECONDS = 1.0

SAN_CASES: dict[str, dict[str, list[str]]] = {
    "dns": {"dns": ["app.example.test", "www.app.example.test"]},
    "ip": {"dns": ["app.example.test"], "ips": ["192.0.2.10"]},
    "email": {"dns": ["app.example.test"], "emails": ["ops@app.example.test"]},
    "uri": {"dns": ["app.example.test"], "uris": ["spiffe://app.example.test/web"]},
}


def _client(section: dict):
    return build_client(section, ClientContext(secrets=DictSecretResolver()))


def _spki(obj) -> bytes:
    return obj.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _assert_good_chain(chain: IssuedChain, csr_der: bytes, target: Target) -> None:
    csr = x509.load_der_x509_csr(csr_der)
    assert _spki(chain.leaf) == _spki(csr), "leaf must carry the CSR's key"
    assert chain.issuer_name, "the chain names its issuer"
    for cert, issuer in zip(chain.certificates, chain.certificates[1:], strict=False):
        cert.verify_directly_issued_by(issuer)  # leaf first, each signed by the next
    if target.trust_anchor_pem:
        anchors = x509.load_pem_x509_certificates(target.trust_anchor_pem.encode())
        top = chain.certificates[-1]
        assert any(top == a or top.issuer == a.subject for a in anchors), "the chain must lead to the trust anchor"


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@pytest.mark.parametrize("key_spec", list(KEY_SPECS))
def test_key_types(target: Target, key_spec: str) -> None:
    csr, _ = make_csr("app.example.test", key=make_key(key_spec))
    chain = _client(target.section()).sign(sign_request(csr, request_id=f"keys-{key_spec}"))
    _assert_good_chain(chain, csr, target)
    assert "app.example.test" in _sans(chain.leaf).get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("kind", list(SAN_CASES))
def test_san_kinds(target: Target, kind: str, request: pytest.FixtureRequest) -> None:
    target.expect_gap(request, f"san-{kind}")
    names = SAN_CASES[kind]
    csr, _ = make_csr("app.example.test", **names)
    client = _client(target.section())
    if kind not in target.san_kinds:
        try:
            chain = client.sign(sign_request(csr, request_id=f"san-{kind}"))
        except PermanentCAError:
            return
        pytest.fail(
            f"{target.name} does not issue {kind} SANs, yet returned a chain instead of refusing "
            f"(leaf SANs: {_sans(chain.leaf)})"
        )
    chain = client.sign(sign_request(csr, request_id=f"san-{kind}"))
    _assert_good_chain(chain, csr, target)
    sans = _sans(chain.leaf)
    assert set(names.get("dns", [])) <= set(sans.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address(i) for i in names.get("ips", [])} <= set(sans.get_values_for_type(x509.IPAddress))
    assert set(names.get("emails", [])) <= set(sans.get_values_for_type(x509.RFC822Name))
    assert set(names.get("uris", [])) <= set(sans.get_values_for_type(x509.UniformResourceIdentifier))


def test_chain_order(target: Target) -> None:
    csr, _ = make_csr("chain.app.example.test", dns=["chain.app.example.test"])
    chain = _client(target.section()).sign(sign_request(csr, request_id="chain"))
    _assert_good_chain(chain, csr, target)
    assert len(chain.certificates) >= 2, "intermediates come with the leaf"
    assert not _is_ca(chain.leaf)
    assert all(_is_ca(cert) for cert in chain.certificates[1:])


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:  # leaves often omit basicConstraints
        return False


FAULT_OUTCOMES = {
    "unreachable": TransientCAError,
    "timeout": TransientCAError,
    "5xx": TransientCAError,
    "garbage": TransientCAError,
    "wrong-key": PermanentCAError,
}


@pytest.mark.parametrize("fault", list(FAULT_OUTCOMES))
def test_ca_faults(target: Target, fault: str, fault_servers: dict, request: pytest.FixtureRequest) -> None:
    target.expect_gap(request, f"fault-{fault}")
    spec = target.spec
    assert spec.url_field is not None  # targets without an endpoint are deselected in conftest
    if fault == "unreachable":
        base = f"http://127.0.0.1:{free_port()}"
    else:
        base = fault_servers[fault].url
    # The fault servers are plain-HTTP stand-ins on loopback: the section opts out of the HTTPS rule.
    section = target.section() | {
        spec.url_field: base + spec.url_path,
        "timeout_seconds": FAULT_TIMEOUT_SECONDS,
        "allow_insecure_http": True,
    }
    csr, _ = make_csr("app.example.test")
    started = time.monotonic()
    with pytest.raises(FAULT_OUTCOMES[fault]) as err:
        _client(section).sign(sign_request(csr, request_id=f"fault-{fault}"))
    assert err.value.message, "the outcome explains itself"
    if fault == "timeout":
        assert time.monotonic() - started < 30 * FAULT_TIMEOUT_SECONDS, "the section's timeout bounds the wait"
