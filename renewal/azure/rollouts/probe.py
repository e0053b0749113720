"""Which leaf certificate a TLS front end presents for a server name.

The chain is not verified: the question is which leaf is served, not whether a client would trust it (the
issuer's trust is checked before a rollout starts)."""

from __future__ import annotations

import hashlib
import socket
import ssl

PROBE_TIMEOUT_SECONDS = 10.0


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def server_name_for(hostname: str | None) -> str | None:
    """The SNI name to ask for a listener's host name: a wildcard's first label made concrete."""
    if not hostname:
        return None
    return f"renewal-probe.{hostname[2:]}" if hostname.startswith("*.") else hostname


def presented_leaf(address: str, server_name: str | None, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> bytes:
    """The DER of the leaf the server at ``address`` presents in a handshake for ``server_name`` (no SNI when
    None). Raises OSError (ssl.SSLError, timeouts included) when there is no handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(split_address(address), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{address} presented no certificate")
    return der


def sha1_thumbprint(der: bytes) -> str:
    """The thumbprint Azure shows: upper-case hex SHA-1 of the DER."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
