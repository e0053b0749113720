"""What the four Azure rollouts share: one pass over one target, never blocking on a long-running operation.

A pass either settles the target (done with the thumbprint the service reports, or skipped with the reason it
cannot take the certificate), fails it with what to fix, or leaves it in progress: an operation ARM accepted
(its ``Azure-AsyncOperation`` URL is kept and polled once on the next pass) or a change the service applies by
itself. A target in progress longer than ``timeout_minutes`` is failed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from renewal.azure.rollouts.arm import UNREACHABLE, ArmClient, ArmError, ArmReply, ArmUnreachable
from renewal.azure.rollouts.references import NoticedCertificate
from renewal.model import (
    CertificateVersion,
    DeploymentNotice,
    RolloutOutcome,
    RolloutRecord,
    RolloutState,
    utcnow,
)
from renewal.observability import log_event

log = logging.getLogger("renewal.rollouts")
PKCS12 = "application/x-pkcs12"
BUSY_CODES = frozenset({"AnotherOperationInProgress", "Conflict"})
"""409 codes that mean "another operation holds the resource: try again later"."""
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


# -- can the target take this certificate? ------------------------------------------------------------------
def not_exportable(current: CertificateVersion, service: str) -> str | None:
    policy = current.policy
    if policy is None:
        return None
    if policy.exportable is False or policy.key_type.upper().endswith("-HSM"):
        return (
            f"the key is not exportable ({policy.key_type}, exportable={policy.exportable}): {service} reads "
            "the certificate with its key (PFX) from the vault's secret"
        )
    return None


def not_pkcs12(current: CertificateVersion, service: str) -> str | None:
    content_type = current.policy.content_type if current.policy is not None else None
    if content_type and content_type.lower() != PKCS12:
        return f"the vault keeps it as {content_type}: {service} takes only PKCS#12 ({PKCS12})"
    return None


def ec_key(current: CertificateVersion, service: str) -> str | None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    key_type = current.policy.key_type.upper() if current.policy is not None else ""
    is_ec = key_type.startswith("EC")
    if not is_ec and current.cer:
        try:
            is_ec = isinstance(x509.load_der_x509_certificate(current.cer).public_key(), ec.EllipticCurvePublicKey)
        except ValueError:
            pass
    return f"{service} does not take EC keys (RSA only)" if is_ec else None


def pem_fingerprints(data: bytes) -> frozenset[bytes]:
    """SHA-256 of every certificate in PEM ``data`` (no X.509 parsing: certifi holds some that newer
    cryptography releases warn about)."""
    found = set()
    for block in _PEM_BLOCK.findall(data):
        try:
            found.add(hashlib.sha256(base64.b64decode(b"".join(block.split()), validate=True)).digest())
        except ValueError:
            continue
    return frozenset(found)


def not_publicly_trusted(
    issuer: str, anchors: list[Any], public: frozenset[bytes], service: str, clients: str
) -> str | None:
    """Every trust anchor of the issuer must be among the roots ``clients`` trust."""
    from cryptography.hazmat.primitives import hashes

    if not anchors:
        return f"cannot tell whether issuer {issuer!r} is publicly trusted (no trust anchors known for it)"
    missing = [a for a in anchors if a.fingerprint(hashes.SHA256()) not in public]
    if missing:
        return (
            f"issuer {issuer!r} is not publicly trusted: {service} serves {clients}, and its root "
            f"{missing[0].subject.rfc4514_string()!r} is not among the public roots"
        )
    return None


# -- one pass ----------------------------------------------------------------------------------------------
@dataclass
class RolloutStep:
    """One pass of one deployer over one target for one notice."""

    deployer: str
    target: str
    notice: DeploymentNotice
    current: CertificateVersion
    previous: RolloutRecord | None
    check_after_seconds: int
    acted: bool = False
    """A write of ours for this version has completed: synchronously in this pass, or a long-running operation
    an earlier pass started that ARM now reports succeeded. What is read now is its result: a mismatch fails,
    it does not start another write."""

    @property
    def certificate(self) -> NoticedCertificate:
        return NoticedCertificate.of(self.notice)

    @property
    def thumbprint(self) -> str:
        """The new version's thumbprint as Azure spells it (upper-case hex SHA-1)."""
        return self.notice.thumbprint_sha1.upper()

    def is_new(self, thumbprint: object) -> bool:
        return isinstance(thumbprint, str) and thumbprint.strip().upper() == self.thumbprint

    @property
    def resumed(self) -> bool:
        """An earlier pass of ours left the target in progress."""
        return self.previous is not None and self.previous.state is RolloutState.IN_PROGRESS

    def bound(self, action: str, evidence: str) -> str:
        """A done detail: what was done and how it shows, or ``already bound`` when nothing of ours ran for
        this version."""
        return f"{action}; {evidence}" if self.resumed or self.acted else f"already bound ({evidence})"

    def outcome(self, state: RolloutState, detail: str, **kwargs: Any) -> RolloutOutcome:
        return RolloutOutcome(self.deployer, self.target, state, detail, **kwargs)

    def done(self, detail: str, thumbprint: str | None) -> RolloutOutcome:
        return self.outcome(RolloutState.DONE, detail, thumbprint=thumbprint.upper() if thumbprint else None)

    def skipped(self, detail: str) -> RolloutOutcome:
        return self.outcome(RolloutState.SKIPPED, detail)

    def failed(self, detail: str) -> RolloutOutcome:
        """``detail`` is prefixed with the target."""
        return self.outcome(RolloutState.FAILED, f"{self.target}: {detail}")

    def in_progress(
        self, detail: str, *, operation: str | None = None, retry_after: int | None = None
    ) -> RolloutOutcome:
        wait = max(self.check_after_seconds, retry_after or 0)
        return self.outcome(RolloutState.IN_PROGRESS, detail, check_after_seconds=wait, operation=operation)


