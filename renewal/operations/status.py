"""What an operator checks first: the failed work waiting to be replayed, queue depths, the latest
ledger states and the rollouts not finished. Each function takes only the stores it reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from renewal import settings
from renewal.model import LedgerRow
from renewal.ports import DeadLetterStore, Ledger, PoisonQueueStore, RolloutLog


@dataclass(frozen=True)
class FailedJob:
    queue: str
    message_id: str
    inserted_on: Any
    vault: str | None
    name: str | None
    reason: str
    """The latest ledger error for the certificate, or why the message cannot be read."""


@dataclass
class FailureReport:
    jobs: list[FailedJob] = field(default_factory=list)
    notices: list[FailedJob] = field(default_factory=list)
    dead_letters: list[Any] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.jobs) + len(self.notices) + len(self.dead_letters)


def _last_error(ledger: Ledger, vault: str | None, name: str | None) -> str:
    if not vault or not name:
        return "message body is not a renewal job"
    for row in ledger.history(vault, name):
        if row.error:
            return f"{row.state}: {row.error}"
    return "no ledger row with an error (failed before bookkeeping, e.g. Key Vault unreachable)"


def list_failures(poison: PoisonQueueStore, dead_letters: DeadLetterStore, ledger: Ledger) -> FailureReport:
    report = FailureReport()
    for queue, target in ((settings.JOBS_QUEUE, report.jobs), (settings.DEPLOYMENTS_QUEUE, report.notices)):
        for msg in poison.list_poison(queue):
            payload = msg.payload if isinstance(msg.payload, dict) else {}
            vault, name = payload.get("vault"), payload.get("name")
            reason = _last_error(ledger, vault, name) if queue == settings.JOBS_QUEUE else "delivery failed"
            target.append(FailedJob(queue, msg.id, msg.inserted_on, vault, name, reason))
    report.dead_letters = list(dead_letters.list())
    return report


def status(
    poison: PoisonQueueStore,
    dead_letters: DeadLetterStore,
    ledger: Ledger,
    rollouts: RolloutLog | None = None,
    *,
    certificate: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Queue depths, failure counts, the latest ledger states and the rollouts not finished; with
    ``certificate`` (vault, name) also that certificate's renewals and every deployer target's outcome."""
    rows = ledger.recent(limit=200)
    states: dict[str, int] = {}
    for row in rows:
        states[row.state.value] = states.get(row.state.value, 0) + 1
    data: dict[str, Any] = {
        "queues": poison.depths(),
        "dead_letters": len(dead_letters.blob_names()),
        "ledger_states": states,
        "recent": [_attempt(r) for r in rows[:25]],
        "rollouts": [r.to_dict() for r in rollouts.unsettled(limit=50)] if rollouts is not None else [],
    }
    if certificate is not None:
        vault, name = certificate
        data["certificate"] = {
            "vault": vault,
            "name": name,
            "renewals": [_attempt(r) for r in ledger.history(vault, name)],
            "rollouts": [r.to_dict() for r in rollouts.history(vault, name)] if rollouts is not None else [],
        }
    return data


def _attempt(r: LedgerRow) -> dict[str, Any]:
    return {
        "vault": r.vault,
        "name": r.name,
        "state": r.state.value,
        "issuer": r.issuer,
        "old_version": r.old_version,
        "new_version": r.new_version,
        "attempts": r.attempts,
        "error": r.error,
        "updated_at": r.updated_at.isoformat() if r.updated_at else None,
    }


def to_json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)
