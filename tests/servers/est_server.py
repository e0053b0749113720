"""An EST (RFC 7030) test server on loopback HTTPS, backed by a CA from ``ca_clients.local``.

Written from RFC 7030 §4: ``/.well-known/est[/<label>]/cacerts|simpleenroll|simplereenroll``, base64
DER bodies, ``202`` + ``Retry-After`` for pending, text errors. Each ``issuer_section(...)`` call
registers a fresh label with its own behaviour (auth kind, pending count, error, garbage), so tests
never share counters or switch a global mode under each other.

Also home of the loopback HTTPS server base that ``adcs_server`` reuses.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7

from ca_clients import ClientContext, local
from tests.ca_support import DictSecretResolver, sign_request

# -- shared loopback HTTPS plumbing --------------------------------------------------------------


class LoopbackHTTPServer(ThreadingHTTPServer):
    """HTTP(S) on 127.0.0.1, port 0; TLS is negotiated on the handler thread so a stuck client blocks no one."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
        super().finish_request(request, client_address)

    def start(self) -> LoopbackHTTPServer:
        threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True).start()
        return self


@dataclass
class TestCA:
    """The CA files plus a signer; ``trust_anchor_pem`` is the root."""

    paths: dict[str, Path]
    signer: Any

    @classmethod
    def create(cls, directory: Path, common_name: str) -> TestCA:
        paths = local.create_ca_files(directory, common_name=common_name)
        config = local.Config(
            ca_certificate=str(paths["ca_certificate"]),
            ca_key={"file": str(paths["ca_key"])},
            chain=str(paths["chain"]),
        )
        return cls(paths, local.build(common_name, config, ClientContext(secrets=DictSecretResolver())))

    @property
    def trust_anchor_pem(self) -> str:
        return self.paths["root"].read_text()

    @property
    def issuing(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.paths["ca_certificate"].read_bytes())

    @property
    def root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.paths["root"].read_bytes())

    def issue(self, csr_der: bytes) -> list[x509.Certificate]:
        """Leaf, issuing CA, root."""
        return list(self.signer.sign(sign_request(csr_der)).certificates)

    def issue_tls_pair(self, directory: Path, stem: str, *, server: bool) -> tuple[Path, Path]:
        """A server cert for 127.0.0.1/localhost (with the issuing CA appended) or a client cert; returns cert, key."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"{stem}.test")])
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        csr = builder.sign(key, hashes.SHA256())
        leaf, issuing, _root = self.issue(csr.public_bytes(Encoding.DER))
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(leaf.public_bytes(Encoding.PEM) + (issuing.public_bytes(Encoding.PEM) if server else b""))
        key_path.write_bytes(
            key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def server_tls(self, directory: Path, *, client_certs: bool) -> ssl.SSLContext:
        cert, key = self.issue_tls_pair(directory, "server", server=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_certs:
            # Optional: each label decides whether a client certificate is required.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata=self.paths["root"].read_text() + self.paths["ca_certificate"].read_text())
        return ctx


def certs_only(certs: list[x509.Certificate], *, pem: bool = False) -> bytes:
    """A certs-only PKCS#7, base64 DER (RFC 7030 §4.1.3) or PEM."""
    if pem:
        return pkcs7.serialize_certificates(certs, Encoding.PEM)
    return base64.encodebytes(pkcs7.serialize_certificates(certs, Encoding.DER))


# -- EST -----------------------------------------------------------------------------------------

USERNAME = "est-client"
PASSWORD = "est-test-password"  # test-only credential, written to a file the section references


@dataclass
class Behaviour:
    auth: str = "basic"  # basic | client_cert | both | none
    mode: str = "issue"  # issue | leaf-only | pending | error | garbage
    pending_times: int = 0
    retry_after: str = "1"  # seconds, or "http-date"
    error_status: int = 400
    error_text: str = "Bad Request: the CSR was rejected by the CA policy"
    pem: bool = False
    seen: dict[str, int] = field(default_factory=dict)


class ESTServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = TestCA.create(directory / "ca", "EST Test Issuing CA")
        self.client_cert, self.client_key = self.ca.issue_tls_pair(directory, "est-client", server=False)
        (directory / "password").write_text(PASSWORD)
        self.behaviours: dict[str | None, Behaviour] = {None: Behaviour()}
        self.requests: list[tuple[str | None, str, str]] = []  # (label, endpoint, method)
        self._labels = itertools.count(1)
        self._lock = threading.Lock()
        self.httpd = LoopbackHTTPServer(self._handler(), self.ca.server_tls(directory, client_certs=True)).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.port}"

    @property
    def trust_anchor_pem(self) -> str:
        return self.ca.trust_anchor_pem

    def issuer_section(self, name: str, **options: Any) -> dict[str, Any]:
        """A complete ``type: est`` section on a fresh label.

        Server-side options: ``auth`` (basic | client_cert | both | none), ``mode`` (issue | leaf-only |
        pending | error | garbage), ``pending_times``, ``retry_after``, ``error_status``, ``error_text``,
        ``pem``. Anything else (``operation``, ``timeout_seconds``, ...) goes into the section.
        """
        server_keys = {f for f in Behaviour.__dataclass_fields__ if f != "seen"}
        behaviour = Behaviour(**{k: options.pop(k) for k in list(options) if k in server_keys})
        label = f"t{next(self._labels)}"
        with self._lock:
            self.behaviours[label] = behaviour
        section: dict[str, Any] = {
            "name": name,
            "type": "est",
            "url": self.url,
            "label": label,
            "ca_bundle": str(self.ca.paths["root"]),
        }
        if behaviour.auth in ("basic", "both"):
            section |= {"username": USERNAME, "password": {"file": str(self.directory / "password")}}
        if behaviour.auth in ("client_cert", "both"):
            section |= {"client_certificate": str(self.client_cert), "client_key": {"file": str(self.client_key)}}
        return section | options

    def requests_for(self, label: str | None) -> list[tuple[str, str]]:
        return [(endpoint, method) for lbl, endpoint, method in self.requests if lbl == label]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: bytes, content_type: str = "text/plain", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _route(self) -> tuple[str | None, str, Behaviour] | None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] != [".well-known", "est"] or len(parts) not in (3, 4):
                    return None
                label = parts[2] if len(parts) == 4 else None
                behaviour = server.behaviours.get(label)
                return (label, parts[-1], behaviour) if behaviour else None

            def _authorized(self, behaviour: Behaviour) -> bool:
                if behaviour.auth in ("basic", "both"):
                    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self._send(401, b"authentication required", WWW_Authenticate='Basic realm="est"')
                        return False
                if behaviour.auth in ("client_cert", "both") and not self.connection.getpeercert():
                    self._send(403, b"a TLS client certificate is required")
                    return False
                return True

            def do_GET(self) -> None:
                route = self._route()
                if route is None or route[1] != "cacerts":
                    self._send(404, b"not found")
                    return
                label, endpoint, behaviour = route
                server.requests.append((label, endpoint, "GET"))
                self._send(
                    200,
                    certs_only([server.ca.issuing, server.ca.root], pem=behaviour.pem),
                    "application/pkcs7-mime",
                    Content_Transfer_Encoding="base64",
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = self._route()
                if route is None or route[1] not in ("simpleenroll", "simplereenroll"):
                    self._send(404, b"not found")
                    return
                label, endpoint, behaviour = route
                server.requests.append((label, endpoint, "POST"))
                if not self._authorized(behaviour):
                    return
                if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/pkcs10":
                    self._send(415, b"expected application/pkcs10")
                    return
                try:
                    csr = x509.load_der_x509_csr(base64.b64decode(b"".join(body.split()), validate=True))
                except ValueError:
                    self._send(400, b"Bad Request: the body is not a base64 DER PKCS#10 request")
                    return
                if behaviour.mode == "error":
                    self._send(behaviour.error_status, behaviour.error_text.encode())
                    return
                if behaviour.mode == "garbage":
                    self._send(200, b"<html><body>Service temporarily moved</body></html>", "application/pkcs7-mime")
                    return
                if behaviour.mode == "pending":
                    spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                    key = hashlib.sha256(spki).hexdigest()
                    with server._lock:
                        count = behaviour.seen[key] = behaviour.seen.get(key, 0) + 1
                    if count <= behaviour.pending_times:
                        retry = behaviour.retry_after
                        if retry == "http-date":
                            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
                            retry = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
                        self._send(202, b"request accepted, not yet issued", Retry_After=retry)
                        return
                leaf, issuing, root = server.ca.issue(csr.public_bytes(Encoding.DER))
                # Root first on purpose: the order inside a certs-only PKCS#7 carries no meaning.
                certs = [leaf] if behaviour.mode == "leaf-only" else [root, leaf, issuing]
                self._send(
                    200,
                    certs_only(certs, pem=behaviour.pem),
                    "application/pkcs7-mime; smime-type=certs-only",
                    Content_Transfer_Encoding="base64",
                )

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def est_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ESTServer]:
    server = ESTServer(tmp_path_factory.mktemp("est-server"))
    yield server
    server.close()
