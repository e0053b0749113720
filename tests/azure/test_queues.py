"""Jobs/notices on the wire, delayed follow-ups, and poison listing and re-drive against Azurite."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from devtools.pump import QueuePump
from renewal import settings
from renewal.azure.queues import (
    MAX_VISIBILITY_DELAY,
    PoisonMessage,
    PoisonQueues,
    StorageJobQueue,
    StorageNoticeQueue,
    delay_seconds,
)
from renewal.azure.storage import StorageEndpoints
from renewal.model import DeploymentNotice, parse_job, parse_notice
from tests.azure.conftest import b64, job

POISON = settings.poison_queue(settings.JOBS_QUEUE)


def test_job_is_base64_json_on_the_wire_and_round_trips(storage: StorageEndpoints) -> None:
    sent = job(force=True, version="v1", enqueued_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    StorageJobQueue(storage).enqueue(sent)
    raw = list(storage.queue_client(settings.JOBS_QUEUE, base64=False).peek_messages(max_messages=5))
    assert len(raw) == 1
    wire = raw[0].content
    assert not wire.startswith("{")
    assert parse_job(base64.b64decode(wire, validate=True)) == sent
    # The decoding client (what the adapters use) sees the JSON text.
    decoded = next(iter(storage.queue_client(settings.JOBS_QUEUE).peek_messages())).content
    assert parse_job(decoded) == sent


def test_notice_goes_to_the_deployments_queue(storage: StorageEndpoints) -> None:
    notice = DeploymentNotice(
        vault="kv-one",
        name="web",
        new_version="v2",
        old_version="v1",
        certificate_id="https://kv-one.vault.azure.net/certificates/web/v2",
        thumbprint_sha1="AB" * 20,
        not_before=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        issuer="private-ca",
        request_id="r1",
    )
    StorageNoticeQueue(storage).enqueue(notice)
    wire = next(iter(storage.queue_client(settings.DEPLOYMENTS_QUEUE, base64=False).peek_messages())).content
    assert parse_notice(base64.b64decode(wire)) == notice


def test_delay_rounds_up_to_whole_seconds_and_caps_at_seven_days() -> None:
    assert delay_seconds(None) == 0
    assert delay_seconds(dt.timedelta(seconds=-5)) == 0
    assert delay_seconds(dt.timedelta(milliseconds=200)) == 1
    assert delay_seconds(dt.timedelta(minutes=5)) == 300
    assert delay_seconds(dt.timedelta(days=30)) == int(MAX_VISIBILITY_DELAY.total_seconds())


def test_delayed_job_is_invisible_until_due(storage: StorageEndpoints) -> None:
    queue = StorageJobQueue(storage)
    queue.enqueue(job("later"), delay=dt.timedelta(days=30))  # capped, not refused
    queue.enqueue(job("soon"), delay=dt.timedelta(seconds=1))
    client = storage.queue_client(settings.JOBS_QUEUE)
    assert list(client.peek_messages(max_messages=32)) == []
    assert client.get_queue_properties().approximate_message_count == 2

    seen: list[str] = []
    stats = QueuePump(storage, settings.JOBS_QUEUE, lambda m: seen.append(json.loads(m.get_body())["name"]))
    # Not asked to wait: nothing is visible, so the run is idle at once.
    assert stats.run_until_idle(timeout=5).processed == 0
    # The one due in a second arrives while we wait; the 7-day one never does within the bound.
    with pytest.raises(TimeoutError):
        stats.run_until_idle(timeout=2.5, wait_for_delayed=True)
    assert seen == ["soon"]
    assert client.get_queue_properties().approximate_message_count == 1


def _poison(storage: StorageEndpoints, count: int) -> list[str]:
    client = storage.queue_client(POISON)
    return [client.send_message(job(f"c{i:03}").to_json()).id for i in range(count)]


def test_list_poison_sees_more_than_a_peek_and_leaves_them_in_place(storage: StorageEndpoints) -> None:
    ids = _poison(storage, 40)
    storage.queue_client(POISON, base64=False).send_message("not json, not base64 {")
    poison = PoisonQueues(storage)
    listed = poison.list_poison(settings.JOBS_QUEUE)
    assert len(listed) == 41
    assert {m.id for m in listed} >= set(ids)
    parsed = [m for m in listed if m.payload is not None]
    assert sorted(m.payload["name"] for m in parsed) == [f"c{i:03}" for i in range(40)]
    odd = [m for m in listed if m.payload is None]
    assert odd[0].body == "not json, not base64 {"
    # Still there, and visible again for the next reader (the poison name works too).
    assert len(poison.list_poison(POISON)) == 41
    assert len(list(storage.queue_client(POISON).peek_messages(max_messages=32))) == 32


def test_requeue_moves_100_poisoned_messages_back_with_a_fresh_count(storage: StorageEndpoints) -> None:
    _poison(storage, 100)
    moved = PoisonQueues(storage).requeue_poison(settings.JOBS_QUEUE)
    assert moved == 100
    assert storage.queue_client(POISON).get_queue_properties().approximate_message_count == 0
    main = storage.queue_client(settings.JOBS_QUEUE)
    assert main.get_queue_properties().approximate_message_count == 100
    received = list(main.receive_messages(messages_per_page=32, max_messages=100))
    assert len(received) == 100
    assert {m.dequeue_count for m in received} == {1}
    assert sorted(parse_job(m.content).name for m in received) == [f"c{i:03}" for i in range(100)]


def test_requeue_by_id_with_transform(storage: StorageEndpoints) -> None:
    ids = _poison(storage, 5)

    def as_replay(message: PoisonMessage) -> str | None:
        if message.payload["name"] == "c001":
            return None  # left in poison
        return parse_job(json.dumps({**message.payload, "reason": "replay"})).to_json()

    moved = PoisonQueues(storage).requeue_poison(settings.JOBS_QUEUE, ids=ids[:3], transform=as_replay)
    assert moved == 2
    left = PoisonQueues(storage).list_poison(settings.JOBS_QUEUE)
    assert sorted(m.payload["name"] for m in left) == ["c001", "c003", "c004"]
    jobs = [parse_job(m.content) for m in storage.queue_client(settings.JOBS_QUEUE).peek_messages(32)]
    assert sorted(j.name for j in jobs) == ["c000", "c002"] and {j.reason for j in jobs} == {"replay"}


class _FailingSends:
    """Wraps the real storage so the re-send to the main queue fails after ``allowed`` messages."""

    def __init__(self, real: StorageEndpoints, allowed: int) -> None:
        self.real, self.allowed = real, allowed

    def queue_client(self, name: str, *, base64: bool = True) -> Any:
        client = self.real.queue_client(name, base64=base64)
        if name != settings.JOBS_QUEUE:
            return client
        outer = self

        class Client:
            def __getattr__(self, attr: str) -> Any:
                return getattr(client, attr)

            def send_message(self, *args: Any, **kwargs: Any) -> Any:
                if outer.allowed <= 0:
                    raise ConnectionError("queue endpoint unreachable")
                outer.allowed -= 1
                return client.send_message(*args, **kwargs)

        return Client()


def test_failure_mid_requeue_loses_nothing(storage: StorageEndpoints) -> None:
    _poison(storage, 30)
    with pytest.raises(ConnectionError):
        PoisonQueues(_FailingSends(storage, allowed=12)).requeue_poison(settings.JOBS_QUEUE)  # type: ignore[arg-type]
    main = [m.content for m in storage.queue_client(settings.JOBS_QUEUE).peek_messages(max_messages=32)]
    # The unsent ones are visible in poison again at once, not after the hold lapses.
    left = PoisonQueues(storage).list_poison(settings.JOBS_QUEUE)
    assert len(main) == 12 and len(left) == 18
    names = sorted([json.loads(b)["name"] for b in main] + [m.payload["name"] for m in left])
    assert names == [f"c{i:03}" for i in range(30)]
    # Fixing the cause and replaying again finishes the job.
    assert PoisonQueues(storage).requeue_poison(settings.JOBS_QUEUE) == 18
    assert PoisonQueues(storage).list_poison(settings.JOBS_QUEUE) == []


def test_plain_text_poison_body_is_requeued_base64(storage: StorageEndpoints) -> None:
    storage.queue_client(POISON, base64=False).send_message("hand-written {")
    assert PoisonQueues(storage).requeue_poison(settings.JOBS_QUEUE) == 1
    wire = next(iter(storage.queue_client(settings.JOBS_QUEUE, base64=False).peek_messages())).content
    assert wire == b64("hand-written {")
