"""Roll a DeploymentNotice out to the deployers whose match applies: notifiers are told once, Azure targets
are moved on one step per pass and their outcome kept per target (DESIGN.md, "Deployers"). A failure raises
so the deployments queue retries the notice; a target in progress brings the notice back after a delay.

A ``deployments`` message is a claim, not a notice: anyone with queue rights can write one. What deployers
are told is rebuilt from the ledger and Key Vault (DESIGN.md promise 7): the named version must be the
certificate's current one, merged by the attempt the claim names."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from renewal.errors import DeliveryFailed, JobRejected
from renewal.model import (
    AttemptState,
    CertificateVersion,
    DeploymentNotice,
    LedgerRow,
    RolloutOutcome,
    RolloutRecord,
    RolloutState,
    utcnow,
)
from renewal.observability import log_event
from renewal.ports import CertificateStore, Deployer, Ledger, RolloutLog, TargetRollout

log = logging.getLogger("renewal.flow.deploy")


def applies(deployer_config: object, notice: DeploymentNotice) -> bool:
    vault = getattr(deployer_config, "vault", None)
    match = getattr(deployer_config, "match", "*")
    return (vault is None or vault == notice.vault) and fnmatch.fnmatchcase(notice.name, match)


@dataclass
class RolloutPass:
    """What one pass over a notice's deployers found: every applicable target's record after it."""

    records: list[RolloutRecord] = field(default_factory=list)

    def _in(self, state: RolloutState) -> list[RolloutRecord]:
        return [r for r in self.records if r.state is state]

    @property
    def failed(self) -> list[RolloutRecord]:
        return self._in(RolloutState.FAILED)

    @property
    def in_progress(self) -> list[RolloutRecord]:
        return self._in(RolloutState.IN_PROGRESS)

    @property
    def done(self) -> list[str]:
        """``deployer`` (notifiers) or ``deployer: target`` of every target done."""
        return [_label(r) for r in self._in(RolloutState.DONE)]

    check_after: dt.timedelta | None = None
    """When an in-progress target wants to be looked at again (the soonest)."""

    def raise_for_failures(self) -> None:
        if self.failed:
            raise DeliveryFailed("; ".join(_failure(r) for r in self.failed))


def _failure(record: RolloutRecord) -> str:
    # Azure rollouts name their target at the start of the detail already.
    if record.detail.startswith(record.target):
        return f"{record.deployer}: {record.detail}"
    return f"{_label(record)}: {record.detail}"


def _label(record: RolloutRecord) -> str:
    return record.deployer if record.target == record.deployer else f"{record.deployer}: {record.target}"


def run_rollout(
    notice: DeploymentNotice,
    current: CertificateVersion | None,
    deployers: Sequence[Deployer | TargetRollout],
    *,
    rollouts: RolloutLog | None,
    now: dt.datetime,
) -> RolloutPass:
    """One pass: tell each applicable notifier once and move each applicable target on by one step.

    Targets whose record for this version is done or skipped are left alone, so a retried or replayed notice
    re-drives only what is unfinished (and never re-sends a chat message that went out). One deployer's
    failure never hides the others'."""
    previous = rollouts.of_version(notice.vault, notice.name, notice.new_version) if rollouts is not None else {}
    result = RolloutPass()
    for deployer in deployers:
        if not applies(getattr(deployer, "config", None), notice):
            continue
        if hasattr(deployer, "roll_out"):
            if current is None:
                raise ValueError("a rollout needs the current version")
            work = [(target, _stepper(deployer, notice, current, target)) for target in deployer.targets()]
        else:
            work = [(deployer.name, _notifier_step(deployer, notice))]
        for target, step in work:
            before = previous.get((deployer.name, target))
            if before is not None and before.state.settled:
                result.records.append(before)
                continue
            try:
                outcome = step(before)
            except Exception as exc:  # noqa: BLE001 - recorded as this target's failure; the others go on
                outcome = RolloutOutcome(deployer.name, target, RolloutState.FAILED, _describe(exc))
            record = RolloutRecord.after(
                before, outcome, vault=notice.vault, name=notice.name, version=notice.new_version, now=now
            )
            if rollouts is not None:
                rollouts.record(record)
            result.records.append(record)
            if record.state is RolloutState.IN_PROGRESS:
                wait = dt.timedelta(seconds=max(1, outcome.check_after_seconds or DEFAULT_CHECK_AFTER_SECONDS))
                result.check_after = wait if result.check_after is None else min(result.check_after, wait)
            log_event(
                log,
                f"deploy.{record.state.value}",
                level=logging.WARNING if record.state is RolloutState.FAILED else logging.INFO,
                deployer=deployer.name,
                target=target,
                vault=notice.vault,
                certificate=notice.name,
                version=notice.new_version,
                detail=record.detail,
                thumbprint=record.thumbprint,
            )
    return result


DEFAULT_CHECK_AFTER_SECONDS = 120


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def _notifier_step(deployer: Deployer, notice: DeploymentNotice) -> Callable[[RolloutRecord | None], RolloutOutcome]:
    def step(_before: RolloutRecord | None) -> RolloutOutcome:
        deployer.deliver(notice)
        return RolloutOutcome(deployer.name, deployer.name, RolloutState.DONE, "notified")

    return step


def _stepper(
    deployer: TargetRollout, notice: DeploymentNotice, current: CertificateVersion, target: str
) -> Callable[[RolloutRecord | None], RolloutOutcome]:
    return lambda before: deployer.roll_out(notice, current, target, before)


def deliver_notice(notice: DeploymentNotice, deployers: Sequence[Deployer]) -> list[str]:
    """Tell notifiers (no ledger): returns the names told; raises DeliveryFailed listing failures."""
    result = run_rollout(notice, None, deployers, rollouts=None, now=utcnow())
    result.raise_for_failures()
    return result.done


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
