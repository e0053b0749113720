"""A CA under the test's control: an HTTPS server that speaks CFSSL's ``/sign`` and ``/bundle`` and
answers each CSR with whatever chain the test chose (see ``tests.hostile_chains``)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from emulator.crypto import make_tls_material
from tests.hostile_chains import Hierarchy

Answer = Callable[[Hierarchy, x509.CertificateSigningRequest], list[x509.Certificate]]


@dataclass
class HostileCfssl:
    url: str
    tls_ca: Path
    pki: Hierarchy
    answer: Answer
    signed: int = 0
    pending_bundle: dict[str, list[x509.Certificate]] = field(default_factory=dict)

    @property
    def anchor_pem(self) -> str:
        return self.pki.root.cert.public_bytes(Encoding.PEM).decode()

    def section(self, name: str = "hostile") -> dict[str, Any]:
        return {
            "name": name,
            "type": "cfssl",
            "url": self.url,
            "profile": "open",
            "chain_source": "bundle",
            "ca_bundle": str(self.tls_ca),
            "trust_anchors": [self.anchor_pem],
            "timeout_seconds": 5,
        }


def _pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


@contextmanager
def hostile_cfssl(tmp: Path, pki: Hierarchy) -> Iterator[HostileCfssl]:
    ca, cert, key = make_tls_material(tmp / "hostile-tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state = HostileCfssl(url="", tls_ca=ca, pki=pki, answer=lambda h, csr: h.honest(csr))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            endpoint = self.path.rsplit("/", 1)[-1]
            if endpoint == "sign":
                csr = x509.load_pem_x509_csr(body["certificate_request"].encode())
                chain = state.answer(state.pki, csr)
                state.signed += 1
                leaf_pem = _pem(chain[:1])
                state.pending_bundle[leaf_pem] = chain[1:]
                result: dict[str, Any] = {"certificate": leaf_pem}
            elif endpoint == "bundle":
                result = {"bundle": _pem(state.pending_bundle.get(body.get("certificate", ""), []))}
            else:
                return self._send(404, {"success": False, "errors": [{"code": 404, "message": "no such endpoint"}]})
            self._send(200, {"success": True, "result": result, "errors": [], "messages": []})

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
