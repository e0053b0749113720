"""The dashboard served by the local Functions HTTP adapter, over the flow fixture's real emulator,
Azurite and local CA (function_app._service is that RenewalService)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import function_app
from devtools.functions_http import FunctionsHttpServer, serving
from devtools.pump import QueuePump
from renewal import settings
from tests.flow.conftest import flow, hook

__all__ = ["flow", "hook"]


@pytest.fixture
def dashboard(flow: Any) -> Iterator[FunctionsHttpServer]:
    function_app._service = flow.service
    with serving(function_app.app) as server:
        yield server
    function_app._service = None


def run_jobs(flow: Any) -> Any:
    return QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(
        timeout=90, wait_for_delayed=True
    )


def seed_estate(flow: Any) -> None:
    """Four certificates: healthy, due soon, expired, and one routed to partner-ca (key missing)."""
    flow.seed("kv-alpha", "web", days_left=60)
    flow.seed("kv-alpha", "api", days_left=20)
    flow.seed("kv-alpha", "legacy", days_left=-1)
    flow.seed("kv-alpha", "partner-api", days_left=3)
