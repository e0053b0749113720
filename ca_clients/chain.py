"""Chain helpers every protocol client needs: parse PEM/DER/PKCS#7, put the leaf first."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7


def load_pem_chain(data: bytes | str) -> list[x509.Certificate]:
    if isinstance(data, str):
        data = data.encode()
    return x509.load_pem_x509_certificates(data)


def load_pkcs7_certs(data: bytes) -> list[x509.Certificate]:
    """Parse a certs-only PKCS#7 in DER or PEM; the order inside is not meaningful."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return pkcs7.load_pem_pkcs7_certificates(data)
    return pkcs7.load_der_pkcs7_certificates(data)


def leaf_first(certs: Iterable[x509.Certificate], *, public_key_der: bytes | None = None) -> list[x509.Certificate]:
    """Order certificates leaf -> issuer -> ... by matching issuer to subject.

    The leaf is the certificate whose public key matches ``public_key_der`` when given, else the
    one that issued no other certificate in the set. Certificates that do not join the path
    (unrelated extras) are dropped, so a bag with stray certificates still yields one clean chain.
    """
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pool = list({c.fingerprint(_SHA256()): c for c in certs}.values())
    if not pool:
        return []

    def spki(c: x509.Certificate) -> bytes:
        return c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    leaf = None
    if public_key_der is not None:
        leaf = next((c for c in pool if spki(c) == public_key_der), None)
    if leaf is None:
        issuers = {c.issuer.rfc4514_string() for c in pool if c.issuer != c.subject}
        candidates = [c for c in pool if c.subject.rfc4514_string() not in issuers or _is_end_entity(c)]
        candidates.sort(key=lambda c: not _is_end_entity(c))
        leaf = candidates[0] if candidates else pool[0]
    ordered = [leaf]
    current = leaf
    while current.issuer != current.subject:
        nxt = next((c for c in pool if c.subject == current.issuer and c not in ordered), None)
        if nxt is None:
            break
        ordered.append(nxt)
        current = nxt
    return ordered


def _is_end_entity(cert: x509.Certificate) -> bool:
    try:
        return not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return True


def _SHA256():  # noqa: N802 - small factory keeps the hashes import local
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()
