"""Outbound requests to targets the configuration names (web hooks, Event Grid topics), made so that the
address that was checked is the address that is reached.

- The URL is parsed by urllib3's ``parse_url``, the parser ``requests`` connects with (``urlparse``
  disagrees with it on inputs such as ``http://127.0.0.1:1\\@example.com/``).
- The host is resolved once; every address it resolves to must be allowed, in every spelling (an
  IPv4-mapped or -compatible IPv6 address is judged as the IPv4 address it carries).
- The connection goes to the checked address, with the host name kept for the ``Host`` header, SNI and
  certificate verification, so a second DNS answer (rebinding) cannot move it elsewhere.
- TLS is verified with the bundle given, passed with each request (``REQUESTS_CA_BUNDLE`` cannot replace
  it).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from renewal.errors import DeliveryRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata and platform endpoints: never a target, whatever the config says.
METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # instance metadata (Azure IMDS, AWS, GCP)
        ipaddress.ip_address("168.63.129.16"),  # Azure wire server
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)

Resolver = Callable[[str], list[str]]


def _system_resolver(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host was resolved once and judged; ``address`` is where the request goes."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _judged(address: IPAddress) -> IPAddress:
    """The address a packet really goes to: IPv4 carried in IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        packed = address.packed
        if packed[:12] == bytes(12) and packed[12:] != bytes(4) and packed[12:] != b"\x00\x00\x00\x01":
            return ipaddress.IPv4Address(packed[12:])  # deprecated IPv4-compatible form ::a.b.c.d
    return address


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a request must not go to ``address``, or None."""
    judged = _judged(address)
    for candidate in {address, judged}:
        if candidate in METADATA:
            return f"{address} is a cloud metadata or platform endpoint"
        if candidate.is_link_local or candidate.is_unspecified or candidate.is_multicast or candidate.is_reserved:
            return f"{address} is a link-local, unspecified, multicast or reserved address"
        if (candidate.is_loopback or candidate.is_private) and not allow_private:
            return f"{address} is a loopback or private address; set allow_private_addresses to permit it"
    return None


def check_target(
    url: str, *, allow_private: bool, resolve: Resolver | None = None, field: str = "url"
) -> CheckedTarget:
    """Parse ``url`` as the connection will, resolve its host once and judge every address; raise
    :class:`DeliveryRefused` naming ``field`` when the target is not allowed."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parsed = parse_url(url)
    except LocationParseError as exc:
        raise DeliveryRefused(field, f"not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeliveryRefused(field, "must be an http(s) URL with a host")
    if parsed.auth:
        raise DeliveryRefused(field, "must not carry user information (user:password@)")
    host = parsed.host.strip("[]").split("%")[0].lower()
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in (resolve or _system_resolver)(host)]
        except (OSError, ValueError) as exc:
            raise DeliveryRefused(field, f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise DeliveryRefused(field, f"{host!r} resolves to no address")
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why:
            raise DeliveryRefused(field, f"{host} resolves to {why}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return CheckedTarget(url=url, scheme=parsed.scheme, host=host, port=port, address=str(addresses[0]))


def pinned_session(target: CheckedTarget) -> Any:
    """A ``requests`` session that reaches ``target`` only, at its checked address: the host name stays in
    the ``Host`` header, SNI and certificate verification. A request for any other host is refused. The
    environment's proxy and CA settings are not used (the bundle is passed per request)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import parse_url

    class PinnedAdapter(HTTPAdapter):
        def get_connection_with_tls_context(
            self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
        ) -> Any:
            url = parse_url(request.url)
            port = url.port or (443 if url.scheme == "https" else 80)
            if (url.scheme, (url.host or "").strip("[]").lower(), port) != (target.scheme, target.host, target.port):
                raise DeliveryRefused("url", f"{url.host} is not the checked target {target.host}")
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
            host_params["host"] = target.address
            if target.scheme == "https":
                pool_kwargs["server_hostname"] = target.host
                pool_kwargs["assert_hostname"] = target.host
            return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

        def add_headers(self, request: Any, **kwargs: Any) -> None:
            request.headers["Host"] = target.host_header

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", PinnedAdapter())
    session.mount("https://", PinnedAdapter())
    return session


def post(
    target: CheckedTarget, *, data: bytes, headers: dict[str, str], timeout: float, verify: str | bool = True
) -> Any:
    """POST to the checked address (never following a redirect), with the TLS bundle passed per request."""
    with pinned_session(target) as session:
        return session.post(
            target.url, data=data, headers=headers, timeout=timeout, allow_redirects=False, verify=verify
        )
