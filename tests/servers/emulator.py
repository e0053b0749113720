"""Pytest plugin: the Key Vault certificates emulator (in-process, HTTPS) for any test.

Fixtures:

``kv_emulator`` (session): an :class:`emulator.testing.EmulatorHandle` with vaults "kv-alpha" and
"kv-beta" and Event Grid enabled. Attributes:

- ``vault_urls``: ``{"kv-alpha": "https://127.0.0.1:PORT/", "kv-beta": "https://127.0.0.1:PORT2/"}``
  (one port per vault; the URL root is the vault, as the SDK requires); ``vault_url(name)`` too.
- ``ca_bundle``: path of the emulator's CA certificate; pass it as ``connection_verify=``.
- ``client_kwargs``: ``{"connection_verify": ca_bundle}``, what any Key Vault SDK client needs.
  The default ``verify_challenge_resource=True`` works; no other kwarg is required.
- ``credential``: a token credential the emulator accepts (any well-formed bearer token).
- ``certificate_client(vault, **kwargs)`` / ``secret_client(vault, **kwargs)``: real SDK clients.
- ``admin``: :class:`emulator.testing.AdminClient`: ``advance_clock(days=..)``, ``set_knobs(..)``,
  ``counters(vault=None)``, ``reset_counters()``, ``seed(vault, ..)``, ``subscribe(vault, name, url, ..)``,
  ``flush_events()``, ``deliveries()``, ``now()``, ``reset()``.

``kv`` (function): the same handle after a reset: empty vaults (same URLs), no subscriptions,
default knobs (service throttling ON: 20 creates and 4,000 other requests per vault per 10 s;
``kv.admin.set_knobs(throttling=False)`` turns it off), zero counters, clock back to real time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.testing import EmulatorHandle, running_emulator


@pytest.fixture(scope="session")
def kv_emulator() -> Iterator[EmulatorHandle]:
    with running_emulator(["kv-alpha", "kv-beta"]) as handle:
        yield handle


@pytest.fixture
def kv(kv_emulator: EmulatorHandle) -> EmulatorHandle:
    kv_emulator.admin.reset()
    return kv_emulator
