"""Compliance findings over the inventory, with thresholds from the ``compliance`` config section.

Each rule reads what the inventory already holds (listing attributes, tags, the current version's
policy and public certificate): no extra Key Vault reads, and never the secrets API (promise 4).

The chain rule cannot see the chain Key Vault stores: ``cer`` is the leaf only, the chain lives in
the managed secret, and GET does not return ``x5c``. So a leaf counts as complete when it is
self-issued, when this service merged the current version (the chain was verified at merge,
promise 2), or when ``python -m renewal import`` recorded the chain length in the
``renewal-chain-length`` tag. A ``renewal-chain-length`` of 1 on a leaf that is not self-issued is
an error (``chain-incomplete``); any other leaf whose issuer is not a configured trust anchor gets
``chain-unverified`` (a warning): nothing Key Vault exposes without reading secrets can prove it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from renewal.config import ComplianceConfig, RenewalConfig
from renewal.flow.due import resolve_triggers
from renewal.model import LeafFacts
from renewal.operations.certificate_facts import is_self_issued, issued_by, leaf_facts
from renewal.operations.inventory import InventoryEntry

if TYPE_CHECKING:
    from renewal.service import RenewalService

Severity = Literal["error", "warning"]
CHAIN_LENGTH_TAG = "renewal-chain-length"
CURVE_BITS = {"P-256": 256, "P-384": 384, "P-521": 521, "P-256K": 256, "secp256r1": 256, "secp384r1": 384,
              "secp521r1": 521, "secp256k1": 256, "secp224r1": 224, "secp192r1": 192}  # fmt: skip

RULES: dict[str, tuple[Severity, str]] = {
    "key-too-small": ("error", "RSA key shorter than min_rsa_bits, or an EC curve weaker than min_ec_curve"),
    "weak-signature": ("error", "the certificate is signed with SHA-1 (or MD5)"),
    "validity-too-long": ("error", "the lifetime exceeds max_validity_days"),
    "chain-incomplete": ("error", "the leaf was stored without its intermediates"),
    "chain-unverified": ("warning", "the stored chain cannot be shown to be complete"),
    "no-route": ("error", "no configured issuer renews this certificate"),
    "no-lifetime-trigger": ("warning", "the policy has no lifetime action; renewal relies on the default fraction"),
    "current-disabled": ("error", "the current version is disabled"),
    "exportable-key": ("error", "the key is exportable and the configuration forbids it"),
    "expired-current": ("error", "the current version has expired"),
    "unreadable": ("error", "the current version could not be read"),
}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    vault: str
    name: str
    version: str | None
    message: str

    @property
    def certificate(self) -> str:
        return f"{self.vault}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "certificate": self.certificate,
            "vault": self.vault,
            "name": self.name,
            "version": self.version,
            "message": self.message,
        }


def _finding(
    rule: str, entry: InventoryEntry | None, message: str, *, where: tuple[str, str, str | None] = ("", "", None)
) -> Finding:
    vault, name, version = (entry.vault, entry.name, entry.version) if entry is not None else where
    return Finding(rule, RULES[rule][0], vault, name, version, message)


# -- certificate material --------------------------------------------------------------------------
def _curve_bits(name: str) -> int:
    return CURVE_BITS.get(name, 0)


def key_problems_of(facts: LeafFacts, config: ComplianceConfig) -> list[str]:
    """:func:`key_problems` over kept facts (same messages)."""
    if facts.key_type == "RSA" and facts.key_bits is not None and facts.key_bits < config.min_rsa_bits:
        return [f"RSA {facts.key_bits}-bit key is below the minimum of {config.min_rsa_bits}"]
    if facts.key_type == "EC" and facts.key_bits is not None and facts.key_bits < _curve_bits(config.min_ec_curve):
        return [f"EC curve {facts.curve} is weaker than the minimum {config.min_ec_curve}"]
    return []


def signature_problems_of(facts: LeafFacts, config: ComplianceConfig) -> list[str]:
    """:func:`signature_problems` over kept facts (same messages)."""
    if config.forbid_sha1 and facts.signature_hash in ("sha1", "md5"):
        return [f"signed with {facts.signature_hash.upper()} ({facts.signature_algorithm})"]
    return []


def key_problems(public_key: Any, config: ComplianceConfig) -> list[str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < config.min_rsa_bits:
            return [f"RSA {public_key.key_size}-bit key is below the minimum of {config.min_rsa_bits}"]
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < _curve_bits(config.min_ec_curve):
            return [f"EC curve {public_key.curve.name} is weaker than the minimum {config.min_ec_curve}"]
    return []


def signature_problems(certificate: x509.Certificate, config: ComplianceConfig) -> list[str]:
    if not config.forbid_sha1:
        return []
    algorithm = certificate.signature_hash_algorithm
    if isinstance(algorithm, (hashes.SHA1, hashes.MD5)):
        return [f"signed with {algorithm.name.upper()} ({certificate.signature_algorithm_oid._name})"]
    return []


def validity_problems(
    not_before: dt.datetime | None, not_after: dt.datetime | None, config: ComplianceConfig
) -> list[str]:
    if not_before is None or not_after is None:
        return []
    days = (not_after - not_before).total_seconds() / 86_400
    if days > config.max_validity_days:
        return [f"valid for {days:.0f} days, more than the maximum of {config.max_validity_days}"]
    return []


def chain_is_complete(chain: Sequence[x509.Certificate]) -> bool:
    """A leaf-first chain is complete when it ends in a self-issued certificate or every link is present
    up to the last certificate, which must itself be signed by something in the chain or be an
    intermediate whose issuer (a root) clients hold. In practice: the leaf is self-issued, or at least
    one certificate in the chain issued the leaf."""
    if not chain:
        return False
    leaf = chain[0]
    if is_self_issued(leaf):
        return True
    return any(issued_by(leaf, other) for other in chain[1:])


def material_findings(
    leaf: x509.Certificate, config: ComplianceConfig, *, vault: str = "", name: str = "", version: str | None = None
) -> list[Finding]:
    """The rules that read certificate material: key size, signature hash, validity."""
    where = (vault, name, version)
    found = [_finding("key-too-small", None, m, where=where) for m in key_problems(leaf.public_key(), config)]
    found += [_finding("weak-signature", None, m, where=where) for m in signature_problems(leaf, config)]
    found += [
        _finding("validity-too-long", None, m, where=where)
        for m in validity_problems(leaf.not_valid_before_utc, leaf.not_valid_after_utc, config)
    ]
    return found


# -- the rule set ------------------------------------------------------------------------------------
class ComplianceRules:
    """Evaluates every rule over inventory entries. ``trust_anchors`` maps issuer name -> its
    configured root certificates; ``known_intermediates`` come from the compliance section."""

    def __init__(
        self,
        config: RenewalConfig,
        *,
        now: dt.datetime,
        trust_anchors: dict[str, list[x509.Certificate]] | None = None,
        known_intermediates: Sequence[x509.Certificate] = (),
    ) -> None:
        self.config = config
        self.thresholds = config.compliance
        self.now = now
        self.trust_anchors = trust_anchors or {}
        self.known_intermediates = list(known_intermediates)
        # Compared by RFC 4514 text with the issuer a version's kept facts name: decode each CA's subject once.
        self._subjects = {
            id(c): c.subject.rfc4514_string()
            for c in [*self.known_intermediates, *(a for v in self.trust_anchors.values() for a in v)]
        }

    def _issued(self, facts: LeafFacts, leaf: Callable[[], x509.Certificate], candidate: x509.Certificate) -> bool:
        """``candidate`` names the leaf's issuer and signed it; the leaf is parsed only when the names match."""
        return self._subjects[id(candidate)] == facts.issuer and issued_by(leaf(), candidate)

    def evaluate(self, entries: Iterable[InventoryEntry]) -> list[Finding]:
        findings: list[Finding] = []
        for entry in entries:
            findings.extend(self.check(entry))
        return findings

    def check(self, entry: InventoryEntry) -> list[Finding]:
        found: list[Finding] = []
        if entry.read_error is not None:
            found.append(_finding("unreadable", entry, entry.read_error))
        if entry.route_problem is not None:
            found.append(_finding("no-route", entry, f"will never renew: {entry.route_problem}"))
        if entry.enabled is False:
            found.append(_finding("current-disabled", entry, "the current version is disabled: it will not be renewed"))
        if entry.expires_on is not None and entry.expires_on <= self.now:
            found.append(
                _finding("expired-current", entry, f"the current version expired at {entry.expires_on:%Y-%m-%d %H:%M}Z")
            )
        found += [
            _finding("validity-too-long", entry, m)
            for m in validity_problems(entry.not_before, entry.expires_on, self.thresholds)
        ]
        current = entry.current
        policy = current.policy if current is not None else None
        if policy is not None:
            _, source = resolve_triggers(entry.tags, policy.lifetime_triggers)
            if source == "default":
                fraction = self.config.defaults.renew_at_lifetime_fraction
                found.append(
                    _finding(
                        "no-lifetime-trigger",
                        entry,
                        f"the policy has no lifetime action; renewed only by the default {fraction:.0%} of lifetime",
                    )
                )
            if self.thresholds.forbid_exportable and policy.exportable:
                found.append(_finding("exportable-key", entry, "the policy marks the private key exportable"))
        if current is not None and current.cer:
            facts = current.leaf
            if facts is None:
                try:
                    facts = leaf_facts(current.cer)
                except ValueError as exc:
                    found.append(_finding("unreadable", entry, f"the public certificate does not parse: {exc}"))
                    return found
            found += [_finding("key-too-small", entry, m) for m in key_problems_of(facts, self.thresholds)]
            found += [_finding("weak-signature", entry, m) for m in signature_problems_of(facts, self.thresholds)]
            found += self._chain(entry, facts, current.cer)
        return found

    def _chain(self, entry: InventoryEntry, facts: LeafFacts, cer: bytes) -> list[Finding]:
        issuer = facts.issuer
        if entry.merged_by_service or facts.self_issued:
            return []
        parsed: list[x509.Certificate] = []

        def leaf() -> x509.Certificate:
            if not parsed:
                parsed.append(x509.load_der_x509_certificate(cer))
            return parsed[0]

        recorded = entry.tags.get(CHAIN_LENGTH_TAG, "")
        if recorded.isdigit():
            if int(recorded) >= 2:
                return []
            return [
                _finding(
                    "chain-incomplete",
                    entry,
                    f"imported as a leaf only (tag {CHAIN_LENGTH_TAG}={recorded}); its issuer "
                    f"{issuer!r} is missing from the stored chain",
                )
            ]
        anchors = self.trust_anchors.get(entry.issuer or "", [])
        if any(self._issued(facts, leaf, anchor) for anchor in anchors):
            return []  # issued straight off a configured root: the leaf alone is the whole chain
        known = any(self._issued(facts, leaf, c) for c in self.known_intermediates) or any(
            self._issued(facts, leaf, c) for certs in self.trust_anchors.values() for c in certs
        )
        hint = "a configured known intermediate" if known else "not a configured CA certificate"
        return [
            _finding(
                "chain-unverified",
                entry,
                f"issued by {issuer!r} ({hint}); the stored chain cannot be read without "
                "the secrets API and this version was neither merged by the service nor imported with a recorded chain",
            )
        ]


def rules_for(service: RenewalService) -> ComplianceRules:
    """The rule set of a :class:`renewal.service.RenewalService` (trust anchors from its issuers)."""
    from renewal.config import load_pem_certificates

    config: RenewalConfig = service.config
    anchors = {name: service.trust_anchors(name) for name in config.issuer_names()}
    return ComplianceRules(
        config,
        now=service.clock(),
        trust_anchors=anchors,
        known_intermediates=load_pem_certificates(list(config.compliance.known_intermediates)),
    )


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
