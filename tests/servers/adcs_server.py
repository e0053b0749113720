"""An AD CS web enrollment (certsrv) test server on loopback HTTPS, reproducing the documented pages.

``POST /certsrv/certfnsh.asp`` answers with the HTML of one of three dispositions, chosen by the
template: ``PendingApproval`` -> pending ("Your Request Id is N."), ``Denied`` (or any unknown
template) -> denied (``The disposition message is "..."``), anything in ``ISSUING_TEMPLATES`` -> issued
(a ``certnew.cer?ReqID=N&`` link). ``certnew.cer`` serves the leaf or an HTML "Disposition message:"
page; ``certnew.p7b`` serves leaf + chain as PKCS#7, armoured as "BEGIN CERTIFICATE" like AD CS does.

Authentication: Basic, and a real NTLM handshake (pyspnego acceptor, credentials from an
``NTLM_USER_FILE`` the fixture writes); an unauthenticated request gets ``401`` offering both.
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

if TYPE_CHECKING:
    from tests.servers.est_server import LoopbackHTTPServer

DOMAIN = "CORP"
USERNAME = "svc-renewal"
PASSWORD = "adcs-test-password"  # test-only credential, written to a file the section references
ISSUING_TEMPLATES = {"WebServer", "KeyVaultWebServer"}
PENDING_TEMPLATE = "PendingApproval"
DENIED_TEMPLATE = "Denied"
DENIED_MESSAGE = (
    "Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow the current "
    "user to enroll for this type of certificate."
)

ISSUED_PAGE = """<HTML><HEAD><TITLE>Microsoft Active Directory Certificate Services</TITLE>
<Script Language="JavaScript">
    function handleGetCert() {{
        location="certnew.cer?ReqID={req_id}&"+getEncoding();
    }}
    function handleGetChain() {{
        location="certnew.p7b?ReqID={req_id}&"+getEncoding();
    }}
