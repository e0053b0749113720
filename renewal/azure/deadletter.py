"""Event Grid dead-letter blobs: events Event Grid gave up delivering, kept for replay.

Event Grid writes ``<topic-name>/<yyyy>/<mm>/<dd>/<hh>/<guid>.json`` into the dead-letter container, each a
JSON array of events with delivery fields added (``deadLetterReason``, ``deliveryAttempts``,
``lastDeliveryOutcome``, ``lastHttpStatusCode``, ``publishTime``, ``lastDeliveryAttemptTime``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from renewal import settings
from renewal.azure.storage import StorageEndpoints
from renewal.observability import log_event

log = logging.getLogger("renewal.azure.deadletter")

DELIVERY_FIELDS: tuple[str, ...] = (
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "lastHttpStatusCode",
    "publishTime",
    "lastDeliveryAttemptTime",
)
# Some writers nest the original event and the delivery fields instead of merging them.
_NESTED_EVENT = "event"
_NESTED_DELIVERY = ("deadLetterProperties", "deadletterproperties")


@dataclass(frozen=True)
class DeadLetteredEvent:
    blob_name: str
    index: int
    """Position of the event in the blob's array (-1 when the blob could not be read)."""
    event: dict[str, Any]
    """The original event as delivered, without the dead-letter delivery fields."""
    reason: str
    attempts: int
    delivery: dict[str, Any] = field(default_factory=dict)
    """All delivery fields Event Grid added (outcome, last HTTP status, times)."""
    error: str | None = None
    """Set when the blob is not a readable dead-letter document; it is listed so nothing is hidden."""


def _split(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for key in _NESTED_DELIVERY:
        if isinstance(item.get(key), dict) and isinstance(item.get(_NESTED_EVENT), dict):
            return dict(item[_NESTED_EVENT]), dict(item[key])
    event = {k: v for k, v in item.items() if k not in DELIVERY_FIELDS}
    delivery = {k: item[k] for k in DELIVERY_FIELDS if k in item}
    return event, delivery


def _attempts(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_dead_letter_blob(blob_name: str, data: bytes) -> list[DeadLetteredEvent]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeError, ValueError) as exc:
        return [DeadLetteredEvent(blob_name, -1, {}, "unreadable", 0, error=f"not JSON: {exc}")]
    items = document if isinstance(document, list) else [document]
    result: list[DeadLetteredEvent] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            result.append(DeadLetteredEvent(blob_name, index, {}, "unreadable", 0, error="array item is not an object"))
            continue
        event, delivery = _split(item)
        reason = str(delivery.get("deadLetterReason") or "")
        result.append(
            DeadLetteredEvent(blob_name, index, event, reason, _attempts(delivery.get("deliveryAttempts")), delivery)
        )
    return result


class DeadLetterStore:
    """Lists, reads and removes dead-letter blobs in the ``eventgrid-deadletter`` container."""

    def __init__(self, storage: StorageEndpoints, container: str = settings.DEADLETTER_CONTAINER) -> None:
        self.storage = storage
        self._container = storage.container_client(container)

    def blob_names(self, prefix: str | None = None) -> list[str]:
        return sorted(b.name for b in self._container.list_blobs(name_starts_with=prefix) if b.name.endswith(".json"))

    def list(self, prefix: str | None = None) -> list[DeadLetteredEvent]:
        """Every dead-lettered event, oldest blob path first (the path is topic/yyyy/mm/dd/hh)."""
        result: list[DeadLetteredEvent] = []
        for name in self.blob_names(prefix):
            result.extend(self.read(name))
        return result

    def read(self, blob_name: str) -> list[DeadLetteredEvent]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = self._container.download_blob(blob_name).readall()
        except ResourceNotFoundError:
            return []  # removed by a concurrent replay
        return parse_dead_letter_blob(blob_name, data)

    def remove(self, blob_name: str) -> bool:
        """Delete a blob once every event in it was replayed; False when it was already gone."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._container.delete_blob(blob_name)
        except ResourceNotFoundError:
            return False
        log_event(log, "deadletter.removed", blob=blob_name)
        return True
