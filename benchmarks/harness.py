"""Shared set-up for the benchmarks: the emulator in a subprocess with Key Vault's service limits enforced and
20 ms added per request (standing in for the network), Azurite, a local CA, a RenewalService wired to them,
and the verdict line every script ends with: ``<name>: <figure> (target <bound>) PASS|FAIL``."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = 86_400
LATENCY_MS = 20
SERVICE_LIMITS = {"latency_ms": LATENCY_MS, "throttling": True, "create_limit": 20, "other_limit": 4000}


@contextlib.contextmanager
def limited_emulator(vaults: list[str]) -> Iterator[Any]:
    """The emulator as a separate process, service limits enforced (20 creates / 4,000 others per vault per 10 s)."""
    from emulator.testing import running_emulator

    with running_emulator(vaults, subprocess_mode=True, throttling=True) as kv:
        kv.admin.set_knobs(**SERVICE_LIMITS)
        yield kv


def emulator_now(kv: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(kv.admin.now(), dt.UTC)


def policy_wire(host: str, *, trigger: dict[str, int] | None = None, key: str = "ec") -> dict[str, Any]:
    key_props = (
        {"kty": "EC", "crv": "P-256", "exportable": False, "reuse_key": False}
        if key == "ec"
        else {"kty": "RSA", "key_size": 2048, "exportable": False, "reuse_key": False}
    )
    wire: dict[str, Any] = {
        "issuer": {"name": "Unknown"},
        "key_props": key_props,
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": f"CN={host}", "sans": {"dns_names": [host]}, "validity_months": 3},
    }
    if trigger:
        wire["lifetime_actions"] = [{"trigger": trigger, "action": {"action_type": "EmailContacts"}}]
    return wire


def seed_in_bulk(kv: Any, vault: str, count: int, **spec: Any) -> None:
    """``count`` completed certificates named ``cert-<n>`` in ``vault``, 1,000 per admin call (``spec``: the
    emulator's seed fields, e.g. not_before, expires, policy)."""
    for start in range(0, count, 1000):
        kv.admin.seed(vault, count=min(1000, count - start), start=start, prefix="cert", **spec)


def local_issuers(workdir: Path) -> list[dict[str, Any]]:
    from ca_clients.local import create_ca_files

    ca = create_ca_files(workdir / "ca")
    return [
        {
            "name": "corp-local",
            "type": "local",
            "ca_certificate": str(ca["ca_certificate"]),
            "ca_key": {"file": str(ca["ca_key"])},
            "chain": str(ca["chain"]),
            "trust_anchors": [str(ca["root"])],
        }
    ]


def renewal_service(
    kv: Any,
    issuers: list[dict[str, Any]],
    *,
    default_issuer: str = "corp-local",
    storage_env: dict[str, str] | None = None,
    storage: Any = None,
    keyvault_options: dict[str, Any] | None = None,
    **defaults: Any,
) -> Any:
    """A RenewalService on the emulator's vaults, as the Functions app would build it (real SDK clients,
    the product's own 429 handling: nothing here replaces the adapter's sleep)."""
    from renewal import settings
    from renewal.config import parse_config
    from renewal.service import RenewalService

    document: dict[str, Any] = {
        "vaults": [{"name": n, "url": u} for n, u in kv.vault_urls.items()],
        "issuers": issuers,
        "default_issuer": default_issuer,
        "deployers": [],
    }
    if defaults:
        document["defaults"] = defaults
    environ = {
        **(storage_env or {}),
        settings.KEYVAULT_CREDENTIAL.name: "emulator",
        settings.KEYVAULT_CA_BUNDLE.name: kv.ca_bundle,
    }
    return RenewalService(
        parse_config(document),
        environ=environ,
        storage=storage,
        clock=lambda: emulator_now(kv),
        keyvault_options=keyvault_options,
    )


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def verdict(name: str, figure: str, value: float, bound: float, bound_text: str, *, at_most: bool = True) -> bool:
    """Print the ratio to the bound and the final line; returns whether the bound was met."""
    ok = value <= bound if at_most else value >= bound
    ratio = value / bound if bound else float("inf")
    print(f"{name}: ratio to bound {ratio:.3f}")
    print(f"{name}: {figure} (target {bound_text}) {'PASS' if ok else 'FAIL'}", flush=True)
    return ok
