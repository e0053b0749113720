"""What the Azure SDK's own certificates tests (azure-keyvault-certificates 4.12.0) expect of Key Vault,
through the real SDK against the emulator: the three things the service accepts that the emulator once
refused (reference/keyvault.md §7)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, PlatformManaged
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulator.testing import EmulatorHandle
from tests.emulator.support import TestCA


def _pending_csr(client, name: str) -> bytes:
    policy = CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.example.com")
    return bytes(client.begin_create_certificate(name, policy).result().csr)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda der: der, id="der"),
        # The SDK's merge sample and test: the PEM body without its header lines, as bytes.
        pytest.param(lambda der: base64.b64encode(der), id="base64-text-of-der"),
        pytest.param(
            lambda der: x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM), id="pem"
        ),
    ],
)
def test_merge_takes_der_the_base64_text_of_der_and_pem(kv: EmulatorHandle, encode) -> None:
    client = kv.certificate_client("kv-alpha")
    ca = TestCA()
    csr = _pending_csr(client, "merged")
    leaf = ca.sign(csr)
    merged = client.merge_certificate("merged", [encode(leaf), encode(ca.der)])
    assert bytes(merged.cer) == leaf


def test_merge_of_bytes_that_are_no_certificate_is_still_bad_parameter(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    _pending_csr(client, "garbage")
    with pytest.raises(HttpResponseError) as err:
        client.merge_certificate("garbage", [b"bm90IGEgY2VydGlmaWNhdGU="])  # base64 text of plain words
    assert err.value.status_code == 400 and "BadParameter" in str(err.value)


def _long_lived_certificate() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * 120))  # beyond a user policy's 1200 months
        .sign(key, hashes.SHA256())
    )
    return key, cert


def test_import_without_a_policy_derives_one_and_does_not_validate_it_as_user_input(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    key, cert = _long_lived_certificate()
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.NoEncryption())
    imported = client.import_certificate("from-pfx", pfx)
    assert bytes(imported.cer) == cert.public_bytes(serialization.Encoding.DER)
    assert client.get_certificate_policy("from-pfx").content_type == CertificateContentType.pkcs12

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    client.import_certificate("from-pem", pem)
    assert client.get_certificate_policy("from-pem").content_type == CertificateContentType.pem


def test_a_user_policy_is_still_held_to_its_ranges(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    with pytest.raises(HttpResponseError, match="validity_months"):
        client.begin_create_certificate(
            "too-long", CertificatePolicy(issuer_name="Unknown", subject="CN=x", validity_in_months=5000)
        )


def test_a_platform_managed_policy_needs_no_names_and_is_returned_as_sent(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha", api_version="2026-04-01")
    managed = PlatformManaged(certificate_usage="ServerAuthentication", metadata={"owner": "platform", "tier": 2})
    client.begin_create_certificate("platform", CertificatePolicy(issuer_name="Unknown", platform_managed=managed))
    back = client.get_certificate_policy("platform").platform_managed
    assert back is not None and back.certificate_usage == "ServerAuthentication"
    assert back.metadata == {"owner": "platform", "tier": 2}
