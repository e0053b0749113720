"""EST (RFC 7030) enrollment: ``/cacerts``, ``/simpleenroll`` and ``/simplereenroll`` over HTTPS.

The CSR goes out as base64 DER (``application/pkcs10``); the answer is a certs-only PKCS#7 whose order
is not meaningful, so the chain is rebuilt leaf first and completed from ``/cacerts`` when the server
sends only the leaf. A ``202`` with ``Retry-After`` is EST's "pending": the same request is sent again
later, so the resume ticket only records that a request is outstanding.

Authentication is HTTP Basic (password as a secret reference) and/or a TLS client certificate whose
key is a secret reference. Key Vault's CSR cannot carry tls-unique proof-of-possession, and a
re-enroll cannot be authenticated with the Key Vault key itself, so use Basic or a separate client cert.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import email.utils
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .base import ClientContext, IssuancePending, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from .chain import leaf_first, load_pkcs7_certs
from .config_types import HttpUrl, SecretRef, pem_text

WELL_KNOWN = "/.well-known/est"
CACERTS_CACHE_SECONDS = 3600.0
_ERROR_TEXT_LIMIT = 500


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="EST server base, e.g. https://est.example.com (/.well-known/est is appended)")
    label: str | None = Field(default=None, description="optional CA label path segment")
    operation: Literal["simpleenroll", "simplereenroll"] = "simpleenroll"
    username: str | None = None
    password: SecretRef = Field(default=None, description="secret reference to the Basic auth password")
    client_certificate: str | None = Field(default=None, description="PEM text or path of the TLS client cert")
    client_key: SecretRef = Field(default=None, description="secret reference to the TLS client key (PEM)")
    ca_bundle: str | None = Field(default=None, description="PEM text or path trusted for the server's TLS cert")
    attach_cacerts: bool = Field(default=True, description="complete a leaf-only answer from /cacerts")
    default_retry_seconds: int = Field(default=60, ge=1, description="wait when a 202 has no usable Retry-After")

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value):
            raise ValueError("must be a single non-empty path segment")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Config:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return self


@contextlib.contextmanager
def tls_files(ca_bundle_pem: str | None, client_pem: str | None) -> Iterator[tuple[str | bool, str | None]]:
    """``verify`` and ``cert`` arguments for requests; PEM material lives on disk only during the call.

    The ssl module loads certificates and keys only from files, so the client key is written to a
    private (0700 directory, 0600 file) temporary file and removed as soon as the call returns.
    """
    if ca_bundle_pem is None and client_pem is None:
        yield True, None
        return
    with tempfile.TemporaryDirectory(prefix="ca-tls-") as directory:
        verify: str | bool = True
        cert: str | None = None
        if ca_bundle_pem is not None:
            verify = os.path.join(directory, "ca.pem")
            Path(verify).write_text(ca_bundle_pem)
        if client_pem is not None:
            cert = os.path.join(directory, "client.pem")
            fd = os.open(cert, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(client_pem)
        yield verify, cert


def parse_retry_after(value: str | None, *, now: dt.datetime, default: dt.timedelta) -> dt.timedelta:
    """``Retry-After`` is delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return dt.timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(when - now, dt.timedelta(0))


def parse_certs_only(body: bytes) -> list[x509.Certificate]:
    """A certs-only PKCS#7 as base64 DER (RFC 7030), PEM, or raw DER; ValueError when it is none of these."""
    stripped = body.strip()
    if not stripped:
        raise ValueError("empty body")
    if stripped.startswith(b"-----BEGIN"):
        return load_pkcs7_certs(stripped)
    try:
        der = base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        der = stripped  # some servers answer with Content-Transfer-Encoding: binary
    try:
        certs = load_pkcs7_certs(der)
    except ValueError:
        if der is stripped:
            raise
        certs = load_pkcs7_certs(stripped)
    if not certs:
        raise ValueError("the PKCS#7 holds no certificates")
    return certs


def _server_text(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_ERROR_TEXT_LIMIT] or response.reason or ""


