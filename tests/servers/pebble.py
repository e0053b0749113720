"""pebble (ACME test CA) and pebble-challtestsrv (its mock DNS) as session fixtures.

Fixtures:
- ``challtestsrv``: mock DNS on ``.dns_port`` (UDP+TCP) and its management API at ``.management_url``
  (``POST /set-txt {"host","value"}``, ``/clear-txt {"host"}``); ``.txt(fqdn)`` asks its DNS.
- ``pebble``: validation on; dns-01 is answered through challtestsrv (``-dnsserver``). Authz reuse is
  off (every order validates), alternate roots are on (``PEBBLE_ALTERNATE_ROOTS=1``).
- ``pebble_eab``: the same, with External Account Binding required (keys ``kid-1``/``kid-2`` from the
  Debian example config).

Each pebble object offers ``.directory_url``, ``.ca_bundle`` (the listener's TLS CA file),
``.trust_anchor_pem`` (pebble's root, regenerated on every start), ``.alternate_root_pems`` and
``issuer_section(name)``: a complete ``type: acme`` registry section that issues for DNS names under
``*.example.test`` (any name resolves: challtestsrv serves every TXT record it is given). ACME only
validates DNS names here, so CSRs with IP, email or URI SANs are refused with a PermanentCAError.

The launcher itself lives in ``devtools/pebble.py`` (shared with ``make demo DEMO_ARGS=--acme`` and
the benchmarks); this module turns it into fixtures that skip (or fail under CI) when pebble is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.pebble import (
    CHALLTESTSRV,
    DOMAIN,
    EAB_EXAMPLE,
    EAB_KEYS,
    PEBBLE,
    ChallTestSrv,
    PebbleServer,
    running_challtestsrv,
    running_pebble_server,
)
from devtools.pebble import eab_keys as _eab_keys
from devtools.pebble import write_tls_listener as _write_tls_listener  # noqa: F401 - used by ACME part tests
from tests.servers import unavailable

__all__ = [
    "CHALLTESTSRV",
    "DOMAIN",
    "EAB_EXAMPLE",
    "EAB_KEYS",
    "PEBBLE",
    "ChallTestSrv",
    "PebbleServer",
    "challtestsrv",
    "pebble",
    "pebble_eab",
]


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    if not shutil.which(CHALLTESTSRV):
        unavailable("pebble-challtestsrv", f"{CHALLTESTSRV} not installed (apt-get install pebble)")
    with running_challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


def _start_pebble(
    workdir: Path, challtestsrv: ChallTestSrv, *, eab_keys: dict[str, str] | None = None
) -> Iterator[PebbleServer]:
    if not shutil.which(PEBBLE):
        unavailable("pebble", f"{PEBBLE} not installed (apt-get install pebble)")
    with running_pebble_server(workdir, challtestsrv, eab_keys=eab_keys) as server:
        yield server


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv) -> Iterator[PebbleServer]:
    yield from _start_pebble(tmp_path_factory.mktemp("pebble"), challtestsrv)


@pytest.fixture(scope="session")
def pebble_eab(tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv) -> Iterator[PebbleServer]:
    yield from _start_pebble(tmp_path_factory.mktemp("pebble-eab"), challtestsrv, eab_keys=_eab_keys())
