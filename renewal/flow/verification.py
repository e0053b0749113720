"""Promise 2: a chain is merged only if it belongs to this CSR and this policy, is valid now, and
chains leaf -> intermediates (-> a configured trust anchor). Every failure names what is wrong."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from renewal.errors import ChainRejected
from renewal.model import PolicySpec

CLOCK_SKEW = dt.timedelta(minutes=10)
MIN_REMAINING = dt.timedelta(hours=1)


@dataclass(frozen=True)
class VerifiedChain:
    certificates: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _policy_common_name(subject: str) -> str | None:
    # Key Vault subjects are X.500 strings like "CN=app.example.com, O=Contoso".
    for part in subject.replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().upper() == "CN":
            return value.strip()
    return None


def _leaf_sans(leaf: x509.Certificate) -> dict[str, set[str]]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"dns": set(), "ip": set(), "email": set(), "uri": set()}
    return {
        "dns": {n.lower() for n in san.get_values_for_type(x509.DNSName)},
        "ip": {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
        "email": {e.lower() for e in san.get_values_for_type(x509.RFC822Name)},
        "uri": set(san.get_values_for_type(x509.UniformResourceIdentifier)),
    }


def _check_identity(leaf: x509.Certificate, policy: PolicySpec) -> None:
    wanted_cn = _policy_common_name(policy.subject)
    leaf_cn = _common_name(leaf.subject)
    if wanted_cn is not None and (leaf_cn or "").lower() != wanted_cn.lower():
        raise ChainRejected("subject", f"leaf CN {leaf_cn!r} does not match the policy's {wanted_cn!r}")
    got = _leaf_sans(leaf)
    wanted = {
        "dns": {d.lower() for d in policy.sans.dns_names},
        "ip": {str(ipaddress.ip_address(i)) for i in policy.sans.ip_addresses},
        "email": {e.lower() for e in policy.sans.emails},
        "uri": set(policy.sans.uris),
    }
    # A CA may add the CN as a DNS SAN (CA/B baseline); anything else extra or missing is refused.
    tolerated = {wanted_cn.lower()} if wanted_cn and not wanted["dns"] else set()
    for kind in ("dns", "ip", "email", "uri"):
        missing = wanted[kind] - got[kind]
        extra = got[kind] - wanted[kind] - (tolerated if kind == "dns" else set())
        if missing:
            raise ChainRejected("sans", f"leaf lacks the policy's {kind} SANs {sorted(missing)}")
        if extra:
            raise ChainRejected("sans", f"leaf has {kind} SANs the policy does not list: {sorted(extra)}")


def _check_validity(chain: Sequence[x509.Certificate], now: dt.datetime) -> None:
    for i, cert in enumerate(chain):
        label = "leaf" if i == 0 else f"chain[{i}]"
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        if na <= nb:
            raise ChainRejected("validity", f"{label} expires before it starts")
        if nb > now + CLOCK_SKEW:
            raise ChainRejected("validity", f"{label} is not valid until {nb:%Y-%m-%d %H:%M}Z")
        if na <= now + (MIN_REMAINING if i == 0 else dt.timedelta(0)):
            raise ChainRejected("validity", f"{label} expired or expires at {na:%Y-%m-%d %H:%M}Z")


def _check_links(chain: Sequence[x509.Certificate]) -> None:
    for i in range(len(chain) - 1):
        child, parent = chain[i], chain[i + 1]
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ChainRejected(
                "chain",
                f"chain[{i}] ({child.subject.rfc4514_string()}) is not signed by chain[{i + 1}] "
                f"({parent.subject.rfc4514_string()}): {exc or 'bad signature'}",
            ) from None
        try:
            if not parent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise ChainRejected("chain", f"chain[{i + 1}] is not a CA certificate")
        except x509.ExtensionNotFound:
            raise ChainRejected("chain", f"chain[{i + 1}] has no basicConstraints; not a CA") from None


def _check_anchor(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> None:
    top = chain[-1]
    for anchor in anchors:
        if top == anchor:
            return
        try:
            top.verify_directly_issued_by(anchor)
            return
        except (ValueError, TypeError, InvalidSignature):
            continue
    raise ChainRejected("trust", f"chain top {top.subject.rfc4514_string()} does not lead to a configured trust anchor")


def verify_chain(
    chain: Sequence[x509.Certificate],
    *,
    csr_der: bytes,
    policy: PolicySpec,
    now: dt.datetime,
    trust_anchors: Sequence[x509.Certificate] = (),
) -> VerifiedChain:
    if not chain:
        raise ChainRejected("chain", "the CA returned no certificate")
    csr = x509.load_der_x509_csr(csr_der)
    leaf = chain[0]
    if _spki(leaf.public_key()) != _spki(csr.public_key()):
        raise ChainRejected("key", "the leaf's public key is not the CSR's (a certificate for another key)")
    _check_identity(leaf, policy)
    _check_validity(chain, now)
    _check_links(chain)
    if trust_anchors:
        _check_anchor(chain, trust_anchors)
    return VerifiedChain(tuple(chain))