class AzureRollout:
    """Base of the four rollouts; a subclass says which checks apply and implements :meth:`_pass`."""

    kind: ClassVar[str]
    service: ClassVar[str]
    api_version: ClassVar[str]
    needs_pkcs12: ClassVar[bool] = True
    rsa_only: ClassVar[bool] = False
    public_clients: ClassVar[str | None] = None
    """Who connects to the target, when they trust only public roots (the issuer must be publicly trusted)."""

    def __init__(
        self,
        config: Any,
        *,
        credential_factory: Callable[[], Any],
        issuer_roots: Callable[[str], list[Any]],
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.name: str = config.name
        self.config = config
        self._issuer_roots = issuer_roots
        self._clock = clock or utcnow
        self.arm = ArmClient(config.arm_endpoint, credential_factory, ca_bundle=config.ca_bundle)
        self._public: frozenset[bytes] | None = None

    def targets(self) -> list[str]:
        return list(self.config.target_ids)

    # -- the pass --------------------------------------------------------------------------------------------
    def roll_out(
        self, notice: DeploymentNotice, current: CertificateVersion, target: str, previous: RolloutRecord | None
    ) -> RolloutOutcome:
        step = RolloutStep(self.name, target, notice, current, previous, self.config.check_after_seconds)
        try:
            if step.resumed and previous is not None and previous.operation:
                outcome = self._follow(step, previous.operation)
            else:
                outcome = self._pass(step)
        except ArmError as exc:
            outcome = self._refused(step, exc)
        except ArmUnreachable as exc:
            if step.resumed and previous is not None and previous.operation:  # keep following it next time
                outcome = step.in_progress(f"{_awaited(previous)}; {exc}", operation=previous.operation)
            else:
                outcome = step.failed(str(exc))
        return self._within_time(step, outcome)

    def _pass(self, step: RolloutStep) -> RolloutOutcome:
        raise NotImplementedError

    def _follow(self, step: RolloutStep, operation: str) -> RolloutOutcome:
        """Poll the operation an earlier pass started, once; when it succeeded, verify."""
        if not self.arm.on_endpoint(operation):
            return step.failed(f"operation status URL {operation[:300]} is not on {self.arm.endpoint}; not polled")
        status = self.arm.operation_status(operation)
        self._log(step, "rollout.operation_polled", operation_status=status.status)
        if status.in_progress:
            return step.in_progress(_awaited(step.previous), operation=operation, retry_after=status.retry_after)
        if not status.succeeded:
            reason = f"{status.error_code}: {status.error_message}" if status.error_code else "(no error given)"
            return step.failed(f"the operation {status.status}: {reason}")
        step.acted = True
        return self._pass(step)

    def _started(self, step: RolloutStep, reply: ArmReply, what: str) -> RolloutOutcome | None:
        """An in-progress outcome when ``reply`` accepted a long-running operation; None when it completed."""
        operation = reply.async_operation
        if operation is None:
            if reply.status == 202:  # accepted without a status URL: look again later
                return step.in_progress(f"{what} accepted", retry_after=reply.retry_after)
            return None
        if not self.arm.on_endpoint(operation):
            return step.failed(f"{what}: ARM gave an operation status URL off {self.arm.endpoint}: {operation[:300]}")
        self._log(step, "rollout.operation_started", operation=operation, action=what)
        return step.in_progress(
            f"{what} (waiting for the operation)", operation=operation, retry_after=reply.retry_after
        )

    def _refused(self, step: RolloutStep, exc: ArmError) -> RolloutOutcome:
        if exc.status == 409 and exc.code in BUSY_CODES:
            return step.in_progress(f"{self.service} is busy with another operation ({exc.code}); trying again later")
        return step.failed(f"HTTP {exc.status} {exc.code}: {exc.message}")

    def _within_time(self, step: RolloutStep, outcome: RolloutOutcome) -> RolloutOutcome:
        previous = step.previous
        if outcome.state is RolloutState.IN_PROGRESS and step.resumed and previous is not None:
            if self._clock() - previous.started_at > dt.timedelta(minutes=self.config.timeout_minutes):
                return step.failed(f"still in progress after {self.config.timeout_minutes} minutes ({outcome.detail})")
        return outcome

    # -- checks ----------------------------------------------------------------------------------------------
    def unfit(self, step: RolloutStep) -> str | None:
        """Why this target cannot take the certificate, or None."""
        reasons = [not_exportable(step.current, self.service)]
        if self.needs_pkcs12:
            reasons.append(not_pkcs12(step.current, self.service))
        if self.rsa_only:
            reasons.append(ec_key(step.current, self.service))
        if self.public_clients is not None and not any(reasons):
            anchors = self._issuer_roots(step.notice.issuer)
            reasons.append(
                not_publicly_trusted(
                    step.notice.issuer, anchors, self.public_roots(), self.service, self.public_clients
                )
            )
        return next((r for r in reasons if r), None)

    def public_roots(self) -> frozenset[bytes]:
        """SHA-256 fingerprints of the roots the target's clients trust (configured, or certifi's)."""
        if self._public is None:
            from pathlib import Path

            sources = getattr(self.config, "public_roots", None)
            if not sources:
                import certifi

                sources = [certifi.where()]
            found: set[bytes] = set()
            for source in sources:
                data = source.encode() if "-----BEGIN" in source else Path(source).read_bytes()
                found |= pem_fingerprints(data)
            self._public = frozenset(found)
        return self._public

    def _log(self, step: RolloutStep, event: str, **fields: Any) -> None:
        log_event(
            log,
            event,
            deployer=self.name,
            kind=self.kind,
            target=step.target,
            vault=step.notice.vault,
            certificate=step.notice.name,
            version=step.notice.new_version,
            request_id=step.notice.request_id,
            **fields,
        )


def _awaited(previous: RolloutRecord | None) -> str:
    """What an earlier pass started, as its detail said (without a note of ARM not answering since)."""
    detail = previous.detail if previous is not None and previous.detail else "operation in progress"
    return detail.split(f"; {UNREACHABLE}", 1)[0]


def properties(resource: dict[str, Any]) -> dict[str, Any]:
    value = resource.get("properties")
    return value if isinstance(value, dict) else {}
