"""ACME (RFC 8555) client for private CAs: the Key Vault CSR goes out untouched, dns-01 proves control.

Flow of one ``sign()``: find the account (``onlyReturnExisting``, so a single-use EAB credential is
only spent on a real registration), create an order from the CSR's DNS names, publish dns-01 TXT
records, wait until the authoritative servers serve them, answer the challenges, finalize, and
download the chain (optionally the alternate chain whose top issuer is ``preferred_chain``).
An order still ``processing`` after ``finalize_wait_seconds`` becomes :class:`IssuancePending` with
``ticket={"order_url": ..., "csr_sha256": ...}``; a later ``sign()`` with that ticket and the same CSR
resumes the same order (a ticket for another CSR, without the CSR's hash, or whose URL is not on the
directory's origin is ignored and a new order is placed: signed requests never go where a ticket points).

The account key is long-lived: a secret in the configuration vault (operators create it once with
:func:`generate_account_key_pem`), or, for local runs, a ``{"file": path}`` created on first use.
Only DNS identifiers are supported: CSRs with IP, email or URI SANs are refused before any order.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import josepy as jose
import requests
from acme import challenges, crypto_util, errors, messages
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .acme_dns import (
    DnsConfig,
    DnsSolver,
    PropagationChecker,
    PropagationConfig,
    build_solver,
    challenge_fqdn,
)
from .ari import ari_cert_id, explanation_url, parse_renewal_info
from .base import (
    CAError,
    ClientContext,
    IssuancePending,
    IssuedChain,
    PermanentCAError,
    RenewalInfo,
    SignRequest,
    TransientCAError,
)
from .config_types import SecretRef

logger = logging.getLogger("ca_clients.acme")

USER_AGENT = "kv-cert-renewal-acme/1"

# RFC 8555 §6.7 problem types: which ones a retry cannot fix.
PERMANENT_CODES = frozenset(
    {
        "accountDoesNotExist",
        "alreadyRevoked",
        "badCSR",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "caa",
        "externalAccountRequired",
        "invalidContact",
        "invalidEmail",
        "malformed",
        "rejectedIdentifier",
        "unauthorized",
        "unsupportedContact",
        "unsupportedIdentifier",
        "userActionRequired",
    }
)
TRANSIENT_CODES = frozenset({"rateLimited", "serverInternal", "badNonce", "connection", "dns", "orderNotReady"})
# A new order's ``replaces`` refused (RFC 9773 §5, §7.4): the order is placed again without it.
REPLACES_REFUSED = frozenset({"alreadyReplaced", "malformed"})


class _ReplacingOrder(messages.NewOrder):
    """A new order that names the certificate it replaces (RFC 9773 §5)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory_url: str = Field(description="the CA's ACME directory URL")
    account_key: SecretRef = Field(
        description="secret reference to the account private key (PEM, EC P-256/P-384 or RSA)"
    )
    contact_email: str | None = None
    terms_of_service_agreed: bool = True
    eab_kid: str | None = Field(default=None, description="External Account Binding key id")
    eab_hmac_key: SecretRef = Field(default=None, description="secret reference to the EAB HMAC key (base64url)")
    eab_hmac_alg: Literal["HS256", "HS384", "HS512"] = "HS256"
    ca_bundle: str | None = Field(default=None, description="CA bundle file that verifies the ACME server's TLS")
    preferred_chain: str | None = Field(default=None, description="issuer CN of the top certificate to prefer")
    profile: str | None = Field(default=None, description="ACME certificate profile, where the CA offers them")
    dns: DnsConfig | None = Field(default=None, description="dns-01 solver; required unless authz are pre-approved")
    propagation: PropagationConfig = Field(default_factory=PropagationConfig)
    validation_timeout_seconds: float = Field(default=60.0, gt=0)
    finalize_wait_seconds: float = Field(default=5.0, ge=0, description="poll a processing order this long")
    pending_retry_seconds: float = Field(default=30.0, gt=0, description="delay when the CA gives no Retry-After")
    renewal_info: bool = Field(
        default=True,
        description="use the CA's renewal information (RFC 9773 ARI) when its directory offers renewalInfo: "
        "suggested renewal windows, and new orders that name the certificate they replace",
    )

    @model_validator(mode="after")
    def _eab_pair(self) -> Config:
        if (self.eab_kid is None) != (self.eab_hmac_key is None):
            raise ValueError("eab_kid and eab_hmac_key go together")
        return self


