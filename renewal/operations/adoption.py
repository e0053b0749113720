"""Bringing certificates under management: adopting one that already lives in a vault, and
importing one from a PFX/PEM file (operator CLI only; see docs/operations.md).

Adoption makes a certificate renewable by this service: its current version gets the
``renewal-issuer`` tag, its policy gets issuer ``Unknown`` (Key Vault cannot renew through an issuer
it does not know; the service does) and an ``EmailContacts`` lifetime action (Key Vault then raises
NearExpiry events), and the trigger is mirrored into the ``renewal-policy-trigger`` tag so the sweep
need not read the policy.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from renewal.errors import AdoptionRefused, ImportRefused, NotFound
from renewal.flow.due import ISSUER_TAG, MIRRORED_TRIGGER_TAG, format_trigger
from renewal.model import LifetimeTrigger, PolicySpec, SubjectAlternativeNames
from renewal.operations.compliance import CHAIN_LENGTH_TAG, Finding, chain_is_complete, material_findings

if TYPE_CHECKING:
    from renewal.service import RenewalService

DEFAULT_DAYS_BEFORE_EXPIRY = 30
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.S)
ALL_SAN_KINDS = frozenset({"dns", "ip", "email", "uri", "upn"})
# What each issuer type can put in a certificate. ACME validates domain names only (dns-01/http-01);
# the private-CA protocols sign whatever the CA's profile allows.
SAN_KINDS_BY_TYPE: dict[str, frozenset[str]] = {
    "acme": frozenset({"dns"}),
    "local": ALL_SAN_KINDS,
    "vault": ALL_SAN_KINDS,
    "cfssl": ALL_SAN_KINDS,
    "est": ALL_SAN_KINDS,
    "adcs": ALL_SAN_KINDS,
    "stepca": frozenset({"dns", "ip", "email", "uri"}),
}


@dataclass(frozen=True)
class Change:
    what: str
    """tag:<name> or policy.<field>"""
    before: str | None
    after: str

    def __str__(self) -> str:
        return f"{self.what}: {self.before if self.before is not None else '(none)'} -> {self.after}"


@dataclass
class AdoptionResult:
    vault: str
    name: str
    version: str
    issuer: str
    changes: list[Change] = field(default_factory=list)
    applied: bool = False


def san_kinds(sans: SubjectAlternativeNames) -> set[str]:
    kinds = {
        "dns": sans.dns_names,
        "ip": sans.ip_addresses,
        "email": sans.emails,
        "uri": sans.uris,
        "upn": sans.upns,
    }
    return {kind for kind, values in kinds.items() if values}


def issuer_san_kinds(section: dict[str, Any]) -> frozenset[str]:
    """The SAN kinds an issuer section can renew; a client module may declare ``SAN_KINDS`` itself."""
    import importlib

    from ca_clients.registry import CLIENT_MODULES

    kind = str(section.get("type", ""))
    module_path = CLIENT_MODULES.get(kind)
    if module_path is not None:
        declared = getattr(importlib.import_module(module_path), "SAN_KINDS", None)
        if declared is not None:
            return frozenset(declared)
    return SAN_KINDS_BY_TYPE.get(kind, ALL_SAN_KINDS)


def adopted_policy(policy: PolicySpec) -> tuple[PolicySpec, LifetimeTrigger]:
    """Issuer Unknown, and every lifetime action turned into EmailContacts (values kept; 30 days if none)."""
    triggers = tuple(replace(t, action="EmailContacts") for t in policy.lifetime_triggers)
    if not triggers:
        triggers = (LifetimeTrigger(days_before_expiry=DEFAULT_DAYS_BEFORE_EXPIRY, action="EmailContacts"),)
    return replace(policy, issuer_name="Unknown", lifetime_triggers=triggers), triggers[0]


def _describe(triggers: tuple[LifetimeTrigger, ...]) -> str:
    return ", ".join(f"{t.action} at {format_trigger(t)}" for t in triggers) or "(none)"


def adopt(service: RenewalService, vault: str, name: str, *, issuer: str, dry_run: bool = False) -> AdoptionResult:
    """Plan (and unless ``dry_run``, apply) the changes that put VAULT/NAME under management by ISSUER."""
    config = service.config
    if config.vault(vault) is None:
        raise NotFound("vault", f"{vault!r} is not configured")
    sections = {str(s.get("name")): s for s in config.issuers}
    if issuer not in sections:
        raise AdoptionRefused(f"issuer: {issuer!r} is not configured (configured: {sorted(sections)})")
    store = service.stores[vault]
    current = store.get_current(name)
    if current is None:
        raise NotFound("name", f"certificate {name!r} not found in {vault}")
    policy = current.policy if current.policy is not None else store.get_policy(name)
    wanted = san_kinds(policy.sans)
    if not policy.subject and not wanted:
        raise AdoptionRefused("policy.subject: the policy names neither a subject nor SANs to renew")
    able = issuer_san_kinds(sections[issuer])
    missing = sorted(wanted - able)
    if missing:
        raise AdoptionRefused(
            f"issuer: {issuer!r} ({sections[issuer].get('type')}) cannot issue {', '.join(missing)} SANs "
            f"that {vault}/{name}'s policy asks for"
        )
    new_policy, trigger = adopted_policy(policy)
    result = AdoptionResult(vault, name, current.version, issuer)
    tags = dict(current.tags)
    wanted_tags = {ISSUER_TAG: issuer, MIRRORED_TRIGGER_TAG: format_trigger(trigger)}
    for key, value in wanted_tags.items():
        if tags.get(key) != value:
            result.changes.append(Change(f"tag:{key}", tags.get(key), value))
    if policy.issuer_name != "Unknown":
        result.changes.append(Change("policy.issuer_name", policy.issuer_name, "Unknown"))
    if policy.lifetime_triggers != new_policy.lifetime_triggers:
        result.changes.append(
            Change(
                "policy.lifetime_actions",
                _describe(policy.lifetime_triggers) if policy.lifetime_triggers else None,
                _describe(new_policy.lifetime_triggers),
            )
        )
    if dry_run or not result.changes:
        return result
    if new_policy != policy:
        store.update_policy(name, new_policy)
    if any(c.what.startswith("tag:") for c in result.changes):
        store.update_tags(name, current.version, tags | wanted_tags)
    result.applied = True
    return result


# -- import ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateFile:
    key: Any
    chain: list[x509.Certificate]
    """Leaf first (the certificate matching the key), then the rest in file order."""
    format: str
    """pem | pfx"""

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_certificate_file(data: bytes, password: str | None = None) -> CertificateFile:
    """Parse a PEM (key + certificates) or PFX file; the leaf is the certificate matching the key."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ImportRefused(f"file: no PEM certificate found ({exc})") from None
        keys = [m.group(0) for m in PEM_BLOCK.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")]
        if not keys:
            raise ImportRefused("file: the PEM holds no private key (Key Vault needs key and certificate)")
        try:
            key = serialization.load_pem_private_key(keys[0], password=password.encode() if password else None)
        except (ValueError, TypeError) as exc:
            raise ImportRefused(f"file: the private key cannot be read ({exc})") from None
        kind = "pem"
    else:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
        except (ValueError, TypeError) as exc:
            raise ImportRefused(f"file: not a PEM or readable PFX ({exc})") from None
        if key is None or cert is None:
            raise ImportRefused("file: the PFX must hold a private key and its certificate")
        certs = [cert, *extra]
        kind = "pfx"
    spki = _spki(key.public_key())
    leaves = [c for c in certs if _spki(c.public_key()) == spki]
    if not leaves:
        raise ImportRefused("file: no certificate matches the private key")
    leaf = leaves[0]
    return CertificateFile(key, [leaf, *[c for c in certs if c is not leaf]], kind)


def policy_for_import(leaf: x509.Certificate, key: Any, *, exportable: bool, file_format: str = "pfx") -> PolicySpec:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = SubjectAlternativeNames(
            dns_names=tuple(san.get_values_for_type(x509.DNSName)),
            emails=tuple(san.get_values_for_type(x509.RFC822Name)),
            uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
            ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
        )
    except x509.ExtensionNotFound:
        sans = SubjectAlternativeNames()
    if isinstance(key, rsa.RSAPrivateKey):
        key_type, key_size, curve = "RSA", key.key_size, None
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "P-256K"}
        key_type, key_size, curve = "EC", None, names.get(key.curve.name, key.curve.name)
    else:
        raise ImportRefused(f"file: unsupported key type {type(key).__name__} (Key Vault takes RSA or EC)")
    return PolicySpec(
        subject=leaf.subject.rfc4514_string(),
        sans=sans,
        issuer_name="Unknown",
        key_type=key_type,
        key_size=key_size,
        key_curve=curve,
        exportable=exportable,
        reuse_key=False,
        content_type="application/x-pem-file" if file_format == "pem" else "application/x-pkcs12",
        lifetime_triggers=(LifetimeTrigger(days_before_expiry=DEFAULT_DAYS_BEFORE_EXPIRY, action="EmailContacts"),),
    )


