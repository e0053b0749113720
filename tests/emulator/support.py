"""Test helpers: a signing CA for merges, and a local web hook that records Event Grid deliveries."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class TestCA:
    __test__ = False

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def sign(self, csr_der: bytes, days: int = 90, public_key: Any = None) -> bytes:
        csr = x509.load_der_x509_csr(csr_der)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key or csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
        )
        for ext in csr.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class Receiver:
    """A web hook: answers the validation handshakes and records notifications."""

    url: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)  # {"headers", "body"}
    statuses: list[int] = field(default_factory=list)  # answers to use first, then 200
    validate: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [e for n in self.notifications if n["status"] == 200 for e in n["body"]]
        return [e for e in found if event_type in (None, e.get("eventType"), e.get("type"))]


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_OPTIONS(self) -> None:
            origin = self.headers.get("WebHook-Request-Origin", "")
            self.send_response(200 if state.validate else 403)
            self.send_header("WebHook-Allowed-Origin", origin)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                code = body[0]["data"]["validationCode"]
                reply = json.dumps({"validationResponse": code if state.validate else "wrong"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                return
            with state.lock:
                status = state.statuses.pop(0) if state.statuses else 200
                state.notifications.append({"headers": dict(self.headers), "body": body, "status": status})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
