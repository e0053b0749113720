"""A local stand-in for Azure Resource Manager over HTTPS, and a TLS front end for Application Gateway listeners.

The real azure-mgmt clients talk to :class:`ArmStandIn` with ``base_url=arm.base_url``,
``connection_verify=arm.ca_bundle``, any token credential and ``subscription_id=arm.subscription_id``. It serves
the ARM resource shapes (camelCase JSON, ``{"error": {"code", "message"}}`` errors) of:

- ``Microsoft.Network/applicationGateways``: GET, PATCH (tags only, synchronous), PUT (long-running).
- ``Microsoft.Web/certificates``: GET, PUT (synchronous; re-reads the vault's current version);
  ``Microsoft.Web/sites``: GET; ``sites/{site}/hostNameBindings/{host}``: GET, PUT.
- ``Microsoft.ApiManagement/service``: GET, PATCH (long-running; the hostname list is replaced as sent).
- ``Microsoft.Cdn/profiles/{p}/secrets/{s}``: GET, PUT (long-running); ``profiles/{p}/customDomains/{d}``: GET.

Behaviour shared with ARM: resource ids are case-insensitive; every request needs ``?api-version=`` (400
``MissingApiVersionParameter``) and a bearer token (401 with a ``WWW-Authenticate`` challenge); an unknown
resource is 404 ``ResourceNotFound``; a write to a resource whose long-running operation is still running is 409
``AnotherOperationInProgress``; a PUT that moves a tracked resource to another location is 409
``InvalidResourceLocation``. Long-running operations answer 201 (create) or 200 (update) for PUT and 202 for
PATCH, with ``Azure-AsyncOperation: <status URL>`` and ``Retry-After``; the status URL answers ``InProgress``
``lro_polls`` times, then ``Succeeded`` (or ``Failed`` with an error when ``lro_outcome == "Failed"``). The
resource shows ``provisioningState: "Updating"`` meanwhile. azure-core waits ``polling_interval`` (30 s unless
the client is built with ``polling_interval=0``) when ``Retry-After`` is 0.

Key Vault is read for real, from the Key Vault emulator over HTTPS with the Key Vault SDK: whenever a resource is
refreshed (gateway tags PATCH or PUT success, App Service certificate PUT, API Management update success, Front
Door secret PUT success) the stand-in GETs the referenced secret (a versionless reference takes the vault's
current version, a versioned one exactly that version), reads the PKCS#12 or PEM value and records the bound leaf
and key (:class:`Bound`). Thumbprints are upper-case hex SHA-1 of the leaf's DER. ARM vault ids
(``.../Microsoft.KeyVault/vaults/<name>``) and ``https://<name>.vault.azure.net`` URLs map to the emulator's vault
of that name.

Knobs (plain attributes; the ``arm`` fixture resets them):

- ``lro_polls`` (1): how many times a new operation's status URL answers ``InProgress``.
- ``lro_outcome`` ("Succeeded"): "Failed" makes operations end Failed with ``lro_error_code`` /
  ``lro_error_message`` (read when the operation ends, so it can be set after the operation started).
- ``retry_after`` ("0"): the ``Retry-After`` header of long-running answers (None sends none).
- ``gateway_apply_delay_seconds`` (0): a gateway re-reads Key Vault at once but binds what it read only after
  this long (a timer thread), so a TLS probe right after the update still sees the old leaf.
- ``identity_operator_granted`` (True): False answers a gateway PUT whose body carries a user-assigned identity
  with 403 ``LinkedAuthorizationFailed`` (ARM's message text).
- ``front_door_deployment_polls`` (0): after a Front Door secret update, the custom domains using it answer
  ``deploymentStatus: "InProgress"`` this many GETs, then ``"Succeeded"``.
- ``fail_next(method, id_suffix, status, code, message, times=1)``: answer matching requests with an ARM error.
- ``claims_challenge(times=1)``: answer the next requests 401 with a CAE ``insufficient_claims`` challenge.

Seeding: ``add_application_gateway``, ``add_app_service_certificate``, ``add_api_management``,
``add_front_door_secret`` build realistic resources bound to what the vault holds now. Inspection:
``resource(id)``, ``requests`` ((method, path, api-version, body) per request), ``binding(id, part)``,
``bound_thumbprint(id, part)``, ``refresh_errors``, ``complete_operations()``.

:class:`GatewayFrontEnd` listens on 127.0.0.1 and, by SNI host name, completes TLS handshakes with the leaf and key
each gateway listener currently has bound (as an Application Gateway's HTTPS listeners would), then answers any
HTTP request with 200 and closes.

Tests get both from the fixtures in tests/servers/arm.py; ``make demo`` starts them itself.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import re
import socketserver
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulator.crypto import make_tls_material

__all__ = ["ArmStandIn", "Bound", "GatewayFrontEnd"]

SUBSCRIPTION_ID = "3f2c9a5e-7b1d-4e8a-9c6f-0d4b2a1e5c73"
CALLER_OBJECT_ID = "8d1e6f4a-2c3b-4a5d-9e7f-1b0c2d3e4f5a"

_SCOPE = r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
_ROUTES: dict[str, re.Pattern[str]] = {
    "gateway": re.compile(_SCOPE + r"microsoft\.network/applicationgateways/(?P<name>[^/]+)$", re.I),
    "web_certificate": re.compile(_SCOPE + r"microsoft\.web/certificates/(?P<name>[^/]+)$", re.I),
    "site": re.compile(_SCOPE + r"microsoft\.web/sites/(?P<name>[^/]+)$", re.I),
    "host_binding": re.compile(
        _SCOPE + r"microsoft\.web/sites/(?P<site>[^/]+)/hostnamebindings/(?P<name>[^/]+)$", re.I
    ),
    "api_management": re.compile(_SCOPE + r"microsoft\.apimanagement/service/(?P<name>[^/]+)$", re.I),
    "fd_secret": re.compile(_SCOPE + r"microsoft\.cdn/profiles/(?P<profile>[^/]+)/secrets/(?P<name>[^/]+)$", re.I),
    "fd_domain": re.compile(
        _SCOPE + r"microsoft\.cdn/profiles/(?P<profile>[^/]+)/customdomains/(?P<name>[^/]+)$", re.I
    ),
}
_OPERATION = re.compile(r"^/subscriptions/[^/]+/providers/[^/]+/locations/[^/]+/operations/(?P<op>[^/]+)$", re.I)
_SECRET_URL = re.compile(
    r"^https://(?P<host>[^/]+)/(?P<kind>secrets|certificates)/(?P<name>[^/]+)(?:/(?P<ver>[^/]*))?/?$"
)
_VAULT_ID = re.compile(r"/providers/microsoft\.keyvault/vaults/(?P<vault>[^/]+)(?:/secrets/(?P<name>[^/]+))?/?$", re.I)
_BEARER = re.compile(r"^Bearer [A-Za-z0-9\-._~+/]+=*$")
_CHALLENGE = 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
_CAE_CLAIMS = base64.urlsafe_b64encode(b'{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}').decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _location_key(location: str | None) -> str:
    return (location or "").replace(" ", "").lower()


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _etag() -> str:
    return f'W/"{uuid.uuid4()}"'


class ArmError(Exception):
    """An ARM error answer: ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or []


