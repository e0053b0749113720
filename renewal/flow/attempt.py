"""One renewal attempt as the orchestrator's steps share it, and the outcome a job ends with."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509

from renewal.model import CertificateVersion, LedgerRow, PendingOperation, PolicySpec, RenewalJob
from renewal.ports import CertificateStore

OutcomeStatus = Literal[
    "renewed", "pending", "not-due", "already-renewed", "claimed-elsewhere", "gone", "waiting-for-capacity"
]


@dataclass(frozen=True)
class RenewalOutcome:
    status: OutcomeStatus
    detail: str = ""
    new_version: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Step 1: what Key Vault says about the certificate when the job starts."""

    current: CertificateVersion | None
    operation: PendingOperation | None
    """The pending operation in any status (completed ones tell of an interrupted bookkeeping)."""

    @property
    def active(self) -> PendingOperation | None:
        return self.operation if self.operation is not None and self.operation.in_progress else None


@dataclass
class Attempt:
    """Steps 3-7 work on one pending request: its CSR, the policy it must satisfy, the issuer that signs
    it and the ledger row that records it. Built from Key Vault and the ledger, never from the job message
    (DESIGN.md promise 7)."""

    job: RenewalJob
    store: CertificateStore
    current: CertificateVersion | None
    operation: PendingOperation
    policy: PolicySpec
    issuer: str
    row: LedgerRow

    @property
    def csr_der(self) -> bytes:
        return self.operation.csr_der or b""

    @property
    def request_id(self) -> str:
        return self.operation.request_id

    @property
    def csr_sha256(self) -> str:
        return hashlib.sha256(self.csr_der).hexdigest()

    def resume_ticket(self) -> dict[str, Any] | None:
        """The ticket the ledger kept for this request, only if the same issuer made it for the same CSR."""
        ticket = self.row.ticket
        if ticket is None or self.row.issuer != self.issuer:
            return None
        if self.row.extra.get("ticket_csr_sha256") != self.csr_sha256:
            return None
        return ticket

    def log_fields(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "issuer": self.issuer}


def validity_of(policy: PolicySpec) -> dt.timedelta | None:
    return dt.timedelta(days=round(policy.validity_months * 30.4375)) if policy.validity_months else None


def csr_names(csr_der: bytes) -> tuple[str | None, frozenset[str]]:
    csr = x509.load_der_x509_csr(csr_der)
    cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = frozenset(d.lower() for d in sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = frozenset()
    return (str(cn[0].value) if cn else None), dns


def policy_names(policy: PolicySpec) -> tuple[str | None, frozenset[str]]:
    return policy.common_name, frozenset(d.lower() for d in policy.sans.dns_names)
