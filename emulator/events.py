"""Event Grid for a vault: subscriptions, the validation handshake, delivery with retries, dead-letter."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .clock import Clock
from .errors import bad_parameter
from .store import Certificate, Subscription, Vault, Version

NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
EXPIRED = "Microsoft.KeyVault.CertificateExpired"
EVENT_TYPES = (NEW_VERSION, NEAR_EXPIRY, EXPIRED)
NEAR_EXPIRY_SECONDS = 30 * 86400
# Event Grid's documented schedule; after the listed steps it retries every 12 h until the TTL ends.
RETRY_SCHEDULE = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
NOT_RETRIED = {400, 401, 413}
SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def retry_delay(attempt: int) -> float:
    """Seconds before the next attempt once ``attempt`` attempts have failed."""
    return float(RETRY_SCHEDULE[attempt - 1] if attempt <= len(RETRY_SCHEDULE) else 43200)


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    vault: str = field(compare=False)
    subscription: Subscription = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    published: float = field(compare=False)  # real monotonic time, for the TTL
    attempts: int = 0


class EventGrid:
    def __init__(self, clock: Clock, *, resource_group: str, workers: int = 4) -> None:
        self.clock = clock
        self.resource_group = resource_group
        self.time_scale = 1.0  # multiplies retry delays and the TTL, so tests run the schedule fast
        self.delivery_timeout = 30.0
        self.log: list[dict[str, Any]] = []
        self._queue: list[_Delivery] = []
        self._seq = itertools.count()
        self._busy = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._session = requests.Session()
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"eventgrid-{i}") for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def topic(self, vault: Vault) -> str:
        return (
            f"/subscriptions/{vault.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{vault.name}"
        )

    # ---- subscriptions ----------------------------------------------------------------------------

    def subscribe(self, vault: Vault, raw: dict[str, Any]) -> Subscription:
        try:
            sub = Subscription(**raw)
        except TypeError as exc:
            raise bad_parameter(f"Invalid subscription: {exc}") from exc
        if not isinstance(sub.name, str) or not sub.name or not isinstance(sub.endpoint, str):
            raise bad_parameter("A subscription needs a name and an endpoint URL.")
        if sub.schema not in SCHEMAS:
            raise bad_parameter(f"schema must be one of {', '.join(SCHEMAS)}.")
        for event_type in sub.event_types or []:
            if event_type not in EVENT_TYPES:
                raise bad_parameter(f"Unknown event type '{event_type}'.")
        if not 1 <= sub.max_delivery_attempts <= 30 or not 1 <= sub.event_ttl_minutes <= 1440:
            raise bad_parameter("max_delivery_attempts must be 1-30 and event_ttl_minutes 1-1440.")
        self._validate(vault, sub)
        with vault.lock:
            vault.subscriptions[sub.name] = sub
        return sub

    def _validate(self, vault: Vault, sub: Subscription) -> None:
        """The handshake Event Grid performs before it accepts a web hook."""
        try:
            if sub.schema == "CloudEventSchemaV1_0":
                response = self._session.options(
                    sub.endpoint,
                    headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
                    timeout=self.delivery_timeout,
                )
                allowed = response.headers.get("WebHook-Allowed-Origin", "")
                ok = response.status_code == 200 and allowed in ("*", "eventgrid.azure.net")
            else:
                code = str(uuid.uuid4()).upper()
                event = {
                    "id": str(uuid.uuid4()),
                    "topic": self.topic(vault),
                    "subject": "",
                    "data": {"validationCode": code, "validationUrl": ""},
                    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                    "eventTime": _iso(self.clock.now()),
                    "metadataVersion": "1",
                    "dataVersion": "2",
                }
                response = self._session.post(
                    sub.endpoint,
                    data=json.dumps([event]),
                    headers={"Content-Type": "application/json", "aeg-event-type": "SubscriptionValidation"},
                    timeout=self.delivery_timeout,
                )
                ok = response.status_code == 200 and response.json().get("validationResponse") == code
        except (requests.RequestException, ValueError, AttributeError) as exc:
            raise bad_parameter(f"Webhook validation handshake failed for {sub.endpoint}: {exc}") from exc
        if not ok:
            raise bad_parameter(f"Webhook validation handshake failed for {sub.endpoint}.")

    # ---- publishing -------------------------------------------------------------------------------

    def new_version(self, vault: Vault, base: str, cert: Certificate, version: Version) -> None:
        self.publish(vault, base, cert, version, NEW_VERSION)

    def publish(self, vault: Vault, base: str, cert: Certificate, version: Version, event_type: str) -> int:
        data = {
            "Id": f"{base}/certificates/{cert.name}/{version.version}",
            "VaultName": vault.name,
            "ObjectType": "Certificate",
            "ObjectName": cert.name,
            "Version": version.version,
            "NBF": version.not_before,
            "EXP": version.expires,
        }
        now, queued = time.monotonic(), 0
        with self._cond:
            for sub in list(vault.subscriptions.values()):
                if not sub.wants(event_type):
                    continue
                event = self._envelope(vault, cert.name, event_type, data, sub.schema)
                heapq.heappush(self._queue, _Delivery(now, next(self._seq), vault.name, sub, event, now))
                queued += 1
            self._cond.notify_all()
        return queued

    def _envelope(
        self, vault: Vault, subject: str, event_type: str, data: dict[str, Any], schema: str
    ) -> dict[str, Any]:
        event_id, when = str(uuid.uuid4()), _iso(self.clock.now())
        if schema == "CloudEventSchemaV1_0":
            return {
                "id": event_id, "source": self.topic(vault), "subject": subject, "type": event_type,
                "time": when, "data": data, "specversion": "1.0",
            }  # fmt: skip
        return {
            "id": event_id, "topic": self.topic(vault), "subject": subject, "eventType": event_type,
            "eventTime": when, "data": data, "dataVersion": "1", "metadataVersion": "1",
        }  # fmt: skip

    def scan_expiry(self, vault: Vault, base: str) -> int:
        """Publish NearExpiry/Expired for current versions that reached them (once per version and type)."""
        now, fired = self.clock.now(), 0
        with vault.lock:
            for cert in vault.certificates.values():
                version = cert.latest()
                if version is None:
                    continue
                for event_type, at in (
                    (NEAR_EXPIRY, version.expires - NEAR_EXPIRY_SECONDS),
                    (EXPIRED, version.expires),
                ):
                    marker = (cert.name, version.version, event_type)
                    if now >= at and marker not in vault.fired:
                        vault.fired.add(marker)
                        self.publish(vault, base, cert, version, event_type)
                        fired += 1
        return fired

    # ---- delivery ---------------------------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued delivery succeeded, was dropped or was dead-lettered."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def clear(self) -> None:
        with self._cond:
            self._queue.clear()
            self.log.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = self._queue[0].due - time.monotonic() if self._queue else 1.0
                    self._cond.wait(max(0.001, min(wait, 1.0)))
                if self._stopped:
                    return
                item = heapq.heappop(self._queue)
                self._busy += 1
            try:
                self._attempt(item)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, item: _Delivery) -> None:
        sub = item.subscription
        item.attempts += 1
        cloud = sub.schema == "CloudEventSchemaV1_0"
        headers = {
            "Content-Type": "application/cloudevents-batch+json; charset=utf-8" if cloud else "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(item.attempts - 1),
            "aeg-data-version": "1",
            "aeg-metadata-version": "1",
        }
        status: int | None = None
        try:
            response = self._session.post(
                sub.endpoint, data=json.dumps([item.event]), headers=headers, timeout=self.delivery_timeout
            )
            status = response.status_code
            outcome = "Succeeded" if 200 <= status <= 204 else f"HTTP {status}"
        except requests.RequestException as exc:
            outcome = f"Failed: {type(exc).__name__}"
        self._record(item, status, outcome)
        if status is not None and 200 <= status <= 204:
            return
        expired = time.monotonic() - item.published >= sub.event_ttl_minutes * 60 * self.time_scale
        if status in NOT_RETRIED:
            self._dead_letter(item, "NonRetriableError" if status != 413 else "PayloadTooLarge", outcome, status)
        elif item.attempts >= sub.max_delivery_attempts:
            self._dead_letter(item, "MaxDeliveryAttemptsExceeded", outcome, status)
        elif expired:
            self._dead_letter(item, "TimeToLiveExceeded", outcome, status)
        else:
            item.due = time.monotonic() + retry_delay(item.attempts) * self.time_scale
            with self._cond:
                heapq.heappush(self._queue, item)
                self._cond.notify_all()

    def _record(self, item: _Delivery, status: int | None, outcome: str) -> None:
        with self._cond:
            self.log.append(
                {
                    "vault": item.vault,
                    "subscription": item.subscription.name,
                    "event_id": item.event["id"],
                    "event_type": item.event.get("eventType") or item.event.get("type"),
                    "subject": item.event["subject"],
                    "attempt": item.attempts,
                    "status": status,
                    "outcome": outcome,
                }
            )

    def _dead_letter(self, item: _Delivery, reason: str, outcome: str, status: int | None) -> None:
        sub = item.subscription
        self._record(item, status, f"DeadLettered: {reason}" if sub.dead_letter_dir else f"Dropped: {reason}")
        if not sub.dead_letter_dir:
            return
        now = dt.datetime.now(dt.UTC)
        # Mirrors Event Grid's blob layout: <topic name>/<subscription>/<y>/<m>/<d>/<h>/<id>.json
        folder = Path(sub.dead_letter_dir) / item.vault.upper() / sub.name.upper() / now.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        record = dict(item.event) | {
            "deadLetterReason": reason,
            "deliveryAttempts": item.attempts,
            "lastDeliveryOutcome": outcome,
            "lastHttpStatusCode": status,
            "publishTime": _iso(time.time() - (time.monotonic() - item.published)),
            "lastDeliveryAttemptTime": _iso(time.time()),
        }
        (folder / f"{item.event['id']}.json").write_text(json.dumps([record]))