def generate_account_key_pem() -> str:
    """A new ACME account key (EC P-256, PKCS#8 PEM).

    Create it once and store it as a secret in the configuration vault, for example::

        python -c "from ca_clients.acme import generate_account_key_pem as g; print(g(), end='')" \\
          | az keyvault secret set --vault-name <config-vault> --name acme-account-key --file /dev/stdin
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ensure_key_file(path: Path) -> None:
    """Create the account key file (0600) if absent; O_EXCL keeps two starters from racing."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_account_key_pem())
    logger.info("acme.account_key.created path=%s", path, extra={"event": "acme.account_key.created"})


def _jwk_for(pem: str, field: str) -> tuple[jose.JWK, jose.JWASignature]:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise PermanentCAError(f"{field}: not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": jose.ES256, "secp384r1": jose.ES384, "secp521r1": jose.ES512}
        if key.curve.name not in algs:
            raise PermanentCAError(f"{field}: unsupported curve {key.curve.name}")
        return jose.JWKEC(key=key), algs[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise PermanentCAError(f"{field}: the account key must be EC or RSA")


def _retry_after_seconds(response: requests.Response | None, default: float) -> float:
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return default
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


class AcmeClient:
    """One configured ACME issuer. Thread-safe; the account is looked up once per instance."""

    def __init__(
        self,
        name: str,
        config: Config,
        context: ClientContext,
        *,
        account_key_pem: str,
        eab_hmac_key: str | None,
        solver: DnsSolver | None,
        propagation: PropagationChecker | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.timeout = context.timeout_seconds
        self._jwk, self._alg = _jwk_for(account_key_pem, f"issuers.{name}.account_key")
        self._eab_hmac_key = eab_hmac_key
        self.solver = solver
        self.propagation = propagation or PropagationChecker(config.propagation, query_timeout=min(3.0, self.timeout))
        self._lock = threading.Lock()
        self._net: acme_client.ClientNetwork | None = None
        self._directory: messages.Directory | None = None
        self._account: messages.RegistrationResource | None = None
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:  # keep key material out of any repr that reaches a log
        return f"AcmeClient(name={self.name!r}, directory_url={self.config.directory_url!r})"

    # --- public ---------------------------------------------------------------------------------

    def sign(self, request: SignRequest) -> IssuedChain:
        try:
            return self._sign(request)
        except (CAError, IssuancePending):
            raise
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            if isinstance(exc, messages.Error) and _problem_code(exc) == "accountDoesNotExist":
                self._account = None  # deactivated or purged at the CA: look it up again next time
            raise mapped from exc

    @property
    def account_url(self) -> str | None:
        return self._account.uri if self._account else None

    def offers_renewal_info(self) -> bool:
        """Whether the CA publishes renewal information (RFC 9773): its directory has ``renewalInfo`` and this
        issuer's configuration does not turn ARI off. Fetches the directory once per client."""
        if not self.config.renewal_info:
            return False
        return bool(self._renewal_info_base())

    def renewal_info(self, certificate: x509.Certificate | str) -> RenewalInfo | None:
        """The CA's suggested renewal window for a certificate or its RFC 9773 identifier, with the answer's
        Retry-After and explanationURL; None when the CA offers no ARI or does not know the certificate (404).
        A 5xx, a timeout or an unusable answer is a TransientCAError, another 4xx a PermanentCAError."""
        if not self.config.renewal_info:
            return None
        cert_id = certificate if isinstance(certificate, str) else ari_cert_id(certificate)
        try:
            base = self._renewal_info_base()
            if not base:
                return None
            response = self._network().session.get(
                f"{base.rstrip('/')}/{cert_id}",
                timeout=self.timeout,
                verify=self.config.ca_bundle or True,
                headers={"User-Agent": USER_AGENT},
            )
        except CAError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        if response.status_code == 404:
            return None  # the CA does not know this certificate (issued elsewhere)
        if response.status_code >= 500 or response.status_code == 429:
            retry = _retry_after_seconds(response, 0)
            raise TransientCAError(
                f"renewal info answered {response.status_code}",
                issuer=self.name,
                retry_after=dt.timedelta(seconds=retry) if retry else None,
            )
        if not response.ok:
            raise PermanentCAError(f"renewal info answered {response.status_code}", issuer=self.name)
        try:
            document = response.json()
            start, end = parse_renewal_info(document)
        except ValueError as exc:
            raise TransientCAError(str(exc), issuer=self.name) from exc
        retry_after = _retry_after_seconds(response, -1.0) if response.headers.get("Retry-After") else -1.0
        return RenewalInfo(
            cert_id=cert_id,
            start=start,
            end=end,
            retry_after=dt.timedelta(seconds=retry_after) if retry_after >= 0 else None,
            explanation_url=explanation_url(document),
        )

    def renewal_window(self, cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime] | None:
        """The CA's suggested renewal window (RFC 9773 ARI) as ``(start, end)``, or None when the CA offers
        no ARI or does not know the certificate."""
        info = self.renewal_info(cert)
        return (info.start, info.end) if info is not None else None

    def _renewal_info_base(self) -> str | None:
        try:
            base = self._get_directory().to_partial_json().get("renewalInfo")
        except CAError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return str(base) if base else None

    # --- the order ------------------------------------------------------------------------------

    def _sign(self, request: SignRequest) -> IssuedChain:
        try:
            csr = request.csr
        except ValueError as exc:
            raise PermanentCAError(f"CSR could not be parsed: {exc}", issuer=self.name) from exc
        self._check_identifiers(csr)
        csr_pem = request.csr_pem
        self._ensure_account()
        fields = {
            "issuer": self.name,
            "vault": request.identity.vault,
            "certificate": request.identity.name,
            "request_id": request.identity.request_id,
        }
        orderr = None
        ticket = request.ticket or {}
        if ticket.get("order_url"):
            order_url = str(ticket["order_url"])
            if ticket.get("csr_sha256") != _csr_digest(request.csr_der):
                # Another key's order (or a ticket that does not say whose): its certificate is no use.
                self._log("acme.order.ticket_other_csr", order_url=order_url, **fields)
            elif not self._on_directory_origin(order_url):
                # Signed requests go only to the CA the configuration names, never where a ticket points.
                self._log("acme.order.ticket_foreign_origin", order_url=order_url, **fields)
            else:
                orderr = self._load_order(order_url, csr_pem, fields)
        if orderr is None:
            orderr = self._new_order(csr_pem, request.replaces, fields)
            self._log("acme.order.created", order_url=orderr.uri, **fields)
        return self._drive(orderr, _csr_digest(request.csr_der), fields)

    def _check_identifiers(self, csr: x509.CertificateSigningRequest) -> None:
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        others = [n for n in (san or []) if not isinstance(n, x509.DNSName)]
        if others:
            kinds = sorted({type(n).__name__ for n in others})
            raise PermanentCAError(
                f"ACME issues DNS names only (dns-01); the CSR also asks for {', '.join(kinds)}", issuer=self.name
            )
        if not _cn(csr.subject) and not (san and len(san)):
            raise PermanentCAError("the CSR names no DNS identifier", issuer=self.name)

    def _new_order(self, csr_pem: bytes, replaces: str | None, fields: dict[str, Any]) -> messages.OrderResource:
        """A new order; it names the certificate it replaces (RFC 9773 §5) only when the CA offers ARI. A CA
        that refuses the ``replaces`` (``alreadyReplaced``, answered with 409, or ``malformed`` when it does not
        know that certificate) gets the same order once more without it: a renewal never fails over it."""
        if replaces and self.offers_renewal_info():
            try:
                return self._new_order_replacing(csr_pem, replaces)
            except (messages.Error, errors.ConflictError) as exc:
                code = "alreadyReplaced" if isinstance(exc, errors.ConflictError) else _problem_code(exc)
                if code not in REPLACES_REFUSED:
                    raise
                self._log("acme.order.replaces_refused", replaces=replaces, reason=code, **fields)
        client = acme_client.ClientV2(self._get_directory(), self._network())
        return client.new_order(csr_pem, profile=self.config.profile)

    def _new_order_replacing(self, csr_pem: bytes, replaces: str) -> messages.OrderResource:
        csr = x509.load_pem_x509_csr(csr_pem)
        names, addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
        identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(a)) for a in addresses]
        order = _ReplacingOrder(identifiers=identifiers, profile=self.config.profile or "", replaces=replaces)
        response = self._post(self._get_directory()["newOrder"], order)
        body = messages.Order.from_json(response.json())
        # The authorizations are read by _authorize, from the order's URLs.
        return messages.OrderResource(
            body=body, uri=response.headers.get("Location"), authorizations=[], csr_pem=csr_pem
        )

    def _load_order(self, url: str, csr_pem: bytes, fields: dict[str, Any]) -> messages.OrderResource | None:
        try:
            response = self._post_as_get(url)
        except messages.Error as exc:
            if _problem_code(exc) in PERMANENT_CODES:  # the order is gone or not ours: start a new one
                self._log("acme.order.ticket_unusable", order_url=url, reason=_problem_code(exc), **fields)
                return None
            raise
        body = messages.Order.from_json(response.json())
        if body.status == messages.STATUS_INVALID and body.error is None:
            self._log("acme.order.ticket_expired", order_url=url, **fields)
            return None  # expired or abandoned without a reason: a fresh order can still succeed
        self._log("acme.order.resumed", order_url=url, status=str(body.status), **fields)
        return messages.OrderResource(body=body, uri=url, authorizations=[], csr_pem=csr_pem)

    def _drive(self, orderr: messages.OrderResource, csr_digest: str, fields: dict[str, Any]) -> IssuedChain:
        body = orderr.body
        if body.status == messages.STATUS_INVALID:
            raise PermanentCAError(self._order_failure(body), issuer=self.name)
        if body.status == messages.STATUS_PENDING:
            self._authorize(orderr, fields)
            body = self._refresh(orderr.uri)[0]
        response: requests.Response | None = None
        if body.status == messages.STATUS_READY:
            body, response = self._finalize(orderr)
        return self._await_certificate(orderr, body, response, csr_digest, fields)

    def _refresh(self, url: str) -> tuple[messages.Order, requests.Response]:
        response = self._post_as_get(url)
        return messages.Order.from_json(response.json()), response

    def _finalize(self, orderr: messages.OrderResource) -> tuple[messages.Order, requests.Response | None]:
        wrapped = messages.CertificateRequest(csr=x509.load_pem_x509_csr(orderr.csr_pem))
        try:
            response = self._post(orderr.body.finalize, wrapped)
        except messages.Error as exc:
            if _problem_code(exc) != "orderNotReady":
                raise
            return self._refresh(orderr.uri)
        return messages.Order.from_json(response.json()), response

    def _await_certificate(
        self,
        orderr: messages.OrderResource,
        body: messages.Order,
        response: requests.Response | None,
        csr_digest: str,
        fields: dict[str, Any],
    ) -> IssuedChain:
        """Poll a finalized order briefly; a CA that takes longer gets a resume ticket."""
        deadline = self.clock() + self.config.finalize_wait_seconds
        interval = 0.1
        while True:
            if body.status == messages.STATUS_VALID and body.certificate:
                return self._download(body.certificate, fields)
            if body.status == messages.STATUS_INVALID:
                raise PermanentCAError(self._order_failure(body), issuer=self.name)
            if body.status not in (messages.STATUS_PROCESSING, messages.STATUS_READY, messages.STATUS_VALID):
                raise TransientCAError(f"order is {body.status} after finalization", issuer=self.name)
            wait = _retry_after_seconds(response, interval)
            if self.clock() + wait > deadline:
                retry = max(1.0, _retry_after_seconds(response, self.config.pending_retry_seconds))
                self._log("acme.order.pending", order_url=orderr.uri, retry_after=retry, **fields)
                raise IssuancePending(
                    ticket={"order_url": orderr.uri, "csr_sha256": csr_digest},
                    retry_after=dt.timedelta(seconds=retry),
                    message=f"ACME order {body.status} at {self.name}",
                )
            self.sleep(wait)
            interval = min(interval * 2, 1.0)
            body, response = self._refresh(orderr.uri)
            if body.status == messages.STATUS_READY:
                body, response = self._finalize(orderr)

    def _download(self, url: str, fields: dict[str, Any]) -> IssuedChain:
        response = self._post_as_get(url)
        chains = [response.text]
        if self.config.preferred_chain:
            links = (
                requests.utils.parse_header_links(response.headers.get("Link", ""))
                if "Link" in response.headers
                else []
            )
            chains += [self._post_as_get(link["url"]).text for link in links if link.get("rel") == "alternate"]
        certs = self._select_chain(chains)
        self._log("acme.certificate.downloaded", serial=format(certs[0].serial_number, "x"), **fields)
        return IssuedChain(tuple(certs), issuer_name=self.name)

    def _select_chain(self, chains: list[str]) -> list[x509.Certificate]:
        parsed = [x509.load_pem_x509_certificates(pem.encode()) for pem in chains]
        wanted = self.config.preferred_chain
        if wanted:
            for certs in parsed:
                if certs and _cn(certs[-1].issuer) == wanted:
                    return certs
        return parsed[0]

    def _order_failure(self, body: messages.Order) -> str:
        """The order's own error, plus each failed authorization's challenge error (the useful part)."""
        parts = []
        if body.error is not None:
            parts.append(_problem_text(body.error))
        for url in body.authorizations or ():
            try:
                authz = messages.Authorization.from_json(self._post_as_get(url).json())
            except Exception:  # noqa: BLE001, S112 - the order error alone still explains the failure
                continue
            for chall in authz.challenges:
                if chall.error is not None:
                    parts.append(f"{authz.identifier.value}: {_problem_text(chall.error)}")
        return "ACME order invalid: " + ("; ".join(parts) or "the CA gave no reason")

    # --- dns-01 ---------------------------------------------------------------------------------

    def _authorize(self, orderr: messages.OrderResource, fields: dict[str, Any]) -> None:
        pending: list[tuple[str, str, messages.ChallengeBody]] = []
        for url in orderr.body.authorizations:
            authz = messages.Authorization.from_json(self._post_as_get(url).json())
            if authz.status == messages.STATUS_VALID:
                continue  # reused authorization: nothing to prove
            if authz.status != messages.STATUS_PENDING:
                raise PermanentCAError(
                    f"authorization for {authz.identifier.value} is {authz.status}", issuer=self.name
                )
            chb = next((c for c in authz.challenges if isinstance(c.chall, challenges.DNS01)), None)
            if chb is None:
                raise PermanentCAError(
                    f"the CA offers no dns-01 challenge for {authz.identifier.typ.name} {authz.identifier.value}",
                    issuer=self.name,
                )
            pending.append((url, authz.identifier.value, chb))
        if not pending:
            return
        if self.solver is None:
            raise PermanentCAError("authorization needed but no dns solver is configured", issuer=self.name)
        presented: list[tuple[str, str]] = []
        try:
            answers = []
            for _url, domain, chb in pending:
                response, validation = chb.response_and_validation(self._jwk)
                self.solver.present(domain, validation)
                presented.append((domain, validation))
                answers.append((chb, response))
                self._log("acme.dns.presented", fqdn=challenge_fqdn(domain), **fields)
            for domain, validation in presented:
                self.propagation.wait(challenge_fqdn(domain), validation)
            for chb, response in answers:
                if chb.status == messages.STATUS_PENDING:  # a resumed order may have answered already
                    self._post(chb.uri, response)
            self._await_authorizations([url for url, _, _ in pending])
        finally:
            for domain, validation in presented:
                try:
                    self.solver.cleanup(domain, validation)
                    self._log("acme.dns.cleaned", fqdn=challenge_fqdn(domain), **fields)
                except Exception as exc:  # noqa: BLE001 - cleanup must not mask the order's outcome
                    logger.warning(
                        "acme.dns.cleanup_failed fqdn=%s error=%s",
                        challenge_fqdn(domain),
                        type(exc).__name__,
                        extra={"event": "acme.dns.cleanup_failed", **fields},
                    )

    def _await_authorizations(self, urls: list[str]) -> None:
        deadline = self.clock() + self.config.validation_timeout_seconds
        interval = 0.1
        remaining = list(urls)
        while remaining:
            still = []
            for url in remaining:
                response = self._post_as_get(url)
                authz = messages.Authorization.from_json(response.json())
                if authz.status == messages.STATUS_VALID:
                    continue
                if authz.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                    still.append(url)
                    continue
                problems = [_problem_text(c.error) for c in authz.challenges if c.error is not None]
                raise PermanentCAError(
                    f"ACME order invalid: {authz.identifier.value}: {'; '.join(problems) or authz.status}",
                    issuer=self.name,
                )
            remaining = still
            if not remaining:
                return
            if self.clock() + interval > deadline:
                raise TransientCAError(
                    f"the CA did not validate {len(remaining)} authorization(s) within "
                    f"{self.config.validation_timeout_seconds:g}s",
                    issuer=self.name,
                )
            self.sleep(interval)
            interval = min(interval * 2, 1.0)

    # --- account and transport ------------------------------------------------------------------

    def _network(self) -> acme_client.ClientNetwork:
        if self._net is None:
            self._net = acme_client.ClientNetwork(
                self._jwk,
                alg=self._alg,
                verify_ssl=self.config.ca_bundle or True,  # type: ignore[arg-type]  # a bundle path works
                user_agent=USER_AGENT,
                timeout=self.timeout,  # type: ignore[arg-type]
            )
        return self._net

    def _on_directory_origin(self, url: str) -> bool:
        from urllib3.util import parse_url

        def origin(value: str) -> tuple[str | None, str | None, int | None]:
            parsed = parse_url(value)
            return (
                parsed.scheme,
                (parsed.host or "").lower(),
                parsed.port or (443 if parsed.scheme == "https" else 80),
            )

        try:
            return origin(url) == origin(self.config.directory_url) and not parse_url(url).auth
        except ValueError:
            return False

    def _get_directory(self) -> messages.Directory:
        if self._directory is None:
            self._directory = acme_client.ClientV2.get_directory(self.config.directory_url, self._network())
        return self._directory

    def _post(self, url: str, obj: Any) -> requests.Response:
        return self._network().post(url, obj, new_nonce_url=self._get_directory()["newNonce"])

    def _post_as_get(self, url: str) -> requests.Response:
        return self._post(url, None)

    def _ensure_account(self) -> None:
        with self._lock:
            if self._account is not None:
                return
            directory = self._get_directory()
            net = self._network()
            net.account = None  # newAccount is signed with the JWK, never a kid
            try:
                response = self._post(directory["newAccount"], messages.NewRegistration(only_return_existing=True))
                regr = messages.RegistrationResource(body=_registration(response), uri=response.headers.get("Location"))
                event = "acme.account.found"
            except messages.Error as exc:
                if _problem_code(exc) != "accountDoesNotExist":
                    raise
                regr = self._register(directory)
                event = "acme.account.registered"
            if not regr.uri:
                raise TransientCAError("the CA returned no account URL", issuer=self.name)
            net.account = regr
            self._account = regr
            self._log(event, issuer=self.name, account_url=regr.uri)

    def _register(self, directory: messages.Directory) -> messages.RegistrationResource:
        eab = None
        if self.config.eab_kid and self._eab_hmac_key:
            try:
                eab = messages.ExternalAccountBinding.from_data(
                    account_public_key=self._jwk.public_key(),
                    kid=self.config.eab_kid,
                    hmac_key=self._eab_hmac_key,
                    directory=directory,
                    hmac_alg=self.config.eab_hmac_alg,
                )
            except (ValueError, TypeError, jose.DeserializationError):
                raise PermanentCAError(
                    f"issuers.{self.name}.eab_hmac_key is not a base64url HMAC key", issuer=self.name
                ) from None
        registration = messages.NewRegistration.from_data(
            email=self.config.contact_email,
            terms_of_service_agreed=self.config.terms_of_service_agreed,
            external_account_binding=eab,
        )
        try:
            response = self._post(directory["newAccount"], registration)
        except errors.ConflictError as exc:
            return messages.RegistrationResource(body=messages.Registration(), uri=str(exc))
        return messages.RegistrationResource(body=_registration(response), uri=response.headers.get("Location"))

    # --- outcomes -------------------------------------------------------------------------------

    def _map_error(self, exc: Exception) -> CAError | None:
        """ACME/network failures as the three outcomes; None for anything that is a bug here."""
        if isinstance(exc, messages.Error):
            code = _problem_code(exc)
            text = f"ACME {code or exc.typ}: {_problem_text(exc)}"
            if code in PERMANENT_CODES:
                return PermanentCAError(text, issuer=self.name)
            return TransientCAError(text, issuer=self.name)
        if isinstance(exc, requests.Timeout):
            return TransientCAError(f"ACME server timed out after {self.timeout:g}s", issuer=self.name)
        if isinstance(exc, requests.RequestException):
            return TransientCAError(f"ACME server unreachable: {type(exc).__name__}", issuer=self.name)
        if isinstance(exc, errors.ClientError):
            response = next((a for a in _flatten(exc.args) if isinstance(a, requests.Response)), None)
            status = response.status_code if response is not None else 0
            text = f"ACME server answered {status or 'unexpectedly'}"
            if 400 <= status < 500 and status not in (408, 429):
                return PermanentCAError(text, issuer=self.name)
            retry = _retry_after_seconds(response, 0) if response is not None else 0
            return TransientCAError(text, issuer=self.name, retry_after=dt.timedelta(seconds=retry) if retry else None)
        if isinstance(exc, errors.TimeoutError):
            return TransientCAError("ACME operation timed out", issuer=self.name)
        if isinstance(exc, errors.Error | jose.DeserializationError):
            return TransientCAError(f"ACME protocol error: {type(exc).__name__}: {exc}", issuer=self.name)
        return None

    def _log(self, event: str, **fields: Any) -> None:
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        logger.info("%s %s", event, shown, extra={"event": event, **fields})


