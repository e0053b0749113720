"""The CA client contract: one call, three outcomes (modelled on cert-manager's issuer-lib signer).

``sign(request)`` returns an :class:`IssuedChain`, or raises :class:`IssuancePending` (the CA
accepted the request and will answer later), :class:`PermanentCAError` (the CA refused) or
:class:`TransientCAError` (worth retrying). This module knows nothing of Key Vault or Functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


@dataclass(frozen=True)
class CertificateIdentity:
    """Which certificate a request is for; ``request_id`` is stable across retries of one CSR."""

    vault: str
    name: str
    request_id: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.vault}/{self.name}/{self.request_id}"


@dataclass(frozen=True)
class SignRequest:
    csr_der: bytes
    identity: CertificateIdentity
    validity: timedelta | None = None
    """The policy's validity wish; a CA may cap it."""
    ticket: dict[str, Any] | None = None
    """The resume ticket from an earlier :class:`IssuancePending`, or None on the first call."""
    replaces: str | None = None
    """RFC 9773 identifier of the certificate this one replaces (its predecessor at the same CA), or None.
    Only ACME clients use it, as the new order's ``replaces``; every other client ignores it."""

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return x509.load_der_x509_csr(self.csr_der)

    @property
    def csr_pem(self) -> bytes:
        return self.csr.public_bytes(Encoding.PEM)


@dataclass(frozen=True)
class IssuedChain:
    """Leaf first, then intermediates in order (a root may follow; verification tolerates it)."""

    certificates: tuple[x509.Certificate, ...]
    issuer_name: str = ""
    """The configured issuer that produced it (filled by the registry/failover, not the CA)."""

    def __post_init__(self) -> None:
        if not self.certificates:
            raise ValueError("an issued chain needs at least the leaf certificate")

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self.certificates[1:]

    def der_list(self) -> list[bytes]:
        return [c.public_bytes(Encoding.DER) for c in self.certificates]

    def pem(self) -> str:
        return "".join(c.public_bytes(Encoding.PEM).decode() for c in self.certificates)


class CAError(Exception):
    """Base of the CA outcomes; ``message`` carries the CA's own words (never credentials)."""

    def __init__(self, message: str, *, issuer: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.issuer = issuer


class PermanentCAError(CAError):
    """The CA refused (policy violation, unauthorized, bad CSR): stop and record."""


class TransientCAError(CAError):
    """Timeouts, 5xx, rate limits, unreachable: retry later."""

    def __init__(self, message: str, *, issuer: str = "", retry_after: timedelta | None = None) -> None:
        super().__init__(message, issuer=issuer)
        self.retry_after = retry_after


class IssuancePending(Exception):
    """The CA accepted the request and will answer later; not a failure."""

    def __init__(self, ticket: dict[str, Any], retry_after: timedelta, message: str = "pending at the CA") -> None:
        super().__init__(message)
        self.ticket = ticket
        self.retry_after = retry_after


@runtime_checkable
class CAClient(Protocol):
    """What every protocol client implements."""

    name: str
    """The configured issuer name (the routing target), not the protocol."""

    def sign(self, request: SignRequest) -> IssuedChain: ...


@dataclass(frozen=True)
class RenewalInfo:
    """A CA's suggested renewal window for one certificate (RFC 9773 ARI), as it answered."""

    cert_id: str
    start: datetime
    end: datetime
    """Aware UTC; ``end`` is after ``start``."""
    retry_after: timedelta | None = None
    """The answer's Retry-After: when to ask again (None when absent or unreadable; the caller chooses)."""
    explanation_url: str | None = None


@runtime_checkable
class RenewalInfoProvider(Protocol):
    """What a client offers besides ``sign`` when its CA publishes renewal information (ACME with ARI).
    Both may raise :class:`TransientCAError` or :class:`PermanentCAError`."""

    def offers_renewal_info(self) -> bool:
        """Whether this CA publishes renewal information (the ACME directory has ``renewalInfo``)."""
        ...

    def renewal_info(self, certificate: x509.Certificate | str) -> RenewalInfo | None:
        """The suggested window of a certificate (or of its RFC 9773 identifier); None when the CA offers
        no ARI or does not know the certificate."""
        ...


class SecretResolver(Protocol):
    """Turns a secret reference from config into its value.

    A reference is ``{"secret": "<Key Vault secret URI>"}`` (the configuration vault) or
    ``{"setting": "<APP_SETTING_NAME>"}`` or ``{"file": "/path"}`` (local runs). Values are never logged.
    """

    def resolve(self, reference: Any, *, field: str) -> str: ...


@dataclass
class ClientContext:
    """What the registry hands a client factory besides its config section."""

    secrets: SecretResolver
    timeout_seconds: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)
    """Test or host hooks (for example a DNS solver instance); never secrets."""
