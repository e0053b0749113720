"""Misbehaving CA endpoints for the conformance suite: 5xx, garbage, a certificate for another key, silence.

Each :class:`FaultServer` serves one fault on every path over plain HTTP on loopback, so any protocol
client's URL field can be pointed at it. ``wrong-key`` answers in the shape each protocol expects
(EST PKCS#7, AD CS certsrv pages, CFSSL and Vault JSON) with a well-formed certificate whose key is
not the CSR's: only the leaf-key check can catch it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

FAULTS = ("unreachable", "timeout", "5xx", "garbage", "wrong-key")
GARBAGE = b"\x00\x1f<html><body>Gateway says hello \xff\xfe</body></html>"


def _other_key_chain(common_name: str = "app.example.test") -> tuple[x509.Certificate, x509.Certificate]:
    """A leaf for a fresh key (not any CSR's) and the self-signed CA that issued it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fault Server CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return leaf, ca


class FaultServer:
    """Plain-HTTP loopback server answering every request with one fault."""

    def __init__(self, fault: str) -> None:
        if fault not in ("5xx", "garbage", "wrong-key"):
            raise ValueError(f"FaultServer serves 5xx, garbage or wrong-key, not {fault!r}")
        self.fault = fault
        self.leaf, self.ca = _other_key_chain()
        self.hits: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name=f"fault-{fault}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _wrong_key(self, method: str, path: str) -> tuple[int, str, bytes]:
        leaf_pem = self.leaf.public_bytes(Encoding.PEM).decode()
        ca_pem = self.ca.public_bytes(Encoding.PEM).decode()
        p7 = pkcs7.serialize_certificates([self.ca, self.leaf], Encoding.DER)
        lower = path.lower()
        if "/.well-known/est/" in lower:
            return 200, "application/pkcs7-mime; smime-type=certs-only", base64.encodebytes(p7)
        if "certfnsh.asp" in lower:
            return 200, "text/html", b'<html><script>location="certnew.cer?ReqID=7&"+getEncoding();</script></html>'
        if "certnew.p7b" in lower:
            armoured = base64.encodebytes(p7).decode()
            return (
                200,
                "application/x-pkcs7-certificates",
                (f"-----BEGIN CERTIFICATE-----\n{armoured}-----END CERTIFICATE-----\n".encode()),
            )
        if "certnew.cer" in lower:
            return 200, "application/pkix-cert", leaf_pem.encode()
        body: dict[str, Any]
        if "login" in lower:  # Vault auth methods
            body = {"auth": {"client_token": "fault-token", "lease_duration": 3600, "renewable": False}}
        elif lower.endswith("/info"):  # CFSSL issuing CA
            body = {"success": True, "result": {"certificate": ca_pem}, "errors": [], "messages": []}
        elif lower.endswith("/bundle"):
            body = {"success": True, "result": {"bundle": leaf_pem + ca_pem, "root": ca_pem}, "errors": []}
        elif "/ca_chain" in lower or lower.endswith("/ca/pem"):
            return 200, "application/pkix-cert", ca_pem.encode()
        else:  # CFSSL sign/authsign and Vault sign in one body; each reads its own keys
            body = {
                "success": True,
                "result": {"certificate": leaf_pem},
                "errors": [],
                "messages": [],
                "data": {"certificate": leaf_pem, "issuing_ca": ca_pem, "ca_chain": [ca_pem], "serial_number": "07"},
            }
        return 200, "application/json", json.dumps(body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.hits.append((self.command, self.path))
                if server.fault == "5xx":
                    status, ctype = 500, "text/plain"
                    body = b'{"errors":["internal server error"],"success":false}'
                elif server.fault == "garbage":
                    status, ctype, body = 200, "application/octet-stream", GARBAGE
                else:
                    status, ctype, body = server._wrong_key(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = _answer  # noqa: N815 - http.server's naming

        return Handler


class SilentServer:
    """Accepts connections and never answers: the client's read timeout is all that ends the call."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="fault-silent", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # keep it open, say nothing

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self.held:
            conn.close()
