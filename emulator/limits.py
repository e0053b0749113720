"""Test knobs applied before an operation runs: latency, service throttling, injected faults, counters."""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import THROTTLED, ServiceError

OPERATIONS = (
    "create", "get_pending", "cancel", "delete_pending", "merge", "get_certificate", "update_certificate",
    "list", "list_versions", "get_policy", "update_policy", "import", "delete", "list_deleted",
    "get_deleted", "recover", "purge", "get_secret", "backup", "restore",
)  # fmt: skip
CREATE_OPERATIONS = {"create", "import"}  # backup and restore make no new key: they count as other requests


@dataclass
class Knobs:
    latency_ms: float = 0.0
    throttling: bool = True
    create_limit: int = 20  # per vault per window: certificate creates (and imports)
    other_limit: int = 4000  # per vault per window: every other request
    window_seconds: float = 10.0
    fault_rate: float = 0.0  # share of requests answered with fault_status
    fault_status: int = 503
    fault_operations: dict[str, float] = field(default_factory=dict)  # per-operation rates, override fault_rate
    fail_next: dict[str, int] = field(default_factory=dict)  # deterministic: fail the next N calls of an operation

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if not hasattr(self, key):
                raise ServiceError(400, "BadParameter", f"Unknown knob '{key}'.")
            current = getattr(self, key)
            if isinstance(current, dict) and not isinstance(value, dict):
                raise ServiceError(400, "BadParameter", f"Knob '{key}' must be an object.")
            if isinstance(current, bool) and not isinstance(value, bool):
                raise ServiceError(400, "BadParameter", f"Knob '{key}' must be a boolean.")
            if isinstance(current, int | float) and not isinstance(current, bool):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ServiceError(400, "BadParameter", f"Knob '{key}' must be a number.")
            setattr(self, key, dict(value) if isinstance(value, dict) else value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestGate:
    """Applies the knobs to one request and counts it."""

    def __init__(self) -> None:
        self.knobs = Knobs()
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, bool], collections.deque[float]] = {}
        self._counts: dict[str, collections.Counter[str]] = {}
        self._random = random.Random(0)

    def reset(self) -> None:
        with self._lock:
            self.knobs = Knobs()
            self._windows.clear()
            self._counts.clear()
            self._random = random.Random(0)

    def counters(self, vault: str | None = None) -> dict[str, int]:
        with self._lock:
            total: collections.Counter[str] = collections.Counter()
            for name, counts in self._counts.items():
                if vault is None or name == vault:
                    total.update(counts)
            return {op: total.get(op, 0) for op in OPERATIONS}

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()

    def admit(self, vault: str, operation: str) -> None:
        knobs = self.knobs
        with self._lock:
            self._counts.setdefault(vault, collections.Counter())[operation] += 1
            if knobs.fail_next.get(operation, 0) > 0:
                knobs.fail_next[operation] -= 1
                raise _fault(knobs.fault_status)
            if knobs.throttling:
                self._throttle(vault, operation in CREATE_OPERATIONS, knobs)
            rate = knobs.fault_operations.get(operation, knobs.fault_rate)
            if rate > 0 and self._random.random() < rate:
                raise _fault(knobs.fault_status)
        if knobs.latency_ms > 0:
            time.sleep(knobs.latency_ms / 1000)

    def _throttle(self, vault: str, is_create: bool, knobs: Knobs) -> None:
        now = time.monotonic()
        window = self._windows.setdefault((vault, is_create), collections.deque())
        while window and window[0] <= now - knobs.window_seconds:
            window.popleft()
        limit = knobs.create_limit if is_create else knobs.other_limit
        if len(window) >= limit:
            # Rejected requests do not count toward the limit, and the service sends no Retry-After.
            raise ServiceError(429, "Throttled", THROTTLED)
        window.append(now)


def _fault(status: int) -> ServiceError:
    code = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
    return ServiceError(
        status, code.get(status, "ServiceUnavailable"), "The service is temporarily unavailable (injected fault)."
    )
