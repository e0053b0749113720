"""One vault's certificate-create budget, shared by every Function instance: Key Vault accepts 20 creates
per vault per 10 s (429 without Retry-After beyond that), and the queue trigger scales out to many
instances, each of which would otherwise pace as if it owned the vault.

The budget is one row per vault in the ``createbudget`` table: the start times of the last ``limit``
creates. Taking a slot reads the row, computes the first start that keeps every window within the limit
(as the in-process ``CreatePacer`` does), appends it and writes the row back only if nobody wrote it in
between (ETag compare-and-swap); a lost race reads again. A slot costs two table transactions (and two
more per lost race); nothing is held, so a crashed instance leaves no lease behind, only a slot it took.
Instances' clocks are NTP-synchronised; ``margin_seconds`` covers their skew and the trip to Key Vault.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from renewal import settings
from renewal.azure.keyvault import CREATE_LIMIT, CREATE_WINDOW_SECONDS
from renewal.azure.storage import StorageEndpoints

PARTITION = "vault"
MAX_RACES = 50


class TableCreatePacer:
    """``reserve()`` -> seconds to wait before sending a create, agreed with every other instance."""

    def __init__(
        self,
        storage: StorageEndpoints,
        vault: str,
        *,
        limit: int = CREATE_LIMIT,
        window_seconds: float = CREATE_WINDOW_SECONDS,
        margin_seconds: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = storage.table_client(settings.CREATE_BUDGET_TABLE)
        self.vault = vault
        self.limit = limit
        self.window = window_seconds + margin_seconds
        self._clock = clock
        self.transactions = 0
        """Table transactions this pacer made (for the benchmark's cost figure)."""

    def _read(self) -> tuple[list[float], str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        self.transactions += 1
        try:
            entity = self._table.get_entity(PARTITION, self.vault)
        except ResourceNotFoundError:
            return [], None
        return [float(s) for s in json.loads(entity.get("slots") or "[]")], entity.metadata["etag"]

    def _write(self, slots: list[float], etag: str | None) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": self.vault, "slots": json.dumps(slots)}
        self.transactions += 1
        try:
            if etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    def reserve(self) -> float:
        for race in range(MAX_RACES):
            slots, etag = self._read()
            now = self._clock()
            start = now
            recent = sorted(s for s in slots if s > now - self.window)
            if len(recent) >= self.limit:
                start = max(now, recent[-self.limit] + self.window)
            if self._write([*recent, start][-self.limit :], etag):
                return max(0.0, start - now)
            time.sleep(random.uniform(0, 0.02 * (race + 1)))
        raise RuntimeError(f"create budget of {self.vault}: {MAX_RACES} lost races in a row")
