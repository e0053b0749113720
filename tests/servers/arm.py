"""Pytest plugin: the ARM stand-in and the Application Gateway front end (devtools/arm.py) for any test.

Fixtures: ``arm_standin`` (session, over the session's Key Vault emulator), ``arm`` (function scope: resources,
knobs and the request log reset before and after) and ``gateway_front_end(arm)`` (a TLS listener serving, by
SNI, the leaf each gateway listener has bound).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.arm import ArmStandIn, GatewayFrontEnd
from emulator.testing import EmulatorHandle

__all__ = ["ArmStandIn", "GatewayFrontEnd", "arm", "arm_standin", "gateway_front_end"]


@pytest.fixture(scope="session")
def arm_standin(kv_emulator: EmulatorHandle) -> Iterator[ArmStandIn]:
    standin = ArmStandIn(
        kv_emulator.vault_urls,
        kv_emulator.ca_bundle,
        kv_emulator.credential,
        resolve_vault=kv_emulator.vault_url,
    ).start()
    try:
        yield standin
    finally:
        standin.close()


@pytest.fixture
def arm(arm_standin: ArmStandIn) -> Iterator[ArmStandIn]:
    arm_standin.reset()
    yield arm_standin
    arm_standin.reset()


@pytest.fixture
def gateway_front_end(arm: ArmStandIn) -> Iterator[GatewayFrontEnd]:
    front_end = GatewayFrontEnd(arm)
    try:
        yield front_end
    finally:
        front_end.close()
