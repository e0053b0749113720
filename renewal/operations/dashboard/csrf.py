"""Cross-site request checks for the dashboard's state-changing POSTs.

A token is ``<unix time>.<HMAC-SHA256(key, time|principal|purpose)>``: issued into every form,
valid for ``TOKEN_TTL``, bound to the signed-in principal when Easy Auth names one. The key is the
RENEWAL_DASHBOARD_SECRET app setting, or a random per-process key when that is empty. A POST must
also come from the dashboard's own origin (``Origin``, else ``Referer``; ``Sec-Fetch-Site`` when sent).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from renewal.errors import CsrfRejected

TOKEN_TTL = 2 * 3600
CLOCK_SKEW = 300
PRINCIPAL_HEADER = "x-ms-client-principal-id"  # set by App Service authentication (Easy Auth)

_process_key = secrets.token_bytes(32)


def _key(secret: str | None) -> bytes:
    return secret.encode() if secret else _process_key


def _mac(key: bytes, issued: int, principal: str, purpose: str) -> str:
    return hmac.new(key, f"{issued}|{principal}|{purpose}".encode(), hashlib.sha256).hexdigest()


def issue_token(*, secret: str | None, now: float, principal: str = "", purpose: str = "replay") -> str:
    issued = int(now)
    return f"{issued}.{_mac(_key(secret), issued, principal, purpose)}"


def check_token(
    token: str | None, *, secret: str | None, now: float, principal: str = "", purpose: str = "replay"
) -> None:
    if not token:
        raise CsrfRejected("csrf: token missing")
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit() or not mac:
        raise CsrfRejected("csrf: token malformed")
    issued = int(stamp)
    if issued > now + CLOCK_SKEW or now - issued > TOKEN_TTL:
        raise CsrfRejected("csrf: token expired, reload the page")
    if not hmac.compare_digest(mac, _mac(_key(secret), issued, principal, purpose)):
        raise CsrfRejected("csrf: token invalid")


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(url: str, headers: Mapping[str, str]) -> set[str]:
    """The dashboard's own origin as the request URL and the (forwarded) Host header name it."""
    found = {o for o in (_origin_of(url),) if o}
    scheme = (headers.get("x-forwarded-proto") or urlsplit(url).scheme or "https").split(",")[0].strip()
    for host in (headers.get("x-forwarded-host"), headers.get("host")):
        if host:
            found.add(f"{scheme}://{host.split(',')[0].strip()}".lower())
    return found


def check_origin(url: str, headers: Mapping[str, str]) -> None:
    """Refuse a POST another site made the browser send (headers are lower-cased names)."""
    site = headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        raise CsrfRejected(f"origin: cross-site request ({site})")
    origin = headers.get("origin")
    if origin is None and headers.get("referer"):
        origin = _origin_of(headers["referer"]) or "null"
    if origin is not None and origin.lower() not in allowed_origins(url, headers):
        raise CsrfRejected("origin: request did not come from the dashboard")
