"""Challenge authentication as the SDK expects it (see reference section 2).

The vault URL is ``https://127.0.0.1:PORT`` (one port per vault). The challenge names the resource
``https://0.0.1:PORT``: the SDK's default ``verify_challenge_resource=True`` only requires the request
host to end with "." + the resource host, and "127.0.0.1:PORT" ends with ".0.0.1:PORT". No DNS needed.
"""

from __future__ import annotations

import re

from .errors import ServiceError

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_TOKEN = re.compile(r"^Bearer ([A-Za-z0-9\-._~+/]+=*)$")


def challenge_header(port: int) -> str:
    return f'Bearer authorization="https://login.windows.net/{TENANT}", resource="{challenge_resource(port)}"'


def challenge_resource(port: int) -> str:
    return f"https://0.0.1:{port}"


def check(authorization: str | None) -> None:
    """Raise a 401 unless the request carries a well-formed bearer token (any such token is accepted)."""
    if not authorization:
        raise ServiceError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
    if not _TOKEN.match(authorization.strip()):
        raise ServiceError(401, "Unauthorized", "AKV10022: Invalid bearer token: the token is malformed.")
