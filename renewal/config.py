"""The one configuration document: vaults, issuers, routing rules, deployers and defaults.

Loaded from the ``RENEWAL_CONFIG`` app setting (JSON) or the file named by ``RENEWAL_CONFIG_PATH``.
Validation collects every problem at once, each naming its field (``issuers[1].type: ...``), so a
host fails fast at start with the whole list. Secrets are references, never literals.
"""

from __future__ import annotations

import fnmatch
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ca_clients.config_types import SecretRef
from renewal import settings
from renewal.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultConfig(_Strict):
    name: str = Field(pattern=r"^[0-9a-zA-Z-]{3,24}$")
    url: str
    default_issuer: str | None = None
    renew_at_lifetime_fraction: float | None = Field(default=None, gt=0, lt=1)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError("must be an https:// vault URL")
        return value.rstrip("/")


class RecoveryVaultConfig(_Strict):
    """A vault restores and drills may write into; the service never sweeps or renews it."""

    name: str = Field(pattern=r"^[0-9a-zA-Z-]{3,24}$")
    url: str

    _https = field_validator("url")(VaultConfig._https.__func__)  # type: ignore[attr-defined]


class RouteConfig(_Strict):
    issuer: str
    match: str = "*"
    """A glob over certificate names."""
    vault: str | None = None
    """Only certificates in this vault (by name); all vaults when absent."""

    def applies(self, vault: str, name: str) -> bool:
        return (self.vault is None or self.vault == vault) and fnmatch.fnmatchcase(name, self.match)


