"""Real local servers for integration tests (emulator, Azurite, pebble, CFSSL, OpenBao).

Each module in this package is loaded as a pytest plugin by ``tests/conftest.py`` and defines
session fixtures that start its server on free loopback ports. When a server's binary is missing,
the fixture calls :func:`unavailable`, which skips locally but fails when
``RENEWAL_REQUIRE_SERVERS=1`` (CI sets it), so nothing silently stops running.
"""

from __future__ import annotations

import os

import pytest

from devtools.processes import free_port, port_open, wait_until

__all__ = ["REQUIRE_ENV", "free_port", "port_open", "servers_required", "unavailable", "wait_until"]

REQUIRE_ENV = "RENEWAL_REQUIRE_SERVERS"


def servers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def unavailable(what: str, why: str) -> None:
    message = f"{what} unavailable: {why}"
    if servers_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(message)
