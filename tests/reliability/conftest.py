"""Shared fixtures for the reliability suite: the flow wiring (emulator + Azurite + a local CA), a
hypothesis profile, and the switch for the long variant (``RENEWAL_LONG_TESTS=1``)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

from tests.flow.conftest import Flow, flow, hook, make_config, policy_wire  # noqa: F401 - fixtures

LONG = os.environ.get("RENEWAL_LONG_TESTS", "") not in ("", "0", "false", "no")

settings.register_profile(
    "reliability",
    max_examples=1000 if LONG else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "reliability-io",  # properties that talk to Azurite or the emulator per example
    max_examples=300 if LONG else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def jobs_in_queue(storage: Any, queue: str) -> list[dict]:
    """Peek every message (up to 32) on a queue and decode the JSON bodies."""
    import base64
    import json

    client = storage.queue_client(queue, base64=False)
    return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]
