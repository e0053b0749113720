"""CFSSL: ``/api/v1/cfssl/authsign`` (HMAC-authenticated profiles) or ``/sign`` (open profiles).

CFSSL answers with the leaf only, so the chain is fetched separately: ``/info`` gives the issuing CA
for the label, ``/bundle`` builds leaf + intermediates from the server's bundles, and an optional
static ``chain_pem`` adds what sits above the issuing CA. Error bodies are JSON even when the
Content-Type says ``text/plain``, so the body is parsed regardless of the header.

Authenticated requests follow cfssl ``auth/auth.go``: the signed request is the exact JSON bytes sent
(base64 in ``request``) and ``token`` is base64(HMAC-SHA256(hex-decoded key, those bytes)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import ClientContext, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from .chain import load_pem_chain
from .config_types import SecretRef

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/cfssl"
# cfssl/errors categories: 6000 is "dial" (cfssl could not reach a remote signer): worth a retry.
TRANSIENT_ERROR_CATEGORIES = {6000}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="CFSSL server root, e.g. https://cfssl.example.internal:8888")
    profile: str | None = Field(default=None, description="signing profile; the server default when omitted")
    label: str | None = Field(default=None, description="signer label on a multiroot CFSSL")
    auth_key: SecretRef | None = Field(
        default=None, description="secret reference to the profile's hex HMAC key; set = /authsign, unset = /sign"
    )
    chain_source: Literal["info", "bundle", "none"] = "info"
    include_root: bool = Field(default=False, description="with chain_source 'bundle': append the root it reports")
    chain_pem: str | None = Field(default=None, description="PEM text or path of the certificates above the issuing CA")
    ca_bundle: str | None = Field(default=None, description="path of the CAs trusted for CFSSL's TLS")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value.endswith(API_PREFIX):
            value = value[: -len(API_PREFIX)]
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class CfsslClient:
    def __init__(self, name: str, config: Config, context: ClientContext, static_chain: list[x509.Certificate]):
        self.name = name
        self._config = config
        self._context = context
        self._static_chain = static_chain
        import requests

        self._session = requests.Session()
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE override a Session.verify.
        self._verify: str | bool = config.ca_bundle or True

    def _hmac_key(self) -> bytes:
        assert self._config.auth_key is not None
        value = self._context.secrets.resolve(self._config.auth_key, field=f"issuers.{self.name}.auth_key")
        try:
            return bytes.fromhex(value.strip())
        except ValueError:
            # Never echo the value: a mistyped key is still a key.
            raise PermanentCAError(
                f"issuers.{self.name}.auth_key: the HMAC key must be hex (cfssl 'standard' auth keys are)",
                issuer=self.name,
            ) from None

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to one endpoint; returns ``result`` or raises the CA outcome for the answer."""
        import requests

        url = f"{self._config.url}{API_PREFIX}/{endpoint}"
        try:
            response = self._session.post(url, json=body, timeout=self._context.timeout_seconds, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise PermanentCAError(
                f"CFSSL {endpoint}: TLS verification failed ({type(exc).__name__}); check ca_bundle", issuer=self.name
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientCAError(
                f"CFSSL {endpoint}: {type(exc).__name__} reaching {self._config.url}", issuer=self.name
            ) from None
        try:
            answer = json.loads(response.content)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise TransientCAError(
                f"CFSSL {endpoint} answered HTTP {response.status_code} with a non-JSON body "
                f"({kind}, {len(response.content)} bytes); a proxy or a different service may be in the way",
                issuer=self.name,
            ) from None
        errors = answer.get("errors") or []
        if response.status_code == 200 and answer.get("success") and isinstance(answer.get("result"), dict):
            return answer["result"]
        words = (
            "; ".join(
                f"{e.get('message', '')} (code {e.get('code')})" if isinstance(e, dict) else str(e) for e in errors
            )
            or f"HTTP {response.status_code} without an error message"
        )
        codes = {e.get("code") for e in errors if isinstance(e, dict)}
        transient = (
            response.status_code >= 500
            or response.status_code == 429
            or any(isinstance(c, int) and c // 1000 * 1000 in TRANSIENT_ERROR_CATEGORIES for c in codes)
        )
        error = TransientCAError if transient else PermanentCAError
        verb = "failed" if transient else "refused"
        raise error(f"CFSSL {endpoint} {verb}: {words}", issuer=self.name)

    def sign(self, request: SignRequest) -> IssuedChain:
        try:
            csr_pem = request.csr_pem.decode()
        except ValueError as exc:
            raise PermanentCAError(f"CSR could not be parsed: {exc}", issuer=self.name) from None
        body: dict[str, Any] = {"certificate_request": csr_pem}
        if self._config.profile:
            body["profile"] = self._config.profile
        if self._config.label is not None:
            body["label"] = self._config.label
        started = time.monotonic()
        if self._config.auth_key is not None:
            inner = json.dumps(body).encode()
            token = hmac.new(self._hmac_key(), inner, hashlib.sha256).digest()
            result = self._post(
                "authsign",
                {"token": base64.b64encode(token).decode(), "request": base64.b64encode(inner).decode()},
            )
        else:
            result = self._post("sign", body)
        leaf_pem = result.get("certificate")
        if not isinstance(leaf_pem, str) or "-----BEGIN" not in leaf_pem:
            raise TransientCAError("CFSSL sign answered without a certificate", issuer=self.name)
        chain = self._chain(leaf_pem)
        log.info(
            "cfssl.signed",
            extra={
                "issuer": self.name,
                "vault": request.identity.vault,
                "certificate": request.identity.name,
                "request_id": request.identity.request_id,
                "profile": self._config.profile,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return IssuedChain(tuple(chain), issuer_name=self.name)

    def _chain(self, leaf_pem: str) -> list[x509.Certificate]:
        """Leaf + what the chain source yields + the static chain; a failure here is worth a retry."""
        try:
            leaf = load_pem_chain(leaf_pem)[:1]
            source = self._config.chain_source
            if source == "info":
                info = self._post("info", {"label": self._config.label or "", "profile": self._config.profile or ""})
                above = _pems(info.get("certificate"))
            elif source == "bundle":
                bundled = self._post("bundle", {"certificate": leaf_pem, "flavor": "optimal"})
                above = _pems(bundled.get("bundle"))
                if self._config.include_root and bundled.get("root"):
                    above += _pems(bundled["root"])
            else:
                above = []
        except ValueError as exc:
            raise TransientCAError(
                f"CFSSL {self._config.chain_source} answer did not parse: {exc}", issuer=self.name
            ) from None
        if self._config.chain_source != "none" and not [c for c in above if c != leaf[0]]:
            raise TransientCAError(f"CFSSL {self._config.chain_source} returned no issuing CA", issuer=self.name)
        seen = {c.fingerprint(_sha256()) for c in leaf}
        chain = list(leaf)
        for cert in [*above, *self._static_chain]:
            digest = cert.fingerprint(_sha256())
            if digest not in seen:
                seen.add(digest)
                chain.append(cert)
        return chain


def _pems(text: Any) -> list[x509.Certificate]:
    """Certificates in a PEM field of an answer; an absent or empty field yields none."""
    return load_pem_chain(text) if isinstance(text, str) and "-----BEGIN" in text else []


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def build(name: str, config: Config, context: ClientContext) -> CfsslClient:
    static: list[x509.Certificate] = []
    if config.chain_pem:
        text = config.chain_pem if "-----BEGIN" in config.chain_pem else Path(config.chain_pem).read_text()
        static = load_pem_chain(text)
    return CfsslClient(name, config, context, static)
