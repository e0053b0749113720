"""The ``rollouts`` table: each deployer target's last outcome per certificate version (implements RolloutLog).

PartitionKey vault|name (as the ``renewals`` table), RowKey ``version|<sha256 of deployer and target>`` (a
resource id is longer than a key may be and holds "/"). A target's row is replaced at every pass, so a
re-driven notice skips the targets already done and an operator sees where each rollout stands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from renewal import settings
from renewal.azure.ledger import MAX_ERROR_CHARS, escape_key, partition_key, plain_datetime
from renewal.azure.storage import StorageEndpoints
from renewal.model import RolloutRecord, RolloutState

_MIN_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def row_key(version: str, deployer: str, target: str) -> str:
    digest = hashlib.sha256(f"{deployer}\0{target}".encode()).hexdigest()[:32]
    return f"{escape_key(version)}|{digest}"


def _plain(value: Any) -> dt.datetime:
    plain = plain_datetime(value)
    if plain is None:
        raise ValueError(f"not a time: {value!r}")
    return plain


def record_to_entity(record: RolloutRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(record.vault, record.name),
        "RowKey": row_key(record.version, record.deployer, record.target),
        "vault": record.vault,
        "name": record.name,
        "version": record.version,
        "deployer": record.deployer,
        "target": record.target,
        "state": record.state.value,
        "detail": record.detail[:MAX_ERROR_CHARS],
        "started_at": record.started_at,
        "updated_at": record.updated_at,
        "attempts": int(record.attempts),
    }
    optional = {"thumbprint": record.thumbprint, "operation": record.operation}
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def entity_to_record(entity: Any) -> RolloutRecord:
    return RolloutRecord(
        vault=str(entity["vault"]),
        name=str(entity["name"]),
        version=str(entity["version"]),
        deployer=str(entity["deployer"]),
        target=str(entity["target"]),
        state=RolloutState(entity["state"]),
        detail=str(entity.get("detail") or ""),
        thumbprint=entity.get("thumbprint") or None,
        operation=entity.get("operation") or None,
        started_at=_plain(entity["started_at"]),
        updated_at=_plain(entity["updated_at"]),
        attempts=int(entity.get("attempts") or 0),
    )


class TableRolloutLog:
    def __init__(self, storage: StorageEndpoints) -> None:
        self._table = storage.table_client(settings.ROLLOUTS_TABLE)

    def of_version(self, vault: str, name: str, version: str) -> dict[tuple[str, str], RolloutRecord]:
        entities = self._table.query_entities(
            "PartitionKey eq @pk and version eq @v", parameters={"pk": partition_key(vault, name), "v": version}
        )
        records = (entity_to_record(e) for e in entities)
        return {r.key: r for r in records}

    def record(self, record: RolloutRecord) -> None:
        from azure.data.tables import UpdateMode

        self._table.upsert_entity(record_to_entity(record), mode=UpdateMode.REPLACE)

    def history(self, vault: str, name: str) -> list[RolloutRecord]:
        """Every target's record for every version of one certificate, newest first."""
        entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": partition_key(vault, name)})
        return sorted((entity_to_record(e) for e in entities), key=lambda r: r.updated_at, reverse=True)

    def unsettled(self, *, limit: int = 100) -> list[RolloutRecord]:
        """Targets failed or still in progress, most recently updated first (a server-side filtered scan)."""
        entities = self._table.query_entities(
            "state eq @f or state eq @p",
            parameters={"f": RolloutState.FAILED.value, "p": RolloutState.IN_PROGRESS.value},
        )
        records = sorted((entity_to_record(e) for e in entities), key=lambda r: r.updated_at, reverse=True)
        return records[:limit]
