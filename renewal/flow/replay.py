"""Re-drive failed work: poisoned jobs and notices, and Event Grid dead-letters.

Nothing is removed from a failure store before its work is safely back on a queue; a message
that cannot be understood stays where it is and is reported (promise 3)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from renewal import settings
from renewal.errors import EventRejected, JobRejected
from renewal.flow.events import EventIgnored, parse_event
from renewal.model import parse_job
from renewal.observability import log_event
from renewal.ports import DeadLetterStore, JobQueue, PoisonQueueStore

log = logging.getLogger("renewal.flow.replay")


@dataclass
class ReplayResult:
    jobs: int = 0
    notices: int = 0
    events: int = 0
    left: list[str] = field(default_factory=list)
    """What stayed in place, and why."""


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
    poison: PoisonQueueStore,
    dead_letter_store: DeadLetterStore,
    job_queue: JobQueue,
    *,
    vaults: Mapping[str, str],
    clock: Callable[[], dt.datetime],
    jobs: bool = True,
    notices: bool = True,
    dead_letters: bool = True,
    ids: Collection[str] | None = None,
) -> ReplayResult:
    """Re-drive failed work: poisoned jobs and notices back onto their queues, dead-lettered events (for
    the configured ``vaults``, name -> URL) as jobs. ``ids`` limits it to those messages or blobs."""
    result = ReplayResult()
    if jobs:
        result.jobs = poison.requeue_poison(settings.JOBS_QUEUE, ids=ids, transform=_as_replayed_job)
    if notices:
        result.notices = poison.requeue_poison(settings.DEPLOYMENTS_QUEUE, ids=ids)
    if dead_letters:
        _replay_dead_letters(dead_letter_store, job_queue, vaults, clock, result, ids)
    for queue in (settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE):
        left = len(poison.list_poison(queue)) if (jobs if queue == settings.JOBS_QUEUE else notices) else 0
        if left:
            result.left.append(f"{left} message(s) left in {settings.poison_queue(queue)} (not a valid job/notice)")
    log_event(
        log, "replay.finished", jobs=result.jobs, notices=result.notices, events=result.events, left=len(result.left)
    )
    return result


def _replay_dead_letters(
    store: DeadLetterStore,
    job_queue: JobQueue,
    vaults: Mapping[str, str],
    clock: Callable[[], dt.datetime],
    result: ReplayResult,
    ids: Collection[str] | None,
) -> None:
    by_blob: dict[str, list[Any]] = {}
    for item in store.list():
        by_blob.setdefault(item.blob_name, []).append(item)
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
            job = dataclasses.replace(parsed.to_job(), reason="replay", enqueued_at=clock())
            job_queue.enqueue(job)
            result.events += 1
        if not keep:
            store.remove(blob_name)
