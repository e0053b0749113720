"""In-memory vault contents, and their JSON form for ``--state FILE``."""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import crypto

RECOVERABLE_DAYS = 90
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_GEOGRAPHY = "United States"


def new_id() -> str:
    return uuid.uuid4().hex


@functools.cache
def shared_seed_key() -> crypto.PrivateKey:
    """One key pair for every bulk-seeded certificate, so seeding 20,000 costs no key generation."""
    return crypto.generate_key("RSA", 2048, None)


@functools.cache
def seed_issuer() -> tuple[crypto.PrivateKey, bytes]:
    """The CA that signs seeded certificates: an EC key signs in a fraction of RSA's time."""
    return crypto.make_ca("Key Vault Emulator Seed CA")


@dataclass
class Version:
    version: str
    created: int
    updated: int
    enabled: bool
    not_before: int
    expires: int
    tags: dict[str, str]
    content_type: str
    exportable: bool
    key: crypto.PrivateKey | None = None  # None: the shared seed key
    chain: list[bytes] | None = None  # leaf first; None until a seeded certificate is first read
    subject: str = ""
    _x5t: str | None = field(default=None, repr=False, compare=False)
    _cer_b64: str | None = field(default=None, repr=False, compare=False)

    def chain_der(self) -> list[bytes]:
        if self.chain is None:
            # Seeded certificates build their DER lazily: seeding stays fast and most are never read.
            props = {"subject": self.subject, "sans": {}, "ekus": [], "key_usage": []}
            ca_key, ca_der = seed_issuer()
            public = self.private_key().public_key()
            self.chain = [crypto.issued(public, props, self.not_before, self.expires, ca_key, ca_der), ca_der]
        return self.chain

    def private_key(self) -> crypto.PrivateKey:
        return self.key if self.key is not None else shared_seed_key()

    def x5t(self) -> str:
        if self._x5t is None:  # cached: GETs dominate benchmarks and the chain never changes
            self._x5t = crypto.thumbprint(self.chain_der()[0])
        return self._x5t

    def cer_b64(self) -> str:
        if self._cer_b64 is None:
            self._cer_b64 = base64.b64encode(self.chain_der()[0]).decode()
        return self._cer_b64


@dataclass
class PendingOperation:
    request_id: str
    version: str
    key: crypto.PrivateKey
    csr: bytes
    issuer: dict[str, Any]
    status: str = "inProgress"
    status_details: str = "Pending certificate created. Please Perform Merge to complete the request."
    cancellation_requested: bool = False
    error: dict[str, str] | None = None
    target: str | None = None
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.status.lower() == "inprogress"


@dataclass
class Certificate:
    name: str
    policy: dict[str, Any]
    policy_created: int
    policy_updated: int
    versions: dict[str, Version] = field(default_factory=dict)
    current: str | None = None
    pending: PendingOperation | None = None
    preserve_order: bool = False
    deleted_date: int | None = None
    scheduled_purge: int | None = None

    def latest(self) -> Version | None:
        return self.versions.get(self.current) if self.current else None


@dataclass
class Subscription:
    name: str
    endpoint: str
    schema: str = "EventGridSchema"  # or CloudEventSchemaV1_0
    event_types: list[str] | None = None
    max_delivery_attempts: int = 30
    event_ttl_minutes: int = 1440
    dead_letter_dir: str | None = None

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass
class Vault:
    name: str
    subscription: str = DEFAULT_SUBSCRIPTION  # backups restore only within one subscription
    geography: str = DEFAULT_GEOGRAPHY  # ... and one geography (e.g. "United States", "Europe")
    certificates: dict[str, Certificate] = field(default_factory=dict)
    deleted: dict[str, Certificate] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    fired: set[tuple[str, str, str]] = field(default_factory=set)  # (name, version, event type)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)


# ---- persistence ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _version_to_json(v: Version, *, materialize: bool = False) -> dict[str, Any]:
    """``materialize``: write a seeded version's shared key and built chain too (backups), since the shared
    key is made per process; the state file leaves them out so 20,000 seeded versions stay small."""
    data = {k: getattr(v, k) for k in ("version", "created", "updated", "enabled", "not_before", "expires")}
    data |= {"tags": v.tags, "content_type": v.content_type, "exportable": v.exportable, "subject": v.subject}
    key = v.private_key() if materialize else v.key
    chain = v.chain_der() if materialize else v.chain
    data["key"] = crypto.key_to_pem(key).decode() if key is not None else None
    data["chain"] = [_b64(d) for d in chain] if chain is not None and key is not None else None
    return data