def _csr_digest(csr_der: bytes) -> str:
    return hashlib.sha256(csr_der).hexdigest()


def _flatten(args: Any) -> list[Any]:
    out: list[Any] = []
    for a in args:
        out.extend(_flatten(a) if isinstance(a, tuple) else [a])
    return out


def _registration(response: requests.Response) -> messages.Registration:
    try:
        return messages.Registration.from_json(response.json())
    except (ValueError, jose.DeserializationError):
        return messages.Registration()  # the account URL is all this client needs


def _problem_code(error: messages.Error) -> str:
    """The RFC 8555 problem code, also for codes the acme package does not know (``.code`` is None then)."""
    typ = str(error.typ or "")
    return typ.removeprefix(messages.ERROR_PREFIX) if typ.startswith(messages.ERROR_PREFIX) else ""


def _problem_text(error: messages.Error) -> str:
    text = error.detail or error.description or error.typ
    if error.subproblems:
        text += (
            " ("
            + "; ".join(f"{(p.identifier.value if p.identifier else '')}: {p.detail}" for p in error.subproblems)
            + ")"
        )
    return str(text)


def build(name: str, config: Config, context: ClientContext) -> AcmeClient:
    account_ref = config.account_key
    if "file" in account_ref:
        _ensure_key_file(Path(account_ref["file"]))
    account_pem = context.secrets.resolve(account_ref, field=f"issuers.{name}.account_key")
    eab_key = None
    if config.eab_hmac_key is not None:
        eab_key = context.secrets.resolve(config.eab_hmac_key, field=f"issuers.{name}.eab_hmac_key").strip()
    solver = context.extra.get("dns_solver")
    if solver is None and config.dns is not None:
        solver = build_solver(
            config.dns, secrets=context.secrets, timeout=context.timeout_seconds, field=f"issuers.{name}.dns"
        )
    return AcmeClient(name, config, context, account_key_pem=account_pem, eab_hmac_key=eab_key, solver=solver)
