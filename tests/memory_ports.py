"""In-memory implementations of the flow's ports (renewal/ports.py), for tests that drive the orchestrator
step by step. The real adapters are tested against the emulator and Azurite; these keep the same rules
that matter to the flow: a second create while one is pending answers 409, a merge needs the pending
request and its key, versions stay in order, ledger rows are copies."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from renewal.errors import CertificateGone, KeyVaultThrottled, MergeRejected, PendingOperationExists
from renewal.model import (
    BackupEntry,
    CertificateListing,
    CertificateVersion,
    DeploymentNotice,
    LedgerRow,
    PendingOperation,
    PolicySpec,
    RenewalJob,
    RenewalWindow,
    RolloutRecord,
)


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class MemoryStore:
    vault: str
    versions: dict[str, list[CertificateVersion]] = field(default_factory=dict)
    policies: dict[str, PolicySpec] = field(default_factory=dict)
    pending: dict[str, tuple[PendingOperation, Any]] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    """operation name -> the exception its next call raises (once)."""
    calls: list[str] = field(default_factory=list)

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.fail:
            raise self.fail.pop(operation)

    # -- seeding ----------------------------------------------------------------------------------------
    def seed(self, name: str, policy: PolicySpec, *, not_before: dt.datetime, expires_on: dt.datetime) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, policy.common_name or name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(expires_on)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.policies[name] = policy
        return self._add_version(name, cert.public_bytes(serialization.Encoding.DER), {}).version

    def _add_version(self, name: str, cer: bytes, tags: dict[str, str]) -> CertificateVersion:
        leaf = x509.load_der_x509_certificate(cer)
        version = uuid.uuid4().hex
        created = CertificateVersion(
            vault=self.vault,
            name=name,
            version=version,
            id=f"https://{self.vault}.vault.test/certificates/{name}/{version}",
            cer=cer,
            enabled=True,
            not_before=leaf.not_valid_before_utc,
            expires_on=leaf.not_valid_after_utc,
            created_on=leaf.not_valid_before_utc,
            tags=dict(tags),
            policy=self.policies[name],
        )
        self.versions.setdefault(name, []).append(created)
        return created

    # -- the port --------------------------------------------------------------------------------------
    def list_certificates(self, *, include_pending: bool = False) -> Iterator[CertificateListing]:
        for name, versions in self.versions.items():
            v = versions[-1]
            yield CertificateListing(
                self.vault,
                name,
                v.version,
                True,
                v.not_before,
                v.expires_on,
                v.created_on,
                v.tags,
                thumbprint=hashlib.sha1(v.cer).hexdigest(),
            )

    def get_current(self, name: str) -> CertificateVersion | None:
        self._call("get_current")
        versions = self.versions.get(name)
        return versions[-1] if versions else None

    def get_policy(self, name: str) -> PolicySpec:
        self._call("get_policy")
        if name not in self.policies:
            raise CertificateGone(name)
        return self.policies[name]

    def begin_pending(self, name: str, policy: PolicySpec, *, tags: dict[str, str]) -> PendingOperation:
        self._call("create")
        held = self.pending.get(name)
        if held is not None and held[0].in_progress:
            raise PendingOperationExists(name)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, policy.common_name or name)])
        )
        if policy.sans.dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(d) for d in policy.sans.dns_names]), critical=False
            )
        csr = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        operation = PendingOperation(self.vault, name, uuid.uuid4().hex, "inProgress", csr, "Unknown")
        self.pending[name] = (operation, key)
        return operation

    def get_pending(self, name: str) -> PendingOperation | None:
        self._call("get_pending")
        held = self.pending.get(name)
        return held[0] if held else None

    def delete_pending(self, name: str) -> None:
        self._call("delete_pending")
        self.pending.pop(name, None)

    def merge(self, name: str, chain_der: list[bytes], *, tags: dict[str, str] | None = None) -> CertificateVersion:
        self._call("merge")
        held = self.pending.get(name)
        if held is None or not held[0].in_progress:
            raise CertificateGone(f"no pending operation for {name}")
        operation, key = held
        leaf = x509.load_der_x509_certificate(chain_der[0])
        if _spki(leaf.public_key()) != _spki(key.public_key()):
            raise MergeRejected("BadParameter: the certificate's public key does not match the pending key")
        self.pending[name] = (replace(operation, status="completed"), key)
        return self._add_version(name, chain_der[0], tags or {})

    def list_versions(self, name: str) -> Iterator[CertificateListing]:
        for v in self.versions.get(name, []):
            yield CertificateListing(
                self.vault, name, v.version, True, v.not_before, v.expires_on, v.created_on, v.tags
            )

    def update_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        return None

    def update_policy(self, name: str, policy: PolicySpec) -> None:
        self.policies[name] = policy

    def backup(self, name: str) -> bytes:
        self._call("backup")
        if name not in self.versions:
            raise CertificateGone(name)
        self.on_backup(name)
        return b"opaque:" + ",".join(v.version for v in self.versions[name]).encode()

    def on_backup(self, name: str) -> None:
        """Tests replace it to change the certificate while Key Vault takes its backup."""


@dataclass
class MemoryArchive:
    blobs: dict[str, tuple[BackupEntry, bytes]] = field(default_factory=dict)
    drills: list[dict[str, Any]] = field(default_factory=list)

    def put(self, entry: BackupEntry, backup: bytes) -> bool:
        if entry.blob_name in self.blobs:
            return False
        self.blobs[entry.blob_name] = (entry, backup)
        return True

    def entries(self, vault: str | None = None, name: str | None = None) -> Iterator[BackupEntry]:
        for entry, _ in list(self.blobs.values()):
            if (vault is None or entry.vault == vault) and (name is None or entry.name == name):
                yield entry

    def read(self, entry: BackupEntry) -> bytes:
        return self.blobs[entry.blob_name][1]

    def record_drill(self, report: dict[str, Any]) -> None:
        self.drills.append(report)

    def last_drill(self) -> dict[str, Any] | None:
        return self.drills[-1] if self.drills else None


@dataclass
class MemoryLedger:
    rows: dict[tuple[str, str, str], LedgerRow] = field(default_factory=dict)

    def get(self, vault: str, name: str, request_id: str) -> LedgerRow | None:
        row = self.rows.get((vault, name, request_id))
        return copy.deepcopy(row) if row else None

    def upsert(self, row: LedgerRow) -> None:
        self.rows[(row.vault, row.name, row.request_id)] = copy.deepcopy(row)

    def history(self, vault: str, name: str) -> list[LedgerRow]:
        mine = [copy.deepcopy(r) for (v, n, _), r in self.rows.items() if (v, n) == (vault, name)]
        return sorted(mine, key=lambda r: r.started_at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)

    def recent(self, *, states: set | None = None, limit: int = 100) -> list[LedgerRow]:
        rows = [copy.deepcopy(r) for r in self.rows.values() if not states or r.state in states]
        return rows[:limit]


@dataclass
class MemoryRenewalWindows:
    """The ``renewalwindows`` table in memory: one window per certificate; ``fail`` makes every call raise."""

    rows: dict[tuple[str, str], RenewalWindow] = field(default_factory=dict)
    loads: int = 0
    fail: Exception | None = None

    def load(self, vault: str) -> dict[str, RenewalWindow]:
        self._maybe_fail()
        self.loads += 1
        return {n: w for (v, n), w in self.rows.items() if v == vault}

    def get(self, vault: str, name: str) -> RenewalWindow | None:
        self._maybe_fail()
        return self.rows.get((vault, name))

    def keep(self, window: RenewalWindow) -> None:
        self._maybe_fail()
        self.rows[(window.vault, window.name)] = window

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail


@dataclass
class MemoryClaims:
    held_elsewhere: bool = False

    @contextmanager
    def claim(self, vault: str, name: str, *, ttl: dt.timedelta) -> Iterator[bool]:
        yield not self.held_elsewhere


@dataclass
class MemoryJobs:
    sent: list[tuple[RenewalJob, dt.timedelta | None]] = field(default_factory=list)

    def enqueue(self, job: RenewalJob, *, delay: dt.timedelta | None = None) -> None:
        self.sent.append((job, delay))


@dataclass
class MemoryNotices:
    sent: list[DeploymentNotice] = field(default_factory=list)
    delays: list[dt.timedelta | None] = field(default_factory=list)

    def enqueue(self, notice: DeploymentNotice, *, delay: dt.timedelta | None = None) -> None:
        self.sent.append(notice)
        self.delays.append(delay)


@dataclass
class MemoryRolloutLog:
    """RolloutLog in memory (the table adapter is tested against Azurite in tests/azure/test_rollout_log.py)."""

    rows: dict[tuple[str, str, str, str, str], RolloutRecord] = field(default_factory=dict)

    def of_version(self, vault: str, name: str, version: str) -> dict[tuple[str, str], RolloutRecord]:
        return {r.key: r for k, r in self.rows.items() if k[:3] == (vault, name, version)}

    def record(self, record: RolloutRecord) -> None:
        self.rows[(record.vault, record.name, record.version, record.deployer, record.target)] = record

    def history(self, vault: str, name: str) -> list[RolloutRecord]:
        mine = [r for k, r in self.rows.items() if k[:2] == (vault, name)]
        return sorted(mine, key=lambda r: r.updated_at, reverse=True)

    def unsettled(self, *, limit: int = 100) -> list[RolloutRecord]:
        open_ = [r for r in self.rows.values() if not r.state.settled]
        return sorted(open_, key=lambda r: r.updated_at, reverse=True)[:limit]


__all__ = [
    "KeyVaultThrottled",
    "MemoryClaims",
    "MemoryJobs",
    "MemoryLedger",
    "MemoryNotices",
    "MemoryRenewalWindows",
    "MemoryRolloutLog",
    "MemoryStore",
]
