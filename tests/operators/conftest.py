"""Operator-facing tests run against the same stack as the flow tests: the Key Vault emulator over
HTTPS, Azurite and a local CA. Certificates that break a rule are real ones built here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from renewal.config import ComplianceConfig
from renewal.operations import cli
from renewal.service import RenewalService
from tests.flow.conftest import Flow, flow, hook  # noqa: F401 - fixtures re-exported

DAY = dt.timedelta(days=1)


def rebuilt(stack: Flow, **config_update: Any) -> RenewalService:
    """The flow's service with parts of its configuration replaced (same emulator and Azurite)."""
    config = stack.service.config.model_copy(update=config_update)
    return RenewalService(
        config,
        environ=stack.environ,
        storage=stack.storage,
        clock=stack.service.clock,
        keyvault_options={"sleep": lambda _s: None},
    )


def strict(stack: Flow, **thresholds: Any) -> RenewalService:
    return rebuilt(stack, compliance=ComplianceConfig(**thresholds))


@pytest.fixture
def use_service(flow: Flow) -> Iterator[Any]:  # noqa: F811
    """Point the CLI at a service (the flow's by default) for the duration of a test."""
    chosen: dict[str, Any] = {"service": flow.service}
    previous = cli.service_factory
    cli.service_factory = lambda: chosen["service"]

    def use(service: RenewalService) -> None:
        chosen["service"] = service

    yield use
    cli.service_factory = previous


# -- certificate material --------------------------------------------------------------------------
def make_key(kind: str = "rsa2048") -> Any:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p224": ec.SECP224R1()}[kind])


def make_certificate(
    key: Any,
    *,
    common_name: str,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: Any = None,
    days: float = 90,
    start: dt.datetime | None = None,
    algorithm: Any = None,
    dns: list[str] | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    begin = start or dt.datetime.now(dt.UTC) - DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns or [common_name]]), critical=False)
    )
    return builder.sign(issuer_key if issuer_key is not None else key, algorithm or hashes.SHA256())


SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def sha1_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    """A self-signed RSA certificate signed with SHA-1. cryptography no longer signs certificates with
    SHA-1, so this signs with SHA-256, swaps the algorithm OIDs (same length) and re-signs the TBS."""
    from cryptography.hazmat.primitives.asymmetric import padding

    cert = make_certificate(key, common_name=common_name)
    der = cert.public_bytes(serialization.Encoding.DER).replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    tbs = cert.tbs_certificate_bytes.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    return x509.load_der_x509_certificate(der.replace(cert.signature, signature))


def pem_bundle(key: Any, chain: list[x509.Certificate]) -> bytes:
    out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return out + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)


def pfx_bundle(key: Any, chain: list[x509.Certificate], password: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import pkcs12

    return pkcs12.serialize_key_and_certificates(
        b"cert", key, chain[0], chain[1:] or None, serialization.BestAvailableEncryption(password.encode())
    )


def local_ca(stack: Flow) -> tuple[x509.Certificate, Any, x509.Certificate]:
    """The flow's issuing CA (certificate, key) and its root."""
    paths = stack.ca_paths
    issuing = x509.load_pem_x509_certificate(paths["ca_certificate"].read_bytes())
    key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), password=None)
    root = x509.load_pem_x509_certificate(paths["root"].read_bytes())
    return issuing, key, root


def import_via_sdk(
    stack: Flow,
    name: str,
    key: Any,
    chain: list[x509.Certificate],
    *,
    vault: str = "kv-alpha",
    tags: dict[str, str] | None = None,
) -> Any:
    """Import straight through the SDK (as a portal user would), bypassing the CLI's checks."""
    from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

    policy = CertificatePolicy(
        issuer_name="Unknown", subject=chain[0].subject.rfc4514_string(), content_type=CertificateContentType.pem
    )
    return stack.client(vault).import_certificate(name, pem_bundle(key, chain), policy=policy, tags=tags)
