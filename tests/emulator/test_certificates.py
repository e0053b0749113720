"""Every certificate operation through the real azure-keyvault-certificates SDK."""

from __future__ import annotations

import base64
import datetime as dt
import threading

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    CertificatePolicyAction,
    KeyCurveName,
    KeyType,
    KeyUsageType,
    LifetimeAction,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulator.testing import EmulatorHandle
from tests.emulator.support import TestCA


def unknown_policy(**kwargs: object) -> CertificatePolicy:
    return CertificatePolicy(issuer_name="Unknown", subject="CN=app.example.com", **kwargs)  # type: ignore[arg-type]


def test_self_signed_create_returns_a_real_certificate(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    cert = client.begin_create_certificate("self1", CertificatePolicy.get_default(), tags={"team": "a"}).result()
    parsed = x509.load_der_x509_certificate(bytes(cert.cer))
    assert parsed.subject == parsed.issuer
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "DefaultPolicy"
    assert cert.properties.tags == {"team": "a"}
    assert cert.policy.issuer_name == "Self"
    assert cert.properties.x509_thumbprint == parsed.fingerprint(hashes.SHA1())
    assert cert.key_id.endswith(f"/keys/self1/{cert.properties.version}")
    assert client.get_certificate_operation("self1").status == "completed"


def test_unknown_issuer_pending_csr_carries_the_policy(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    policy = CertificatePolicy(
        issuer_name="Unknown",
        subject="CN=api.example.com, O=Contoso",
        san_dns_names=["api.example.com", "www.example.com"],
        key_type=KeyType.ec,
        key_curve_name=KeyCurveName.p_384,
        enhanced_key_usage=["1.3.6.1.5.5.7.3.1"],
        key_usage=[KeyUsageType.digital_signature],
    )
    op = client.begin_create_certificate("pend1", policy).result()
    assert op.status == "inProgress" and op.issuer_name == "Unknown"
    csr = x509.load_der_x509_csr(op.csr)
    assert csr.is_signature_valid
    assert (
        csr.subject.rfc4514_string() == "O=Contoso,CN=api.example.com"
        or "CN=api.example.com" in csr.subject.rfc4514_string()
    )
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.name == "secp384r1"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.com", "www.example.com"]
    ekus = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [o.dotted_string for o in ekus] == ["1.3.6.1.5.5.7.3.1"]
    assert csr.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature

    fetched = client.get_certificate_operation("pend1")
    assert fetched.csr == op.csr and fetched.request_id == op.request_id


@pytest.mark.parametrize(("kty", "size"), [(KeyType.rsa, 3072), (KeyType.rsa, 4096)])
def test_rsa_key_sizes(kv: EmulatorHandle, kty: KeyType, size: int) -> None:
    op = (
        kv.certificate_client("kv-alpha")
        .begin_create_certificate(f"rsa{size}", unknown_policy(key_type=kty, key_size=size))
        .result()
    )
    key = x509.load_der_x509_csr(op.csr).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == size


def test_merge_makes_the_new_version_current_and_keeps_the_old_until_then(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    ca = TestCA()
    first = client.begin_create_certificate("renew1", unknown_policy()).result()
    # A first version that is not merged yet is shown disabled, without cer.
    shown = client.get_certificate("renew1")
    assert shown.cer is None and shown.properties.enabled is False
    v1 = client.merge_certificate("renew1", [ca.sign(first.csr), ca.der])
    assert v1.properties.enabled

    second = client.begin_create_certificate("renew1", unknown_policy()).result()
    assert second.csr != first.csr
    assert client.get_certificate("renew1").properties.version == v1.properties.version
    with pytest.raises(ResourceExistsError) as exc:
        client.begin_create_certificate("renew1", unknown_policy())
    assert exc.value.status_code == 409 and exc.value.error.code == "Forbidden"

    v2 = client.merge_certificate("renew1", [ca.sign(second.csr), ca.der], tags={"renewed": "yes"})
    assert v2.properties.version != v1.properties.version
    current = client.get_certificate("renew1")
    assert current.properties.version == v2.properties.version and current.properties.tags == {"renewed": "yes"}
    assert client.get_certificate_version("renew1", v1.properties.version).cer == v1.cer
    op = client.get_certificate_operation("renew1")
    assert op.status == "completed" and op.target.endswith("/certificates/renew1")
    versions = list(client.list_properties_of_certificate_versions("renew1"))
    assert {v.version for v in versions} == {v1.properties.version, v2.properties.version}


def test_merge_with_a_foreign_key_is_refused(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    ca = TestCA()
    op = client.begin_create_certificate("wrongkey", unknown_policy()).result()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(HttpResponseError) as exc:
        client.merge_certificate("wrongkey", [ca.sign(op.csr, public_key=other)])
    assert exc.value.status_code == 400 and exc.value.error.code == "BadParameter"
    assert "does not match the public part" in exc.value.error.message
    assert client.get_certificate_operation("wrongkey").status == "inProgress"


def test_pending_operation_cancel_delete_and_request_id_filter(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    op = client.begin_create_certificate("cancel1", unknown_policy()).result()
    canceled = client.cancel_certificate_operation("cancel1")
    assert canceled.cancellation_requested and canceled.status == "canceled"
    # A canceled operation no longer blocks a new create, which replaces it.
    new = client.begin_create_certificate("cancel1", unknown_policy()).result()
    assert new.request_id != op.request_id
    deleted = client.delete_certificate_operation("cancel1")
    assert deleted.request_id == new.request_id
    with pytest.raises(ResourceNotFoundError) as exc:
        client.get_certificate_operation("cancel1")
    assert exc.value.error.code == "PendingCertificateNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate("cancel1")

    import requests

    client.begin_create_certificate("filter1", unknown_policy()).result()
    real = client.get_certificate_operation("filter1").request_id
    url = kv.vault_url("kv-alpha") + "certificates/filter1/pending"
    headers = {"Authorization": "Bearer t"}
    params = {"api-version": "2026-04-01"}
    assert (
        requests.get(url, params=params | {"request_id": real}, headers=headers, verify=kv.ca_bundle).status_code == 200
    )
    miss = requests.get(url, params=params | {"request_id": "nope"}, headers=headers, verify=kv.ca_bundle)
    assert miss.status_code == 404 and miss.json()["error"]["code"] == "PendingCertificateNotFound"


def test_update_properties_and_tags(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    cert = client.begin_create_certificate("upd1", CertificatePolicy.get_default()).result()
    props = client.update_certificate_properties("upd1", enabled=False, tags={"a": "1"})
    assert props.properties.enabled is False and props.properties.tags == {"a": "1"}
    props = client.update_certificate_properties("upd1", cert.properties.version, enabled=True)
    assert props.properties.enabled is True and props.properties.tags == {"a": "1"}
    with pytest.raises(ResourceNotFoundError) as exc:
        client.get_certificate("missing")
    assert exc.value.error.code == "CertificateNotFound"


def test_paging_over_sixty_certificates(kv: EmulatorHandle) -> None:
    kv.admin.seed("kv-alpha", count=60, prefix="page")
    client = kv.certificate_client("kv-alpha")
    pages = list(client.list_properties_of_certificates(max_page_size=25).by_page())
    sizes = [len(list(p)) for p in pages]
    assert sizes == [25, 25, 10]
    names = [c.name for c in client.list_properties_of_certificates(max_page_size=25)]
    assert len(names) == len(set(names)) == 60
    import requests

    raw = requests.get(
        kv.vault_url("kv-alpha") + "certificates",
        params={"api-version": "7.6", "maxresults": "25"},
        headers={"Authorization": "Bearer t"},
        verify=kv.ca_bundle,
    ).json()
    port = kv.vault_url("kv-alpha").rsplit(":", 1)[1].rstrip("/")
    assert f":{port}/certificates?" in raw["nextLink"] and "$skiptoken=" in raw["nextLink"]
    assert set(raw["value"][0]) == {"id", "attributes", "tags", "x5t"}
    for bad in ("0", "26", "x"):
        bad_page = requests.get(
            kv.vault_url("kv-alpha") + "certificates",
            params={"api-version": "7.6", "maxresults": bad},
            headers={"Authorization": "Bearer t"},
            verify=kv.ca_bundle,
        )
        assert bad_page.status_code == 400 and bad_page.json()["error"]["code"] == "BadParameter"


def test_list_include_pending(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-beta")
    client.begin_create_certificate("done", CertificatePolicy.get_default()).result()
    client.begin_create_certificate("waiting", unknown_policy()).result()
    assert [c.name for c in client.list_properties_of_certificates()] == ["done"]
    assert sorted(c.name for c in client.list_properties_of_certificates(include_pending=True)) == ["done", "waiting"]
    # Vaults are separate.
    assert list(kv.certificate_client("kv-alpha").list_properties_of_certificates()) == []


def test_policy_get_update_and_validation(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    policy = unknown_policy(
        validity_in_months=6,
        content_type=CertificateContentType.pem,
        lifetime_actions=[LifetimeAction(CertificatePolicyAction.email_contacts, days_before_expiry=30)],
    )
    client.begin_create_certificate("pol1", policy).result()
    got = client.get_certificate_policy("pol1")
    assert got.validity_in_months == 6 and got.content_type == CertificateContentType.pem
    assert got.lifetime_actions[0].days_before_expiry == 30
    new_policy = unknown_policy(
        validity_in_months=6,
        lifetime_actions=[LifetimeAction(CertificatePolicyAction.email_contacts, lifetime_percentage=70)],
    )
    updated = client.update_certificate_policy("pol1", new_policy)
    assert updated.lifetime_actions[0].lifetime_percentage == 70
    assert client.get_certificate_policy("pol1").lifetime_actions[0].lifetime_percentage == 70

    bad_cases = [
        unknown_policy(lifetime_actions=[LifetimeAction(CertificatePolicyAction.auto_renew, lifetime_percentage=100)]),
        unknown_policy(
            validity_in_months=1,
            lifetime_actions=[LifetimeAction(CertificatePolicyAction.email_contacts, days_before_expiry=28)],
        ),
        unknown_policy(key_type=KeyType.rsa, key_size=1024),
        unknown_policy(key_type=KeyType.ec, key_curve_name=KeyCurveName.p_256_k),
    ]
    for bad in bad_cases:
        with pytest.raises(HttpResponseError) as exc:
            client.begin_create_certificate("polbad", bad)
        assert exc.value.status_code == 400 and exc.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as exc:
        client.begin_create_certificate("bad_name!", unknown_policy())
    assert exc.value.status_code == 400


def _key_and_chain() -> tuple[rsa.RSAPrivateKey, x509.Certificate, TestCA]:
    ca = TestCA()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported.example.com")]))
        .sign(key, hashes.SHA256())
    )
    leaf = x509.load_der_x509_certificate(ca.sign(csr.public_bytes(serialization.Encoding.DER), days=200))
    return key, leaf, ca


def test_import_pfx_with_chain_and_secret_is_pkcs12(kv: EmulatorHandle) -> None:
    key, leaf, ca = _key_and_chain()
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key, leaf, [ca.cert], serialization.BestAvailableEncryption(b"pw")
    )
    client = kv.certificate_client("kv-alpha")
    cert = client.import_certificate("imp-pfx", pfx, password="pw", tags={"src": "pfx"})
    assert bytes(cert.cer) == leaf.public_bytes(serialization.Encoding.DER)
    assert cert.policy.content_type == CertificateContentType.pkcs12
    assert cert.properties.expires_on == leaf.not_valid_after_utc
    secret = kv.secret_client("kv-alpha").get_secret("imp-pfx", cert.properties.version)
    assert secret.properties.content_type == "application/x-pkcs12"
    got_key, got_leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert got_key is not None and got_leaf == leaf and extra == [ca.cert]


def test_import_pem_with_chain_and_secret_is_pem(kv: EmulatorHandle) -> None:
    key, leaf, ca = _key_and_chain()
    pem = (
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + leaf.public_bytes(serialization.Encoding.PEM)
        + ca.cert.public_bytes(serialization.Encoding.PEM)
    )
    client = kv.certificate_client("kv-alpha")
    policy = CertificatePolicy(
        issuer_name="Unknown", subject="CN=imported.example.com", content_type="application/x-pem-file"
    )
    cert = client.import_certificate("imp-pem", pem, policy=policy)
    assert cert.policy.content_type == CertificateContentType.pem
    secret = kv.secret_client("kv-alpha").get_secret("imp-pem")
    assert secret.properties.content_type == "application/x-pem-file"
    assert "PRIVATE KEY" in secret.value and secret.value.count("BEGIN CERTIFICATE") == 2


def test_non_exportable_secret_has_no_private_key(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    ca = TestCA()
    # The SDK drops a lone exportable=False, so the key type goes along.
    op = client.begin_create_certificate("noexp", unknown_policy(exportable=False, key_type=KeyType.rsa)).result()
    cert = client.merge_certificate("noexp", [ca.sign(op.csr), ca.der])
    secret = kv.secret_client("kv-alpha").get_secret("noexp", cert.properties.version)
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    # Without a key the PKCS#12 holds certificates only (leaf and issuer).
    assert key is None and leaf is None and len(extra) == 2
    assert kv.admin.counters("kv-alpha")["get_secret"] == 1


def test_soft_delete_recover_and_purge(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    client.begin_create_certificate("del1", CertificatePolicy.get_default()).result()
    deleted = client.begin_delete_certificate("del1").result()
    assert deleted.recovery_id.endswith("/deletedcertificates/del1")
    assert deleted.scheduled_purge_date - deleted.deleted_on == dt.timedelta(days=90)
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate("del1")
    assert [d.name for d in client.list_deleted_certificates()] == ["del1"]
    with pytest.raises(ResourceExistsError) as exc:
        client.begin_create_certificate("del1", CertificatePolicy.get_default())
    assert exc.value.error.code == "Conflict"
    recovered = client.begin_recover_deleted_certificate("del1").result()
    assert recovered.name == "del1" and client.get_certificate("del1").cer == recovered.cer

    client.begin_delete_certificate("del1").result()
    client.purge_deleted_certificate("del1")
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_certificate("del1")
    assert list(client.list_deleted_certificates()) == []
    client.begin_create_certificate("del1", CertificatePolicy.get_default()).result()


def test_twenty_concurrent_clients(kv: EmulatorHandle) -> None:
    kv.admin.seed("kv-beta", count=20, prefix="conc")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            client = kv.certificate_client("kv-beta")
            for _ in range(5):
                assert client.get_certificate(f"conc-{i}").name == f"conc-{i}"
            client.update_certificate_properties(f"conc-{i}", tags={"worker": str(i)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kv.admin.counters("kv-beta")["get_certificate"] == 100
    tags = {c.name: c.tags for c in kv.certificate_client("kv-beta").list_properties_of_certificates()}
    assert tags["conc-7"] == {"worker": "7"}
