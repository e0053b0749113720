"""Real local servers for integration tests (emulator, Azurite, pebble, CFSSL, OpenBao).

Each module in this package is loaded as a pytest plugin by ``tests/conftest.py`` and defines
session fixtures that start its server on free loopback ports. When a server's binary is missing,
the fixture calls :func:`unavailable`, which skips locally but fails when
``RENEWAL_REQUIRE_SERVERS=1`` (CI sets it), so nothing silently stops running.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

REQUIRE_ENV = "RENEWAL_REQUIRE_SERVERS"


def servers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def unavailable(what: str, why: str) -> None:
    message = f"{what} unavailable: {why}"
    if servers_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "server") -> None:
    """Poll ``check`` until it is true; used only to wait for a started process to listen."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready in {timeout}s (last error: {last})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
