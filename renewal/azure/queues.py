"""Storage queues: the jobs and deployments queues the functions trigger on, and their poison twins.

Bodies are JSON, base64-encoded on the wire (the Functions host's default ``messageEncoding``).
Poison messages are read and re-driven through raw clients so one undecodable body cannot hide the rest.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from renewal import settings
from renewal.azure.storage import StorageEndpoints
from renewal.model import DeploymentNotice, RenewalJob
from renewal.observability import log_event

log = logging.getLogger("renewal.azure.queues")

MAX_VISIBILITY_DELAY = dt.timedelta(days=7)
"""The service refuses a longer visibility timeout."""
# Jobs never expire: a delayed follow-up or an unprocessed job silently vanishing after the default
# 7-day time-to-live would break "nothing is lost".
NEVER_EXPIRE = -1
# How long a listed or re-driven poison message stays hidden from other readers while we hold it.
POISON_HOLD_SECONDS = 60


def delay_seconds(delay: dt.timedelta | None) -> int:
    """Visibility timeout for ``delay``: whole seconds rounded up (never early), capped at 7 days."""
    if delay is None or delay <= dt.timedelta(0):
        return 0
    return min(math.ceil(delay.total_seconds()), int(MAX_VISIBILITY_DELAY.total_seconds()))


class StorageJobQueue:
    """JobQueue over the ``renewal-jobs`` queue."""

    def __init__(self, storage: StorageEndpoints, queue_name: str = settings.JOBS_QUEUE) -> None:
        self.storage = storage
        self.queue_name = queue_name
        self._client = storage.queue_client(queue_name)

    def enqueue(self, job: RenewalJob, *, delay: dt.timedelta | None = None) -> None:
        self._client.send_message(job.to_json(), visibility_timeout=delay_seconds(delay), time_to_live=NEVER_EXPIRE)


class StorageNoticeQueue:
    """NoticeQueue over the ``deployments`` queue."""

    def __init__(self, storage: StorageEndpoints, queue_name: str = settings.DEPLOYMENTS_QUEUE) -> None:
        self.storage = storage
        self.queue_name = queue_name
        self._client = storage.queue_client(queue_name)

    def enqueue(self, notice: DeploymentNotice, *, delay: dt.timedelta | None = None) -> None:
        self._client.send_message(notice.to_json(), visibility_timeout=delay_seconds(delay), time_to_live=NEVER_EXPIRE)


@dataclass(frozen=True)
class PoisonMessage:
    id: str
    inserted_on: dt.datetime | None
    dequeue_count: int
    body: str
    """Decoded body text (the wire text itself when it was not valid base64)."""
    payload: Any | None
    """``body`` parsed as JSON, or None when it is not JSON."""


def decode_wire(text: str) -> str:
    """Base64 wire text -> body text; tolerates bodies someone sent without encoding."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return text


def encode_wire(body: str) -> str:
    return base64.b64encode(body.encode("utf-8")).decode("ascii")


def _parse(body: str) -> Any | None:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _to_poison_message(msg: Any) -> PoisonMessage:
    body = decode_wire(msg.content or "")
    return PoisonMessage(msg.id, msg.inserted_on, msg.dequeue_count or 0, body, _parse(body))


def _main_queue(queue_name: str) -> str:
    suffix = settings.poison_queue("")
    return queue_name[: -len(suffix)] if queue_name.endswith(suffix) else queue_name


class PoisonQueues:
    """Lists and re-drives ``<queue>-poison``. ``queue_name`` is the main queue (its poison name is accepted too)."""

    def __init__(self, storage: StorageEndpoints) -> None:
        self.storage = storage

    def _hold_all(self, client: Any, limit: int) -> list[Any]:
        """Receive every message (hiding them), de-duplicated by id: peek would stop at 32."""
        held: dict[str, Any] = {}
        while len(held) < limit:
            page = list(
                client.receive_messages(
                    messages_per_page=32,
                    max_messages=min(32, limit - len(held)),
                    visibility_timeout=POISON_HOLD_SECONDS,
                )
            )
            fresh = [m for m in page if m.id not in held]
            if not fresh:
                break  # empty, or the hold lapsed and we are seeing our own messages again
            held.update((m.id, m) for m in fresh)
        return list(held.values())

    @staticmethod
    def _release(client: Any, messages: Collection[Any]) -> None:
        from azure.core.exceptions import AzureError

        for msg in messages:
            try:
                client.update_message(msg, visibility_timeout=0)
            except AzureError as exc:  # the hold lapses by itself after POISON_HOLD_SECONDS
                log_event(log, "poison.release_failed", level=logging.WARNING, message_id=msg.id, error=repr(exc))

    def depths(self) -> dict[str, int]:
        """Approximate message count of each queue and its poison queue."""
        found: dict[str, int] = {}
        for queue in (settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE):
            for name in (queue, settings.poison_queue(queue)):
                props = self.storage.queue_client(name).get_queue_properties()
                found[name] = int(props.approximate_message_count or 0)
        return found

    def list_poison(self, queue_name: str = settings.JOBS_QUEUE, *, limit: int = 5000) -> list[PoisonMessage]:
        """Every message in the poison queue, oldest first, left in place.

        Messages are received with a short hold and made visible again, so a concurrent reader of the
        poison queue may briefly miss them; their dequeue count grows (the host ignores it on poison)."""
        client = self.storage.queue_client(settings.poison_queue(_main_queue(queue_name)), base64=False)
        held = self._hold_all(client, limit)
        try:
            result = [_to_poison_message(m) for m in held]
        finally:
            self._release(client, held)
        result.sort(key=lambda m: (m.inserted_on or dt.datetime.min.replace(tzinfo=dt.UTC), m.id))
        return result

    def requeue_poison(
        self,
        queue_name: str = settings.JOBS_QUEUE,
        *,
        ids: Collection[str] | None = None,
        transform: Callable[[PoisonMessage], str | None] | None = None,
        limit: int = 5000,
    ) -> int:
        """Move poison messages back onto the main queue (a new message: fresh dequeue count).

        ``ids`` selects messages (all by default); ``transform`` returns the new body text, or None to
        leave that message in poison. Each message is deleted from poison only after its re-send
        succeeded, so a failure part-way loses nothing (at worst one message exists on both queues;
        handlers are idempotent). Returns how many were moved."""
        main = _main_queue(queue_name)
        poison = self.storage.queue_client(settings.poison_queue(main), base64=False)
        target = self.storage.queue_client(main, base64=False)
        wanted = set(ids) if ids is not None else None
        held = self._hold_all(poison, limit)
        untouched = {m.id: m for m in held}
        moved = 0
        try:
            for msg in sorted(held, key=lambda m: (m.inserted_on or dt.datetime.min.replace(tzinfo=dt.UTC), m.id)):
                if wanted is not None and msg.id not in wanted:
                    continue
                poison_msg = _to_poison_message(msg)
                body = transform(poison_msg) if transform else poison_msg.body
                if body is None:
                    continue
                target.send_message(encode_wire(body), time_to_live=NEVER_EXPIRE)
                poison.delete_message(msg)
                del untouched[msg.id]
                moved += 1
        finally:
            self._release(poison, untouched.values())
        log_event(log, "poison.requeued", queue=main, moved=moved)
        return moved
