"""Chains an attacker (or a misconfigured CA) would answer a CSR with, and the honest one, built with
``cryptography``: a root, an intermediate and a leaf whose every field a test can choose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)
CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
LEAF_USAGE = x509.KeyUsage(True, False, True, False, False, False, False, False, False)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Authority:
    cert: x509.Certificate
    key: Any


def authority(
    cn: str,
    parent: Authority | None = None,
    *,
    path_length: int | None = None,
    usage: x509.KeyUsage | None = CA_USAGE,
    constraints: x509.NameConstraints | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = parent.cert.subject if parent else _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
        )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return Authority(builder.sign(parent.key if parent else key, hashes.SHA256()), key)


def leaf(
    csr: x509.CertificateSigningRequest,
    issuer: Authority,
    *,
    sans: list[x509.GeneralName] | None = None,
    eku: list[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),  # type: ignore[assignment]
    usage: x509.KeyUsage | None = LEAF_USAGE,
    ca: bool = False,
    days: int = 90,
    not_before: dt.datetime | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    start = not_before or NOW - dt.timedelta(minutes=5)
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        requested = x509.SubjectAlternativeName([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or csr.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans if sans is not None else list(requested)), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer.key, hashes.SHA256())


@dataclass
class Hierarchy:
    root: Authority
    issuing: Authority

    def honest(self, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
        return [leaf(csr, self.issuing), self.issuing.cert]


def hierarchy(name: str = "Hostile Test") -> Hierarchy:
    root = authority(f"{name} Root")
    return Hierarchy(root, authority(f"{name} Issuing CA", root, path_length=0))


HostileChain = Callable[[Hierarchy, x509.CertificateSigningRequest], list[x509.Certificate]]


def _sub_ca_under_path_length_zero(h: Hierarchy, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    sub = authority("Sneaky Sub CA", h.issuing)
    return [leaf(csr, sub), sub.cert, h.issuing.cert]


def _outside_name_constraints(h: Hierarchy, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    constrained = authority(
        "Corp-only CA",
        h.root,
        path_length=0,
        constraints=x509.NameConstraints(permitted_subtrees=[x509.DNSName("corp.test")], excluded_subtrees=None),
    )
    return [leaf(csr, constrained), constrained.cert]


def _ca_without_cert_sign(h: Hierarchy, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    weak = authority("No-KeyCertSign CA", h.root, path_length=0, usage=LEAF_USAGE)
    return [leaf(csr, weak), weak.cert]


def _other_hierarchy(h: Hierarchy, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    return hierarchy("Elsewhere").honest(csr)


def _ca_eku_excludes_server(h: Hierarchy, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
    mail_ca = authority("Mail-only CA", h.root, path_length=0, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    return [leaf(csr, mail_ca), mail_ca.cert]


HOSTILE: dict[str, tuple[str, HostileChain]] = {
    # name: (the check that must refuse it, the chain)
    "leaf-is-a-ca": (
        "basic-constraints",
        lambda h, csr: [leaf(csr, h.issuing, ca=True, usage=CA_USAGE), h.issuing.cert],
    ),
    "ten-year-leaf": ("lifetime", lambda h, csr: [leaf(csr, h.issuing, days=3650), h.issuing.cert]),
    "code-signing-only": (
        "extended-key-usage",
        lambda h, csr: [leaf(csr, h.issuing, eku=[ExtendedKeyUsageOID.CODE_SIGNING]), h.issuing.cert],
    ),
    "no-eku-any-purpose": ("extended-key-usage", lambda h, csr: [leaf(csr, h.issuing, eku=None), h.issuing.cert]),
    "leaf-may-sign-certificates": (
        "key-usage",
        lambda h, csr: [leaf(csr, h.issuing, usage=CA_USAGE), h.issuing.cert],
    ),
    "sub-ca-under-path-length-0": ("path", _sub_ca_under_path_length_zero),
    "outside-name-constraints": ("path", _outside_name_constraints),
    "ca-without-key-cert-sign": ("path", _ca_without_cert_sign),
    "another-hierarchy": ("path", _other_hierarchy),
    "ca-eku-excludes-the-leaf-purpose": ("path", _ca_eku_excludes_server),
    "missing-intermediate": ("path", lambda h, csr: [leaf(csr, h.issuing)]),
    "extra-san-of-another-type": (
        "sans",
        lambda h, csr: [
            leaf(csr, h.issuing, sans=[*_requested(csr), x509.RFC822Name("ceo@example.test")]),
            h.issuing.cert,
        ],
    ),
    "extra-dns-san": (
        "sans",
        lambda h, csr: [
            leaf(csr, h.issuing, sans=[*_requested(csr), x509.DNSName("evil.example.test")]),
            h.issuing.cert,
        ],
    ),
    "missing-san": ("sans", lambda h, csr: [leaf(csr, h.issuing, sans=_requested(csr)[:-1]), h.issuing.cert]),
    "other-subject": (
        "subject",
        lambda h, csr: [leaf(csr, h.issuing, subject=_name("evil.example.test")), h.issuing.cert],
    ),
    "expired": (
        "validity",
        lambda h, csr: [leaf(csr, h.issuing, not_before=NOW - dt.timedelta(days=100)), h.issuing.cert],
    ),
    "not-yet-valid": (
        "validity",
        lambda h, csr: [leaf(csr, h.issuing, not_before=NOW + dt.timedelta(days=2)), h.issuing.cert],
    ),
}


def _requested(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
