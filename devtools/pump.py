"""A local stand-in for the Functions host's queue trigger, for demos and integration tests.

It follows the host's queue-trigger rules (see the Azure Functions queue trigger docs):
- bodies are base64 on the wire and handed to the function decoded, as the ``azure.functions.QueueMessage``
  that the worker's converter makes,
  carrying ``dequeue_count``, ``insertion_time``, ``expiration_time``, ``time_next_visible``, ``pop_receipt``;
- success deletes the message; an exception makes it visible again after ``visibilityTimeout``
  (``retry_delay`` here, whole seconds as the service counts them; 0 = at once, the host default);
- a message that failed on its ``maxDequeueCount``-th delivery is copied, wire body unchanged, to
  ``<queue>-poison`` and deleted; one fetched with a dequeue count already above the maximum (a worker crashed
  while holding it) goes there without running the function;
- up to ``concurrency`` messages run at once (the host's ``batchSize``), which is what race tests need.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from renewal import settings
from renewal.azure.storage import StorageEndpoints

log = logging.getLogger("devtools.pump")

# How long a fetched message stays hidden while the function runs (the host uses 10 minutes and renews it).
IN_FLIGHT_VISIBILITY = 300


@dataclass
class PumpStats:
    processed: int = 0
    """Handler calls that returned normally (message deleted)."""
    failed: int = 0
    """Handler calls that raised (each failed delivery counts)."""
    poisoned: int = 0
    """Messages moved to the poison queue."""


class UndecodableMessageError(ValueError):
    """The wire body is not base64: the host fails such a message too, until it is poisoned."""


class QueuePump:
    """Delivers messages from ``queue_name`` to ``handler(msg: azure.functions.QueueMessage)`` like the host."""

    def __init__(
        self,
        storage: StorageEndpoints,
        queue_name: str,
        handler: Callable[[Any], Any],
        *,
        max_dequeue_count: int = settings.MAX_DEQUEUE_COUNT,
        retry_delay: float = 0.0,
        concurrency: int = 1,
        poll_interval: float = 0.05,
    ) -> None:
        if concurrency < 1 or concurrency > 32:
            raise ValueError("concurrency must be 1..32 (the host's batchSize limit)")
        self.storage = storage
        self.queue_name = queue_name
        self.handler = handler
        self.max_dequeue_count = max_dequeue_count
        self.retry_seconds = max(0, math.ceil(retry_delay))
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._queue = storage.queue_client(queue_name, base64=False)
        self._poison = storage.queue_client(settings.poison_queue(queue_name), base64=False)
        self._stats = PumpStats()
        self._stats_lock = threading.Lock()
        # Our own failed messages that are hidden until their retry is due: the run is not idle before they ran.
        self._retry_due: dict[str, float] = {}

    def run_until_idle(self, timeout: float = 30.0, *, wait_for_delayed: bool = False) -> PumpStats:
        """Deliver until no message is left to run, then return what happened in this run.

        Idle means: nothing visible and no retry of ours pending; with ``wait_for_delayed`` also no
        invisible message at all (delayed follow-ups), so those are run when they come due. Raises
        ``TimeoutError`` when the queue is not idle within ``timeout`` seconds."""
        self._stats = PumpStats()
        self._retry_due.clear()
        if not self._exists(self._poison):
            self._poison.create_queue()
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="pump") as pool:
            while True:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.queue_name} not idle after {timeout}s (stats so far: {self._stats}, "
                        f"retries pending: {len(self._retry_due)})"
                    )
                batch = list(
                    self._queue.receive_messages(
                        messages_per_page=self.concurrency,
                        max_messages=self.concurrency,
                        visibility_timeout=IN_FLIGHT_VISIBILITY,
                    )
                )
                if batch:
                    for msg in batch:
                        self._retry_due.pop(msg.id, None)
                    list(pool.map(self._deliver, batch))  # simpler than the host, which refills at half a batch
                    continue
                if self._idle(wait_for_delayed):
                    return self._stats
                time.sleep(self.poll_interval)

    # -- internals -----------------------------------------------------------------------------------

    @staticmethod
    def _exists(client: Any) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            client.get_queue_properties()
        except ResourceNotFoundError:
            return False
        return True

    def _idle(self, wait_for_delayed: bool) -> bool:
        now = time.monotonic()
        # A retry that came due but was not seen again within a grace period was taken by another consumer.
        for message_id, due in list(self._retry_due.items()):
            if now > due + 10:
                del self._retry_due[message_id]
        if self._retry_due:
            return False
        if wait_for_delayed:
            return (self._queue.get_queue_properties().approximate_message_count or 0) == 0
        return True

    def _count(self, field: str) -> None:
        with self._stats_lock:
            setattr(self._stats, field, getattr(self._stats, field) + 1)

    def _deliver(self, raw: Any) -> None:
        if (raw.dequeue_count or 0) > self.max_dequeue_count:
            self._to_poison(raw)
            return
        try:
            self.handler(self._to_function_message(raw))
        except Exception:  # any exception is a failed delivery, as in the host
            self._count("failed")
            log.warning(
                "pump.delivery_failed",
                extra={"queue": self.queue_name, "message_id": raw.id, "dequeue_count": raw.dequeue_count},
                exc_info=True,
            )
            if (raw.dequeue_count or 0) >= self.max_dequeue_count:
                self._to_poison(raw)
            else:
                self._queue.update_message(raw, visibility_timeout=self.retry_seconds)
                if self.retry_seconds:
                    self._retry_due[raw.id] = time.monotonic() + self.retry_seconds
            return
        self._queue.delete_message(raw)
        self._count("processed")

    def _to_function_message(self, raw: Any) -> Any:
        """What the worker hands the function: the base64-decoded body and the host's trigger metadata
        (each a JSON ``Datum``), decoded by ``azure.functions``' own queue converter."""
        from devtools.host import queue_message

        try:
            body = base64.b64decode((raw.content or "").encode("ascii"), validate=True)
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise UndecodableMessageError(f"message {raw.id} is not base64") from exc
        return queue_message(
            body,
            message_id=raw.id,
            dequeue_count=raw.dequeue_count,
            inserted_on=raw.inserted_on,
            expires_on=raw.expires_on,
            next_visible_on=raw.next_visible_on,
            pop_receipt=raw.pop_receipt,
        )

    def _to_poison(self, raw: Any) -> None:
        # Copy first, delete second: a crash in between duplicates rather than loses.
        self._poison.send_message(raw.content, time_to_live=-1)
        self._queue.delete_message(raw)
        self._count("poisoned")
        log.warning("pump.poisoned", extra={"queue": self.queue_name, "message_id": raw.id})
