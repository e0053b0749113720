"""What the orchestrator's steps tell the outside: one structured log line and the metrics per step.

Kept apart from the steps so that each step reads as what it does to Key Vault, the CA and the ledger.
Every line carries vault, certificate, job reason and trigger id, plus version and request id where known.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from renewal import metrics
from renewal.flow.attempt import Attempt, RenewalOutcome
from renewal.model import LedgerRow, RenewalJob
from renewal.observability import log_event

log = logging.getLogger("renewal.flow.orchestrator")


class RenewalJournal:
    """Logs and metrics of a renewal, step by step."""

    def note(self, event: str, job: RenewalJob, **fields: Any) -> None:
        log_event(log, event, **_ids(job), **{"version": job.version or None, **fields})

    def stopped(self, job: RenewalJob, outcome: RenewalOutcome, **fields: Any) -> None:
        event = "renewal." + outcome.status.replace("-", "_")
        self.note(event, job, detail=outcome.detail or None, **fields)

    def ticket_dropped(self, attempt: Attempt, why: str) -> None:
        self.note("renewal.ticket_dropped", attempt.job, **attempt.log_fields(), detail=why)

    def failed(self, row: LedgerRow, *, check: str | None = None) -> None:
        metrics.renewal_finished(row.state.value, row.issuer)
        log_event(
            log,
            "renewal.failed",
            level=logging.WARNING,
            vault=row.vault,
            certificate=row.name,
            request_id=row.request_id,
            issuer=row.issuer,
            state=row.state.value,
            check=check,
            error=row.error,
        )

    def pending_at_ca(self, attempt: Attempt, retry_after: dt.timedelta) -> None:
        metrics.renewal_finished("pending", attempt.issuer)
        self.note("renewal.pending_at_ca", attempt.job, **attempt.log_fields(), retry_after=retry_after.total_seconds())

    def merged(self, attempt: Attempt, version: str, now: dt.datetime) -> None:
        row = attempt.row
        self.note("renewal.merged", attempt.job, version=version, old_version=row.old_version, **attempt.log_fields())
        metrics.renewal_merged(attempt.job, attempt.issuer, row.started_at, now)

    def notified(self, job: RenewalJob, row: LedgerRow, version: str, detail: str = "") -> None:
        self.note(
            "renewal.notified",
            job,
            version=version,
            request_id=row.request_id,
            issuer=row.issuer,
            detail=detail or None,
        )


def _ids(job: RenewalJob) -> dict[str, str]:
    return {"vault": job.vault, "certificate": job.name, "job_reason": job.reason, "trigger_id": job.trigger_id}
