"""A CA whose key and certificate come from files or app settings (demo, tests, dev/test estates).

The CA key is a secret reference (``{"file": ...}``, ``{"setting": ...}`` or ``{"secret": <URI>}``);
the CA certificate and any chain above it are public and may be given inline as PEM or by file.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import BaseModel, ConfigDict, Field

from .base import ClientContext, IssuedChain, PermanentCAError, SignRequest
from .chain import load_pem_chain
from .config_types import SecretRef, pem_text


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ca_certificate: str = Field(description="PEM text of the issuing CA certificate, or a path to it")
    ca_key: SecretRef = Field(description="secret reference to the CA private key (PEM)")
    chain: str | None = Field(default=None, description="PEM text or path of the certificates above the CA")
    validity_days: int = Field(default=90, ge=1, le=3650)
    max_validity_days: int = Field(default=397, ge=1, le=3650)


class LocalCA:
    def __init__(
        self,
        name: str,
        ca_cert: x509.Certificate,
        ca_key: Any,
        chain: list[x509.Certificate],
        config: Config,
        *,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.name = name
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._chain = chain
        self._config = config
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        """The CA's clock (``context.extra["now"]``, as for EST): a simulation shares its clock with the CA."""

    def sign(self, request: SignRequest) -> IssuedChain:
        try:
            csr = request.csr
        except ValueError as exc:
            raise PermanentCAError(f"CSR could not be parsed: {exc}", issuer=self.name) from exc
        if not csr.is_signature_valid:
            raise PermanentCAError("CSR signature is invalid", issuer=self.name)
        now = self._now()
        wanted = request.validity or dt.timedelta(days=self._config.validity_days)
        validity = min(wanted, dt.timedelta(days=self._config.max_validity_days))
        not_after = min(now + validity, self._ca_cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_cert.public_key()), critical=False
            )
        )
        requested = {ext.oid: ext for ext in csr.extensions}
        san = requested.get(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if san is not None:
            builder = builder.add_extension(san.value, critical=san.critical)
        eku = requested.get(x509.oid.ExtensionOID.EXTENDED_KEY_USAGE)
        builder = builder.add_extension(
            eku.value if eku is not None else x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        ku = requested.get(x509.oid.ExtensionOID.KEY_USAGE)
        if ku is not None:
            builder = builder.add_extension(ku.value, critical=True)
        algorithm = None if isinstance(self._ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        leaf = builder.sign(self._ca_key, algorithm)
        return IssuedChain((leaf, self._ca_cert, *self._chain), issuer_name=self.name)


def build(name: str, config: Config, context: ClientContext) -> LocalCA:
    ca_cert = x509.load_pem_x509_certificate(pem_text(config.ca_certificate).encode())
    key_pem = context.secrets.resolve(config.ca_key, field=f"issuers.{name}.ca_key")
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise PermanentCAError(f"issuers.{name}.ca_key: unsupported key type", issuer=name)
    chain = load_pem_chain(pem_text(config.chain)) if config.chain else []
    return LocalCA(name, ca_cert, key, chain, config, now=context.extra.get("now"))


def create_ca_files(directory: Path, *, common_name: str = "Renewal Dev Issuing CA") -> dict[str, Path]:
    """Make a root and an issuing CA on disk for dev/test/demo; returns the file paths.

    Keys: ``ca_certificate`` and ``ca_key`` (the issuing CA), ``chain`` and ``root`` (the root's PEM).
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def make(subject: str, key: Any, issuer: x509.Name | None, issuer_key: Any, path_len: int) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, subject)])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )

    root_key = ec.generate_private_key(ec.SECP384R1())
    root = make(f"{common_name} Root", root_key, None, root_key, 1)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = make(common_name, issuing_key, root.subject, root_key, 0)
    pem = serialization.Encoding.PEM
    paths = {
        "ca_certificate": directory / "issuing-ca.pem",
        "ca_key": directory / "issuing-ca.key",
        "chain": directory / "root-ca.pem",
        "root": directory / "root-ca.pem",
    }
    paths["ca_certificate"].write_bytes(issuing.public_bytes(pem))
    paths["ca_key"].write_bytes(
        issuing_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["ca_key"].chmod(0o600)
    paths["chain"].write_bytes(root.public_bytes(pem))
    return paths
