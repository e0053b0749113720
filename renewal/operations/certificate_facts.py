"""Facts read from a certificate (its key, signature and issuer), once per version: the compliance rules
judge them, and the kept version facts carry them so a view of a large estate does not parse every
certificate again."""

from __future__ import annotations

from dataclasses import replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from renewal.model import CertificateVersion, LeafFacts


def issued_by(certificate: x509.Certificate, candidate: x509.Certificate) -> bool:
    """``candidate`` names and signed ``certificate`` (SHA-1 signatures included, which
    ``verify_directly_issued_by`` no longer checks)."""
    if certificate.issuer != candidate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(candidate)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    key, algorithm = candidate.public_key(), certificate.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_self_issued(certificate: x509.Certificate) -> bool:
    return issued_by(certificate, certificate)


def leaf_facts(cer: bytes) -> LeafFacts:
    """Raises ValueError for a certificate that does not parse."""
    leaf = x509.load_der_x509_certificate(cer)
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_type, bits, curve = "RSA", key.key_size, None
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits, curve = "EC", key.curve.key_size, key.curve.name
    else:
        key_type, bits, curve = type(key).__name__, None, None
    algorithm = leaf.signature_hash_algorithm
    return LeafFacts(
        key_type=key_type,
        key_bits=bits,
        curve=curve,
        signature_hash=algorithm.name if algorithm is not None else None,
        signature_algorithm=leaf.signature_algorithm_oid._name,
        issuer=leaf.issuer.rfc4514_string(),
        self_issued=leaf.issuer == leaf.subject and is_self_issued(leaf),
    )


def with_leaf_facts(current: CertificateVersion) -> CertificateVersion:
    """The version with its certificate's facts, read once for the rules and for keeping."""
    if current.leaf is not None or not current.cer:
        return current
    try:
        return replace(current, leaf=leaf_facts(current.cer))
    except ValueError:
        return current  # the rules report it unreadable