class _FetchError(Exception):
    pass


@dataclass(frozen=True)
class Bound:
    """What a service has bound: the leaf (and key) of one version of a Key Vault secret."""

    leaf: x509.Certificate
    key: Any
    vault_url: str
    name: str
    version: str

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324 - x5t

    @property
    def subject(self) -> str:
        return _common_name(self.leaf.subject)

    @property
    def issuer(self) -> str:
        return _common_name(self.leaf.issuer)

    @property
    def dns_names(self) -> list[str]:
        try:
            san = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return list(san.get_values_for_type(x509.DNSName))


@dataclass
class _Rule:
    method: str
    suffix: str
    status: int
    code: str
    message: str
    times: int


@dataclass
class _Operation:
    id: str
    resource: str  # lower-case resource id
    url: str
    polls_left: int
    on_success: Callable[[], dict[str, str] | None]
    status: str = "InProgress"
    error: dict[str, str] | None = None
    started: str = ""


def _parse_secret_value(value: str, content_type: str | None) -> tuple[x509.Certificate, Any]:
    if value.lstrip().startswith("-----BEGIN") or content_type == "application/x-pem-file":
        data = value.encode()
        certificates = x509.load_pem_x509_certificates(data)
        key = None
        match = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", data, re.S)
        if match:
            key = serialization.load_pem_private_key(match.group(0), None)
        leaf = certificates[0]
        if key is not None:
            wanted = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            for certificate in certificates:
                spki = certificate.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                if spki == wanted:
                    leaf = certificate
        return leaf, key
    key, leaf, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    if leaf is None:
        raise _FetchError("the PKCS#12 value holds no certificate")
    return leaf, key


