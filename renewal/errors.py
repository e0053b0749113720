"""One error tree for the whole domain.

- :class:`Rejected`: input that is refused (an event, a queue message, the configuration, a route, an
  adoption or import request, a secret reference, a deployer target). It always names its ``field``.
- :class:`NotFound`: the named vault or certificate does not exist (the CLI's exit code 3).
- :class:`StoreError`: what a port may raise (Key Vault, and the storage behind ledger and queues);
  :class:`StoreUnavailable` is a 5xx or a connection that failed, worth retrying.
- :class:`RenewalFailed`: a renewal attempt that did not succeed; its ledger row holds the reason.
"""

from __future__ import annotations


class RenewalError(Exception):
    """Root of every error the renewal domain raises on purpose."""


# -- input that is refused ---------------------------------------------------------------------------
class Rejected(RenewalError, ValueError):
    """Input that is refused; ``field`` names what is wrong.

    Built as ``Rejected(field, message)`` or from one ``"field: message"`` text."""

    def __init__(self, field_or_text: str, message: str | None = None) -> None:
        if message is None:
            field, sep, rest = field_or_text.partition(": ")
            field, message = (field, rest) if sep and " " not in field else ("input", field_or_text)
        else:
            field = field_or_text
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(Rejected):
    """The named vault or certificate does not exist (or is not configured)."""


class EventRejected(Rejected):
    """The event is malformed or not ours to act on."""


class JobRejected(Rejected):
    """A queue message (renewal job or deployment notice) that is not valid."""


class ConfigError(Rejected):
    """Every problem in the configuration document, one per line, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("config", "invalid renewal configuration:\n  " + "\n  ".join(problems))

    def __str__(self) -> str:
        return self.message


class NoRoute(Rejected):
    """No issuer applies, or the tag names an issuer that is not configured."""


class AdoptionRefused(Rejected):
    """The certificate cannot be adopted as asked."""


class ImportRefused(Rejected):
    """The file must not be imported; ``findings`` lists why (empty for a malformed file)."""

    def __init__(self, message: str, findings: list | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


class SecretReferenceError(Rejected):
    """A reference that cannot or must not be resolved; names the config field, never the value."""


class DeliveryRefused(Rejected):
    """A deployer target that is not allowed (link-local, metadata, private without opt-in)."""


class CsrfRejected(Rejected):
    """A dashboard form post without a valid token or from another site."""


class StorageNotConfigured(Rejected):
    """The app settings do not say how to reach the storage account."""


# -- what the ports raise ----------------------------------------------------------------------------
class StoreError(RenewalError):
    """Raised by a port (Key Vault, ledger, queues, claims): the outside world said no or did not answer."""


class PendingOperationExists(StoreError):
    """Key Vault answered 409: a pending operation is in progress for this certificate."""


class CertificateGone(StoreError):
    """The certificate (or its pending operation) no longer exists."""


class MergeRejected(StoreError):
    """Key Vault refused the merge (key mismatch, bad chain); carries the service message."""


class KeyVaultThrottled(StoreError):
    """429 that outlived the store's own backoff."""


class StoreUnavailable(StoreError):
    """5xx or a failed connection: the service may answer on a later try."""


class RestoreRefused(StoreError):
    """Key Vault refused a restore: the name exists (live or soft-deleted), or the target vault is in
    another subscription or geography than the backup's vault; carries the service message."""


class BackupRaced(StoreError):
    """The certificate changed while it was being backed up; the next try backs up the new state."""


class BackupMissing(NotFound):
    """No backup of the named certificate (or version) in the backup archive."""


# -- the renewal flow --------------------------------------------------------------------------------
class RenewalFailed(RenewalError):
    """The job did not succeed; the ledger row holds the reason. ``permanent`` means a retry will not
    help until something is fixed (the queue still retries, then poisons the job for replay)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChainRejected(RenewalError):
    """The issued chain must not be merged; ``check`` names the failed rule."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


class DeliveryFailed(RenewalError):
    """One or more deployers failed; the deployments queue retries the notice."""
