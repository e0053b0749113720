"""The admin API under /_admin (no bearer token): clock, knobs, counters, seeding, events, vaults.

Documented in emulator/README.md; :class:`emulator.testing.AdminClient` wraps it for Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from .app import Emulator
from .errors import ServiceError, bad_parameter
from .seed import seed

Result = tuple[int, dict[str, Any] | None]


class AdminHost(Protocol):
    """What the admin API needs of the process that serves the vaults (``server.EmulatorServer``):
    the emulator core, the vaults' URLs and listeners, and adding a vault. The server passes itself in,
    so this module never imports the server."""

    core: Emulator
    ca_bundle: Path
    listeners: Mapping[str, Any]

    def vault_urls(self) -> dict[str, str]: ...

    def add_vault(self, name: str, *, subscription: str | None = None, geography: str | None = None) -> Any: ...


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_parameter("The request body is not valid JSON.") from exc
    if not isinstance(parsed, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return parsed


def _number(body: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_parameter(f"{key} must be a number.")
    return float(value)


def handle(server: AdminHost, method: str, path: str, query: dict[str, str], raw: bytes) -> Result:
    core = server.core
    parts = [p for p in path.split("/") if p][1:]
    body = _json(raw)
    key = (method, "/".join(p if i != 1 or parts[0] != "vaults" else "{vault}" for i, p in enumerate(parts)))
    match key:
        case ("GET", "health") | ("GET", ""):
            return 200, {"status": "ok", "vaults": server.vault_urls(), "ca_bundle": str(server.ca_bundle)}
        case ("POST", "reset"):
            core.reset()
            return 200, {"vaults": server.vault_urls()}
        case ("GET", "clock"):
            return 200, {"now": core.clock.now(), "offset_seconds": core.clock.offset}
        case ("POST", "clock"):
            seconds = _number(body, "advance_seconds") + _number(body, "advance_days") * 86400
            if "set" in body:
                seconds += _number(body, "set") - core.clock.now()
            if seconds < 0:
                raise bad_parameter("The clock only moves forward.")
            fired = core.advance_clock(seconds)
            return 200, {"now": core.clock.now(), "offset_seconds": core.clock.offset, "events_published": fired}
        case ("GET", "knobs"):
            return 200, core.gate.knobs.as_dict() | {"event_time_scale": core.events.time_scale}
        case ("PATCH", "knobs"):
            if "event_time_scale" in body:
                core.events.time_scale = _number(body, "event_time_scale", 1.0)
                body.pop("event_time_scale")
            core.gate.knobs.update(body)
            return 200, core.gate.knobs.as_dict() | {"event_time_scale": core.events.time_scale}
        case ("GET", "counters"):
            return 200, core.gate.counters(query.get("vault"))
        case ("DELETE", "counters"):
            core.gate.reset_counters()
            return 204, None
        case ("GET", "vaults"):
            return 200, {"vaults": server.vault_urls(), "locations": _locations(server)}
        case ("POST", "vaults"):
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise bad_parameter("name is required.")
            knobs = {k: body.get(k) for k in ("subscription", "geography")}
            if any(v is not None and (not isinstance(v, str) or not v) for v in knobs.values()):
                raise bad_parameter("subscription and geography must be non-empty strings.")
            server.add_vault(name, **knobs)
            return 201, {"vaults": server.vault_urls(), "locations": _locations(server)}
        case ("POST", "vaults/{vault}/seed"):
            vault = _existing(server, parts[1])
            count = seed(core.vault(vault), body, core.clock)
            core.mark_dirty()
            return 200, {"seeded": count}
        case ("GET", "vaults/{vault}/subscriptions"):
            vault = core.vault(_existing(server, parts[1]))
            return 200, {"value": [asdict(s) for s in vault.subscriptions.values()]}
        case ("POST", "vaults/{vault}/subscriptions"):
            vault = core.vault(_existing(server, parts[1]))
            sub = core.events.subscribe(vault, body)
            core.mark_dirty()
            return 201, asdict(sub)
        case ("POST", "events/flush"):
            done = core.events.flush(_number(body, "timeout", 30.0))
            return 200, {"flushed": done, "pending": core.events.pending()}
        case ("POST", "events/scan"):
            return 200, {"events_published": core.scan_expiry()}
        case ("GET", "events/deliveries"):
            return 200, {"value": list(core.events.log)}
        case ("POST", "save"):
            core.save()
            return 200, {"saved": str(core.state_path) if core.state_path else None}
    if method == "DELETE" and len(parts) == 4 and parts[0] == "vaults" and parts[2] == "subscriptions":
        vault = core.vault(_existing(server, parts[1]))
        with vault.lock:
            if vault.subscriptions.pop(parts[3], None) is None:
                raise ServiceError(404, "NotFound", f"Subscription {parts[3]} not found.")
        core.mark_dirty()
        return 204, None
    raise ServiceError(404, "NotFound", f"Unknown admin endpoint {method} {path}.")


def _locations(server: AdminHost) -> dict[str, dict[str, str]]:
    """Each served vault's subscription and geography: what a restore into it is checked against."""
    vaults = [server.core.vault(name) for name in server.listeners]
    return {v.name: {"subscription": v.subscription, "geography": v.geography} for v in vaults}


def _existing(server: AdminHost, vault: str) -> str:
    if vault not in server.listeners:
        raise ServiceError(404, "VaultNotFound", f"Vault {vault} does not exist in this emulator.")
    return vault
