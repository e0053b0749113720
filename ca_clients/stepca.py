"""smallstep step-ca, natively: ``POST /1.0/sign`` with a one-time token of a JWK provisioner.

The token is a JWT signed with the provisioner's private key (a secret reference, like every credential
here): ``iss`` the provisioner, ``aud`` the sign URL, ``sub`` the CSR's common name (else its first SAN),
``sans`` every SAN of the CSR, ``jti`` unique, and a short ``exp``. step-ca accepts each token once: a
replayed or expired token is refused (401), which is permanent; 5xx and timeouts are transient. The chain
comes from ``certChain`` (leaf first). For step-ca's ACME provisioner, use the ``acme`` client instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import secrets
import time
from typing import Any

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import ClientContext, IssuedChain, PermanentCAError, SignRequest, TransientCAError
from .chain import load_pem_chain
from .config_types import SecretRef

log = logging.getLogger(__name__)
SIGN_PATH = "/1.0/sign"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="step-ca's root URL, e.g. https://ca.internal:9000")
    provisioner: str = Field(description="name of the JWK provisioner")
    provisioner_key: SecretRef = Field(description="secret reference to the provisioner's private key (PEM)")
    key_id: str | None = Field(default=None, description="the provisioner key's kid; default: its RFC 7638 thumbprint")
    ca_bundle: str | None = Field(default=None, description="file of the CAs trusted for step-ca's TLS (its root)")
    token_lifetime_seconds: int = Field(default=300, ge=30, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https://")
        return value.rstrip("/")

    @field_validator("provisioner_key")
    @classmethod
    def _a_reference(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("required: a secret reference to the provisioner's private key")
        return value


def _subject_and_sans(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = x509.SubjectAlternativeName([])
    sans: list[str] = []
    for value in names:
        if isinstance(value, x509.IPAddress):
            sans.append(str(ipaddress.ip_address(value.value)))
        elif isinstance(value, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier):
            sans.append(str(value.value))
    cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    subject = str(cn[0].value) if cn else (sans[0] if sans else "")
    if not subject:
        raise PermanentCAError("the CSR names neither a common name nor a SAN for the token's subject")
    return subject, sans


class StepCAClient:
    def __init__(self, name: str, config: Config, context: ClientContext) -> None:
        self.name = name
        self._config = config
        self._context = context
        self._verify: str | bool = config.ca_bundle or True

    def _signing_key(self) -> tuple[Any, str, Any]:
        """(josepy key, kid, algorithm) of the provisioner key; read for each token, never logged."""
        import josepy as jose
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        field = f"issuers.{self.name}.provisioner_key"
        pem = self._context.secrets.resolve(self._config.provisioner_key, field=field)
        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise PermanentCAError(f"{field}: not a PEM private key", issuer=self.name) from None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            jwk: Any = jose.JWKEC(key=key)
            alg = {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}.get(key.curve.key_size)
        elif isinstance(key, rsa.RSAPrivateKey):
            jwk, alg = jose.JWKRSA(key=key), jose.RS256
        else:
            alg = None
        if alg is None:
            raise PermanentCAError(f"{field}: use an EC (P-256/384/521) or RSA provisioner key", issuer=self.name)
        kid = self._config.key_id or jose.b64.b64encode(jwk.public_key().thumbprint()).decode()
        return jwk, kid, alg

    def token(self, csr: x509.CertificateSigningRequest, *, now: float | None = None) -> str:
        """A one-time token for this CSR (step-ca refuses it a second time)."""
        import josepy as jose

        jwk, kid, alg = self._signing_key()
        subject, sans = _subject_and_sans(csr)
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self._config.provisioner,
            "aud": self._config.url + SIGN_PATH,
            "sub": subject,
            "sans": sans,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self._config.token_lifetime_seconds,
            "jti": secrets.token_hex(16),
        }
        signed = jose.JWS.sign(
            json.dumps(claims).encode(), key=jwk, alg=alg, protect=frozenset({"alg", "kid"}), kid=kid
        )
        return signed.to_compact().decode()

    def sign(self, request: SignRequest) -> IssuedChain:
        body: dict[str, Any] = {"csr": request.csr_pem.decode(), "ott": self.token(request.csr)}
        if request.validity is not None:
            body["notAfter"] = (dt.datetime.now(dt.UTC) + request.validity).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = self._post(body)
        chain_pems = answer.get("certChain") or [p for p in (answer.get("crt"), answer.get("ca")) if p]
        try:
            chain = [c for pem in chain_pems if isinstance(pem, str) for c in load_pem_chain(pem)]
        except ValueError as exc:
            raise TransientCAError(f"step-ca sign answer did not parse: {exc}", issuer=self.name) from None
        if not chain:
            raise TransientCAError("step-ca sign answered without a certificate", issuer=self.name)
        log.info(
            "stepca.signed",
            extra={"issuer": self.name, "vault": request.identity.vault, "certificate": request.identity.name},
        )
        return IssuedChain(tuple(chain), issuer_name=self.name)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import requests

        url = self._config.url + SIGN_PATH
        try:
            # verify with every request: requests lets REQUESTS_CA_BUNDLE override a Session's own bundle.
            response = requests.post(url, json=body, timeout=self._context.timeout_seconds, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise PermanentCAError(
                f"step-ca: TLS verification failed ({type(exc).__name__}); check ca_bundle", issuer=self.name
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientCAError(
                f"step-ca: {type(exc).__name__} reaching {self._config.url}", issuer=self.name
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        message = str(answer.get("message") or answer.get("detail") or "") if isinstance(answer, dict) else ""
        if response.status_code in (200, 201) and isinstance(answer, dict):
            return answer
        if response.status_code in (401, 403):
            raise PermanentCAError(
                f"step-ca refused the token (HTTP {response.status_code}: {message or 'unauthorized'}); a token "
                "is accepted once and only before it expires: check the provisioner, its key and the clock",
                issuer=self.name,
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientCAError(f"step-ca sign failed: HTTP {response.status_code} {message}", issuer=self.name)
        raise PermanentCAError(f"step-ca refused: HTTP {response.status_code} {message}", issuer=self.name)


def build(name: str, config: Config, context: ClientContext) -> StepCAClient:
    return StepCAClient(name, config, context)
