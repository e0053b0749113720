"""Fan a DeploymentNotice out to the deployers whose match applies; any failure raises so the
deployments queue retries the notice (receivers de-duplicate by its idempotency key).

A ``deployments`` message is a claim, not a notice: anyone with queue rights can write one. What deployers
are told is rebuilt from the ledger and Key Vault (DESIGN.md promise 7): the named version must be the
certificate's current one, merged by the attempt the claim names."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
from collections.abc import Sequence

from cryptography import x509

from renewal.errors import DeliveryFailed, JobRejected
from renewal.model import AttemptState, CertificateVersion, DeploymentNotice, LedgerRow
from renewal.observability import log_event
from renewal.ports import CertificateStore, Deployer, Ledger

log = logging.getLogger("renewal.flow.deploy")


def applies(deployer_config: object, notice: DeploymentNotice) -> bool:
    vault = getattr(deployer_config, "vault", None)
    match = getattr(deployer_config, "match", "*")
    return (vault is None or vault == notice.vault) and fnmatch.fnmatchcase(notice.name, match)


def deliver_notice(notice: DeploymentNotice, deployers: Sequence[Deployer]) -> list[str]:
    """Deliver to every applicable deployer; returns their names; raises DeliveryFailed listing failures."""
    delivered: list[str] = []
    failures: list[str] = []
    for deployer in deployers:
        if not applies(getattr(deployer, "config", None), notice):
            continue
        try:
            deployer.deliver(notice)
            delivered.append(deployer.name)
        except Exception as exc:  # noqa: BLE001 - one deployer's failure must not hide the others
            failures.append(f"{deployer.name}: {exc}")
            log_event(
                log,
                "deploy.failed",
                level=logging.WARNING,
                deployer=deployer.name,
                vault=notice.vault,
                certificate=notice.name,
                version=notice.new_version,
                error=str(exc),
            )
    if failures:
        raise DeliveryFailed("; ".join(failures))
    return delivered


_NEVER_MERGED = frozenset({AttemptState.FAILED, AttemptState.REJECTED, AttemptState.ABANDONED})


def confirmed_notice(
    claim: DeploymentNotice, ledger: Ledger, store: CertificateStore
) -> tuple[DeploymentNotice, CertificateVersion] | None:
    """The notice to deliver, rebuilt from the ledger row the claim names and the version Key Vault holds
    (returned with it).

    Raises :class:`JobRejected` for a claim neither confirms (a forged or foreign message: retried, then
    poisoned for an operator to see); returns None when the version is no longer current (a newer renewal
    sent its own notice, and rolling back to this one would harm the live version)."""
    row = ledger.get(claim.vault, claim.name, claim.request_id)
    if row is None or row.state in _NEVER_MERGED or row.new_version not in (None, claim.new_version):
        raise JobRejected(
            "request_id", f"no renewal of {claim.vault}/{claim.name} in the ledger merged {claim.new_version}"
        )
    current = store.get_current(claim.name)
    if current is None or current.version != claim.new_version:
        log_event(
            log,
            "deploy.superseded",
            vault=claim.vault,
            certificate=claim.name,
            version=claim.new_version,
            current=current.version if current else None,
        )
        return None
    return notice_of(row, current, occurred_at=row.updated_at or claim.occurred_at), current


def notice_of(row: LedgerRow, version: CertificateVersion, *, occurred_at: dt.datetime) -> DeploymentNotice:
    """The notice of a merged version: what Key Vault holds (id, thumbprint, validity) and what the
    attempt's ledger row recorded (old version, issuer, request)."""
    leaf = x509.load_der_x509_certificate(version.cer)
    return DeploymentNotice(
        vault=row.vault,
        name=row.name,
        new_version=version.version,
        old_version=row.old_version,
        certificate_id=version.id,
        thumbprint_sha1=hashlib.sha1(version.cer).hexdigest(),  # noqa: S324 - x5t is SHA-1 by definition
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=row.issuer,
        request_id=row.request_id,
        occurred_at=occurred_at,
    )
