"""ACME Renewal Information (RFC 9773, "ARI"): naming a certificate and reading a CA's suggested window.

Pure functions of a certificate or a response document (only ``cryptography``), so the renewal flow can
name a certificate without importing the ACME client. The network part is ``AcmeClient.renewal_info``.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

from cryptography import x509


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER bytes).

    ValueError when the certificate has no Authority Key Identifier (ARI cannot name it)."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    if not aki:
        raise ValueError("certificate has no Authority Key Identifier; ARI cannot name it")
    serial = cert.serial_number
    # The DER INTEGER content: big-endian two's complement, with a leading 0x00 when the top bit is set.
    serial_bytes = serial.to_bytes(math.ceil((serial.bit_length() + 1) / 8), "big", signed=True)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{b64(aki)}.{b64(serial_bytes)}"


def ari_cert_id_of_der(cert_der: bytes) -> str:
    """:func:`ari_cert_id` of a DER certificate (ValueError when it cannot be parsed or named)."""
    return ari_cert_id(x509.load_der_x509_certificate(cert_der))


def parse_renewal_info(document: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """The ``suggestedWindow`` of an ARI response as aware UTC datetimes; ValueError if unusable.

    RFC 9773 §4.2: a window whose end equals or precedes its start is invalid, and a client treats it as
    though it received no answer."""
    window = document.get("suggestedWindow") if isinstance(document, dict) else None
    window = window or {}
    try:
        start = dt.datetime.fromisoformat(str(window["start"]).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(window["end"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"renewal info has no usable suggestedWindow: {exc}") from exc
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    end = end if end.tzinfo else end.replace(tzinfo=dt.UTC)
    if end <= start:
        raise ValueError("renewal info window does not end after it starts")
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def explanation_url(document: dict[str, Any]) -> str | None:
    """The optional ``explanationURL`` (a page for humans about why the window is what it is)."""
    value = document.get("explanationURL") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None
