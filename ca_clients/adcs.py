"""Microsoft AD CS through the certsrv web enrollment pages (``/certsrv``), spoken with requests.

Submission is ``POST certfnsh.asp`` (``Mode=newreq``); the HTML answer has one of three dispositions:
issued (a ``certnew.cer?ReqID=N&`` link; the chain then comes from ``certnew.p7b``), pending ("Your
Request Id is N": the ticket keeps N and later calls poll ``certnew.cer?ReqID=N``), or denied
(``The disposition message is "..."``). Authentication is NTLM (requests-ntlm), Kerberos
(requests-gssapi, imported only when configured) or Basic.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import re
from typing import Any, Literal

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import ClientContext, IssuancePending, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from .chain import leaf_first, load_pkcs7_certs
from .config_types import HttpUrl, SecretRef, pem_text
from .est import tls_files

_ISSUED = re.compile(r"certnew\.cer\?ReqID=(\d+)&")
_PENDING = re.compile(r"Your Request Id is (\d+)", re.IGNORECASE)
_DISPOSITION = re.compile(r'The disposition message is "([^"]*)"', re.IGNORECASE)
# certnew.cer answers an unissued request with an HTML page: "Disposition message:\t\t<text>".
_RETRIEVE_DISPOSITION = re.compile(r"Disposition message:\s*([^\r\n<]+)", re.IGNORECASE)
_STILL_PENDING = ("taken under submission", "pending")
_TEXT_LIMIT = 500


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="web enrollment base, e.g. https://ca01.corp.example/certsrv")
    template: str = Field(min_length=1, description="certificate template name (not its display name)")
    auth: Literal["ntlm", "kerberos", "basic"] = "ntlm"
    username: str | None = Field(default=None, description=r"DOMAIN\user for NTLM, user for Basic")
    password: SecretRef = Field(default=None, description="secret reference to the password (NTLM, Basic)")
    kerberos_principal: str | None = Field(default=None, description="service principal override, e.g. HTTP@ca01")
    ca_bundle: str | None = Field(default=None, description="PEM text or path trusted for the server's TLS cert")
    pending_retry_seconds: int = Field(
        default=900, ge=1, description="how long to wait before polling a pending request"
    )
    extra_attributes: list[str] = Field(default_factory=list, description="more CertAttrib lines, e.g. 'SAN:dns=...'")

    @model_validator(mode="after")
    def _credentials(self) -> Config:
        if self.auth in ("ntlm", "basic") and (self.username is None or self.password is None):
            raise ValueError(f"auth {self.auth!r} needs username and password")
        return self


def _kerberos_auth(name: str, principal: str | None) -> Any:
    try:
        from requests_gssapi import OPTIONAL, HTTPSPNEGOAuth  # type: ignore[import-not-found]
    except ImportError:
        from .registry import ConfigProblem, IssuerConfigError

        raise IssuerConfigError(
            [
                ConfigProblem(
                    f"issuers.{name}.auth",
                    "kerberos needs the requests-gssapi package (pip install requests-gssapi; "
                    "building it needs the krb5 development headers)",
                )
            ]
        ) from None
    return HTTPSPNEGOAuth(mutual_authentication=OPTIONAL, target_name=principal)


def _page_text(body: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    return " ".join(text.split())[:_TEXT_LIMIT]


def parse_pkcs7_or_cert(body: bytes) -> list[x509.Certificate]:
    """certnew.p7b answers; AD CS armours a b64 PKCS#7 as "BEGIN CERTIFICATE", so strip any armour first."""
    text = body.strip()
    if text.startswith(b"-----BEGIN"):
        if b"BEGIN PKCS7" in text:
            return load_pkcs7_certs(text)
        lines = [ln for ln in text.splitlines() if not ln.startswith(b"-----")]
        try:
            der = base64.b64decode(b"".join(b"".join(ln.split()) for ln in lines), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("armoured body is not base64") from exc
    else:
        try:
            der = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            der = text
    try:
        certs = load_pkcs7_certs(der)
    except ValueError:
        certs = [x509.load_der_x509_certificate(der)]  # raises ValueError when it is neither
    if not certs:
        raise ValueError("no certificates in the answer")
    return certs


class ADCSClient:
    def __init__(self, name: str, config: Config, *, timeout: float, auth: Any, ca_bundle_pem: str | None) -> None:
        self.name = name
        self._config = config
        self._timeout = timeout
        self._auth = auth
        self._ca_bundle_pem = ca_bundle_pem

    def __repr__(self) -> str:  # never show credentials
        return f"ADCSClient(name={self.name!r}, url={self._config.url!r}, template={self._config.template!r})"

    def _call(self, session: requests.Session, method: str, page: str, **kwargs: Any) -> requests.Response:
        page_name = page.split("?")[0]
        try:
            with tls_files(self._ca_bundle_pem, None) as (verify, _cert):
                response = session.request(
                    method,
                    f"{self._config.url}/{page}",
                    verify=verify,
                    timeout=self._timeout,
                    allow_redirects=False,
                    **kwargs,
                )
        except requests.exceptions.SSLError as exc:
            raise PermanentCAError(
                f"TLS handshake with AD CS failed ({type(exc).__name__}); check ca_bundle", issuer=self.name
            ) from None
        except requests.exceptions.Timeout:
            raise TransientCAError(
                f"AD CS did not answer {page_name} within {self._timeout}s", issuer=self.name
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientCAError(
                f"AD CS unreachable for {page_name}: {type(exc).__name__}", issuer=self.name
            ) from None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientCAError(
                f"AD CS {page_name} answered HTTP {status}: {_page_text(response.text)}", issuer=self.name
            )
        if status != 200:
            raise PermanentCAError(
                f"AD CS {page_name} answered HTTP {status}: {_page_text(response.text)}", issuer=self.name
            )
        return response

    def _pending(self, req_id: int, message: str) -> IssuancePending:
        return IssuancePending(
            {"protocol": "adcs", "req_id": req_id},
            dt.timedelta(seconds=self._config.pending_retry_seconds),
            f"AD CS request {req_id} is pending: {message}",
        )

    def _submit(self, session: requests.Session, request: SignRequest) -> int:
        attributes = "\r\n".join([f"CertificateTemplate:{self._config.template}", *self._config.extra_attributes])
        form = {
            "Mode": "newreq",
            "CertRequest": request.csr_pem.decode(),
            "CertAttrib": attributes + "\r\n",
            "FriendlyType": "Saved-Request Certificate",
            "TargetStoreFlags": "0",
            "SaveCert": "yes",
        }
        page = self._call(session, "POST", "certfnsh.asp", data=form).text
        issued = _ISSUED.search(page)
        if issued:
            return int(issued.group(1))
        # A denial page also shows "Your Request Id is N", so the disposition message decides first.
        disposition = _DISPOSITION.search(page)
        message = html.unescape(disposition.group(1)).strip() if disposition else ""
        if disposition and not any(word in message.lower() for word in _STILL_PENDING):
            raise PermanentCAError(f"AD CS denied the request: {message}", issuer=self.name)
        pending = _PENDING.search(page)
        if pending:
            raise self._pending(int(pending.group(1)), message or "awaiting CA manager approval")
        raise TransientCAError(
            f"AD CS certfnsh.asp answer has no recognisable disposition: {_page_text(page)[:200]}", issuer=self.name
        )

    def _check_issued(self, session: requests.Session, req_id: int) -> None:
        """Polls a pending request; returns when it is issued."""
        response = self._call(session, "GET", f"certnew.cer?ReqID={req_id}&Enc=b64")
        if response.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/pkix-cert":
            return
        found = _RETRIEVE_DISPOSITION.search(response.text)
        if not found:
            raise TransientCAError(
                f"AD CS certnew.cer answer for request {req_id} is neither a certificate nor a disposition: "
                f"{_page_text(response.text)[:200]}",
                issuer=self.name,
            )
        message = html.unescape(found.group(1)).strip()
        if any(word in message.lower() for word in _STILL_PENDING):
            raise self._pending(req_id, message)
        raise PermanentCAError(f"AD CS request {req_id} was not issued: {message}", issuer=self.name)

    def _chain(self, session: requests.Session, req_id: int, request: SignRequest) -> IssuedChain:
        response = self._call(session, "GET", f"certnew.p7b?ReqID={req_id}&Enc=b64")
        try:
            certs = parse_pkcs7_or_cert(response.content)
        except ValueError:
            raise TransientCAError(
                f"AD CS certnew.p7b answer for request {req_id} is not a PKCS#7 chain", issuer=self.name
            ) from None
        csr_key = request.csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return IssuedChain(tuple(leaf_first(certs, public_key_der=csr_key)), issuer_name=self.name)

    def sign(self, request: SignRequest) -> IssuedChain:
        ticket = request.ticket or {}
        # One session per operation: NTLM and Kerberos authenticate a connection, so the submission
        # and the chain download share one handshake.
        with requests.Session() as session:
            session.auth = self._auth
            if "req_id" in ticket:
                req_id = int(ticket["req_id"])
                self._check_issued(session, req_id)
            else:
                req_id = self._submit(session, request)
            return self._chain(session, req_id, request)


def build(name: str, config: Config, context: ClientContext) -> ADCSClient:
    auth: Any
    if config.auth == "kerberos":
        auth = _kerberos_auth(name, config.kerberos_principal)
    else:
        password = context.secrets.resolve(config.password, field=f"issuers.{name}.password")
        if config.auth == "ntlm":
            from requests_ntlm import HttpNtlmAuth

            auth = HttpNtlmAuth(config.username, password)
        else:
            auth = requests.auth.HTTPBasicAuth(config.username or "", password)
    ca_bundle_pem = pem_text(config.ca_bundle) if config.ca_bundle else None
    return ADCSClient(name, config, timeout=context.timeout_seconds, auth=auth, ca_bundle_pem=ca_bundle_pem)