class ArmStandIn:
    """ARM over HTTPS on 127.0.0.1 for the four services; see the module docstring."""

    def __init__(
        self,
        vault_urls: Mapping[str, str],
        kv_ca_bundle: str,
        kv_credential: Any,
        *,
        resolve_vault: Callable[[str], str] | None = None,
        subscription_id: str = SUBSCRIPTION_ID,
    ) -> None:
        self.vault_urls = dict(vault_urls)
        self.kv_ca_bundle = kv_ca_bundle
        self.kv_credential = kv_credential
        self._resolve_vault = resolve_vault
        self.subscription_id = subscription_id
        self.caller_object_id = CALLER_OBJECT_ID
        self._lock = threading.RLock()
        self._secret_clients: dict[str, Any] = {}
        self._resources: dict[str, dict[str, Any]] = {}
        self._bound: dict[tuple[str, str | None], Bound] = {}
        self._operations: dict[str, _Operation] = {}
        self._busy: dict[str, str] = {}
        self._domain_polls: dict[str, int] = {}
        self._rules: list[_Rule] = []
        self._timers: list[threading.Timer] = []
        self._generation = 0
        self._challenges = 0
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.refresh_errors: list[str] = []
        self.secret_reads = 0
        """Secrets the stand-in's services read from Key Vault with their own identities (not the app's)."""
        self._set_default_knobs()
        self._dir = tempfile.TemporaryDirectory(prefix="arm-standin-")
        ca_file, self.cert_file, self.key_file = make_tls_material(Path(self._dir.name))  # a CA of its own
        self.ca_bundle = str(ca_file)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def _set_default_knobs(self) -> None:
        self.lro_polls = 1
        self.lro_outcome = "Succeeded"
        self.lro_error_code = "InternalServerError"
        self.lro_error_message = "An error occurred while processing the operation."
        self.retry_after: str | None = "0"
        self.gateway_apply_delay_seconds = 0.0
        self.identity_operator_granted = True
        self.front_door_deployment_polls = 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> ArmStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, payload = standin.answer(self.command, self.path, dict(self.headers), body)
                except Exception as exc:  # noqa: BLE001 - a stand-in bug must show as an answer, not a hang
                    status, headers = 500, []
                    payload = {"error": {"code": "InternalServerError", "message": repr(exc)}}
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that drop the connection or fail the handshake

        server = Server(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), name="arm-standin", daemon=True).start()
        self._server = server
        return self

    def close(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for client in self._secret_clients.values():
            client.close()
        self._dir.cleanup()

    def reset(self) -> None:
        """Forget resources, bindings, operations, faults and the request log; knobs back to defaults."""
        with self._lock:
            self._generation += 1
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._resources.clear()
            self._bound.clear()
            self._operations.clear()
            self._busy.clear()
            self._domain_polls.clear()
            self._rules.clear()
            self._challenges = 0
            self.requests.clear()
            self.refresh_errors.clear()
            self.secret_reads = 0
            self._set_default_knobs()

    # -- faults ------------------------------------------------------------------------------------------
    def fail_next(self, method: str, id_suffix: str, status: int, code: str, message: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose method matches and whose path ends with ``id_suffix``
        (case-insensitive) with ``status`` and ``{"error": {"code", "message"}}``."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), id_suffix.lower().rstrip("/"), status, code, message, times))

    def claims_challenge(self, times: int = 1) -> None:
        """Answer the next ``times`` requests 401 with a CAE ``insufficient_claims`` challenge."""
        with self._lock:
            self._challenges += times

    # -- inspection --------------------------------------------------------------------------------------
    def resource(self, resource_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._resources[resource_id.lower().rstrip("/")])

    def binding(self, resource_id: str, part: str | None = None) -> Bound | None:
        """What the resource has bound: gateway -> ``part`` = sslCertificate name; API Management -> host name;
        App Service and Front Door certificates: no part. With one binding only, ``part`` may be left out."""
        rid = resource_id.lower().rstrip("/")
        with self._lock:
            if part is not None:
                return self._bound.get((rid, part.lower()))
            found = [bound for (owner, _), bound in self._bound.items() if owner == rid]
            if len(found) > 1:
                raise ValueError(f"{resource_id} has {len(found)} bindings: name the part")
            return found[0] if found else None

    def bound_thumbprint(self, resource_id: str, part: str | None = None) -> str | None:
        """Upper-case hex SHA-1 of what is bound; for a site, ``part`` is the host name (its SSL state)."""
        if _ROUTES["site"].match(resource_id):
            states = self.resource(resource_id)["properties"]["hostNameSslStates"]
            for state in states:
                if part is None or state["name"].lower() == part.lower():
                    if state.get("thumbprint"):
                        return state["thumbprint"]
            return None
        bound = self.binding(resource_id, part)
        return bound.thumbprint if bound else None

    def complete_operations(self) -> None:
        """End every running operation now, as if enough time had passed."""
        with self._lock:
            for operation in list(self._operations.values()):
                if operation.status == "InProgress":
                    operation.polls_left = 0
                    self._advance(operation)

    # -- Key Vault ---------------------------------------------------------------------------------------
    def _vault_base(self, host_or_name: str, *, by_name: bool) -> str:
        if by_name:
            name = host_or_name
        else:
            for url in self.vault_urls.values():
                if urlsplit(url).netloc.lower() == host_or_name.lower():
                    return url
            name = host_or_name.split(".")[0] if host_or_name.lower().endswith(".vault.azure.net") else ""
        for known, url in self.vault_urls.items():
            if known.lower() == name.lower():
                return url
        if name and self._resolve_vault is not None:
            try:
                return self._resolve_vault(name)
            except Exception as exc:
                raise _FetchError(f"vault {name!r} is not known") from exc
        raise _FetchError(f"vault {host_or_name!r} is not known")

    def _fetch(self, vault_url: str, name: str, version: str | None) -> Bound:
        from azure.core.exceptions import AzureError
        from azure.keyvault.secrets import SecretClient

        with self._lock:
            client = self._secret_clients.get(vault_url)
            if client is None:
                client = SecretClient(vault_url, self.kv_credential, connection_verify=self.kv_ca_bundle)
                self._secret_clients[vault_url] = client
            self.secret_reads += 1
            try:
                secret = client.get_secret(name, version or None)
            except AzureError as exc:
                raise _FetchError(f"secret {name}{'/' + version if version else ''} in {vault_url}: {exc}") from exc
            try:
                leaf, key = _parse_secret_value(secret.value or "", secret.properties.content_type)
            except (ValueError, TypeError) as exc:
                raise _FetchError(f"secret {name} in {vault_url} is not a certificate with its key: {exc}") from exc
            return Bound(leaf, key, vault_url, name, secret.properties.version or "")

    def _fetch_secret_url(self, secret_id: str) -> Bound:
        match = _SECRET_URL.match(secret_id or "")
        if match is None or match["kind"] != "secrets":
            raise _FetchError(f"{secret_id!r} is not a Key Vault secret identifier")
        return self._fetch(self._vault_base(match["host"], by_name=False), match["name"], match["ver"] or None)

    def _fetch_vault_id(self, vault_id: str, name: str, version: str | None) -> Bound:
        match = _VAULT_ID.search(vault_id or "")
        if match is None:
            raise _FetchError(f"{vault_id!r} is not a Key Vault resource id")
        return self._fetch(self._vault_base(match["vault"], by_name=True), name, version)

    # -- HTTP --------------------------------------------------------------------------------------------
    def answer(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], Any]:
        split = urlsplit(raw_path)
        path = unquote(split.path).rstrip("/")
        query = {k.lower(): v for k, v in parse_qs(split.query).items()}
        api_version = query.get("api-version", [None])[0]
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = body.decode(errors="replace")
        request_id = str(uuid.uuid4())
        common = [("x-ms-request-id", request_id), ("x-ms-correlation-request-id", request_id)]
        with self._lock:
            self.requests.append((method, path, api_version, copy.deepcopy(document)))
        try:
            status, extra, payload = self._answer(method.upper(), path, api_version, headers, document)
        except ArmError as error:
            status, extra = error.status, error.headers
            payload = {"error": {"code": error.code, "message": error.message}}
        return status, common + extra, payload

    def _answer(
        self, method: str, path: str, api_version: str | None, headers: Mapping[str, str], document: Any
    ) -> tuple[int, list[tuple[str, str]], Any]:
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not _BEARER.match(authorization):
            description = "missing" if not authorization else "invalid"
            raise ArmError(
                401,
                "AuthenticationFailed",
                f"Authentication failed. The 'Authorization' header is {description}.",
                [
                    (
                        "WWW-Authenticate",
                        f'{_CHALLENGE}, error_description="The authentication failed because of '
                        f"{description} 'Authorization' header.\"",
                    )
                ],
            )
        with self._lock:
            if self._challenges > 0:
                self._challenges -= 1
                challenge = (
                    'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                    f'error="insufficient_claims", claims="{_CAE_CLAIMS}"'
                )
                raise ArmError(
                    401,
                    "InvalidAuthenticationTokenClaims",
                    "The access token requires additional claims.",
                    [("WWW-Authenticate", challenge)],
                )
        if not api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if document is not None and not isinstance(document, dict):
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            )
        with self._lock:
            lowered = path.lower()
            for rule in self._rules:
                if rule.times > 0 and rule.method in (method, "*") and lowered.endswith(rule.suffix):
                    rule.times -= 1
                    raise ArmError(rule.status, rule.code, rule.message)
            operation = _OPERATION.match(path)
            if operation is not None and method == "GET":
                return self._operation_status(operation["op"])
            for kind, pattern in _ROUTES.items():
                match = pattern.match(path)
                if match is None:
                    continue
                handler = getattr(self, f"_{method.lower()}_{kind}", None)
                if handler is None:
                    raise ArmError(
                        405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'."
                    )
                return handler(lowered, match, document or {}, api_version)
        raise ArmError(404, "InvalidResourceType", f"The resource type of '{path}' is not served here.")

    # -- shared helpers ----------------------------------------------------------------------------------
    def _rid(self, resource_group: str, provider_type: str, name: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}/providers/{provider_type}/{name}"

    def _store(self, resource: dict[str, Any]) -> str:
        with self._lock:
            self._resources[resource["id"].lower()] = resource
        return resource["id"]

    def _get(self, rid: str) -> dict[str, Any]:
        resource = self._resources.get(rid)
        if resource is None:
            match = re.search(r"/resourcegroups/([^/]+)/providers/(.+)$", rid, re.I)
            where = f"'{match.group(2)}' under resource group '{match.group(1)}'" if match else f"'{rid}'"
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource {where} was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return resource

    def _check_idle(self, rid: str) -> None:
        op_id = self._busy.get(rid)
        if op_id is not None:
            url = self._operations[op_id].url
            raise ArmError(
                409,
                "AnotherOperationInProgress",
                f"Another operation on this or dependent resource is in progress. To retrieve status of the "
                f"operation use uri: {url}.",
            )

    @staticmethod
    def _check_location(old: dict[str, Any] | None, body: dict[str, Any]) -> None:
        if not body.get("location"):
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if old is not None and _location_key(old.get("location")) != _location_key(body["location"]):
            group = old["id"].split("/")[4]
            raise ArmError(
                409,
                "InvalidResourceLocation",
                f"The resource '{old['name']}' already exists in location '{_location_key(old.get('location'))}' in "
                f"resource group '{group}'. A resource with the same name cannot be created in location "
                f"'{_location_key(body['location'])}'. Please select a new resource name.",
            )

    def _lro_headers(self, operation: _Operation) -> list[tuple[str, str]]:
        headers = [("Azure-AsyncOperation", operation.url)]
        if self.retry_after is not None:
            headers.append(("Retry-After", self.retry_after))
        return headers

    def _start_operation(
        self, rid: str, namespace: str, location: str, api_version: str, on_success: Callable[[], dict[str, str] | None]
    ) -> _Operation:
        op_id = str(uuid.uuid4())
        location_segment = _location_key(location) or "global"
        url = (
            f"{self.base_url}/subscriptions/{self.subscription_id}/providers/{namespace}/locations/"
            f"{location_segment}/operations/{op_id}?api-version={api_version}"
        )
        operation = _Operation(op_id, rid, url, max(0, int(self.lro_polls)), on_success, started=_iso(_now()))
        self._operations[op_id] = operation
        self._busy[rid] = op_id
        self._resources[rid]["properties"]["provisioningState"] = "Updating"
        return operation

    def _advance(self, operation: _Operation) -> None:
        if operation.status != "InProgress":
            return
        if operation.polls_left > 0:
            operation.polls_left -= 1
            return
        resource = self._resources.get(operation.resource)
        if self.lro_outcome == "Failed":
            operation.status, operation.error = (
                "Failed",
                {"code": self.lro_error_code, "message": self.lro_error_message},
            )
        else:
            error = operation.on_success()
            operation.status, operation.error = ("Failed", error) if error else ("Succeeded", None)
        if resource is not None:
            resource["properties"]["provisioningState"] = operation.status
        self._busy.pop(operation.resource, None)

    def _operation_status(self, op_id: str) -> tuple[int, list[tuple[str, str]], Any]:
        operation = self._operations.get(op_id)
        if operation is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        self._advance(operation)
        body: dict[str, Any] = {"id": urlsplit(operation.url).path, "name": op_id, "status": operation.status}
        body["startTime"] = operation.started
        headers: list[tuple[str, str]] = []
        if operation.status == "InProgress":
            if self.retry_after is not None:
                headers.append(("Retry-After", self.retry_after))
        else:
            body["endTime"] = _iso(_now())
        if operation.error:
            body["error"] = dict(operation.error)
        return 200, headers, body

    # -- Application Gateway -----------------------------------------------------------------------------
    def add_application_gateway(
        self,
        resource_group: str,
        name: str,
        *,
        certificates: Mapping[str, str],
        listeners: Mapping[str, tuple[str | list[str] | None, str]],
        user_assigned_identity: bool = False,
        tags: Mapping[str, str] | None = None,
        location: str = "westeurope",
    ) -> str:
        """A Standard_v2 gateway; ``certificates``: sslCertificate name -> keyVaultSecretId; ``listeners``:
        listener name -> (hostName, or a list for hostNames, or None for a basic listener; sslCertificate name).
        The referenced versions are bound at once (a ``/certificates/`` reference binds nothing)."""
        rid = self._rid(resource_group, "Microsoft.Network/applicationGateways", name)
        port_id = f"{rid}/frontendPorts/port_443"
        ssl_certificates = [
            {
                "name": cert_name,
                "id": f"{rid}/sslCertificates/{cert_name}",
                "etag": _etag(),
                "type": "Microsoft.Network/applicationGateways/sslCertificates",
                "properties": {"keyVaultSecretId": secret_id, "provisioningState": "Succeeded"},
            }
            for cert_name, secret_id in certificates.items()
        ]
        http_listeners = []
        for listener_name, (hosts, cert_name) in listeners.items():
            if cert_name not in certificates:
                raise ValueError(f"listener {listener_name} names an unknown sslCertificate {cert_name}")
            properties: dict[str, Any] = {
                "frontendPort": {"id": port_id},
                "protocol": "Https",
                "sslCertificate": {"id": f"{rid}/sslCertificates/{cert_name}"},
                "requireServerNameIndication": bool(hosts),
                "provisioningState": "Succeeded",
            }
            if isinstance(hosts, str):
                properties["hostName"] = hosts
            elif hosts:
                properties["hostNames"] = list(hosts)
            http_listeners.append(
                {
                    "name": listener_name,
                    "id": f"{rid}/httpListeners/{listener_name}",
                    "etag": _etag(),
                    "type": "Microsoft.Network/applicationGateways/httpListeners",
                    "properties": properties,
                }
            )
        resource: dict[str, Any] = {
            "id": rid,
            "name": name,
            "type": "Microsoft.Network/applicationGateways",
            "location": location,
            "tags": dict(tags or {}),
            "etag": _etag(),
            "properties": {
                "provisioningState": "Succeeded",
                "resourceGuid": str(uuid.uuid4()),
                "operationalState": "Running",
                "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2},
                "sslCertificates": ssl_certificates,
                "frontendPorts": [{"name": "port_443", "id": port_id, "etag": _etag(), "properties": {"port": 443}}],
                "httpListeners": http_listeners,
            },
        }
        if user_assigned_identity:
            identity_id = self._rid(
                resource_group, "Microsoft.ManagedIdentity/userAssignedIdentities", f"{name}-identity"
            )
            resource["identity"] = {
                "type": "UserAssigned",
                "userAssignedIdentities": {
                    identity_id: {"principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())}
                },
            }
        with self._lock:
            self._store(resource)
            for cert_name, secret_id in certificates.items():
                if "/certificates/" in secret_id:
                    continue
                try:
                    self._bound[(rid.lower(), cert_name.lower())] = self._fetch_secret_url(secret_id)
                except _FetchError as exc:
                    raise ValueError(f"gateway {name}: cannot bind {cert_name}: {exc}") from exc
        return rid

    def _read_gateway(self, rid: str) -> tuple[dict[tuple[str, str], Bound], list[str]]:
        resource = self._resources[rid]
        fetched: dict[tuple[str, str], Bound] = {}
        errors: list[str] = []
        for certificate in resource["properties"].get("sslCertificates", []):
            secret_id = certificate.get("properties", {}).get("keyVaultSecretId")
            if not secret_id:
                continue
            try:
                fetched[(rid, certificate["name"].lower())] = self._fetch_secret_url(secret_id)
            except _FetchError as exc:
                errors.append(f"sslCertificate {certificate['name']}: {exc}")
        return fetched, errors

    def _apply_gateway(self, rid: str, fetched: dict[tuple[str, str], Bound]) -> None:
        """Bind what was read (now, or after ``gateway_apply_delay_seconds``); sslCertificates no longer on the
        gateway lose their binding, ones that could not be read keep theirs."""
        present = {c["name"].lower() for c in self._resources[rid]["properties"].get("sslCertificates") or []}
        generation = self._generation

        def apply() -> None:
            with self._lock:
                if generation != self._generation:
                    return
                for key in [key for key in self._bound if key[0] == rid and key[1] not in present]:
                    del self._bound[key]
                self._bound.update(fetched)

        delay = float(self.gateway_apply_delay_seconds)
        if delay <= 0:
            apply()
            return

        timer = threading.Timer(delay, apply)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _get_gateway(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        return 200, [], copy.deepcopy(self._get(rid))

    def _patch_gateway(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        resource = self._get(rid)
        self._check_idle(rid)
        if "tags" in body:
            if not isinstance(body["tags"], dict):
                raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: tags must be an object.")
            resource["tags"] = dict(body["tags"])
        resource["etag"] = _etag()
        fetched, errors = self._read_gateway(rid)
        self.refresh_errors.extend(f"{resource['name']}: {error}" for error in errors)
        self._apply_gateway(rid, fetched)
        return 200, [], copy.deepcopy(resource)

    def _put_gateway(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        old = self._resources.get(rid)
        self._check_idle(rid)
        self._check_location(old, body)
        canonical = old["id"] if old else match.group(0)
        identity = body.get("identity") or {}
        linked = list((identity.get("userAssignedIdentities") or {}).keys())
        if linked and "userassigned" in str(identity.get("type", "")).lower() and not self.identity_operator_granted:
            raise ArmError(
                403,
                "LinkedAuthorizationFailed",
                f"The client '{self.caller_object_id}' with object id '{self.caller_object_id}' has permission to "
                f"perform action 'Microsoft.Network/applicationGateways/write' on scope '{canonical}'; however, it "
                "does not have permission to perform action(s) "
                "'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) "
                f"'{', '.join(linked)}' (respectively) or the linked scope(s) are invalid.",
            )
        resource = copy.deepcopy(body)
        properties = resource.setdefault("properties", {})
        resource.update(id=canonical, name=canonical.rsplit("/", 1)[1], type="Microsoft.Network/applicationGateways")
        resource["etag"] = _etag()
        resource.setdefault("tags", {})
        names = set()
        for certificate in properties.get("sslCertificates") or []:
            cert_props = certificate.setdefault("properties", {})
            if not certificate.get("name"):
                raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: sslCertificate name is missing.")
            if not cert_props.get("keyVaultSecretId") and not cert_props.get("data"):
                raise ArmError(
                    400,
                    "ApplicationGatewaySslCertificateDataMustBeSpecified",
                    f"Data must be specified for Certificate {canonical}/sslCertificates/{certificate['name']}.",
                )
            certificate.update(id=f"{canonical}/sslCertificates/{certificate['name']}", etag=resource["etag"])
            certificate["type"] = "Microsoft.Network/applicationGateways/sslCertificates"
            cert_props["provisioningState"] = "Updating"
            names.add(f"{canonical}/sslCertificates/{certificate['name']}".lower())
        for listener in properties.get("httpListeners") or []:
            listener["id"] = f"{canonical}/httpListeners/{listener.get('name')}"
            reference = (listener.get("properties", {}).get("sslCertificate") or {}).get("id")
            if reference and reference.lower() not in names:
                raise ArmError(
                    400,
                    "InvalidResourceReference",
                    f"Resource {reference} referenced by resource {listener['id']} was not found. Please make sure "
                    "that the referenced resource exists, and that both resources are in the same region.",
                )
        if old is not None:
            for key in ("resourceGuid", "operationalState"):
                if key in old["properties"]:
                    properties[key] = old["properties"][key]
            old_identities = {
                k.lower(): v for k, v in ((old.get("identity") or {}).get("userAssignedIdentities") or {}).items()
            }
            for key, value in (identity.get("userAssignedIdentities") or {}).items():
                resource["identity"]["userAssignedIdentities"][key] = {
                    **(value or {}),
                    **old_identities.get(key.lower(), {}),
                }
        else:
            properties.setdefault("resourceGuid", str(uuid.uuid4()))
            properties.setdefault("operationalState", "Running")
        self._resources[rid] = resource

        def on_success() -> dict[str, str] | None:
            current = self._resources.get(rid)
            if current is None:
                return None
            fetched, errors = self._read_gateway(rid)
            if errors:
                return {
                    "code": "ApplicationGatewayKeyVaultSecretException",
                    "message": f"Problem occured while accessing and validating KeyVault Secrets associated with "
                    f"Application Gateway '{current['name']}'. See details below: " + "; ".join(errors),
                }
            for certificate in current["properties"].get("sslCertificates") or []:
                certificate.setdefault("properties", {})["provisioningState"] = "Succeeded"
            self._apply_gateway(rid, fetched)
            return None

        operation = self._start_operation(rid, "Microsoft.Network", resource["location"], api_version, on_success)
        return (201 if old is None else 200), self._lro_headers(operation), copy.deepcopy(resource)

    def listener_binding(self, server_name: str | None) -> Bound | None:
        """What a gateway listener for this SNI host name serves now: exact host, then wildcard, then a basic
        listener (no host name)."""
        wanted = (server_name or "").lower()
        exact = wildcard = basic = None
        with self._lock:
            for rid, resource in self._resources.items():
                if not _ROUTES["gateway"].match(rid):
                    continue
                for listener in resource["properties"].get("httpListeners") or []:
                    props = listener.get("properties") or {}
                    reference = (props.get("sslCertificate") or {}).get("id")
                    if not reference:
                        continue
                    bound = self._bound.get((rid, reference.rsplit("/", 1)[1].lower()))
                    hosts = [props["hostName"]] if props.get("hostName") else list(props.get("hostNames") or [])
                    if not hosts:
                        basic = basic or bound
                    for host in hosts:
                        host = host.lower()
                        if host == wanted:
                            exact = exact or bound
                        elif (
                            host.startswith("*.") and wanted.endswith(host[1:]) and "." not in wanted[: -len(host) + 1]
                        ):
                            wildcard = wildcard or bound
        return exact or wildcard or basic

    # -- App Service -------------------------------------------------------------------------------------
    def _ensure_site(self, resource_group: str, site: str, server_farm_id: str) -> dict[str, Any]:
        rid = self._rid(resource_group, "Microsoft.Web/sites", site)
        existing = self._resources.get(rid.lower())
        if existing is not None:
            return existing
        default = f"{site}.azurewebsites.net"
        resource = {
            "id": rid,
            "name": site,
            "type": "Microsoft.Web/sites",
            "kind": "app",
            "location": "West Europe",
            "tags": {},
            "properties": {
                "name": site,
                "state": "Running",
                "defaultHostName": default,
                "hostNames": [default],
                "enabledHostNames": [default, f"{site}.scm.azurewebsites.net"],
                "serverFarmId": server_farm_id,
                "hostNameSslStates": [
                    {"name": default, "sslState": "Disabled", "hostType": "Standard"},
                    {"name": f"{site}.scm.azurewebsites.net", "sslState": "Disabled", "hostType": "Repository"},
                ],
            },
        }
        self._store(resource)
        return resource

    @staticmethod
    def _set_ssl_state(site: dict[str, Any], host: str, ssl_state: str, thumbprint: str | None) -> None:
        properties = site["properties"]
        for state in properties["hostNameSslStates"]:
            if state["name"].lower() == host.lower():
                state["sslState"], state["thumbprint"] = ssl_state, thumbprint
                state["toUpdate"] = None
                return
        properties["hostNameSslStates"].append(
            {"name": host, "sslState": ssl_state, "thumbprint": thumbprint, "hostType": "Standard"}
        )
        properties["hostNames"].append(host)
        properties["enabledHostNames"].append(host)

    @staticmethod
    def _describe_web_certificate(properties: dict[str, Any], bound: Bound) -> None:
        properties.update(
            thumbprint=bound.thumbprint,
            subjectName=bound.subject,
            issuer=bound.issuer,
            hostNames=bound.dns_names or [bound.subject],
            issueDate=_iso(bound.leaf.not_valid_before_utc),
            expirationDate=_iso(bound.leaf.not_valid_after_utc),
            keyVaultSecretStatus="Succeeded",
            valid=True,
        )

    def add_app_service_certificate(
        self,
        resource_group: str,
        name: str,
        *,
        vault: str,
        secret_name: str,
        sites: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        location: str = "West Europe",
    ) -> str:
        """A ``Microsoft.Web/certificates`` resource importing the vault's current version; each (site, host)
        gets an SniEnabled binding on its thumbprint (sites are created as needed)."""
        rid = self._rid(resource_group, "Microsoft.Web/certificates", name)
        vault_id = self._rid(resource_group, "Microsoft.KeyVault/vaults", vault)
        server_farm_id = self._rid(resource_group, "Microsoft.Web/serverfarms", f"{resource_group}-plan")
        with self._lock:
            try:
                bound = self._fetch_vault_id(vault_id, secret_name, None)
            except _FetchError as exc:
                raise ValueError(f"App Service certificate {name}: {exc}") from exc
            properties: dict[str, Any] = {
                "friendlyName": "",
                "keyVaultId": vault_id,
                "keyVaultSecretName": secret_name,
                "serverFarmId": server_farm_id,
            }
            self._describe_web_certificate(properties, bound)
            resource = {
                "id": rid,
                "name": name,
                "type": "Microsoft.Web/certificates",
                "location": location,
                "tags": {},
                "properties": properties,
            }
            self._store(resource)
            self._bound[(rid.lower(), None)] = bound
            for site_name, host in sites:
                site = self._ensure_site(resource_group, site_name, server_farm_id)
                self._set_ssl_state(site, host, "SniEnabled", bound.thumbprint)
        return rid

    def _get_web_certificate(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        return 200, [], copy.deepcopy(self._get(rid))

    def _put_web_certificate(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        old = self._resources.get(rid)
        self._check_location(old, body)
        sent = body.get("properties") or {}
        if not sent.get("keyVaultId"):
            raise ArmError(
                400,
                "BadRequest",
                "The parameter Properties.KeyVaultId has an invalid value: a certificate from Key Vault needs "
                "keyVaultId and keyVaultSecretName.",
            )
        if not sent.get("keyVaultSecretName"):
            raise ArmError(400, "BadRequest", "The parameter Properties.KeyVaultSecretName has an invalid value.")
        try:
            bound = self._fetch_vault_id(sent["keyVaultId"], sent["keyVaultSecretName"], None)
        except _FetchError as exc:
            raise ArmError(
                400, "BadRequest", f"The service does not have access to the Key Vault secret: {exc}"
            ) from exc
        canonical = old["id"] if old else match.group(0)
        properties = {"friendlyName": ""} | dict((old or {}).get("properties") or {})
        properties.update(
            keyVaultId=sent["keyVaultId"],
            keyVaultSecretName=sent["keyVaultSecretName"],
            serverFarmId=sent.get("serverFarmId") or properties.get("serverFarmId"),
        )
        previous = properties.get("thumbprint")
        self._describe_web_certificate(properties, bound)
        resource = {
            "id": canonical,
            "name": canonical.rsplit("/", 1)[1],
            "type": "Microsoft.Web/certificates",
            "location": (old or body)["location"],
            "tags": body.get("tags") if body.get("tags") is not None else (old or {}).get("tags", {}),
            "properties": properties,
        }
        self._resources[rid] = resource
        self._bound[(rid, None)] = bound
        if previous and previous != bound.thumbprint:
            for key, site in self._resources.items():
                if _ROUTES["site"].match(key):
                    for state in site["properties"]["hostNameSslStates"]:
                        if (state.get("thumbprint") or "").upper() == previous.upper():
                            state["thumbprint"] = bound.thumbprint
        return 200, [], copy.deepcopy(resource)  # App Service answers 200 for a new certificate too

    def _get_site(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        return 200, [], copy.deepcopy(self._get(rid))

    def _binding_json(self, site: dict[str, Any], host: str) -> dict[str, Any]:
        for state in site["properties"]["hostNameSslStates"]:
            if state["name"].lower() == host.lower():
                return {
                    "id": f"{site['id']}/hostNameBindings/{state['name']}",
                    "name": f"{site['name']}/{state['name']}",
                    "type": "Microsoft.Web/sites/hostNameBindings",
                    "properties": {
                        "siteName": site["name"],
                        "hostNameType": "Verified",
                        "customHostNameDnsRecordType": "CName",
                        "azureResourceType": "Website",
                        "sslState": state["sslState"],
                        "thumbprint": state.get("thumbprint"),
                    },
                }
        raise ArmError(404, "NotFound", f"Cannot find HostName '{host}' on site '{site['name']}'.")

    def _get_host_binding(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        site = self._get(rid.rsplit("/hostnamebindings/", 1)[0])
        return 200, [], self._binding_json(site, match["name"])

    def _put_host_binding(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        site = self._get(rid.rsplit("/hostnamebindings/", 1)[0])
        sent = body.get("properties") or {}
        ssl_state = sent.get("sslState") or "Disabled"
        if ssl_state not in ("Disabled", "SniEnabled", "IpBasedEnabled"):
            raise ArmError(400, "BadRequest", f"The parameter sslState has an invalid value '{ssl_state}'.")
        thumbprint = sent.get("thumbprint")
        if ssl_state != "Disabled":
            if not thumbprint:
                raise ArmError(400, "BadRequest", "The parameter Thumbprint has an invalid value: it is required.")
            known = {
                (resource["properties"].get("thumbprint") or "").upper()
                for key, resource in self._resources.items()
                if _ROUTES["web_certificate"].match(key)
            }
            if thumbprint.upper() not in known:
                raise ArmError(
                    400, "BadRequest", f"Certificate with thumbprint '{thumbprint}' was not found in the webspace."
                )
            thumbprint = thumbprint.upper()
        else:
            thumbprint = None
        self._set_ssl_state(site, match["name"], ssl_state, thumbprint)
        return 200, [], self._binding_json(site, match["name"])

    # -- API Management ----------------------------------------------------------------------------------
    @staticmethod
    def _apim_certificate(bound: Bound) -> dict[str, Any]:
        return {
            "expiry": _iso(bound.leaf.not_valid_after_utc),
            "thumbprint": bound.thumbprint,
            "subject": bound.leaf.subject.rfc4514_string(),
        }

    def add_api_management(
        self, resource_group: str, name: str, *, hostnames: Mapping[str, str], location: str = "westeurope"
    ) -> str:
        """A Developer-tier service with the built-in ``<name>.azure-api.net`` hostname first, then one Proxy
        hostname per entry (host -> keyVaultId secret URL), each bound to the version it references now."""
        rid = self._rid(resource_group, "Microsoft.ApiManagement/service", name)
        entries: list[dict[str, Any]] = [
            {
                "type": "Proxy",
                "hostName": f"{name}.azure-api.net",
                "negotiateClientCertificate": False,
                "defaultSslBinding": False,
                "certificateSource": "BuiltIn",
            }
        ]
        with self._lock:
            for index, (host, secret_id) in enumerate(hostnames.items()):
                try:
                    bound = self._fetch_secret_url(secret_id)
                except _FetchError as exc:
                    raise ValueError(f"API Management {name}: cannot bind {host}: {exc}") from exc
                self._bound[(rid.lower(), host.lower())] = bound
                entries.append(
                    {
                        "type": "Proxy",
                        "hostName": host,
                        "keyVaultId": secret_id,
                        "negotiateClientCertificate": False,
                        "defaultSslBinding": index == 0,
                        "certificate": self._apim_certificate(bound),
                        "certificateSource": "KeyVault",
                        "certificateStatus": "Completed",
                    }
                )
            resource = {
                "id": rid,
                "name": name,
                "type": "Microsoft.ApiManagement/service",
                "location": location,
                "tags": {},
                "etag": "AAAAAAAB" + uuid.uuid4().hex[:8],
                "sku": {"name": "Developer", "capacity": 1},
                "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
                "properties": {
                    "publisherEmail": "api-owner@example.test",
                    "publisherName": "Example",
                    "provisioningState": "Succeeded",
                    "targetProvisioningState": "",
                    "gatewayUrl": f"https://{name}.azure-api.net",
                    "hostnameConfigurations": entries,
                    "enableClientCertificate": False,
                    "disableGateway": False,
                    "developerPortalStatus": "Enabled",
                    "legacyPortalStatus": "Disabled",
                    "virtualNetworkType": "None",
                    "publicNetworkAccess": "Enabled",
                },
            }
            self._store(resource)
        return rid

    def _get_api_management(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        return 200, [], copy.deepcopy(self._get(rid))

    def _patch_api_management(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        resource = self._get(rid)
        self._check_idle(rid)
        sent = body.get("properties") or {}
        properties = resource["properties"]
        if "hostnameConfigurations" in sent:
            entries = sent["hostnameConfigurations"] or []
            for entry in entries:
                if not entry.get("type") or not entry.get("hostName"):
                    raise ArmError(400, "ValidationError", "Each hostname configuration needs type and hostName.")
                if entry.get("certificateSource") == "BuiltIn":
                    continue
                if not (entry.get("keyVaultId") or entry.get("encodedCertificate") or entry.get("certificate")):
                    raise ArmError(
                        400,
                        "InvalidParameters",
                        f"Invalid parameter: a certificate is required for hostname '{entry['hostName']}': give "
                        "keyVaultId or encodedCertificate.",
                    )
            sent_hosts = {entry["hostName"].lower() for entry in entries}
            kept = [
                entry
                for entry in properties.get("hostnameConfigurations") or []
                if entry.get("certificateSource") == "BuiltIn" and entry["hostName"].lower() not in sent_hosts
            ]
            new_entries = kept + [copy.deepcopy(entry) for entry in entries]
            for entry in new_entries:
                if entry.get("keyVaultId"):
                    entry["certificateSource"] = "KeyVault"
                    entry["certificateStatus"] = "InProgress"
            hosts = {entry["hostName"].lower() for entry in new_entries}
            for key in [key for key in self._bound if key[0] == rid and key[1] not in hosts]:
                del self._bound[key]
            properties["hostnameConfigurations"] = new_entries
        for key, value in sent.items():
            if key not in ("hostnameConfigurations", "restore"):  # restore is an action, not a setting
                properties[key] = value
        for key in ("tags", "sku", "identity"):
            if body.get(key) is not None:
                resource[key] = body[key]
        resource["etag"] = "AAAAAAAB" + uuid.uuid4().hex[:8]

        def on_success() -> dict[str, str] | None:
            current = self._resources.get(rid)
            if current is None:
                return None
            fetched: dict[tuple[str, str | None], Bound] = {}
            for entry in current["properties"].get("hostnameConfigurations") or []:
                if not entry.get("keyVaultId"):
                    continue
                try:
                    bound = self._fetch_secret_url(entry["keyVaultId"])
                except _FetchError as exc:
                    entry["certificateStatus"] = "Failed"
                    return {
                        "code": "InvalidParameters",
                        "message": f"Failed to access KeyVault Secret for hostname '{entry['hostName']}': {exc}",
                    }
                fetched[(rid, entry["hostName"].lower())] = bound
                entry["certificate"] = self._apim_certificate(bound)
                entry["certificateStatus"] = "Completed"
            self._bound.update(fetched)
            return None

        operation = self._start_operation(rid, "Microsoft.ApiManagement", resource["location"], api_version, on_success)
        return 202, self._lro_headers(operation), None

    # -- Front Door --------------------------------------------------------------------------------------
    @staticmethod
    def _describe_secret(parameters: dict[str, Any], bound: Bound) -> None:
        parameters.update(
            secretVersion=bound.version,
            subject=bound.subject,
            expirationDate=_iso(bound.leaf.not_valid_after_utc),
            certificateAuthority=bound.issuer,
            subjectAlternativeNames=bound.dns_names,
            thumbprint=bound.thumbprint,
        )

    def add_front_door_secret(
        self,
        resource_group: str,
        profile: str,
        secret: str,
        *,
        vault: str,
        secret_name: str,
        version: str | None,
        use_latest: bool = False,
        custom_domain: str | None = None,
        host_name: str | None = None,
    ) -> str:
        """A Front Door (Standard/Premium) customer-certificate secret (``version`` None with ``use_latest``:
        the current version) and a custom domain ``custom_domain`` (default ``<secret>-domain``, host
        ``host_name``, default ``<secret>.example.test``) whose TLS settings use it."""
        profile_id = self._rid(resource_group, "Microsoft.Cdn/profiles", profile)
        rid = f"{profile_id}/secrets/{secret}"
        source = self._rid(resource_group, "Microsoft.KeyVault/vaults", vault) + f"/secrets/{secret_name}"
        with self._lock:
            try:
                bound = self._fetch_vault_id(source, secret_name, None if use_latest else version)
            except _FetchError as exc:
                raise ValueError(f"Front Door secret {secret}: {exc}") from exc
            parameters: dict[str, Any] = {
                "type": "CustomerCertificate",
                "secretSource": {"id": source},
                "useLatestVersion": use_latest,
            }
            self._describe_secret(parameters, bound)
            self._store(
                {
                    "id": rid,
                    "name": secret,
                    "type": "Microsoft.Cdn/profiles/secrets",
                    "properties": {
                        "provisioningState": "Succeeded",
                        "deploymentStatus": "NotStarted",
                        "profileName": profile,
                        "parameters": parameters,
                    },
                }
            )
            self._bound[(rid.lower(), None)] = bound
            domain = custom_domain or f"{secret}-domain"
            self._store(
                {
                    "id": f"{profile_id}/customDomains/{domain}",
                    "name": domain,
                    "type": "Microsoft.Cdn/profiles/customDomains",
                    "properties": {
                        "hostName": host_name or f"{secret}.example.test",
                        "tlsSettings": {
                            "certificateType": "CustomerCertificate",
                            "minimumTlsVersion": "TLS12",
                            "secret": {"id": rid},
                        },
                        "domainValidationState": "Approved",
                        "provisioningState": "Succeeded",
                        "deploymentStatus": "Succeeded",
                        "profileName": profile,
                    },
                }
            )
        return rid

    def _get_fd_secret(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        return 200, [], copy.deepcopy(self._get(rid))

    def _put_fd_secret(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        old = self._resources.get(rid)
        self._check_idle(rid)
        parameters = copy.deepcopy((body.get("properties") or {}).get("parameters") or {})
        if parameters.get("type") != "CustomerCertificate":
            raise ArmError(
                400, "BadRequest", f"Secret type '{parameters.get('type')}' is not supported; use CustomerCertificate."
            )
        source = (parameters.get("secretSource") or {}).get("id")
        match_source = _VAULT_ID.search(source or "")
        if match_source is None or not match_source["name"]:
            raise ArmError(400, "BadRequest", "The secretSource id must be a Key Vault secret resource id.")
        use_latest = bool(parameters.get("useLatestVersion", False))
        if old is not None and use_latest != bool(old["properties"]["parameters"].get("useLatestVersion", False)):
            raise ArmError(
                400,
                "BadRequest",
                "Changing useLatestVersion of an existing secret is not supported; create a new secret instead.",
            )
        if not use_latest and not parameters.get("secretVersion"):
            raise ArmError(400, "BadRequest", "secretVersion is required when useLatestVersion is false.")
        canonical = old["id"] if old else match.group(0)
        for key in ("subject", "expirationDate", "certificateAuthority", "subjectAlternativeNames", "thumbprint"):
            parameters.pop(key, None)
            if old is not None and key in old["properties"]["parameters"]:
                parameters[key] = old["properties"]["parameters"][key]
        resource = {
            "id": canonical,
            "name": canonical.rsplit("/", 1)[1],
            "type": "Microsoft.Cdn/profiles/secrets",
            "properties": {
                "provisioningState": "Updating",
                "deploymentStatus": "NotStarted",
                "profileName": match["profile"],
                "parameters": parameters,
            },
        }
        self._resources[rid] = resource

        def on_success() -> dict[str, str] | None:
            current = self._resources.get(rid)
            if current is None:
                return None
            params = current["properties"]["parameters"]
            version = None if params.get("useLatestVersion") else params.get("secretVersion")
            try:
                bound = self._fetch_vault_id(params["secretSource"]["id"], match_source["name"], version)
            except _FetchError as exc:
                return {"code": "BadRequest", "message": f"The Key Vault secret could not be read: {exc}"}
            if not isinstance(bound.key, rsa.RSAPrivateKey):
                return {"code": "BadRequest", "message": "The certificate must have an RSA key."}
            self._describe_secret(params, bound)
            self._bound[(rid, None)] = bound
            for key, domain in self._resources.items():
                if not _ROUTES["fd_domain"].match(key):
                    continue
                reference = (((domain["properties"].get("tlsSettings") or {}).get("secret")) or {}).get("id", "")
                if reference.lower() == rid:
                    polls = max(0, int(self.front_door_deployment_polls))
                    domain["properties"]["deploymentStatus"] = "InProgress" if polls else "Succeeded"
                    self._domain_polls[key] = polls
            return None

        operation = self._start_operation(rid, "Microsoft.Cdn", "global", api_version, on_success)
        return (201 if old is None else 200), self._lro_headers(operation), copy.deepcopy(resource)

    def _get_fd_domain(self, rid: str, match: re.Match[str], body: dict[str, Any], api_version: str) -> Any:
        domain = self._get(rid)
        if domain["properties"].get("deploymentStatus") == "InProgress":
            polls = self._domain_polls.get(rid, 0)
            if polls > 0:
                self._domain_polls[rid] = polls - 1
            else:
                domain["properties"]["deploymentStatus"] = "Succeeded"
        return 200, [], copy.deepcopy(domain)


class GatewayFrontEnd:
    """TLS on 127.0.0.1 standing in for the HTTPS listeners of the stand-in's gateways (by SNI host name)."""

    def __init__(self, arm: ArmStandIn) -> None:
        self.arm = arm
        self.handshakes: list[str | None] = []
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="gateway-front-end-")
        self._base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._base.load_cert_chain(arm.cert_file, arm.key_file)
        self._base.sni_callback = self._on_sni
        front = self

        class Connection(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10)
                try:
                    tls = front._base.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data:
                        tls.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                            b"Connection: close\r\n\r\nok\n"
                        )
                except (ssl.SSLError, OSError):
                    pass
                finally:
                    tls.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = Server(("127.0.0.1", 0), Connection)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="gateway-front-end", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _context_for(self, bound: Bound) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(bound.thumbprint)
            if context is None:
                base = Path(self._dir.name) / bound.thumbprint
                cert_file, key_file = base.with_suffix(".crt"), base.with_suffix(".key")
                cert_file.write_bytes(bound.leaf.public_bytes(serialization.Encoding.PEM))
                key_file.write_bytes(
                    bound.key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(cert_file, key_file)
                self._contexts[bound.thumbprint] = context
            return context

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> int | None:
        with self._lock:
            self.handshakes.append(server_name)
        bound = self.arm.listener_binding(server_name)
        if bound is None or bound.key is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sslobj.context = self._context_for(bound)
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()