</Script></HEAD><BODY>
<P ID=locPageTitle> <B> Certificate Issued </B>
<P ID=locCertReady>The certificate you requested was issued to you.
<A Href="certnew.cer?ReqID={req_id}&amp;Enc=b64">Download certificate</A>
</BODY></HTML>"""

PENDING_PAGE = """<HTML><HEAD><TITLE>Microsoft Active Directory Certificate Services</TITLE></HEAD><BODY>
<P ID=locPageTitle> <B> Certificate Pending </B>
<P ID=locPendInfo> Your certificate request has been received. However, you must wait for an administrator
to issue the certificate you requested.
<P> Your Request Id is {req_id}.
<P ID=locPendInfo2> Please return to this web site in a day or two to retrieve your certificate.
</BODY></HTML>"""

DENIED_PAGE = """<HTML><HEAD><TITLE>Microsoft Active Directory Certificate Services</TITLE></HEAD><BODY>
<P ID=locPageTitle> <B> Certificate Request Denied</B>
<P ID=locDenied> Your certificate request was denied.
<P> Your Request Id is {req_id}. The disposition message is "{message}".
<P> Contact your administrator for further information.
</BODY></HTML>"""

RETRIEVE_ERROR_PAGE = """<HTML><HEAD><TITLE>Microsoft Active Directory Certificate Services</TITLE></HEAD><BODY>
<P ID=locPageTitle> <B> Error </B>
<P ID=locErrorMsg> Your certificate request was not issued.
<P ID=locDispMsg>Request Id: {req_id}<br>Disposition message:\t\t{message}
</BODY></HTML>"""


@dataclass
class Request:
    status: str  # issued | pending | denied
    csr_der: bytes
    message: str = ""
    certs: list[x509.Certificate] = field(default_factory=list)


class ADCSServer:
    def __init__(self, directory: Path) -> None:
        # Imported here, not at the top: est_server is itself a plugin and must be loaded as one first.
        from tests.servers.est_server import LoopbackHTTPServer, TestCA

        self.directory = directory
        self.ca = TestCA.create(directory / "ca", "AD CS Test Issuing CA")
        (directory / "password").write_text(PASSWORD)
        (directory / "ntlm-users").write_text(f"{DOMAIN}:{USERNAME}:{PASSWORD}\n")
        self.store: dict[int, Request] = {}
        self.log: list[tuple[str, str, str]] = []  # (method, page, auth scheme)
        self._ids = itertools.count(11)
        self._lock = threading.Lock()
        self.httpd: LoopbackHTTPServer = LoopbackHTTPServer(
            self._handler(), self.ca.server_tls(directory, client_certs=False)
        ).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.port}/certsrv"

    @property
    def trust_anchor_pem(self) -> str:
        return self.ca.trust_anchor_pem

    def issuer_section(self, name: str, **options: Any) -> dict[str, Any]:
        """A complete ``type: adcs`` section; ``auth`` basic (default) or ntlm, ``template`` picks the disposition."""
        auth = options.pop("auth", "basic")
        section: dict[str, Any] = {
            "name": name,
            "type": "adcs",
            "url": self.url,
            "template": options.pop("template", "WebServer"),
            "auth": auth,
            "username": f"{DOMAIN}\\{USERNAME}" if auth == "ntlm" else USERNAME,
            "password": {"file": str(self.directory / "password")},
            "ca_bundle": str(self.ca.paths["root"]),
        }
        return section | options

    def approve(self, req_id: int) -> None:
        with self._lock:
            entry = self.store[req_id]
            entry.status, entry.message = "issued", "Issued"
            entry.certs = self.ca.issue(entry.csr_der)

    def deny(self, req_id: int, message: str = "Denied by CORP\\ca-manager") -> None:
        with self._lock:
            entry = self.store[req_id]
            entry.status, entry.message = "denied", message

    def _submit(self, form: dict[str, str]) -> str:
        attributes = dict(
            line.split(":", 1) for line in form.get("CertAttrib", "").replace("\r", "").split("\n") if ":" in line
        )
        template = attributes.get("CertificateTemplate", "")
        req_id = next(self._ids)
        try:
            csr = x509.load_pem_x509_csr(form.get("CertRequest", "").encode())
        except ValueError:
            self.store[req_id] = Request("denied", b"", "Error Parsing Request  ASN1 bad tag value met. 0x8009310b")
            return DENIED_PAGE.format(req_id=req_id, message=self.store[req_id].message)
        csr_der = csr.public_bytes(Encoding.DER)
        with self._lock:
            if template in ISSUING_TEMPLATES:
                self.store[req_id] = Request("issued", csr_der, "Issued", self.ca.issue(csr_der))
                return ISSUED_PAGE.format(req_id=req_id)
            if template == PENDING_TEMPLATE:
                self.store[req_id] = Request("pending", csr_der, "Taken Under Submission")
                return PENDING_PAGE.format(req_id=req_id)
            message = (
                DENIED_MESSAGE
                if template == DENIED_TEMPLATE
                else f"Denied by Policy Module  0x80094800, The request was for a certificate template that is "
                f"not supported by the Active Directory Certificate Services policy: {template}."
            )
            self.store[req_id] = Request("denied", csr_der, message)
            return DENIED_PAGE.format(req_id=req_id, message=message)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes
            ntlm: Any = None  # per connection: NTLM authenticates the connection

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "text/html", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _challenge(self, token: str | None = None) -> None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", f"NTLM {token}" if token else "NTLM")
                if token is None:
                    self.send_header("WWW-Authenticate", 'Basic realm="certsrv"')
                body = b"<html><body>401 - Unauthorized: Access is denied due to invalid credentials.</body></html>"
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authenticated(self) -> str | None:
                """The scheme that authenticated this request, or None after sending a 401."""
                header = self.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme == "Basic":
                    expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
                    if token == expected:
                        return "basic"
                    self._challenge()
                    return None
                if scheme == "NTLM" and token:
                    import spnego

                    if self.ntlm is None or self.ntlm.complete:
                        self.ntlm = spnego.server(protocol="ntlm")
                    try:
                        out = self.ntlm.step(base64.b64decode(token))
                    except Exception:  # noqa: BLE001 - any NTLM failure is "access denied"
                        self.ntlm = None
                        self._challenge()
                        return None
                    if not self.ntlm.complete:
                        self._challenge(base64.b64encode(out or b"").decode())
                        return None
                    return "ntlm"
                if self.ntlm is not None and self.ntlm.complete:
                    return "ntlm"  # later requests on an NTLM-authenticated connection
                self._challenge()
                return None

            def _page(self) -> tuple[str, dict[str, str]]:
                parsed = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
                head, _, page = parsed.path.rpartition("/")
                return (page.lower() if head.lower() == "/certsrv" else ""), query

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                page, _ = self._page()
                scheme = self._authenticated()
                if scheme is None:
                    return
                server.log.append(("POST", page, scheme))
                if page != "certfnsh.asp":
                    self._send(404, b"<html>404 - File or directory not found.</html>")
                    return
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
                if form.get("Mode") != "newreq":
                    self._send(200, b"<html>Unexpected Mode</html>")
                    return
                self._send(200, server._submit(form).encode())

            def do_GET(self) -> None:
                page, query = self._page()
                scheme = self._authenticated()
                if scheme is None:
                    return
                server.log.append(("GET", page, scheme))
                if page not in ("certnew.cer", "certnew.p7b"):
                    self._send(404, b"<html>404 - File or directory not found.</html>")
                    return
                try:
                    entry = server.store[int(query.get("ReqID", ""))]
                    req_id = int(query["ReqID"])
                except (KeyError, ValueError):
                    page_html = RETRIEVE_ERROR_PAGE.format(
                        req_id=query.get("ReqID", ""), message="The parameter is incorrect. 0x80070057"
                    )
                    self._send(200, page_html.encode())
                    return
                if entry.status != "issued":
                    self._send(200, RETRIEVE_ERROR_PAGE.format(req_id=req_id, message=entry.message).encode())
                    return
                b64 = query.get("Enc", "bin").lower() == "b64"
                if page == "certnew.cer":
                    leaf = entry.certs[0]
                    body = leaf.public_bytes(Encoding.PEM if b64 else Encoding.DER)
                    self._send(200, body, "application/pkix-cert")
                    return
                # AD CS puts the issuing CA ahead of the leaf; the client must not rely on the order.
                der = pkcs7.serialize_certificates(list(reversed(entry.certs)), Encoding.DER)
                if b64:
                    lines = base64.encodebytes(der).decode().replace("\n", "\r\n")
                    body = f"-----BEGIN CERTIFICATE-----\r\n{lines}-----END CERTIFICATE-----\r\n".encode()
                else:
                    body = der
                self._send(200, body, "application/x-pkcs7-certificates")

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def adcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ADCSServer]:
    server = ADCSServer(tmp_path_factory.mktemp("adcs-server"))
    # The NTLM acceptor reads its user store from this variable (initiators with a password ignore it).
    previous = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(server.directory / "ntlm-users")
    yield server
    if previous is None:
        os.environ.pop("NTLM_USER_FILE", None)
    else:
        os.environ["NTLM_USER_FILE"] = previous
    server.close()
