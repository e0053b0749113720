"""Operators list and re-drive failed work: poisoned jobs and notices, and Event Grid dead-letters.

Nothing is removed from a failure store before its work is safely back on a queue; a message
that cannot be understood stays where it is and is reported (promise 3)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from renewal import settings
from renewal.errors import EventRejected, JobRejected
from renewal.flow.events import EventIgnored, parse_event
from renewal.model import parse_job
from renewal.observability import log_event

log = logging.getLogger("renewal.flow.replay")


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


@dataclass
class ReplayResult:
    jobs: int = 0
    notices: int = 0
    events: int = 0
    left: list[str] = field(default_factory=list)
    """What stayed in place, and why."""


def _last_error(service: Any, vault: str | None, name: str | None) -> str:
    if not vault or not name:
        return "message body is not a renewal job"
    rows = service.ledger.history(vault, name)
    for row in rows:
        if row.error:
            return f"{row.state}: {row.error}"
    return "no ledger row with an error (failed before bookkeeping, e.g. Key Vault unreachable)"


def list_failures(service: Any) -> FailureReport:
    report = FailureReport()
    for queue, target in ((settings.JOBS_QUEUE, report.jobs), (settings.DEPLOYMENTS_QUEUE, report.notices)):
        for msg in service.poison.list_poison(queue):
            payload = msg.payload if isinstance(msg.payload, dict) else {}
            vault, name = payload.get("vault"), payload.get("name")
            reason = _last_error(service, vault, name) if queue == settings.JOBS_QUEUE else "delivery failed"
            target.append(FailedJob(queue, msg.id, msg.inserted_on, vault, name, reason))
    report.dead_letters = service.dead_letters.list()
    return report


def _as_replayed_job(message: Any) -> str | None:
    """The poisoned message as a replay job: only what a job may carry (the certificate and why) goes back;
    a resume ticket, if any, is the ledger's to give."""
    payload = message.payload
    if not isinstance(payload, dict):
        return None
    try:
        job = parse_job(json.dumps(payload))
    except JobRejected:
        return None
    return dataclasses.replace(job, reason="replay" if job.reason != "pending-followup" else job.reason).to_json()


def replay(
    service: Any,
    *,
    jobs: bool = True,
    notices: bool = True,
    dead_letters: bool = True,
    ids: Collection[str] | None = None,
) -> ReplayResult:
    result = ReplayResult()
    if jobs:
        result.jobs = service.poison.requeue_poison(settings.JOBS_QUEUE, ids=ids, transform=_as_replayed_job)
    if notices:
        result.notices = service.poison.requeue_poison(settings.DEPLOYMENTS_QUEUE, ids=ids)
    if dead_letters:
        _replay_dead_letters(service, result, ids)
    for queue in (settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE):
        left = len(service.poison.list_poison(queue)) if (jobs if queue == settings.JOBS_QUEUE else notices) else 0
        if left:
            result.left.append(f"{left} message(s) left in {settings.poison_queue(queue)} (not a valid job/notice)")
    log_event(
        log, "replay.finished", jobs=result.jobs, notices=result.notices, events=result.events, left=len(result.left)
    )
    return result


def _replay_dead_letters(service: Any, result: ReplayResult, ids: Collection[str] | None) -> None:
    by_blob: dict[str, list[Any]] = {}
    for item in service.dead_letters.list():
        by_blob.setdefault(item.blob_name, []).append(item)
    vaults = {v.name: v.url for v in service.config.vaults}
    for blob_name, items in by_blob.items():
        if ids is not None and blob_name not in ids:
            continue
        keep = False
        for item in items:
            if item.error:
                result.left.append(f"{blob_name}: unreadable ({item.error})")
                keep = True
                continue
            try:
                parsed = parse_event(item.event, configured_vaults=vaults)
            except EventRejected as exc:
                result.left.append(f"{blob_name}[{item.index}]: {exc}")
                keep = True
                continue
            if isinstance(parsed, EventIgnored):
                continue
            job = dataclasses.replace(parsed.to_job(), reason="replay", enqueued_at=service.clock())
            service.jobs.enqueue(job)
            result.events += 1
        if not keep:
            service.dead_letters.remove(blob_name)


def status(service: Any) -> dict[str, Any]:
    """Queue depths, failure counts and the latest ledger states: what an operator checks first."""
    depths: dict[str, int] = {}
    for queue in (settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE):
        for name in (queue, settings.poison_queue(queue)):
            props = service.storage.queue_client(name).get_queue_properties()
            depths[name] = int(props.approximate_message_count or 0)
    rows = service.ledger.recent(limit=200)
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    return {
        "queues": depths,
        "dead_letters": len(service.dead_letters.blob_names()),
        "ledger_states": states,
        "recent": [
            {
                "vault": r.vault,
                "name": r.name,
                "state": r.state,
                "issuer": r.issuer,
                "old_version": r.old_version,
                "new_version": r.new_version,
                "attempts": r.attempts,
                "error": r.error,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            }
            for r in rows[:25]
        ],
    }


def to_json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)
