"""pebble with ACME Renewal Information (RFC 9773): a TLS proxy of our own in front of the real pebble.

Debian's pebble (2.4) has no ARI: its directory has no ``renewalInfo`` and it ignores ``replaces``. This
proxy terminates TLS with pebble's listener certificate (so ``pebble.ca_bundle`` verifies it), forwards
every request to pebble with the client's ``Host`` header (pebble builds its URLs and checks each JWS
``url`` from that header, so the whole ACME conversation is pebble's own, through the proxy), and adds:

- ``renewalInfo`` in the directory, served at ``/renewal-info/<certID>`` as RFC 9773 §4.2 says: for a
  certificate pebble issued through this proxy (its leaf is read from the download), or any certID the test
  gave a window, ``200 {"suggestedWindow": {"start", "end"}, "explanationURL"?}`` with ``Retry-After``;
  ``404`` for a certificate it does not know. The default window is the middle of the lifetime (one day
  either side of half the validity), as public CAs suggest; ``set_window`` moves one (a revocation).
- ``replaces`` in new orders (RFC 9773 §5): every decoded new-order payload is recorded (``orders``); with
  ``refuse_replaces = "alreadyReplaced"`` an order that carries ``replaces`` is answered ``409`` with an
  ``urn:ietf:params:acme:error:alreadyReplaced`` problem (``"malformed"``: ``400``), with a fresh nonce from
  pebble, without reaching pebble; an order without it goes through.

Fixture ``pebble_ari`` (function scope, over the session's ``pebble``): an :class:`AriProxy` reset for the
test, with ``directory_url``, ``ca_bundle`` and ``issuer_section(name, **overrides)`` (pebble's section with
the directory behind the proxy). It skips, or fails under RENEWAL_REQUIRE_SERVERS=1, when pebble is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509

from ca_clients.ari import ari_cert_id
from devtools.pebble import PebbleServer

__all__ = ["AriProxy", "pebble_ari"]

RENEWAL_INFO_PATH = "/renewal-info/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}
PROBLEM = "urn:ietf:params:acme:error:"


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class AriProxy:
    pebble: PebbleServer
    port: int = 0
    retry_after: str | None = "21600"
    """The Retry-After of renewalInfo answers (seconds, or an HTTP date; None sends none)."""
    explanation_url: str | None = None
    refuse_replaces: str | None = None
    """None, "alreadyReplaced" or "malformed": how a new order that carries ``replaces`` is answered."""
    renewal_info_status: int = 200
    """Anything else answers every renewalInfo request with this status (a CA in trouble)."""
    issued: dict[str, x509.Certificate] = field(default_factory=dict)
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    renewal_info_requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_bundle(self) -> str:
        return self.pebble.ca_bundle

    def issuer_section(self, name: str, **overrides: Any) -> dict[str, Any]:
        return self.pebble.issuer_section(name, directory_url=self.directory_url, **overrides)

    def set_window(self, cert_id: str, start: dt.datetime, end: dt.datetime) -> None:
        with self.lock:
            self.windows[cert_id] = (start, end)

    def window_of(self, cert_id: str) -> tuple[dt.datetime, dt.datetime] | None:
        with self.lock:
            if cert_id in self.windows:
                return self.windows[cert_id]
            cert = self.issued.get(cert_id)
        if cert is None:
            return None
        half = cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) / 2
        half = half.replace(microsecond=0)
        return half - dt.timedelta(days=1), half + dt.timedelta(days=1)

    def replaces_sent(self) -> list[str | None]:
        with self.lock:
            return [order.get("replaces") for order in self.orders]

    def reset(self) -> None:
        with self.lock:
            self.retry_after, self.explanation_url, self.refuse_replaces = "21600", None, None
            self.renewal_info_status = 200
            self.windows.clear()
            self.orders.clear()
            self.renewal_info_requests.clear()

    # -- the proxy ---------------------------------------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        context = ssl.create_default_context(cafile=self.pebble.ca_bundle)
        connection = http.client.HTTPSConnection("127.0.0.1", self.pebble.port, context=context, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list, bytes]:
        path, host = handler.path, handler.headers.get("Host", f"127.0.0.1:{self.port}")
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        if path.startswith(RENEWAL_INFO_PATH):
            return self._renewal_info(path.removeprefix(RENEWAL_INFO_PATH))
        if handler.command == "POST" and path == "/order-plz":
            refused = self._new_order(body, host)
            if refused is not None:
                return refused
        status, reply_headers, reply = self.forward(handler.command, path, headers, body)
        if path == "/dir" and status == 200:
            directory = json.loads(reply)
            directory["renewalInfo"] = f"https://{host}{RENEWAL_INFO_PATH.rstrip('/')}"
            reply = json.dumps(directory).encode()
        if any(k.lower() == "content-type" and "pem-certificate-chain" in v for k, v in reply_headers):
            leaf = x509.load_pem_x509_certificates(reply)[0]
            with self.lock:
                self.issued[ari_cert_id(leaf)] = leaf
        return status, reply_headers, reply

    def _renewal_info(self, cert_id: str) -> tuple[int, list, bytes]:
        with self.lock:
            self.renewal_info_requests.append(cert_id)
            status = self.renewal_info_status
        if status != 200:
            problem = {"type": f"{PROBLEM}serverInternal", "detail": "renewal information unavailable"}
            return status, [("Content-Type", "application/problem+json")], json.dumps(problem).encode()
        window = self.window_of(cert_id)
        if window is None:
            problem = {"type": f"{PROBLEM}malformed", "detail": "no such certificate", "status": 404}
            return 404, [("Content-Type", "application/problem+json")], json.dumps(problem).encode()
        document: dict[str, Any] = {"suggestedWindow": {"start": _rfc3339(window[0]), "end": _rfc3339(window[1])}}
        if self.explanation_url:
            document["explanationURL"] = self.explanation_url
        headers = [("Content-Type", "application/json")]
        if self.retry_after is not None:
            headers.append(("Retry-After", self.retry_after))
        return 200, headers, json.dumps(document).encode()

    def _new_order(self, body: bytes, host: str) -> tuple[int, list, bytes] | None:
        payload = json.loads(_b64decode(json.loads(body)["payload"]))
        with self.lock:
            self.orders.append(payload)
            refuse = self.refuse_replaces
        if not refuse or "replaces" not in payload:
            return None
        status = 409 if refuse == "alreadyReplaced" else 400
        detail = f"{payload['replaces']} cannot be replaced"
        problem = {"type": f"{PROBLEM}{refuse}", "detail": detail, "status": status}
        nonce_status, nonce_headers, _ = self.forward("HEAD", "/nonce-plz", {"Host": host}, b"")
        assert nonce_status == 200, nonce_status
        nonce = next(v for k, v in nonce_headers if k.lower() == "replay-nonce")
        headers = [("Content-Type", "application/problem+json"), ("Replay-Nonce", nonce)]
        return status, headers, json.dumps(problem).encode()


def _serve(proxy: AriProxy) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, headers, payload = proxy.answer(self, body)
            except Exception as exc:  # noqa: BLE001 - a proxy bug must show as a 502, not a hung client
                status, headers, payload = 502, [("Content-Type", "text/plain")], repr(exc).encode()
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in HOP_BY_HOP and key.lower() not in ("date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = _any  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(proxy.pebble.workdir / "cert.pem", proxy.pebble.workdir / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    proxy.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def _ari_proxy(pebble: PebbleServer) -> Iterator[AriProxy]:
    proxy = AriProxy(pebble)
    server = _serve(proxy)
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pebble_ari(_ari_proxy: AriProxy) -> AriProxy:
    _ari_proxy.reset()
    return _ari_proxy
