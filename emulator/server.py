"""HTTPS surface: one TLS listener per vault on 127.0.0.1, routing, auth, knobs, the admin API."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import admin, auth, crypto
from .app import Emulator
from .certificates import CertificateService, Request, Result
from .errors import ServiceError

log = logging.getLogger("emulator")

API_VERSIONS = ("7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
MAX_BODY = 1024 * 1024
_VERSION = re.compile(r"^[0-9a-zA-Z-]*$")

# (collection, tail pattern, method) -> (operation name, service method name)
_NAME_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("create", "POST"): ("create", "create"),
    ("import", "POST"): ("import", "import_"),
    ("pending", "GET"): ("get_pending", "get_pending"),
    ("pending", "PATCH"): ("cancel", "cancel"),
    ("pending", "DELETE"): ("delete_pending", "delete_pending"),
    ("pending/merge", "POST"): ("merge", "merge"),
    ("policy", "GET"): ("get_policy", "get_policy"),
    ("policy", "PATCH"): ("update_policy", "update_policy"),
    ("versions", "GET"): ("list_versions", "list_versions"),
    ("backup", "POST"): ("backup", "backup"),
}


def route(method: str, path: str) -> tuple[str, str, str, str]:
    """Map a request to (operation, service method, certificate name, version) or raise 404/405."""
    parts = path.split("/")[1:]
    if parts and parts[-1] == "" and len(parts) in (2,):
        parts = parts[:-1]  # "/certificates/" is the collection
    collection = parts[0] if parts else ""
    found: tuple[str, str] | None = None
    name = version = ""
    if collection == "certificates":
        if len(parts) == 1:
            found = {"GET": ("list", "list")}.get(method)
        elif len(parts) == 2 and parts[1] == "restore" and method == "POST":
            found = ("restore", "restore")  # the name comes from the backup blob
        elif len(parts) == 2:
            name = parts[1]
            found = {
                "GET": ("get_certificate", "get"),
                "DELETE": ("delete", "delete"),
                "PATCH": ("update_certificate", "update"),
            }.get(method)
        else:
            name, tail = parts[1], "/".join(parts[2:])
            found = _NAME_ROUTES.get((tail, method))
            if (
                found is None
                and len(parts) == 3
                and tail not in ("create", "import", "pending", "policy", "versions", "backup")
            ):
                version = tail
                found = {"GET": ("get_certificate", "get"), "PATCH": ("update_certificate", "update")}.get(method)
    elif collection == "deletedcertificates":
        if len(parts) == 1:
            found = {"GET": ("list_deleted", "list_deleted")}.get(method)
        elif len(parts) == 2:
            name = parts[1]
            found = {"GET": ("get_deleted", "get_deleted"), "DELETE": ("purge", "purge")}.get(method)
        elif len(parts) == 3 and parts[2] == "recover":
            name = parts[1]
            found = {"POST": ("recover", "recover")}.get(method)
    elif collection == "secrets" and len(parts) in (2, 3):
        name, version = parts[1], parts[2] if len(parts) == 3 else ""
        found = {"GET": ("get_secret", "get_secret")}.get(method)
    if found is None or (not name and collection in ("secrets",)) or not _VERSION.match(version):
        raise ServiceError(404, "NotFound", f"The requested resource {method} {path} was not found.")
    return found[0], found[1], name, version


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KeyVaultEmulator/1.0"
    timeout = 30  # a client that promises a body and never sends it cannot hold a thread forever
    disable_nagle_algorithm = True
    server: VaultListener

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = do_GET  # noqa: N815 - stdlib naming

    def _handle(self) -> None:
        extra: dict[str, str] = {}
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            if url.path == "/_admin" or url.path.startswith("/_admin/"):
                status, payload = admin.handle(self.server.host, self.command, url.path, query, body)
            else:
                status, payload = self._service(url.path, query, body, extra)
        except ServiceError as exc:
            status, payload = exc.status, exc.body()
            if exc.status == 401:
                extra["WWW-Authenticate"] = auth.challenge_header(self.server.port)
        except Exception:  # a bug must still answer, not hang the client
            log.exception("unhandled error for %s %s", self.command, self.path)
            status, payload = 500, ServiceError(500, "InternalServerError", "Unexpected emulator error.").body()
        self._respond(status, payload, extra)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ServiceError(411, "LengthRequired", "Chunked request bodies are not supported; send Content-Length.")
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise ServiceError(400, "BadParameter", "Invalid Content-Length header.") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the unread body would otherwise be parsed as the next request
            self._discard(length)
            raise ServiceError(413, "RequestBodyTooLarge", f"The request body exceeds {MAX_BODY} bytes.")
        return self.rfile.read(length) if length else b""

    def _discard(self, length: int) -> None:
        """Read (up to 64 MiB of) an oversized body so the client gets the 413 instead of a reset."""
        remaining = min(length, 64 * 1024 * 1024)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)

    def _service(self, path: str, query: dict[str, str], body: bytes, extra: dict[str, str]) -> Result:
        auth.check(self.headers.get("Authorization"))
        api_version = query.get("api-version")
        if not api_version:
            raise ServiceError(400, "BadParameter", "The request is missing the api-version query parameter.")
        if api_version not in API_VERSIONS:
            raise ServiceError(
                400,
                "BadParameter",
                f"The specified version ({api_version}) is not recognized. Consider using the latest supported "
                f"version ({API_VERSIONS[-1]}).",
            )
        operation, method, name, version = route(self.command, path)
        host = self.server.host
        vault = host.vault(self.server.vault_name)
        host.gate.admit(vault.name, operation)
        req = Request(vault, self.server.base_url, api_version, query, body, name, version)
        service: CertificateService = host.service
        status, payload = getattr(service, method)(req)
        if operation == "create" and payload is not None:
            extra["Location"] = (
                f"{self.server.base_url}/certificates/{name}/pending?api-version={api_version}&request_id={payload['request_id']}"
            )
        return status, payload

    def _respond(self, status: int, payload: dict[str, Any] | None, extra: dict[str, str]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b""
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-keyvault-service-version", "1.9.0.0")
        for key, value in extra.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # One write for headers and body: fewer TLS records per response.
        self._headers_buffer.append(b"\r\n" + (body if self.command != "HEAD" else b""))  # type: ignore[attr-defined]
        self.flush_headers()


class VaultListener(ThreadingHTTPServer):
    """One vault's HTTPS endpoint: the URL root is the vault, as the SDK requires."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, host: EmulatorServer, vault_name: str, port: int, context: ssl.SSLContext) -> None:
        self.host = host
        self.vault_name = vault_name
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)
        self.port = self.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake runs in the request thread, so a slow client cannot stall accept().
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # broken TLS handshakes and resets are the client's business


