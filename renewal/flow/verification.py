"""Promise 2: a chain is merged only if an X.509 path validator accepts it up to one of the issuing CA's
own trust anchors, and its leaf fits the pending request. Every refusal names the rule it broke.

The path (signatures, validity, basic constraints and path length, name constraints and key usage of
every CA) is validated by ``cryptography.x509.verification``, not by hand. The leaf is then held to the
request: the CSR's public key, ``CA:false``, the policy's subject and exactly its SANs of every type, the
policy's key usages and extended key usages, a lifetime within the policy's validity plus
:data:`LIFETIME_MARGIN`, and valid now.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from renewal.errors import ChainRejected
from renewal.model import PolicySpec

CLOCK_SKEW = dt.timedelta(minutes=10)
"""A CA's clock may run this far ahead of ours."""
MIN_REMAINING = dt.timedelta(hours=1)
"""A leaf that expires sooner than this is useless and refused."""
LIFETIME_MARGIN = dt.timedelta(days=3)
"""CAs backdate and round lifetimes; a leaf may outlive the policy's validity by this much, no more."""
DEFAULT_VALIDITY_MONTHS = 12
"""Key Vault's validity when a policy names none."""
DAYS_PER_MONTH = 30.4375
DEFAULT_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string)
"""Key Vault's extended key usages when a policy names none."""
MAX_CHAIN_DEPTH = 6

# Key Vault's key usage names -> the attribute of cryptography's KeyUsage.
_KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
_CA_ONLY_USAGES = {"keyCertSign", "cRLSign"}


@dataclass(frozen=True)
class VerifiedChain:
    certificates: tuple[x509.Certificate, ...]
    """Leaf first, then the intermediates the CA sent (the anchor is not merged)."""

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


# -- the leaf against the pending request ---------------------------------------------------------------
def _check_key(leaf: x509.Certificate, csr_der: bytes) -> None:
    csr = x509.load_der_x509_csr(csr_der)
    if _spki(leaf.public_key()) != _spki(csr.public_key()):
        raise ChainRejected("key", "the leaf's public key is not the CSR's (a certificate for another key)")


def _check_not_a_ca(leaf: x509.Certificate) -> None:
    constraints = _extension(leaf, x509.BasicConstraints)
    if constraints is not None and constraints.ca:  # type: ignore[attr-defined]
        raise ChainRejected("basic-constraints", "the leaf is a CA certificate (CA:true); a renewal gets an end entity")


def _leaf_sans(leaf: x509.Certificate) -> dict[str, set[str]]:
    san = _extension(leaf, x509.SubjectAlternativeName)
    if san is None:
        return {"dns": set(), "ip": set(), "email": set(), "uri": set(), "upn": set(), "other": set()}
    upn_oid = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
    others = san.get_values_for_type(x509.OtherName)  # type: ignore[attr-defined]
    return {
        "dns": {n.lower() for n in san.get_values_for_type(x509.DNSName)},  # type: ignore[attr-defined]
        "ip": {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},  # type: ignore[attr-defined]
        "email": {e.lower() for e in san.get_values_for_type(x509.RFC822Name)},  # type: ignore[attr-defined]
        "uri": set(san.get_values_for_type(x509.UniformResourceIdentifier)),  # type: ignore[attr-defined]
        "upn": {_upn(o.value).lower() for o in others if o.type_id == upn_oid},
        "other": {o.type_id.dotted_string for o in others if o.type_id != upn_oid}
        | {str(d) for d in san.get_values_for_type(x509.DirectoryName)}  # type: ignore[attr-defined]
        | {str(r) for r in san.get_values_for_type(x509.RegisteredID)},  # type: ignore[attr-defined]
    }