@dataclass
class ImportResult:
    vault: str
    name: str
    version: str
    chain_length: int
    format: str
    findings: list[Finding] = field(default_factory=list)


def import_file(
    service: RenewalService,
    vault: str,
    name: str,
    data: bytes,
    *,
    password: str | None = None,
    allow_incomplete_chain: bool = False,
    issuer: str | None = None,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Check the file against the compliance rules, then import it through the certificates API."""
    config = service.config
    if config.vault(vault) is None:
        raise NotFound("vault", f"{vault!r} is not configured")
    if issuer is not None and issuer not in config.issuer_names():
        raise ImportRefused(f"issuer: {issuer!r} is not configured")
    parsed = read_certificate_file(data, password)
    thresholds = config.compliance
    findings = material_findings(parsed.leaf, thresholds, vault=vault, name=name)
    moment = now or service.clock()
    if parsed.leaf.not_valid_after_utc <= moment:
        findings.append(
            Finding(
                "expired-current", "error", vault, name, None, f"expired at {parsed.leaf.not_valid_after_utc:%Y-%m-%d}"
            )
        )
    complete = chain_is_complete(parsed.chain)
    if not complete and not allow_incomplete_chain:
        findings.append(
            Finding(
                "chain-incomplete",
                "error",
                vault,
                name,
                None,
                f"the file holds the leaf but not its issuer {parsed.leaf.issuer.rfc4514_string()!r} "
                "(add the intermediates, or pass --allow-incomplete-chain)",
            )
        )
    if findings:
        raise ImportRefused(f"{vault}/{name}: not imported, {len(findings)} finding(s)", findings)
    policy = policy_for_import(
        parsed.leaf, parsed.key, exportable=not thresholds.forbid_exportable, file_format=parsed.format
    )
    chain_length = len(parsed.chain)
    tags = {CHAIN_LENGTH_TAG: str(chain_length), MIRRORED_TRIGGER_TAG: format_trigger(policy.lifetime_triggers[0])}
    if issuer is not None:
        tags[ISSUER_TAG] = issuer
    version = service.stores[vault].import_certificate(name, data, password=password, policy=policy, tags=tags)
    return ImportResult(vault, name, version.version, chain_length, parsed.format)