class EmulatorServer:
    """Owns the emulator state, the TLS material and one listener per vault."""

    def __init__(self, *, state_path: Path | None = None, tls_dir: Path | None = None) -> None:
        self._tmp = None if tls_dir else tempfile.TemporaryDirectory(prefix="kv-emulator-")
        folder = tls_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.ca_bundle, cert, key = crypto.make_tls_material(folder)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.core = Emulator(state_path=state_path)
        self.listeners: dict[str, VaultListener] = {}
        self._lock = threading.Lock()

    # the request handlers reach the core through these
    @property
    def gate(self):  # type: ignore[no-untyped-def]
        return self.core.gate

    @property
    def service(self) -> CertificateService:
        return self.core.service

    def vault(self, name: str):  # type: ignore[no-untyped-def]
        return self.core.vault(name)

    def add_vault(
        self, name: str, port: int = 0, *, subscription: str | None = None, geography: str | None = None
    ) -> str:
        """Serve a vault (a known one gets the subscription and geography given); returns its URL."""
        with self._lock:
            self.core.add_vault(name, subscription=subscription, geography=geography)
            if name in self.listeners:
                return self.listeners[name].base_url
            listener = VaultListener(self, name, port, self.context)
            self.listeners[name] = listener
            self.core.base_urls[name] = listener.base_url
            threading.Thread(target=listener.serve_forever, daemon=True, name=f"vault-{name}").start()
            return listener.base_url

    def vault_urls(self) -> dict[str, str]:
        return {name: listener.base_url + "/" for name, listener in self.listeners.items()}

    def start(self, vaults: list[str], port: int = 0) -> None:
        names = list(dict.fromkeys([*vaults, *self.core.vaults]))
        for i, name in enumerate(names):
            self.add_vault(name, port + i if port else 0)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.shutdown()
            listener.server_close()
        self.core.close()
        if self._tmp is not None:
            self._tmp.cleanup()