def _upn(der: bytes) -> str:
    """The UTF8String inside a UPN otherName (DER: 0x0c, length, text)."""
    if len(der) >= 2 and der[0] == 0x0C:
        length, start = der[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
        return der[start : start + length].decode("utf-8", "replace")
    return der.hex()


def _check_identity(leaf: x509.Certificate, policy: PolicySpec) -> None:
    wanted_cn = policy.common_name
    leaf_cn = _common_name(leaf.subject)
    if wanted_cn is not None and (leaf_cn or "").lower() != wanted_cn.lower():
        raise ChainRejected("subject", f"leaf CN {leaf_cn!r} does not match the policy's {wanted_cn!r}")
    got = _leaf_sans(leaf)
    wanted = {
        "dns": {d.lower() for d in policy.sans.dns_names},
        "ip": {str(ipaddress.ip_address(i)) for i in policy.sans.ip_addresses},
        "email": {e.lower() for e in policy.sans.emails},
        "uri": set(policy.sans.uris),
        "upn": {u.lower() for u in policy.sans.upns},
        "other": set(),
    }
    # A CA may add the CN as a DNS SAN (CA/B baseline); anything else extra or missing is refused.
    tolerated = {wanted_cn.lower()} if wanted_cn and not wanted["dns"] else set()
    for kind in wanted:
        missing = wanted[kind] - got[kind]
        extra = got[kind] - wanted[kind] - (tolerated if kind == "dns" else set())
        if missing:
            raise ChainRejected("sans", f"leaf lacks the policy's {kind} SANs {sorted(missing)}")
        if extra:
            raise ChainRejected("sans", f"leaf has {kind} SANs the policy does not list: {sorted(extra)}")


def _check_usages(leaf: x509.Certificate, policy: PolicySpec) -> None:
    usage = _extension(leaf, x509.KeyUsage)
    if usage is not None:
        present = {name for name, attr in _KEY_USAGES.items() if _key_usage_bit(usage, attr)}
        if present & _CA_ONLY_USAGES:
            raise ChainRejected(
                "key-usage", f"the leaf may sign certificates or CRLs ({sorted(present & _CA_ONLY_USAGES)})"
            )
        allowed = set(policy.key_usage)
        key = leaf.public_key()
        if "keyEncipherment" in allowed and isinstance(key, ec.EllipticCurvePublicKey):
            allowed.add("keyAgreement")  # what keyEncipherment is for an EC key (RFC 5480 §3)
        if isinstance(key, rsa.RSAPublicKey):
            present -= {"keyAgreement", "encipherOnly", "decipherOnly"}  # an RSA key can do none of them
        if allowed and not present <= allowed:
            raise ChainRejected(
                "key-usage",
                f"the leaf's key usages {sorted(present - allowed)} are not in the policy's {sorted(allowed)}",
            )
    allowed_ekus = set(policy.ekus or DEFAULT_EKUS)
    eku = _extension(leaf, x509.ExtendedKeyUsage)
    if eku is None:
        raise ChainRejected("extended-key-usage", "the leaf has no extended key usage, so it is valid for any purpose")
    present_ekus = {oid.dotted_string for oid in eku}  # type: ignore[attr-defined]
    if not present_ekus or not present_ekus <= allowed_ekus:
        raise ChainRejected(
            "extended-key-usage",
            f"the leaf's extended key usages {sorted(present_ekus - allowed_ekus) or '(none)'} are not among the "
            f"policy's {sorted(allowed_ekus)}",
        )


def _key_usage_bit(usage: x509.ExtensionType, attr: str) -> bool:
    try:
        return bool(getattr(usage, attr))
    except ValueError:  # encipher_only/decipher_only are undefined without keyAgreement
        return False


def _check_validity(leaf: x509.Certificate, policy: PolicySpec, now: dt.datetime) -> None:
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if na <= nb:
        raise ChainRejected("validity", "the leaf expires before it starts")
    if nb > now + CLOCK_SKEW:
        raise ChainRejected("validity", f"the leaf is not valid until {nb:%Y-%m-%d %H:%M}Z")
    if na <= now + MIN_REMAINING:
        raise ChainRejected("validity", f"the leaf expired or expires at {na:%Y-%m-%d %H:%M}Z")
    months = policy.validity_months or DEFAULT_VALIDITY_MONTHS
    allowed = dt.timedelta(days=round(months * DAYS_PER_MONTH)) + LIFETIME_MARGIN
    if na - nb > allowed:
        raise ChainRejected(
            "lifetime",
            f"the leaf is valid for {(na - nb).days} days; the policy allows {months} months "
            f"(+{LIFETIME_MARGIN.days} days' margin)",
        )


# -- the path, by a real validator --------------------------------------------------------------------------
def _check_ekus_chain(path: Sequence[x509.Certificate]) -> None:
    """A CA whose own EKU extension leaves out a purpose of the leaf must not vouch for it."""
    leaf_ekus = {oid.dotted_string for oid in _extension(path[0], x509.ExtendedKeyUsage) or ()}  # type: ignore[union-attr]
    for cert in path[1:]:
        ca_eku = _extension(cert, x509.ExtendedKeyUsage)
        if ca_eku is None:
            continue
        allowed = {oid.dotted_string for oid in ca_eku}  # type: ignore[attr-defined]
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string not in allowed and not leaf_ekus <= allowed:
            raise ChainRejected(
                "path",
                f"CA {cert.subject.rfc4514_string()} may not issue for {sorted(leaf_ekus - allowed)} (its EKU)",
            )


def _validated_path(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: dt.datetime
) -> list[x509.Certificate]:
    if not anchors:
        raise ChainRejected("trust", "no trust anchor is configured for the issuing CA; nothing can be verified")
    # SANs and EKUs are held to the policy above, more strictly than a web PKI profile would; the rest of
    # the profile (AKI, basic constraints, key usage, name constraints, path length) is the validator's.
    leaf_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=leaf_policy)
        .build_client_verifier()
    )
    try:
        path = list(verifier.verify(chain[0], list(chain[1:])).chain)
    except VerificationError as exc:
        raise ChainRejected("path", f"no valid path to a trust anchor of the issuing CA: {exc}") from None
    _check_ekus_chain(path)
    return path


def verify_chain(
    chain: Sequence[x509.Certificate],
    *,
    csr_der: bytes,
    policy: PolicySpec,
    now: dt.datetime,
    trust_anchors: Sequence[x509.Certificate] = (),
) -> VerifiedChain:
    """The chain to merge, or :class:`ChainRejected` naming the first rule it breaks."""
    if not chain:
        raise ChainRejected("chain", "the CA returned no certificate")
    leaf = chain[0]
    _check_key(leaf, csr_der)
    _check_not_a_ca(leaf)
    _check_identity(leaf, policy)
    _check_usages(leaf, policy)
    _check_validity(leaf, policy, now)
    path = _validated_path(chain, trust_anchors, now)
    # Merge the validated path (the CA's extra certificates are dropped); the anchor only if the CA sent it.
    sent = {_fingerprint(c) for c in chain}
    return VerifiedChain(tuple(c for c in path[:-1]) + tuple(c for c in path[-1:] if _fingerprint(c) in sent))


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())
