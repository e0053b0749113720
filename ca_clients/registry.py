"""Builds CA clients from config sections: ``{"name": ..., "type": "acme|vault|cfssl|est|adcs|local", ...}``.

Each protocol module exposes ``Config`` (a pydantic model of its section, without ``name``/``type``/
``fallbacks``) and ``build(name, config, context) -> CAClient``. Modules are imported only when a
section of their type is validated or built, so importing this registry stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .base import (
    CAClient,
    ClientContext,
    IssuedChain,
    PermanentCAError,
    RenewalInfo,
    RenewalInfoProvider,
    SignRequest,
)
from .chain import leaf_first

log = logging.getLogger(__name__)

# type -> module path; a module here must define Config and build().
CLIENT_MODULES: dict[str, str] = {
    "local": "ca_clients.local",
    "acme": "ca_clients.acme",
    "vault": "ca_clients.vault",
    "cfssl": "ca_clients.cfssl",
    "est": "ca_clients.est",
    "adcs": "ca_clients.adcs",
    "stepca": "ca_clients.stepca",
}

COMMON_KEYS = {
    "name",
    "type",
    "fallbacks",
    "trust_anchors",
    "timeout_seconds",
    "description",
    "allow_insecure_http",
}

# type -> the URL field whose requests carry a credential (a token, a password, HTTP Basic/NTLM, signed
# ACME requests whose answers decide what is merged): never over plain HTTP unless a section opts out.
CREDENTIAL_URLS: dict[str, str] = {
    "vault": "url",
    "acme": "directory_url",
    "adcs": "url",
    "est": "url",
    "stepca": "url",
}
INSECURE_HTTP_OPT_OUT = "allow_insecure_http"


@dataclass(frozen=True)
class ConfigProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class IssuerConfigError(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _module(kind: str):
    return importlib.import_module(CLIENT_MODULES[kind])


def validate_section(section: Mapping[str, Any], *, path: str) -> list[ConfigProblem]:
    """Every problem in one issuer section, each naming its field (``path`` prefixes them)."""
    from pydantic import ValidationError

    kind = section.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_MODULES:
        return [
            ConfigProblem(f"{path}.type", f"unknown issuer type {kind!r}; expected one of {sorted(CLIENT_MODULES)}")
        ]
    specific = {k: v for k, v in section.items() if k not in COMMON_KEYS}
    try:
        _module(kind).Config.model_validate(specific)
    except ValidationError as exc:
        return [ConfigProblem(".".join([path, *(str(p) for p in err["loc"])]), err["msg"]) for err in exc.errors()]
    return _plain_http_problems(section, kind, path=path)


def _plain_http_problems(section: Mapping[str, Any], kind: str, *, path: str) -> list[ConfigProblem]:
    opt_out = section.get(INSECURE_HTTP_OPT_OUT, False)
    if not isinstance(opt_out, bool):
        return [ConfigProblem(f"{path}.{INSECURE_HTTP_OPT_OUT}", "must be true or false")]
    field = CREDENTIAL_URLS.get(kind)
    url = section.get(field) if field else None
    anonymous = kind == "est" and not (section.get("password") or section.get("client_key"))
    if isinstance(url, str) and url.lower().startswith("http://") and not opt_out and not anonymous:
        return [
            ConfigProblem(
                f"{path}.{field}",
                f"{kind} credentials would travel over plain HTTP; use https, or set {INSECURE_HTTP_OPT_OUT}: true "
                "for local development only",
            )
        ]
    return []


def build_client(section: Mapping[str, Any], context: ClientContext, *, path: str = "issuer") -> CAClient:
    problems = validate_section(section, path=path)
    if problems:
        raise IssuerConfigError(problems)
    module = _module(section["type"])
    specific = {k: v for k, v in section.items() if k not in COMMON_KEYS}
    config = module.Config.model_validate(specific)
    if section.get(INSECURE_HTTP_OPT_OUT) and str(section.get(CREDENTIAL_URLS.get(section["type"], ""), "")).startswith(
        "http://"
    ):
        log.warning(
            "issuer.insecure_http",
            extra={
                "issuer": section["name"],
                "detail": f"{INSECURE_HTTP_OPT_OUT} is set: credentials go over plain HTTP",
            },
        )
    timeout = float(section.get("timeout_seconds", context.timeout_seconds))
    ctx = ClientContext(secrets=context.secrets, timeout_seconds=timeout, extra=context.extra)
    return CheckedClient(module.build(str(section["name"]), config, ctx))


def _san_values(source: x509.Certificate | x509.CertificateSigningRequest) -> set[str]:
    try:
        names = source.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {f"{type(n).__name__}:{str(n.value).lower()}" for n in names}


class CheckedClient:
    """Wraps every built client: the chain comes back leaf first and its leaf carries the CSR's key.

    Protocol clients then need not repeat these checks, and a CA that answers with a certificate for
    another key is a :class:`PermanentCAError` at the source (the orchestrator verifies again before merge).
    """

    def __init__(self, inner: CAClient) -> None:
        self.inner = inner
        self.name = inner.name

    def offers_renewal_info(self) -> bool:
        return isinstance(self.inner, RenewalInfoProvider) and self.inner.offers_renewal_info()

    def renewal_info(self, certificate: x509.Certificate | str) -> RenewalInfo | None:
        if not isinstance(self.inner, RenewalInfoProvider):
            return None
        return self.inner.renewal_info(certificate)

    def sign(self, request: SignRequest) -> IssuedChain:
        chain = self.inner.sign(request)
        csr_key = request.csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ordered = leaf_first(chain.certificates, public_key_der=csr_key)
        leaf_key = ordered[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if leaf_key != csr_key:
            raise PermanentCAError(
                "the CA returned a certificate whose public key does not match the CSR", issuer=self.name
            )
        dropped = _san_values(request.csr) - _san_values(ordered[0])
        if dropped:
            raise PermanentCAError(
                f"the CA left out requested subject alternative names: {sorted(dropped)}", issuer=self.name
            )
        return IssuedChain(tuple(ordered), issuer_name=chain.issuer_name or self.name)
