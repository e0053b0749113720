"""QueuePump: the local stand-in for the host's queue trigger (delete, retry, poison, concurrency)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time

import azure.functions as func
import pytest

from devtools.pump import QueuePump
from renewal import settings
from renewal.azure.queues import PoisonQueues, StorageJobQueue
from renewal.azure.storage import StorageEndpoints
from renewal.model import parse_job
from tests.azure.conftest import job

JOBS = settings.JOBS_QUEUE
POISON = settings.poison_queue(JOBS)


def count(storage: StorageEndpoints, queue: str) -> int:
    return storage.queue_client(queue).get_queue_properties().approximate_message_count or 0


def test_success_deletes_and_hands_over_a_host_like_message(storage: StorageEndpoints) -> None:
    StorageJobQueue(storage).enqueue(job("web"))
    seen: list[func.QueueMessage] = []
    stats = QueuePump(storage, JOBS, seen.append).run_until_idle(timeout=10)
    assert (stats.processed, stats.failed, stats.poisoned) == (1, 0, 0)
    (msg,) = seen
    assert isinstance(msg, func.QueueMessage)
    assert parse_job(msg.get_body()) == job("web")
    assert msg.dequeue_count == 1 and msg.id
    assert isinstance(msg.insertion_time, dt.datetime) and msg.pop_receipt
    assert count(storage, JOBS) == 0


def test_failure_retried_max_dequeue_count_times_then_poisoned_with_original_body(storage: StorageEndpoints) -> None:
    StorageJobQueue(storage).enqueue(job("broken"))
    StorageJobQueue(storage).enqueue(job("fine"))
    wire = {m.content for m in storage.queue_client(JOBS, base64=False).peek_messages(max_messages=5)}
    counts: list[int] = []

    def handler(msg: func.QueueMessage) -> None:
        if msg.get_json()["name"] == "broken":
            counts.append(msg.dequeue_count)
            raise RuntimeError("CA unreachable")

    stats = QueuePump(storage, JOBS, handler).run_until_idle(timeout=15)
    assert counts == [1, 2, 3, 4, 5] and settings.MAX_DEQUEUE_COUNT == 5
    assert (stats.processed, stats.failed, stats.poisoned) == (1, 5, 1)
    assert count(storage, JOBS) == 0
    (poisoned,) = storage.queue_client(POISON, base64=False).peek_messages()
    assert poisoned.content in wire  # unchanged wire body (still base64)
    assert json.loads(base64.b64decode(poisoned.content))["name"] == "broken"
    # ...and replay brings it back to be processed once the cause is fixed.
    assert PoisonQueues(storage).requeue_poison(JOBS) == 1
    later = QueuePump(storage, JOBS, lambda m: counts.append(m.dequeue_count)).run_until_idle(timeout=10)
    assert later.processed == 1 and counts[-1] == 1


def test_message_already_over_the_limit_goes_to_poison_without_running(storage: StorageEndpoints) -> None:
    StorageJobQueue(storage).enqueue(job("crashy"))
    client = storage.queue_client(JOBS)
    for _ in range(settings.MAX_DEQUEUE_COUNT):  # five workers fetched it and died without answering
        (msg,) = client.receive_messages(max_messages=1, visibility_timeout=1)
        client.update_message(msg, visibility_timeout=0)
    ran: list[object] = []
    stats = QueuePump(storage, JOBS, ran.append).run_until_idle(timeout=10)
    assert ran == [] and stats.poisoned == 1 and count(storage, POISON) == 1


def test_undecodable_body_fails_until_poisoned(storage: StorageEndpoints) -> None:
    storage.queue_client(JOBS, base64=False).send_message("{not base64}")
    stats = QueuePump(storage, JOBS, lambda m: None, max_dequeue_count=2).run_until_idle(timeout=10)
    assert (stats.failed, stats.poisoned) == (2, 1)


def test_retry_delay_and_delayed_follow_ups_are_waited_for(storage: StorageEndpoints) -> None:
    queue = StorageJobQueue(storage)
    queue.enqueue(job("flaky"))
    attempts: list[tuple[str, float]] = []
    start = time.monotonic()

    def handler(msg: func.QueueMessage) -> None:
        name = msg.get_json()["name"]
        attempts.append((name, time.monotonic() - start))
        if name == "flaky" and msg.dequeue_count == 1:
            raise RuntimeError("transient")
        if name == "flaky":  # the CA is pending: a follow-up comes back in a second
            queue.enqueue(job("follow-up"), delay=dt.timedelta(seconds=1))

    stats = QueuePump(storage, JOBS, handler, retry_delay=1).run_until_idle(timeout=15, wait_for_delayed=True)
    assert [a[0] for a in attempts] == ["flaky", "flaky", "follow-up"]
    assert attempts[1][1] - attempts[0][1] >= 0.9  # the retry waited for its visibility delay
    assert attempts[2][1] - attempts[1][1] >= 0.9
    assert (stats.processed, stats.failed, stats.poisoned) == (2, 1, 0)


def test_concurrency_runs_handlers_at_once(storage: StorageEndpoints) -> None:
    for i in range(8):
        StorageJobQueue(storage).enqueue(job(f"c{i}"))
    together = threading.Barrier(8, timeout=10)  # fails unless 8 handlers run at the same time

    def handler(msg: func.QueueMessage) -> None:
        together.wait()

    stats = QueuePump(storage, JOBS, handler, concurrency=8).run_until_idle(timeout=15)
    assert stats.processed == 8


def test_timeout_when_never_idle(storage: StorageEndpoints) -> None:
    StorageJobQueue(storage).enqueue(job("slow"), delay=dt.timedelta(hours=1))
    with pytest.raises(TimeoutError, match="not idle"):
        QueuePump(storage, JOBS, lambda m: None).run_until_idle(timeout=0.3, wait_for_delayed=True)


def test_timeout_bounds_a_handler_that_keeps_feeding_the_queue(storage: StorageEndpoints) -> None:
    queue = StorageJobQueue(storage)
    queue.enqueue(job("loop"))
    with pytest.raises(TimeoutError):
        QueuePump(storage, JOBS, lambda m: queue.enqueue(job("loop"))).run_until_idle(timeout=0.5)
