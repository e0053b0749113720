"""What the Functions host and the Python worker hand a function, made the way they make it: the host's
payload as a ``Datum`` (its bytes and trigger metadata) decoded by ``azure.functions``' own converter for
the binding. Every local stand-in (the Event Grid webhook, the queue pump, the HTTP adapter, the demo, the
benchmarks, the tests) builds trigger arguments here and nowhere else, so what passes locally is what
the worker would pass in Azure (DESIGN.md promise 8). ``tests/unit/test_layout.py`` checks that no other
module builds one by hand."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.http import HttpRequestConverter
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter


def event_grid_event(event: Mapping[str, Any]) -> Any:
    """One element of an Event Grid delivery (the host invokes the function once per element): a
    ``CloudEvent`` when it has ``specversion``, else an ``EventGridEvent``."""
    return EventGridEventInConverter.decode(Datum(json.dumps(event), "json"), trigger_metadata={})


def queue_message(
    body: bytes,
    *,
    message_id: str,
    dequeue_count: int,
    inserted_on: dt.datetime | None = None,
    expires_on: dt.datetime | None = None,
    next_visible_on: dt.datetime | None = None,
    pop_receipt: str | None = None,
) -> Any:
    """A queue trigger's message: the body already base64-decoded by the host, the rest as trigger metadata."""

    def when(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    metadata = {
        "Id": message_id,
        "DequeueCount": dequeue_count,
        "ExpirationTime": when(expires_on),
        "InsertionTime": when(inserted_on),
        "NextVisibleTime": when(next_visible_on),
        "PopReceipt": pop_receipt,
    }
    trigger_metadata = {k: Datum(json.dumps(v), "json") for k, v in metadata.items() if v is not None}
    return QueueMessageInConverter.decode(Datum(body, "bytes"), trigger_metadata=trigger_metadata)


def timer_request(*, past_due: bool = False, last: dt.datetime | None = None) -> Any:
    """The timer trigger's payload as the host sends it (``Schedule``, ``ScheduleStatus``, ``IsPastDue``)."""
    status = {"Last": last.isoformat(), "Next": None, "LastUpdated": last.isoformat()} if last else {}
    payload = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    return TimerRequestConverter.decode(Datum(json.dumps(payload), "json"), trigger_metadata={})


def http_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    route_params: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Any:
    """An HTTP trigger's request: method, URL, headers, query, route parameters and body, each a ``Datum``."""

    def strings(values: Mapping[str, str] | None) -> dict[str, Datum]:
        return {k: Datum(v, "string") for k, v in (values or {}).items()}

    value = {
        "method": Datum(method, "string"),
        "url": Datum(url, "string"),
        "headers": strings(headers),
        "query": strings(query),
        "params": strings(route_params),
        "body": Datum(body, "bytes"),
    }
    return HttpRequestConverter.decode(Datum(value, "http"), trigger_metadata={})
