"""X.509 material: key pairs, self-signed certificates, CSRs, the TLS CA, and PFX/PEM parsing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
CURVE_NAMES = {type(c).__name__: n for n, c in CURVES.items()}
KEY_USAGE_FLAGS = {
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


def generate_key(kty: str, key_size: int | None, crv: str | None) -> PrivateKey:
    if kty.startswith("EC"):
        return ec.generate_private_key(CURVES[crv or "P-256"])
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size or 2048)


def key_props_of(key: Any) -> dict[str, Any]:
    """The policy key_props that describe an existing key (used for imports)."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {"kty": "EC", "crv": CURVE_NAMES.get(type(key.curve).__name__, "P-256"), "key_size": key.curve.key_size}
    return {"kty": "RSA", "key_size": key.key_size}


def public_bytes(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(pem: bytes) -> PrivateKey:
    """A key the emulator wrote itself (state file, or a backup blob it sealed and authenticated): OpenSSL's
    RSA consistency check costs ~40 ms a key and proves nothing here, so it is skipped."""
    return serialization.load_pem_private_key(  # type: ignore[return-value]
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )


def parse_subject(subject: str) -> x509.Name:
    """Parse "CN=a, O=b" (Key Vault accepts spaces after commas, RFC 4514 does not)."""
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in subject:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch in ",;":
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    if not parts or any("=" not in p for p in parts):
        raise ValueError(f"invalid subject {subject!r}")
    # RFC 4514 lists the most specific RDN first; x509.Name wants the reverse, which the parser handles.
    return x509.Name.from_rfc4514_string(",".join(parts))


def _extensions(builder: Any, x509_props: dict[str, Any], key: Any) -> Any:
    sans = x509_props.get("sans") or {}
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in sans.get("dns_names") or []]
    names += [x509.RFC822Name(n) for n in sans.get("emails") or []]
    names += [x509.UniformResourceIdentifier(n) for n in sans.get("uris") or []]
    names += [x509.IPAddress(ipaddress.ip_address(n)) for n in sans.get("ipAddresses") or []]
    names += [
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), _der_utf8(n)) for n in sans.get("upns") or []
    ]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    ekus = x509_props.get("ekus") or []
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in ekus]), critical=False)
    usages = x509_props.get("key_usage") or []
    if usages:
        flags = {v: False for v in KEY_USAGE_FLAGS.values()}
        for usage in usages:
            flags[KEY_USAGE_FLAGS[usage]] = True
        if not flags["key_agreement"]:
            flags["encipher_only"] = flags["decipher_only"] = False
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    return builder


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw if len(raw) < 128 else bytes([0x0C, 0x81, len(raw)]) + raw


def _subject(x509_props: dict[str, Any]) -> x509.Name:
    subject = x509_props.get("subject")
    return parse_subject(subject) if subject else x509.Name([])


def self_signed(key: PrivateKey, x509_props: dict[str, Any], not_before: int, expires: int) -> bytes:
    name = _subject(x509_props)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(expires, dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    builder = _extensions(builder, x509_props, key)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issued(
    public_key: Any, x509_props: dict[str, Any], not_before: int, expires: int, ca_key: PrivateKey, ca_der: bytes
) -> bytes:
    """A leaf for ``public_key`` signed by a CA (used for seeded certificates: EC signing is fast)."""
    ca = load_der(ca_der)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(x509_props))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(expires, dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    builder = _extensions(builder, x509_props, None)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_ca(common_name: str) -> tuple[PrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=3650))
        .not_valid_after(now + dt.timedelta(days=36500))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.DER)


def build_csr(key: PrivateKey, x509_props: dict[str, Any]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(x509_props))
    builder = _extensions(builder, x509_props, key)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def load_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def thumbprint(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324 - x5t is SHA-1


def validity(der: bytes) -> tuple[int, int]:
    cert = load_der(der)
    return int(cert.not_valid_before_utc.timestamp()), int(cert.not_valid_after_utc.timestamp())


def x509_props_of(der: bytes) -> dict[str, Any]:
    """Describe an imported certificate as policy x509_props."""
    cert = load_der(der)
    props: dict[str, Any] = {"subject": cert.subject.rfc4514_string(), "sans": {}, "ekus": [], "key_usage": []}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        if dns:
            props["sans"]["dns_names"] = dns
    except x509.ExtensionNotFound:
        pass
    try:
        props["ekus"] = [o.dotted_string for o in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        pass
    months = max(1, round((cert.not_valid_after_utc - cert.not_valid_before_utc).days / 30.4))
    props["validity_months"] = months
    return props


def parse_pfx(data: bytes, password: str | None) -> tuple[PrivateKey, list[bytes]]:
    key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    if key is None or cert is None:
        raise ValueError("the PFX holds no private key and certificate")
    chain = [cert.public_bytes(serialization.Encoding.DER)]
    chain += [c.public_bytes(serialization.Encoding.DER) for c in extra or []]
    return key, chain  # type: ignore[return-value]


def parse_pem(text: str) -> tuple[PrivateKey, list[bytes]]:
    data = text.encode()
    key = serialization.load_pem_private_key(_pem_block(data, b"PRIVATE KEY"), password=None)
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError("the PEM holds no certificate")
    return key, [c.public_bytes(serialization.Encoding.DER) for c in certs]  # type: ignore[return-value]


def _pem_block(data: bytes, label: bytes) -> bytes:
    begin = data.find(b"-----BEGIN " + label)
    end_marker = b"-----END " + label + b"-----"
    end = data.find(end_marker, begin)
    if begin < 0 or end < 0:
        raise ValueError("the PEM holds no PKCS#8 private key")
    return data[begin : end + len(end_marker)]


def to_pkcs12(key: PrivateKey | None, chain: list[bytes], name: str) -> bytes:
    certs = [load_der(d) for d in chain]
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, certs[0], certs[1:] or None, serialization.NoEncryption()
    )


def to_pem(key: PrivateKey | None, chain: list[bytes]) -> str:
    out = key_to_pem(key).decode() if key is not None else ""
    for der in chain:
        out += load_der(der).public_bytes(serialization.Encoding.PEM).decode()
    return out


def make_tls_material(folder: Path) -> tuple[Path, Path, Path]:
    """A CA made at start and a server certificate for 127.0.0.1/localhost; returns (ca, cert, key) paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Key Vault Emulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("*.localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key_to_pem(server_key))
    return ca_path, cert_path, key_path