class ESTClient:
    def __init__(
        self,
        name: str,
        config: Config,
        *,
        timeout: float,
        password: str | None,
        client_pem: str | None,
        ca_bundle_pem: str | None,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.name = name
        self._config = config
        self._timeout = timeout
        self._auth = (config.username, password) if config.username and password is not None else None
        self._client_pem = client_pem
        self._ca_bundle_pem = ca_bundle_pem
        self._now = now
        base = config.url if config.url.endswith(WELL_KNOWN) else config.url + WELL_KNOWN
        self._base = f"{base}/{config.label}" if config.label else base
        self._cacerts: tuple[float, list[x509.Certificate]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show credentials
        return f"ESTClient(name={self.name!r}, base={self._base!r}, operation={self._config.operation!r})"

    # -- transport -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self._base}/{path}"
        try:
            with tls_files(self._ca_bundle_pem, self._client_pem) as (verify, cert):
                return requests.request(
                    method,
                    url,
                    auth=self._auth,
                    verify=verify,
                    cert=cert,
                    timeout=self._timeout,
                    allow_redirects=False,
                    **kwargs,
                )
        except requests.exceptions.SSLError as exc:
            # A handshake failure is a trust or client-certificate setup problem, not a passing fault.
            raise PermanentCAError(
                f"TLS handshake with the EST server failed ({type(exc).__name__}); check ca_bundle and the "
                "client certificate",
                issuer=self.name,
            ) from None
        except requests.exceptions.Timeout:
            raise TransientCAError(
                f"EST server did not answer {path} within {self._timeout}s", issuer=self.name
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientCAError(
                f"EST server unreachable for {path}: {type(exc).__name__}", issuer=self.name
            ) from None

    def _refuse_or_retry(self, response: requests.Response, path: str) -> None:
        status = response.status_code
        if status in (408, 429) or status >= 500:
            retry = parse_retry_after(response.headers.get("Retry-After"), now=self._now(), default=dt.timedelta(0))
            raise TransientCAError(
                f"EST {path} answered HTTP {status}: {_server_text(response)}",
                issuer=self.name,
                retry_after=retry or None,
            )
        raise PermanentCAError(f"EST {path} answered HTTP {status}: {_server_text(response)}", issuer=self.name)

    # -- operations ------------------------------------------------------------------------------

    def cacerts(self) -> list[x509.Certificate]:
        """The CA certificates from ``/cacerts``, cached for an hour (they change only on CA rollover)."""
        with self._lock:
            if self._cacerts and time.monotonic() - self._cacerts[0] < CACERTS_CACHE_SECONDS:
                return self._cacerts[1]
        response = self._call("GET", "cacerts", headers={"Accept": "application/pkcs7-mime"})
        if response.status_code != 200:
            self._refuse_or_retry(response, "cacerts")
        try:
            certs = parse_certs_only(response.content)
        except ValueError as exc:
            raise TransientCAError(f"EST cacerts answer is not a certs-only PKCS#7 ({exc})", issuer=self.name) from None
        with self._lock:
            self._cacerts = (time.monotonic(), certs)
        return certs

    def sign(self, request: SignRequest) -> IssuedChain:
        operation = self._config.operation
        body = base64.encodebytes(request.csr_der)
        headers = {
            "Content-Type": "application/pkcs10",
            "Content-Transfer-Encoding": "base64",
            "Accept": "application/pkcs7-mime",
        }
        response = self._call("POST", operation, data=body, headers=headers)
        if response.status_code == 202:
            attempts = int((request.ticket or {}).get("attempts", 0)) + 1
            retry = parse_retry_after(
                response.headers.get("Retry-After"),
                now=self._now(),
                default=dt.timedelta(seconds=self._config.default_retry_seconds),
            )
            # EST resumes by sending the same CSR again; the ticket just says one is outstanding.
            raise IssuancePending(
                {"protocol": "est", "operation": operation, "attempts": attempts},
                retry,
                f"EST {operation} accepted the request; retry after {int(retry.total_seconds())}s",
            )
        if response.status_code != 200:
            self._refuse_or_retry(response, operation)
        try:
            certs = parse_certs_only(response.content)
        except ValueError as exc:
            raise TransientCAError(
                f"EST {operation} answer is not a certs-only PKCS#7 ({exc})", issuer=self.name
            ) from None
        csr_key = request.csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        chain = leaf_first(certs, public_key_der=csr_key)
        if self._config.attach_cacerts and _needs_issuers(chain):
            chain = leaf_first([*chain, *self.cacerts()], public_key_der=csr_key)
        return IssuedChain(tuple(chain), issuer_name=self.name)


def _needs_issuers(chain: list[x509.Certificate]) -> bool:
    """True when the chain stops before a self-signed certificate (usually: the leaf came alone)."""
    return chain[-1].issuer != chain[-1].subject


def build(name: str, config: Config, context: ClientContext) -> ESTClient:
    password = None
    if config.password is not None:
        password = context.secrets.resolve(config.password, field=f"issuers.{name}.password")
    client_pem = None
    if config.client_certificate is not None:
        key_pem = context.secrets.resolve(config.client_key, field=f"issuers.{name}.client_key")
        client_pem = pem_text(config.client_certificate).strip() + "\n" + key_pem.strip() + "\n"
    ca_bundle_pem = pem_text(config.ca_bundle) if config.ca_bundle else None
    now = context.extra.get("now") or (lambda: dt.datetime.now(dt.UTC))
    return ESTClient(
        name,
        config,
        timeout=context.timeout_seconds,
        password=password,
        client_pem=client_pem,
        ca_bundle_pem=ca_bundle_pem,
        now=now,
    )
