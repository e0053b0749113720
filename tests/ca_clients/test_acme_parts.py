"""ACME client parts without a CA: ARI, config validation, error mapping, the web-hook and Azure solvers.

Servers here are tiny real HTTP(S) servers on free loopback ports (an ARI directory, a DNS web hook,
an Azure Resource Manager stand-in for record sets), so the SDKs and requests go over real sockets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from acme import errors, messages
from acme.client import _renewal_info_path_component
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ca_clients import ClientContext, PermanentCAError, TransientCAError
from ca_clients.acme import (
    PERMANENT_CODES,
    AcmeClient,
    Config,
    _jwk_for,
    _retry_after_seconds,
    ari_cert_id,
    build,
    generate_account_key_pem,
    parse_renewal_info,
)
from ca_clients.acme_dns import (
    AzureDnsConfig,
    AzureDnsSolver,
    AzurePrivateDnsConfig,
    AzurePrivateDnsSolver,
    WebhookDnsConfig,
    WebhookSolver,
    build_solver,
)
from ca_clients.registry import validate_section
from tests.ca_support import DictSecretResolver

# --- small real servers ---------------------------------------------------------------------------


Route = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]


def serve(route: Route, *, tls_dir: Path | None = None) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload = route(self, body)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls_dir is not None:
        from tests.servers.pebble import _write_tls_listener

        tls_dir.mkdir(parents=True, exist_ok=True)
        _write_tls_listener(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_reply(status: int, obj: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(obj).encode()


def make_cert(serial: int, aki: bytes | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC))
    )
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


def client_for(directory_url: str, tmp_path: Path, **config: Any) -> AcmeClient:
    cfg = Config.model_validate(
        {"directory_url": directory_url, "account_key": {"file": str(tmp_path / "account.pem")}, **config}
    )
    return build("ari", cfg, ClientContext(secrets=DictSecretResolver(), timeout_seconds=5))


# --- ARI -----------------------------------------------------------------------------------------


def test_ari_cert_id_matches_rfc9773_example() -> None:
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert = make_cert(0x87654321, aki)  # top bit set: DER needs a leading 0x00
    assert ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0x1234, x509.random_serial_number()])
def test_ari_cert_id_agrees_with_the_acme_package(serial: int) -> None:
    cert = make_cert(serial, bytes(range(20)))
    assert ari_cert_id(cert) == _renewal_info_path_component(cert)


def test_ari_cert_id_needs_an_aki() -> None:
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        ari_cert_id(make_cert(5, None))


def test_parse_renewal_info_window() -> None:
    start, end = parse_renewal_info(
        {"suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00.123+02:00"}}
    )
    assert start == dt.datetime(2025, 1, 2, 4, tzinfo=dt.UTC)
    assert end == dt.datetime(2025, 1, 3, 2, 0, 0, 123000, tzinfo=dt.UTC)
    for bad in (
        {},
        {"suggestedWindow": {"start": "soon"}},
        {"suggestedWindow": {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}},
    ):
        with pytest.raises(ValueError):
            parse_renewal_info(bad)


@pytest.fixture
def ari_server() -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    seen: list[str] = []
    state: dict[str, Any] = {"renewal_info": True, "status": 200}

    def route(handler: BaseHTTPRequestHandler, body: bytes):
        base = f"http://127.0.0.1:{handler.server.server_address[1]}"
        if handler.path == "/dir":
            directory = {"newNonce": f"{base}/nonce", "newAccount": f"{base}/acct", "newOrder": f"{base}/order"}
            if state["renewal_info"]:
                directory["renewalInfo"] = f"{base}/renewal-info"
            return json_reply(200, directory)
        if handler.path.startswith("/renewal-info/"):
            seen.append(handler.path.removeprefix("/renewal-info/"))
            if state["status"] != 200:
                return json_reply(state["status"], {"type": "urn:ietf:params:acme:error:malformed"})
            window = {"start": "2030-05-01T00:00:00Z", "end": "2030-05-03T00:00:00Z"}
            return json_reply(200, {"suggestedWindow": window}, **{"Retry-After": "21600"})
        return json_reply(404, {})

    for url in serve(route):
        yield url, seen, state


def test_renewal_window_from_a_directory_with_renewal_info(ari_server, tmp_path: Path) -> None:
    url, seen, state = ari_server
    cert = make_cert(0x87654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))
    client = client_for(f"{url}/dir", tmp_path)

    assert client.renewal_window(cert) == (
        dt.datetime(2030, 5, 1, tzinfo=dt.UTC),
        dt.datetime(2030, 5, 3, tzinfo=dt.UTC),
    )
    assert seen == ["aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"]

    state["status"] = 404
    assert client.renewal_window(cert) is None
    state["status"] = 503
    with pytest.raises(TransientCAError):
        client.renewal_window(cert)


def test_renewal_window_is_none_without_renewal_info(ari_server, tmp_path: Path) -> None:
    url, seen, state = ari_server
    state["renewal_info"] = False
    assert client_for(f"{url}/dir", tmp_path).renewal_window(make_cert(7, b"\x01" * 20)) is None
    assert seen == []


# --- config, keys, outcomes ----------------------------------------------------------------------


def section(**kw: Any) -> dict[str, Any]:
    return {
        "name": "a",
        "type": "acme",
        "directory_url": "https://acme.example.test/dir",
        "account_key": {"secret": "https://cfg.vault.azure.net/secrets/acme-account"},
        **kw,
    }


def test_config_names_the_field_of_each_problem() -> None:
    assert validate_section(section(), path="issuers[0]") == []
    problems = [str(p) for p in validate_section(section(account_key="-----BEGIN PRIVATE KEY-----"), path="i")]
    assert problems and problems[0].startswith("i.account_key")
    assert "BEGIN" not in " ".join(problems[0].split(":", 1)[1:]).split("must be")[0]
    assert any("eab_kid and eab_hmac_key" in str(p) for p in validate_section(section(eab_kid="k"), path="i"))
    bad_dns = validate_section(section(dns={"provider": "route53"}), path="i")
    assert bad_dns and str(bad_dns[0]).startswith("i.dns")
    good_dns = section(
        dns={"provider": "azure", "subscription_id": "s", "resource_group": "rg", "zone_name": "example.test"},
        eab_kid="kid",
        eab_hmac_key={"setting": "ACME_EAB_KEY"},
        eab_hmac_alg="HS512",
        propagation={"nameservers": ["10.0.0.4:53"], "timeout_seconds": 300},
    )
    assert validate_section(good_dns, path="i") == []


def test_generated_account_key_and_rsa_keys_load() -> None:
    key = serialization.load_pem_private_key(generate_account_key_pem().encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    rsa_pem = (
        rsa.generate_private_key(65537, 2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    assert _jwk_for(rsa_pem, "f")[1].name == "RS256"
    with pytest.raises(PermanentCAError, match="not an unencrypted PEM") as failure:
        _jwk_for("not a key at all", "issuers.a.account_key")
    assert "not a key at all" not in str(failure.value)


def test_key_vault_secret_reference_is_read_through_the_resolver(tmp_path: Path) -> None:
    uri = "https://cfg.vault.azure.net/secrets/acme-account"
    resolver = DictSecretResolver(values={uri: generate_account_key_pem()})
    cfg = Config.model_validate({"directory_url": "https://x/dir", "account_key": {"secret": uri}})
    client = build("kv", cfg, ClientContext(secrets=resolver))
    assert resolver.asked == ["issuers.kv.account_key"]
    assert client.name == "kv"


def test_retry_after_header_forms() -> None:
    response = requests.Response()
    assert _retry_after_seconds(response, 7) == 7
    response.headers["Retry-After"] = "42"
    assert _retry_after_seconds(response, 7) == 42
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    response.headers["Retry-After"] = future.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 100 < _retry_after_seconds(response, 7) <= 120


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        *[(c, PermanentCAError) for c in sorted(PERMANENT_CODES)],
        ("rateLimited", TransientCAError),
        ("serverInternal", TransientCAError),
        ("badNonce", TransientCAError),
    ],
)
def test_acme_problem_types_map_to_outcomes(tmp_path: Path, code: str, outcome: type) -> None:
    client = client_for("https://127.0.0.1:1/dir", tmp_path)
    mapped = client._map_error(messages.Error(typ=messages.ERROR_PREFIX + code, detail=f"detail of {code}"))
    assert type(mapped) is outcome
    assert f"detail of {code}" in mapped.message and mapped.issuer == "ari"


def test_http_failures_map_to_outcomes(tmp_path: Path) -> None:
    client = client_for("https://127.0.0.1:1/dir", tmp_path)

    def response(status: int, **headers: str) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r.headers.update(headers)
        return r

    assert isinstance(client._map_error(errors.ClientError(response(503, **{"Retry-After": "30"}))), TransientCAError)
    assert client._map_error(errors.ClientError(response(503, **{"Retry-After": "30"}))).retry_after == dt.timedelta(
        seconds=30
    )
    assert isinstance(client._map_error(errors.ClientError(response(404))), PermanentCAError)
    assert isinstance(client._map_error(errors.TimeoutError()), TransientCAError)
    assert isinstance(client._map_error(requests.ReadTimeout()), TransientCAError)
    assert client._map_error(KeyError("bug")) is None


# --- web-hook solver -----------------------------------------------------------------------------


def test_webhook_solver_signs_the_body(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    status = {"code": 204}

    def route(handler: BaseHTTPRequestHandler, body: bytes):
        received.append((dict(handler.headers), body))
        return status["code"], {}, b""

    key_file = tmp_path / "hook.key"
    key_file.write_text("hook-signing-key-123\n")
    for url in serve(route):
        config = WebhookDnsConfig.model_validate(
            {"provider": "webhook", "url": url, "hmac_key": {"file": str(key_file)}}
        )
        solver = build_solver(config, secrets=DictSecretResolver(), timeout=5, field="issuers.a.dns")
        assert isinstance(solver, WebhookSolver)
        solver.present("app.example.test", "tok-1")
        solver.cleanup("app.example.test", "tok-1")
        status["code"] = 503
        with pytest.raises(TransientCAError):
            solver.present("app.example.test", "tok-2")
        status["code"] = 403
        with pytest.raises(PermanentCAError):
            solver.present("app.example.test", "tok-3")

    headers, body = received[0]
    assert json.loads(body) == {"action": "present", "fqdn": "_acme-challenge.app.example.test", "value": "tok-1"}
    expected = hmac.new(b"hook-signing-key-123", body, hashlib.sha256).hexdigest()
    assert headers["X-Signature-SHA256"] == expected
    assert json.loads(received[1][1])["action"] == "cleanup"
    assert all("hook-signing-key-123" not in r.getMessage() for r in caplog.records)


# --- Azure DNS and Private DNS solvers against a Resource Manager stand-in ---------------------------


class FakeCredential:
    """Token source for the stand-in (a real deployment uses ManagedIdentityCredential)."""

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken("arm-test-token", 4_102_444_800)

    def get_token_info(self, *scopes: str, options: Any = None):
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("arm-test-token", 4_102_444_800)


RECORD_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/"
    r"(?P<kind>dnsZones|privateDnsZones)/(?P<zone>[^/]+)/TXT/(?P<name>[^/?]+)"
)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, dict[str, Any]], list[str]]]:
    records: dict[str, dict[str, Any]] = {}
    methods: list[str] = []
    counter = [0]

    def route(handler: BaseHTTPRequestHandler, body: bytes):
        match = RECORD_PATH.match(handler.path)
        assert handler.headers.get("Authorization") == "Bearer arm-test-token"
        if not match:
            return json_reply(404, {"error": {"code": "NotFound", "message": handler.path}})
        key = f"{match['kind']}/{match['zone']}/{match['name']}"
        current = records.get(key)
        methods.append(f"{handler.command} {key}")
        # Newer SDKs quote the ETag (RFC 9110 form); older ones send it bare.
        if_match = (handler.headers.get("If-Match") or "").strip('"') or None
        if_none = handler.headers.get("If-None-Match")
        if handler.command == "GET":
            if current is None:
                return json_reply(404, {"error": {"code": "NotFound", "message": "record set not found"}})
            return json_reply(200, current)
        if (if_match and (current is None or current["etag"] != if_match)) or (if_none == "*" and current):
            return json_reply(412, {"error": {"code": "PreconditionFailed", "message": "etag mismatch"}})
        if handler.command == "PUT":
            counter[0] += 1
            sent = json.loads(body)
            stored = {
                "id": match.group(0),
                "name": match["name"],
                "type": f"Microsoft.Network/{match['kind']}/TXT",
                "etag": f"etag-{counter[0]}",
                "properties": sent["properties"],
            }
            records[key] = stored
            return json_reply(201 if current is None else 200, stored)
        if handler.command == "DELETE":
            records.pop(key, None)
            return 200, {}, b""
        return json_reply(405, {})

    for url in serve(route, tls_dir=tmp_path / "arm-tls"):
        yield url, str(tmp_path / "arm-tls" / "tlsca.pem"), records, methods


def _txt_values(stored: dict[str, Any]) -> list[str]:
    props = stored["properties"]
    txt = props.get("TXTRecords") or props.get("txtRecords") or []
    return ["".join(r["value"]) for r in txt]


@pytest.mark.parametrize(
    ("solver_cls", "config_cls", "provider", "kind"),
    [
        (AzureDnsSolver, AzureDnsConfig, "azure", "dnsZones"),
        (AzurePrivateDnsSolver, AzurePrivateDnsConfig, "azure_private", "privateDnsZones"),
    ],
)
def test_azure_solvers_add_and_remove_only_their_value(arm, solver_cls, config_cls, provider, kind) -> None:
    url, ca_bundle, records, methods = arm
    config = config_cls.model_validate(
        {
            "provider": provider,
            "subscription_id": "00000000-0000-0000-0000-000000000001",
            "resource_group": "rg-dns",
            "zone_name": "example.test",
        }
    )
    # The stand-in ARM is reached through the SDK's client options (code, not configuration: the
    # configuration's arm_endpoint admits only the Azure clouds' own Resource Manager URLs).
    solver = solver_cls(
        config, credential=FakeCredential(), client_options={"base_url": url, "connection_verify": ca_bundle}
    )
    key = f"{kind}/example.test/_acme-challenge.app"

    solver.present("app.example.test", "wildcard-value")
    solver.present("app.example.test", "base-value")  # same name: appended, not replaced
    solver.present("app.example.test", "base-value")  # idempotent
    assert _txt_values(records[key]) == ["wildcard-value", "base-value"]

    solver.cleanup("app.example.test", "wildcard-value")
    assert _txt_values(records[key]) == ["base-value"]
    solver.cleanup("app.example.test", "base-value")
    assert key not in records
    solver.cleanup("app.example.test", "base-value")  # already gone: nothing to do
    assert methods.count(f"DELETE {key}") == 1

    with pytest.raises(PermanentCAError, match="not inside the configured DNS zone"):
        solver.present("app.other.test", "v")


@pytest.mark.parametrize(
    "endpoint", ["https://attacker.example", "http://management.azure.com", "https://management.azure.com.evil.test"]
)
def test_the_arm_token_goes_only_to_an_azure_cloud(endpoint) -> None:
    from pydantic import ValidationError

    base = {"provider": "azure", "subscription_id": "s", "resource_group": "rg", "zone_name": "example.test"}
    with pytest.raises(ValidationError, match="arm_endpoint"):
        AzureDnsConfig.model_validate({**base, "arm_endpoint": endpoint})
    assert AzureDnsConfig.model_validate({**base, "arm_endpoint": "https://management.usgovcloudapi.net/"})
