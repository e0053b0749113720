"""Shared helpers for CA client tests: CSRs of every key type and SAN kind, a secret resolver."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ca_clients import CertificateIdentity, SignRequest

KEY_SPECS: dict[str, Any] = {
    "RSA-2048": lambda: rsa.generate_private_key(65537, 2048),
    "RSA-3072": lambda: rsa.generate_private_key(65537, 3072),
    "RSA-4096": lambda: rsa.generate_private_key(65537, 4096),
    "EC-P256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EC-P384": lambda: ec.generate_private_key(ec.SECP384R1()),
}


def make_key(spec: str = "EC-P256") -> Any:
    return KEY_SPECS[spec]()


def make_csr(
    common_name: str = "app.example.test",
    *,
    key: Any = None,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
    emails: list[str] | None = None,
    uris: list[str] | None = None,
) -> tuple[bytes, Any]:
    """A CSR (DER) signed like Key Vault signs one, and its private key (tests only)."""
    key = key or make_key()
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in (dns if dns is not None else [common_name])]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    names += [x509.RFC822Name(e) for e in emails or []]
    names += [x509.UniformResourceIdentifier(u) for u in uris or []]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER), key


def sign_request(csr_der: bytes, *, name: str = "app", request_id: str = "req-1", **kw: Any) -> SignRequest:
    return SignRequest(csr_der=csr_der, identity=CertificateIdentity("kv-test", name, request_id), **kw)


@dataclass
class DictSecretResolver:
    """Resolves {"value": ...} (tests only), {"setting": NAME}, {"file": PATH}; records what was asked."""

    values: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def resolve(self, reference: Any, *, field: str) -> str:
        self.asked.append(field)
        if isinstance(reference, dict):
            if "value" in reference:
                return str(reference["value"])
            if "setting" in reference:
                return self.values.get(reference["setting"]) or os.environ[reference["setting"]]
            if "file" in reference:
                return Path(reference["file"]).read_text()
            if "secret" in reference:
                return self.values[reference["secret"]]
        raise ValueError(f"{field}: not a secret reference")
