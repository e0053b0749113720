"""Run the emulator from Python: in-process (threads) for fast tests, or as a subprocess for benchmarks."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .credential import EmulatorCredential


class AdminClient:
    """Python wrapper of the ``/_admin`` API (see emulator/README.md)."""

    def __init__(self, admin_url: str, ca_bundle: str) -> None:
        self.url = admin_url.rstrip("/")
        self._session = requests.Session()
        self._verify = ca_bundle  # per request: REQUESTS_CA_BUNDLE would override a session-level verify

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = self._session.request(
            method, f"{self.url}/{path}", json=body, params=params or None, timeout=120, verify=self._verify
        )
        if response.status_code >= 400:
            raise RuntimeError(f"admin {method} {path} failed: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def reset(self) -> None:
        self._call("POST", "reset")

    def now(self) -> float:
        return self._call("GET", "clock")["now"]

    def advance_clock(self, *, days: float = 0, seconds: float = 0) -> int:
        """Move the clock forward; returns how many NearExpiry/Expired events were published."""
        return self._call("POST", "clock", {"advance_days": days, "advance_seconds": seconds})["events_published"]

    def knobs(self) -> dict[str, Any]:
        return self._call("GET", "knobs")

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """e.g. latency_ms=5, throttling=False, create_limit=3, fault_rate=0.1, fault_operations={"merge": 1.0},
        fail_next={"get_certificate": 2}, fault_status=500, event_time_scale=0.001."""
        return self._call("PATCH", "knobs", knobs)

    def counters(self, vault: str | None = None) -> dict[str, int]:
        return self._call("GET", "counters", **({"vault": vault} if vault else {}))

    def reset_counters(self) -> None:
        self._call("DELETE", "counters")

    def seed(self, vault: str, **spec: Any) -> int:
        """Bulk-create completed certificates: count=, prefix=, not_before=, expires=, tags=, policy=,
        or certificates=[{"name", "not_before", "expires", "tags"}]."""
        return self._call("POST", f"vaults/{vault}/seed", spec)["seeded"]

    def add_vault(self, name: str, *, subscription: str | None = None, geography: str | None = None) -> dict[str, str]:
        """Serve a new vault (a known one gets the subscription and geography given); returns every vault's URL.
        Defaults: the emulator's subscription and "United States". Restores check both against the backup's."""
        body = {"name": name, "subscription": subscription, "geography": geography}
        return self._call("POST", "vaults", {k: v for k, v in body.items() if v is not None})["vaults"]

    def vault_locations(self) -> dict[str, dict[str, str]]:
        """vault name -> {"subscription", "geography"}."""
        return self._call("GET", "vaults")["locations"]

    def subscribe(
        self,
        vault: str,
        name: str,
        endpoint: str,
        *,
        schema: str = "EventGridSchema",
        event_types: list[str] | None = None,
        max_delivery_attempts: int = 30,
        event_ttl_minutes: int = 1440,
        dead_letter_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "endpoint": endpoint,
            "schema": schema,
            "event_types": event_types,
            "max_delivery_attempts": max_delivery_attempts,
            "event_ttl_minutes": event_ttl_minutes,
            "dead_letter_dir": str(dead_letter_dir) if dead_letter_dir else None,
        }
        return self._call("POST", f"vaults/{vault}/subscriptions", body)

    def unsubscribe(self, vault: str, name: str) -> None:
        self._call("DELETE", f"vaults/{vault}/subscriptions/{name}")

    def flush_events(self, timeout: float = 30.0) -> bool:
        return self._call("POST", "events/flush", {"timeout": timeout})["flushed"]

    def scan_expiry(self) -> int:
        return self._call("POST", "events/scan")["events_published"]

    def deliveries(self) -> list[dict[str, Any]]:
        return self._call("GET", "events/deliveries")["value"]

    def save_state(self) -> None:
        self._call("POST", "save")

    def close(self) -> None:
        self._session.close()


@dataclass
class EmulatorHandle:
    """What :func:`running_emulator` yields."""

    vault_urls: dict[str, str]  # vault name -> "https://127.0.0.1:PORT/"
    ca_bundle: str  # pass as connection_verify=
    admin: AdminClient
    credential: EmulatorCredential = field(default_factory=EmulatorCredential)

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments any Key Vault SDK client needs to talk to the emulator."""
        return {"connection_verify": self.ca_bundle}

    def vault_url(self, vault: str) -> str:
        """Also for vaults added since start (``admin.add_vault``), which ``vault_urls`` leaves out: callers
        take ``vault_urls`` as the vaults the emulator started with."""
        url = self.vault_urls.get(vault)
        return url if url is not None else self.admin.health()["vaults"][vault]

    def certificate_client(self, vault: str, **kwargs: Any) -> Any:
        from azure.keyvault.certificates import CertificateClient

        return CertificateClient(self.vault_url(vault), self.credential, **(self.client_kwargs | kwargs))

    def secret_client(self, vault: str, **kwargs: Any) -> Any:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(self.vault_url(vault), self.credential, **(self.client_kwargs | kwargs))


@contextlib.contextmanager
def running_emulator(
    vaults: list[str] | tuple[str, ...] = ("kv-alpha",),
    *,
    subprocess_mode: bool = False,
    port: int = 0,
    state: str | Path | None = None,
    throttling: bool = True,
) -> Iterator[EmulatorHandle]:
    """Start an emulator with the given vaults; in-process threads by default, a child process if asked."""
    if subprocess_mode:
        with _subprocess(list(vaults), port, state, throttling) as handle:
            yield handle
        return
    from .server import EmulatorServer

    server = EmulatorServer(state_path=Path(state) if state else None)
    server.core.gate.knobs.throttling = throttling
    server.start(list(vaults), port)
    urls = server.vault_urls()
    admin = AdminClient(next(iter(urls.values())) + "_admin", str(server.ca_bundle))
    try:
        yield EmulatorHandle(urls, str(server.ca_bundle), admin)
    finally:
        admin.close()
        server.close()


@contextlib.contextmanager
def _subprocess(vaults: list[str], port: int, state: str | Path | None, throttling: bool) -> Iterator[EmulatorHandle]:
    command = [sys.executable, "-m", "emulator", "--port", str(port)]
    for vault in vaults:
        command += ["--vault", vault]
    if state:
        command += ["--state", str(state)]
    if not throttling:
        command.append("--no-throttling")
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        ready: dict[str, Any] | None = None
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                ready = json.loads(line[len("READY ") :])
                break
        if ready is None:
            raise RuntimeError(f"emulator exited before it was ready (code {process.wait()})")
        admin = AdminClient(ready["admin_url"], ready["ca_bundle"])
        try:
            yield EmulatorHandle(ready["vaults"], ready["ca_bundle"], admin)
        finally:
            admin.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
