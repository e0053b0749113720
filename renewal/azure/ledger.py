"""The ``renewals`` table: one row per renewal attempt (PartitionKey vault|name, RowKey request id)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import fields
from typing import Any
from urllib.parse import quote

from renewal import settings
from renewal.azure.storage import StorageEndpoints
from renewal.model import AttemptState, LedgerRow

# Table keys may not contain / \ # ? or control characters. Percent-encoding (which also encodes "%" and
# "|") keeps keys readable, reversible and unambiguous around the "|" separator.
_KEY_SAFE = " -_.~!$&'()*+,;=:@"
# A string property holds at most 64 KiB (32K UTF-16 characters); keep errors well inside that.
MAX_ERROR_CHARS = 16_000
_MIN_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def escape_key(value: str) -> str:
    return quote(value, safe=_KEY_SAFE)


def partition_key(vault: str, name: str) -> str:
    return f"{escape_key(vault)}|{escape_key(name)}"


def plain_datetime(value: Any) -> dt.datetime | None:
    # The SDK returns a datetime subclass carrying the raw string; hand back an ordinary aware datetime.
    if not isinstance(value, dt.datetime):
        return None
    plain = dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, value.tzinfo
    )
    return plain if plain.tzinfo else plain.replace(tzinfo=dt.UTC)


def row_to_entity(row: LedgerRow) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(row.vault, row.name),
        "RowKey": escape_key(row.request_id),
        "vault": row.vault,
        "name": row.name,
        "request_id": row.request_id,
        "state": row.state.value,
        "issuer": row.issuer,
        "reason": row.reason,
        "attempts": int(row.attempts),
        "extra": json.dumps(row.extra, sort_keys=True, default=str),
    }
    optional = {
        "old_version": row.old_version,
        "new_version": row.new_version,
        "error": row.error[:MAX_ERROR_CHARS] if row.error else row.error,
        "started_at": row.started_at,
        "updated_at": row.updated_at,
    }
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def entity_to_row(entity: dict[str, Any]) -> LedgerRow:
    known = {f.name for f in fields(LedgerRow)}
    values = {k: v for k, v in entity.items() if k in known}
    values["extra"] = json.loads(entity.get("extra") or "{}")
    values["attempts"] = int(entity.get("attempts") or 0)
    try:
        values["state"] = AttemptState(entity.get("state"))
    except ValueError:  # a row written by another version of the service: keep it visible, never in flight
        values["state"] = AttemptState.ABANDONED
        values["error"] = f"unknown ledger state {entity.get('state')!r}; {entity.get('error') or ''}".rstrip("; ")
    for key in ("started_at", "updated_at"):
        values[key] = plain_datetime(entity.get(key))
    return LedgerRow(**values)


def _newest_first(row: LedgerRow) -> tuple[dt.datetime, dt.datetime, str]:
    return (row.started_at or row.updated_at or _MIN_TIME, row.updated_at or _MIN_TIME, row.request_id)


class TableLedger:
    """Ledger over the ``renewals`` table."""

    def __init__(self, storage: StorageEndpoints, table_name: str = settings.LEDGER_TABLE) -> None:
        self.storage = storage
        self._table = storage.table_client(table_name)

    def get(self, vault: str, name: str, request_id: str) -> LedgerRow | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table.get_entity(partition_key(vault, name), escape_key(request_id))
        except ResourceNotFoundError:
            return None
        return entity_to_row(entity)

    def upsert(self, row: LedgerRow) -> None:
        from azure.data.tables import UpdateMode

        # Replace, not merge: a field cleared on the row (error=None after a retry succeeded) must go.
        self._table.upsert_entity(row_to_entity(row), mode=UpdateMode.REPLACE)

    def history(self, vault: str, name: str) -> list[LedgerRow]:
        """Every attempt for one certificate, newest first (by start time)."""
        entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": partition_key(vault, name)})
        return sorted((entity_to_row(e) for e in entities), key=_newest_first, reverse=True)

    def recent(self, *, states: set[AttemptState] | None = None, limit: int = 100) -> list[LedgerRow]:
        """The ``limit`` most recently updated rows across all certificates, optionally only in ``states``.

        Scans the table (filtered server-side by state): fine for the thousands of rows a fleet of vaults makes."""
        if states:
            ordered = sorted(states)
            params = {f"s{i}": AttemptState(s).value for i, s in enumerate(ordered)}
            entities = self._table.query_entities(
                " or ".join(f"state eq @s{i}" for i in range(len(ordered))), parameters=params
            )
        else:
            entities = self._table.list_entities()
        rows = [entity_to_row(e) for e in entities]
        rows.sort(key=lambda r: (r.updated_at or r.started_at or _MIN_TIME, r.request_id), reverse=True)
        return rows[:limit]
