"""TLS, challenge auth, api-versions and bad input, checked on the wire with ``requests``."""

from __future__ import annotations

import pytest
import requests
from azure.keyvault.certificates import CertificateClient, CertificatePolicy

from emulator.testing import EmulatorHandle

API = {"api-version": "2026-04-01"}
AUTH = {"Authorization": "Bearer emulator-token"}


def call(kv: EmulatorHandle, method: str, path: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("params", API)
    kwargs.setdefault("headers", AUTH)
    return requests.request(method, kv.vault_url("kv-alpha") + path, verify=kv.ca_bundle, timeout=10, **kwargs)  # type: ignore[arg-type]


def error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def test_first_request_gets_the_challenge(kv: EmulatorHandle) -> None:
    response = call(kv, "GET", "certificates/x/", headers={})
    assert response.status_code == 401 and error_code(response) == "Unauthorized"
    header = response.headers["WWW-Authenticate"]
    assert header.startswith('Bearer authorization="https://login.windows.net/')
    assert 'resource="https://0.0.1:' in header
    malformed = call(kv, "GET", "certificates/x/", headers={"Authorization": "Basic abc"})
    assert malformed.status_code == 401 and "WWW-Authenticate" in malformed.headers


def test_plain_http_and_untrusted_tls_are_refused(kv: EmulatorHandle) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(kv.vault_url("kv-alpha") + "certificates", params=API, timeout=5, verify=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(kv.vault_url("kv-alpha").replace("https", "http") + "certificates", timeout=5)


def test_sdk_with_default_challenge_verification_and_each_supported_api_version(kv: EmulatorHandle) -> None:
    for version in ("7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"):
        client = CertificateClient(
            kv.vault_url("kv-beta"), kv.credential, connection_verify=kv.ca_bundle, api_version=version
        )
        assert list(client.list_properties_of_certificates()) == []


@pytest.mark.parametrize("version", ["7.3", "2016-10-01", "banana", ""])
def test_unsupported_api_versions(kv: EmulatorHandle, version: str) -> None:
    response = call(kv, "GET", "certificates", params={"api-version": version})
    assert response.status_code == 400 and error_code(response) == "BadParameter"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "nothing/here", None, 404),
        ("PUT", "certificates/c1/create", None, 404),
        ("POST", "certificates/c1/create", b"{not json", 400),
        ("POST", "certificates/c1/create", b"[1, 2]", 400),
        ("POST", "certificates/c1/create", b'{"policy": "text"}', 400),
        ("POST", "certificates/c1/create", b'{"policy": {"key_props": {"key_size": "big"}}}', 400),
        ("POST", "certificates/c1/create", b'{"policy": {"x509_props": {"subject": "CN=a"}}, "tags": [1]}', 400),
        ("POST", "certificates/c1/create", b'{"policy": {"x509_props": {"subject": 5}}}', 400),
        ("POST", "certificates/c1/create", b'{"policy": {"x509_props": {"subject": "no-equals"}}}', 400),
        ("POST", "certificates/c1/import", b'{"value": "%%%not base64"}', 400),
        ("POST", "certificates/c1/import", b'{"value": "aGVsbG8="}', 400),
        ("PATCH", "certificates/c1/policy", b'{"key_props": {"kty": "oct"}}', 404),
        ("POST", "certificates/c1/pending/merge", b'{"x5c": "MIIB"}', 400),
        ("GET", "certificates?$skiptoken=garbage", None, 400),
        ("POST", "certificates/c1/create", b"\xff\xfe", 400),
    ],
)
def test_bad_input_gets_the_service_error_shape(
    kv: EmulatorHandle, method: str, path: str, body: bytes | None, status: int
) -> None:
    response = call(kv, method, path, data=body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) >= {"code", "message"}


def test_bad_base64_in_x5c_and_oversized_body(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    client.begin_create_certificate("m1", CertificatePolicy(issuer_name="Unknown", subject="CN=m1")).result()
    response = call(kv, "POST", "certificates/m1/pending/merge", json={"x5c": ["***"]})
    assert response.status_code == 400 and error_code(response) == "BadParameter"
    response = call(kv, "POST", "certificates/m1/pending/merge", json={"x5c": ["aGVsbG8="]})
    assert response.status_code == 400
    response = call(kv, "POST", "certificates/m1/import", data=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413 and error_code(response)
    # The server is still healthy afterwards.
    assert client.get_certificate_operation("m1").status == "inProgress"


def test_cancel_requires_a_boolean_and_an_in_progress_operation(kv: EmulatorHandle) -> None:
    client = kv.certificate_client("kv-alpha")
    client.begin_create_certificate("c9", CertificatePolicy(issuer_name="Unknown", subject="CN=c9")).result()
    assert call(kv, "PATCH", "certificates/c9/pending", json={"cancellation_requested": "yes"}).status_code == 400
    assert call(kv, "PATCH", "certificates/c9/pending", json={"cancellation_requested": True}).status_code == 200
    assert call(kv, "PATCH", "certificates/c9/pending", json={"cancellation_requested": True}).status_code == 400