def _version_from_json(d: dict[str, Any]) -> Version:
    key = crypto.key_from_pem(d.pop("key").encode()) if d.get("key") else None
    chain = [base64.b64decode(c) for c in d.pop("chain")] if d.get("chain") else None
    d.pop("key", None)
    d.pop("chain", None)
    return Version(**d, key=key, chain=chain)


def cert_to_json(c: Certificate, *, backup: bool = False) -> dict[str, Any]:
    """``backup``: the versions only, each self-contained; no pending operation or deletion dates."""
    data = {k: getattr(c, k) for k in ("name", "policy", "policy_created", "policy_updated", "current")}
    data |= {"preserve_order": c.preserve_order, "deleted_date": c.deleted_date, "scheduled_purge": c.scheduled_purge}
    data["versions"] = [_version_to_json(v, materialize=backup) for v in c.versions.values()]
    if backup:
        data["deleted_date"] = data["scheduled_purge"] = None
    elif c.pending:
        p = c.pending
        data["pending"] = {
            k: getattr(p, k)
            for k in ("request_id", "version", "issuer", "status", "status_details", "cancellation_requested")
        } | {"error": p.error, "target": p.target, "enabled": p.enabled, "tags": p.tags}
        data["pending"] |= {"key": crypto.key_to_pem(p.key).decode(), "csr": _b64(p.csr)}
    return data


def cert_from_json(d: dict[str, Any]) -> Certificate:
    versions = {v["version"]: _version_from_json(v) for v in d.pop("versions")}
    pending_raw = d.pop("pending", None)
    cert = Certificate(**d, versions=versions)
    if pending_raw:
        pending_raw["key"] = crypto.key_from_pem(pending_raw["key"].encode())
        pending_raw["csr"] = base64.b64decode(pending_raw["csr"])
        cert.pending = PendingOperation(**pending_raw)
    return cert


def vaults_to_json(vaults: dict[str, Vault], clock_offset: float, backup_key: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"clock_offset": clock_offset, "backup_key": _b64(backup_key), "vaults": {}}
    for name, vault in vaults.items():
        with vault.lock:
            out["vaults"][name] = {
                "subscription": vault.subscription,
                "geography": vault.geography,
                "certificates": [cert_to_json(c) for c in vault.certificates.values()],
                "deleted": [cert_to_json(c) for c in vault.deleted.values()],
                "subscriptions": [s.__dict__ for s in vault.subscriptions.values()],
                "fired": sorted(list(f) for f in vault.fired),
            }
    return out


def vaults_from_json(data: dict[str, Any]) -> tuple[dict[str, Vault], float, bytes | None]:
    """The vaults, the clock offset and the backup key (None in files written before backups existed)."""
    vaults = {}
    for name, raw in data.get("vaults", {}).items():
        vault = Vault(name, raw.get("subscription", DEFAULT_SUBSCRIPTION), raw.get("geography", DEFAULT_GEOGRAPHY))
        vault.certificates = {c.name: c for c in (cert_from_json(x) for x in raw["certificates"])}
        vault.deleted = {c.name: c for c in (cert_from_json(x) for x in raw["deleted"])}
        vault.subscriptions = {s["name"]: Subscription(**s) for s in raw["subscriptions"]}
        vault.fired = {tuple(f) for f in raw["fired"]}  # type: ignore[misc]
        vaults[name] = vault
    key = data.get("backup_key")
    return vaults, float(data.get("clock_offset", 0.0)), base64.b64decode(key) if key else None


def save(path: Path, vaults: dict[str, Vault], clock_offset: float, backup_key: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(vaults_to_json(vaults, clock_offset, backup_key)))
    os.replace(tmp, path)


def load(path: Path) -> tuple[dict[str, Vault], float, bytes | None]:
    if not path.exists():
        return {}, 0.0, None
    return vaults_from_json(json.loads(path.read_text()))
