"""The CAs' suggested renewal windows (implements RenewalWindows) in the ``renewalwindows`` table.

One row per certificate (partition: vault, row: certificate name, both key-escaped), replaced whenever the
CA is asked again: ``thumbprint`` (which version it is about), ``issuer``, ``cert_id`` (RFC 9773), ``start``
and ``end`` of the suggested window (absent when the CA suggests none), ``explanation_url``, ``checked_at``
and ``recheck_at`` (the answer's Retry-After, clamped). The nightly sweep loads a vault's partition in one
query (1,000 rows a page) and asks the CA only for rows whose ``recheck_at`` has passed or whose thumbprint
is not the listed version's; every Function instance sees the same rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from renewal import settings
from renewal.azure.ledger import escape_key
from renewal.azure.storage import StorageEndpoints
from renewal.errors import StoreUnavailable
from renewal.model import RenewalWindow


def _when(value: Any) -> dt.datetime | None:
    """An ordinary aware datetime from the SDK's datetime subclass (or None)."""
    if not isinstance(value, dt.datetime):
        return None
    plain = dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, value.tzinfo
    )
    return plain if plain.tzinfo else plain.replace(tzinfo=dt.UTC)


def window_to_entity(window: RenewalWindow) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": escape_key(window.vault),
        "RowKey": escape_key(window.name),
        "vault": window.vault,
        "name": window.name,
        "thumbprint": window.thumbprint,
        "issuer": window.issuer,
        "cert_id": window.cert_id,
        "checked_at": window.checked_at,
        "recheck_at": window.recheck_at,
    }
    optional = {"start": window.start, "end": window.end, "explanation_url": window.explanation_url}
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def entity_to_window(entity: Any) -> RenewalWindow | None:
    """The row as a window; None for a row this code cannot read (the CA is asked again, not trusted)."""
    try:
        checked_at, recheck_at = _when(entity["checked_at"]), _when(entity["recheck_at"])
        if checked_at is None or recheck_at is None:
            return None
        start, end = _when(entity.get("start")), _when(entity.get("end"))
        if (start is None) != (end is None) or (start is not None and end is not None and end <= start):
            return None
        return RenewalWindow(
            vault=str(entity["vault"]),
            name=str(entity["name"]),
            thumbprint=str(entity["thumbprint"]),
            issuer=str(entity["issuer"]),
            cert_id=str(entity.get("cert_id") or ""),
            checked_at=checked_at,
            recheck_at=recheck_at,
            start=start,
            end=end,
            explanation_url=entity.get("explanation_url") or None,
        )
    except (KeyError, TypeError, ValueError):
        return None


class TableRenewalWindows:
    def __init__(self, storage: StorageEndpoints) -> None:
        self._table = storage.table_client(settings.RENEWAL_WINDOWS_TABLE)

    def load(self, vault: str) -> dict[str, RenewalWindow]:
        from azure.core.exceptions import AzureError

        windows: dict[str, RenewalWindow] = {}
        try:
            for entity in self._table.query_entities("PartitionKey eq @vault", parameters={"vault": escape_key(vault)}):
                window = entity_to_window(entity)
                if window is not None:
                    windows[window.name] = window
        except AzureError as exc:
            raise StoreUnavailable(f"renewal windows of {vault}: {exc}") from exc
        return windows

    def get(self, vault: str, name: str) -> RenewalWindow | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entity = self._table.get_entity(escape_key(vault), escape_key(name))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StoreUnavailable(f"renewal window of {vault}/{name}: {exc}") from exc
        return entity_to_window(entity)

    def keep(self, window: RenewalWindow) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        try:
            self._table.upsert_entity(window_to_entity(window), mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StoreUnavailable(f"keeping the renewal window of {window.vault}/{window.name}: {exc}") from exc