class WebhookDeployerConfig(_Strict):
    type: Literal["webhook"]
    name: str
    url: str | None = None
    url_secret: SecretRef = None
    """The URL as a secret reference, for targets whose URL is the credential (Teams Workflows, Slack)."""
    format: Literal["renewal", "teams", "slack"] = "renewal"
    """renewal: the signed JSON notice; teams: an Adaptive Card message for a Teams Workflows "When a Teams
    webhook request is received" trigger; slack: a Slack incoming-webhook message."""
    signing_key: SecretRef = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    match: str = "*"
    vault: str | None = None
    allow_private_addresses: bool = False
    """Loopback/private targets are refused unless this is set (link-local and metadata always are)."""
    ca_bundle: str | None = None
    """File of the CAs trusted for the target's TLS; the public roots when unset."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> WebhookDeployerConfig:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("give exactly one of url and url_secret")
        if self.format != "renewal" and self.signing_key is not None:
            raise ValueError(f"signing_key: a {self.format} webhook takes no signature (its URL is the secret)")
        return self


class EventGridDeployerConfig(_Strict):
    type: Literal["eventgrid"]
    name: str
    endpoint: str
    access_key: SecretRef = None
    """A secret reference; without it the managed identity is used."""
    match: str = "*"
    vault: str | None = None
    allow_private_addresses: bool = False
    """A topic endpoint on a loopback/private address is refused unless this is set (a private endpoint)."""
    ca_bundle: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if urlparse(value).scheme != "https":
            raise ValueError("must be an https URL (the access key or token travels with every event)")
        return value


_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RESOURCE_GROUP = r"[-\w.()]{0,89}[-\w()]"
_RESOURCE_NAME = r"[^/?#\s]{1,260}"


def _resource_id(provider: str, *types: str) -> Any:
    """A ``str`` that must be an ARM resource id of this type (case-insensitive, as ARM compares them)."""
    nested = "".join(f"/{re.escape(t)}/{_RESOURCE_NAME}" for t in types)
    pattern = re.compile(
        rf"^/subscriptions/{_GUID}/resourceGroups/{_RESOURCE_GROUP}/providers/{re.escape(provider)}{nested}$",
        re.IGNORECASE,
    )
    shape = "/".join(f"{t}/<name>" for t in types)

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(
                f"{value[:300]!r} is not a {provider}/{'/'.join(types)} resource id: expected "
                f"/subscriptions/<subscription id>/resourceGroups/<group>/providers/{provider}/{shape}"
            )
        return value

    return Annotated[str, AfterValidator(check)]


class _RolloutDeployerConfig(_Strict):
    """What every Azure rollout deployer shares: which certificates, how it reaches ARM, how long it waits."""

    name: str = Field(min_length=1)
    match: str = "*"
    """A glob over certificate names."""
    vault: str | None = None
    """Only certificates in this vault (by name); all vaults when absent."""
    arm_endpoint: str = "https://management.azure.com"
    """The Azure Resource Manager endpoint (another cloud's, or a local stand-in's)."""
    ca_bundle: str | None = None
    """File of the CAs trusted for ARM's TLS; the public roots when unset."""
    check_after_seconds: int = Field(default=120, ge=5, le=86_400)
    """How long an in-progress rollout waits before the next look."""
    timeout_minutes: int = Field(default=90, ge=1, le=10_080)
    """How long a rollout may stay in progress before it is failed."""

    @field_validator("arm_endpoint")
    @classmethod
    def _arm_endpoint(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError("must be an https:// URL (a bearer token travels with every request)")
        if parsed.path.strip("/") or parsed.query or parsed.fragment:
            raise ValueError("must be the endpoint alone (https://host[:port]), without a path")
        return value.rstrip("/")

    @property
    def target_ids(self) -> list[str]:
        targets: list[Any] = getattr(self, "targets", [])
        return [t if isinstance(t, str) else t.id for t in targets]

    @model_validator(mode="after")
    def _distinct_targets(self) -> _RolloutDeployerConfig:
        seen: set[str] = set()
        for i, target in enumerate(self.target_ids):
            if target.lower() in seen:
                raise ValueError(f"targets[{i}]: {target!r} appears more than once")
            seen.add(target.lower())
        return self


def _pem_files(value: list[str] | None) -> list[str] | None:
    for i, item in enumerate(value or []):
        try:
            with warnings.catch_warnings():  # certifi's bundle holds roots newer cryptography releases warn about
                warnings.simplefilter("ignore")
                certificates = load_pem_certificates([item])
            if not certificates:
                raise ValueError(f"[{i}]: holds no certificate")
        except OSError as exc:
            raise ValueError(f"[{i}]: cannot read {item[:200]!r} ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ValueError(f"[{i}]: not PEM certificates ({exc})") from None
    return value


PublicRoots = Annotated[list[str] | None, Field(default=None, min_length=1), AfterValidator(_pem_files)]
"""PEM files (or PEM text) of the roots a target's clients trust; the public roots (certifi) when unset. A
certificate whose issuer's trust anchors are not all among them is skipped for that target."""


def _probe_address(value: str) -> str:
    """``host:port`` (``[v6]:port`` for an IPv6 literal)."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not sep or not host or (":" in host and not bracketed) or any(c in host for c in "/@ []"):
        raise ValueError(f"{value!r} is not host:port (an IPv6 address as [address]:port)")
    if not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return value


ApplicationGatewayId = _resource_id("Microsoft.Network", "applicationGateways")


class ApplicationGatewayTarget(_Strict):
    id: ApplicationGatewayId
    """The gateway's resource id."""
    probe: Annotated[str, AfterValidator(_probe_address)] | None = None
    """``host:port`` of the gateway's HTTPS front end, for the TLS handshake that shows which leaf it presents;
    without it the refresh is requested but not verified."""


def _as_gateway_target(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


class ApplicationGatewayDeployerConfig(_RolloutDeployerConfig):
    """Application Gateway v2: a tags change makes it re-read Key Vault; a TLS probe shows the leaf it serves."""

    type: Literal["application_gateway"]
    targets: list[Annotated[ApplicationGatewayTarget, BeforeValidator(_as_gateway_target)]] = Field(min_length=1)
    """Gateway resource ids, or ``{"id": ..., "probe": "host:port"}``."""
    fix_references: bool = False
    """Repair a keyVaultSecretId pinned to a version (or naming the certificate instead of its secret) by a
    full PUT of the gateway, instead of only reporting it."""

    def probe_for(self, target: str) -> str | None:
        return next((t.probe for t in self.targets if t.id.lower() == target.lower()), None)


class AppServiceDeployerConfig(_RolloutDeployerConfig):
    """App Service certificates (``Microsoft.Web/certificates``) imported from Key Vault: a re-PUT syncs them."""

    type: Literal["app_service"]
    targets: list[_resource_id("Microsoft.Web", "certificates")] = Field(min_length=1)  # type: ignore[valid-type]
    public_roots: PublicRoots


class ApiManagementDeployerConfig(_RolloutDeployerConfig):
    """API Management services whose custom hostnames take their certificate from Key Vault."""

    type: Literal["api_management"]
    targets: list[_resource_id("Microsoft.ApiManagement", "service")] = Field(min_length=1)  # type: ignore[valid-type]
    fix_references: bool = False
    """Repair a hostname's keyVaultId pinned to a version by making it versionless in the same update,
    instead of only reporting it."""


class FrontDoorDeployerConfig(_RolloutDeployerConfig):
    """Front Door Standard/Premium secrets (``Microsoft.Cdn/profiles/secrets``) holding a customer certificate."""

    type: Literal["front_door"]
    targets: list[_resource_id("Microsoft.Cdn", "profiles", "secrets")] = Field(min_length=1)  # type: ignore[valid-type]
    public_roots: PublicRoots


RolloutDeployerConfig = (
    ApplicationGatewayDeployerConfig | AppServiceDeployerConfig | ApiManagementDeployerConfig | FrontDoorDeployerConfig
)
DeployerConfig = Annotated[
    WebhookDeployerConfig
    | EventGridDeployerConfig
    | ApplicationGatewayDeployerConfig
    | AppServiceDeployerConfig
    | ApiManagementDeployerConfig
    | FrontDoorDeployerConfig,
    Field(discriminator="type"),
]


class Defaults(_Strict):
    renew_at_lifetime_fraction: float = Field(default=2 / 3, gt=0, lt=1)
    """Renew when this fraction of the lifetime has passed, for policies with no trigger of their own."""
    stale_pending_after_hours: float = Field(default=24, gt=0)
    policy_recheck_days: int = Field(default=0, ge=0, le=366)
    """The nightly sweep re-reads each certificate's policy once every this many nights (a stable share of
    the estate each night) and follows a lifetime action edited in place; 0: never (the sweep follows the
    trigger tag mirrored at the last renewal or adoption). Costs 1/N policy reads per certificate a night."""
    pending_retry_seconds: int = Field(default=60, ge=1, le=86_400)
    max_pending_polls: int = Field(default=1_000, ge=1)
    max_requeues: int = Field(default=60, ge=0, le=10_000)
    """Times a job goes back to the queue without spending its dequeue count (Key Vault throttled it, or
    another worker held the certificate) before it takes the normal retry path."""
    requeue_delay_seconds: float = Field(default=10.0, gt=0, le=600)
    """Delay of such a return to the queue (plus up to as much again of jitter)."""
    claim_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    keyvault_throttle_retries: int = Field(default=5, ge=0, le=10)


class ComplianceConfig(_Strict):
    """Thresholds of the compliance report (``python -m renewal report``) and of ``import``."""

    min_rsa_bits: int = Field(default=2048, ge=1024)
    min_ec_curve: Literal["P-256", "P-384", "P-521"] = "P-256"
    max_validity_days: int = Field(default=398, ge=1)
    forbid_exportable: bool = False
    forbid_sha1: bool = True
    known_intermediates: list[str] = Field(default_factory=list)
    """PEM text or file paths of intermediate CA certificates clients are known to be given."""


class RenewalConfig(_Strict):
    vaults: list[VaultConfig] = Field(min_length=1)
    issuers: list[dict[str, Any]] = Field(min_length=1)
    routes: list[RouteConfig] = Field(default_factory=list)
    default_issuer: str | None = None
    deployers: list[DeployerConfig] = Field(default_factory=list)
    defaults: Defaults = Field(default_factory=Defaults)
    compliance: ComplianceConfig = Field(default_factory=ComplianceConfig)
    configuration_vault: str | None = None
    """URL of the vault holding issuer credentials: the only vault the service reads secrets from."""
    recovery_vaults: list[RecoveryVaultConfig] = Field(default_factory=list)
    """Restore and drill targets that are not certificate vaults (a drill vault, a standby region's vault)."""

    def vault(self, name: str) -> VaultConfig | None:
        return next((v for v in self.vaults if v.name == name), None)

    def issuer_names(self) -> set[str]:
        return {str(s.get("name")) for s in self.issuers}

    def renew_fraction(self, vault: str) -> float:
        """The fraction of a lifetime after which a certificate with no trigger of its own is due."""
        vault_config = self.vault(vault)
        if vault_config is not None and vault_config.renew_at_lifetime_fraction:
            return vault_config.renew_at_lifetime_fraction
        return self.defaults.renew_at_lifetime_fraction


def _names(items: Any, key: str = "name") -> list[str]:
    return [str(i.get(key)) for i in items if isinstance(i, dict) and i.get(key)] if isinstance(items, list) else []


def cross_reference_problems(data: Mapping[str, Any]) -> list[str]:
    """Problems between sections (unknown issuer or vault names, duplicates), checked on the raw
    document so they are reported together with field-level problems."""
    problems: list[str] = []
    vaults, issuers = data.get("vaults"), data.get("issuers")
    vault_names, issuer_names = _names(vaults), _names(issuers)
    for dup in sorted({n for n in vault_names if vault_names.count(n) > 1}):
        problems.append(f"vaults: vault name {dup!r} appears more than once")
    for dup in sorted({n for n in issuer_names if issuer_names.count(n) > 1}):
        problems.append(f"issuers: issuer name {dup!r} appears more than once")
    for i, section in enumerate(issuers if isinstance(issuers, list) else []):
        if not isinstance(section, dict):
            problems.append(f"issuers[{i}]: must be an object")
            continue
        if not isinstance(section.get("name"), str) or not section.get("name"):
            problems.append(f"issuers[{i}].name: required")
        fallbacks = section.get("fallbacks") or []
        if not isinstance(fallbacks, list):
            problems.append(f"issuers[{i}].fallbacks: must be a list of issuer names")
            continue
        for j, ref in enumerate(fallbacks):
            if ref not in issuer_names:
                problems.append(f"issuers[{i}].fallbacks[{j}]: unknown issuer {ref!r}")
            elif ref == section.get("name"):
                problems.append(f"issuers[{i}].fallbacks[{j}]: an issuer cannot fall back to itself")
    known = set(issuer_names)

    def need(field: str, value: Any, names: set[str], what: str) -> None:
        if value is not None and (not isinstance(value, str) or value not in names):
            problems.append(f"{field}: unknown {what} {value!r}; configured: {sorted(names)}")

    need("default_issuer", data.get("default_issuer"), known, "issuer")
    for i, v in enumerate(vaults if isinstance(vaults, list) else []):
        if isinstance(v, dict):
            need(f"vaults[{i}].default_issuer", v.get("default_issuer"), known, "issuer")
    for kind in ("routes", "deployers"):
        items = data.get(kind)
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                if kind == "routes":
                    need(f"routes[{i}].issuer", item.get("issuer"), known, "issuer")
                need(f"{kind}[{i}].vault", item.get("vault"), set(vault_names), "vault")
    recovery = data.get("recovery_vaults")
    for i, r in enumerate(recovery if isinstance(recovery, list) else []):
        if isinstance(r, dict) and r.get("name") in vault_names:
            problems.append(f"recovery_vaults[{i}].name: {r['name']!r} is already a certificate vault")
        if isinstance(r, dict) and isinstance(r.get("url"), str):
            urls = {urlparse(v["url"]).netloc for v in vaults if isinstance(v, dict) and isinstance(v.get("url"), str)}
            if urlparse(r["url"]).netloc in urls:
                problems.append(f"recovery_vaults[{i}].url: a certificate vault cannot also be a recovery vault")
    cfg = data.get("configuration_vault")
    if isinstance(cfg, str) and cfg:
        cfg_host = urlparse(cfg).hostname
        for i, v in enumerate(vaults if isinstance(vaults, list) else []):
            if isinstance(v, dict) and isinstance(v.get("url"), str) and urlparse(v["url"]).hostname == cfg_host:
                problems.append(
                    f"vaults[{i}].url: the configuration vault must not also be a certificate vault "
                    "(the identity may read secrets only there)"
                )
    return problems


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _problems_from(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif _PLAIN_KEY.match(str(part)):
                loc += f".{part}" if loc else str(part)
            else:  # an odd key (empty, spaces, punctuation) is quoted so the field stays readable
                loc += json.dumps(str(part)) if not loc else f"[{json.dumps(str(part))}]"
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # model-level validator: messages already name their fields
            problems.extend(message.split("\n"))
        else:
            problems.append(f"{loc or repr(err['loc'][0])}: {message}")
    return problems


def parse_config(document: str | Mapping[str, Any], *, source: str = "RENEWAL_CONFIG") -> RenewalConfig:
    """Validate the document and every issuer section; raise ConfigError listing all problems."""
    from ca_clients.registry import validate_section

    if isinstance(document, str):
        try:
            data = json.loads(document)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
            ) from exc
    else:
        data = dict(document)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: must be a JSON object"])
    problems: list[str] = []
    try:
        config = RenewalConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc))
        config = None
    problems.extend(cross_reference_problems(data))
    issuers = data.get("issuers")
    for i, section in enumerate(issuers if isinstance(issuers, list) else []):
        if isinstance(section, dict):
            problems.extend(str(p) for p in validate_section(section, path=f"issuers[{i}]"))
            problems.extend(trust_anchor_problems(section.get("trust_anchors"), path=f"issuers[{i}].trust_anchors"))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_config(environ: Mapping[str, str] | None = None) -> RenewalConfig:
    inline = settings.CONFIG.read(dict(environ) if environ is not None else None)
    path = settings.CONFIG_PATH.read(dict(environ) if environ is not None else None)
    if inline:
        return parse_config(inline, source=settings.CONFIG.name)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError([f"{settings.CONFIG_PATH.name}: cannot read {path!r} ({exc.strerror})"]) from exc
        return parse_config(text, source=path)
    raise ConfigError([f"{settings.CONFIG.name} / {settings.CONFIG_PATH.name}: neither is set"])


SYSTEM_STORE = "system"
"""``trust_anchors: "system"``: the public roots shipped with the service (certifi), for public ACME CAs."""


def load_pem_certificates(values: list[str]) -> list[Any]:
    from cryptography import x509

    certs = []
    for value in values:
        data = value.encode() if "-----BEGIN" in value else Path(value).read_bytes()
        certs.extend(x509.load_pem_x509_certificates(data))
    return certs


def trust_anchor_problems(value: Any, *, path: str) -> list[str]:
    """An issuer's anchors: a list of PEM texts or files, each holding CA certificates, or "system"."""
    from cryptography import x509

    if value == SYSTEM_STORE:
        return []
    if value is None or value == []:
        return [
            f"{path}: required: the CA certificates (PEM text or files) this issuer's chains must lead to, "
            f'or "{SYSTEM_STORE}" for a publicly trusted CA'
        ]
    if not isinstance(value, list):
        return [f'{path}: must be a list of PEM texts or file paths, or "{SYSTEM_STORE}"']
    problems = []
    for j, item in enumerate(value):
        where = f"{path}[{j}]"
        if not isinstance(item, str) or not item.strip():
            problems.append(f"{where}: must be PEM text or a file path")
            continue
        try:
            certificates = load_pem_certificates([item])
        except OSError as exc:
            problems.append(f"{where}: cannot read {item[:200]!r} ({exc.strerror or exc})")
            continue
        except ValueError as exc:
            problems.append(f"{where}: not PEM certificates ({exc})")
            continue
        if not certificates:
            problems.append(f"{where}: holds no certificate")
        for cert in certificates:
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                problems.append(f"{where}: {cert.subject.rfc4514_string()!r} is not a CA certificate")
    return problems


def anchors_of(section: Mapping[str, Any]) -> list[Any]:
    """The trust anchors an issuer section names (validated by :func:`parse_config`)."""
    value = section.get("trust_anchors")
    if value == SYSTEM_STORE:
        import certifi

        return load_pem_certificates([certifi.where()])
    return load_pem_certificates(list(value or []))
