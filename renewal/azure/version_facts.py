"""Kept certificate versions (implements VersionFacts) in the ``versionfacts`` table of the app's account.

One row per certificate (partition: vault, row: name) holding its current version as last read: thumbprint,
and as one JSON property the version id, public certificate, attributes, tags and policy, with the time of
that read. A view of the
estate lists each vault and loads its partition (one query, 1,000 rows a page) instead of reading every
certificate from Key Vault; a row is replaced when the listing shows another version. Writes go in table
transactions of up to 100 rows (one partition each), so the first view of 20,000 certificates costs 200
storage calls, not 20,000.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from renewal import settings
from renewal.errors import StoreUnavailable
from renewal.model import (
    CertificateVersion,
    KeptVersion,
    LeafFacts,
    LifetimeTrigger,
    PolicySpec,
    SubjectAlternativeNames,
)

BATCH = 100  # Table storage's limit on one transaction


def policy_to_json(policy: PolicySpec | None) -> str:
    try:
        return _policy_json(policy)
    except TypeError:  # a policy built with a list somewhere is not hashable: the same text, uncached
        return _policy_json.__wrapped__(policy)


@functools.lru_cache(maxsize=1024)
def _policy_json(policy: PolicySpec | None) -> str:
    """Cached (PolicySpec is frozen, so equal policies hash alike): ``asdict`` walks every nested field, and a
    first view keeps thousands of versions that share a handful of policies."""
    return json.dumps(dataclasses.asdict(policy)) if policy is not None else ""


@functools.lru_cache(maxsize=1024)
def policy_from_json(text: str) -> PolicySpec | None:
    """Cached: most certificates of an estate share a handful of policies (and PolicySpec is frozen)."""
    if not text:
        return None
    data: dict[str, Any] = json.loads(text)
    data["sans"] = SubjectAlternativeNames(**{k: tuple(v) for k, v in data.get("sans", {}).items()})
    data["lifetime_triggers"] = tuple(LifetimeTrigger(**t) for t in data.get("lifetime_triggers", ()))
    data["ekus"] = tuple(data.get("ekus", ()))
    data["key_usage"] = tuple(data.get("key_usage", ()))
    return PolicySpec(**data)


def _entity(vault: str, version: CertificateVersion, read_at: dt.datetime) -> dict[str, Any]:
    # One JSON property rather than a dozen typed ones: the Tables SDK converts each property of each row on
    # the way back, and a view loads tens of thousands of rows.
    facts = {
        "version": version.version,
        "id": version.id,
        "cer": base64.b64encode(version.cer).decode(),
        "enabled": version.enabled,
        "not_before": _iso(version.not_before),
        "expires_on": _iso(version.expires_on),
        "created_on": _iso(version.created_on),
        "tags": version.tags,
        "policy": policy_to_json(version.policy),
        "read_at": read_at.isoformat(),
    }
    if version.leaf is not None:  # read by whoever read the version; without them a view parses the certificate
        facts["leaf"] = dict(vars(version.leaf))  # its fields are scalars: what asdict gives, at a tenth the cost
    return {
        "PartitionKey": vault,
        "RowKey": version.name,
        "thumbprint": hashlib.sha1(version.cer).hexdigest(),  # noqa: S324 - x5t is SHA-1 by definition
        "facts": json.dumps(facts, separators=(",", ":")),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _kept(vault: str, entity: Any) -> KeptVersion | None:
    try:
        facts = json.loads(entity["facts"])
        current = CertificateVersion(
            vault=vault,
            name=entity["RowKey"],
            version=facts["version"],
            id=facts["id"],
            cer=base64.b64decode(facts["cer"]),
            enabled=bool(facts["enabled"]),
            not_before=_when(facts["not_before"]),
            expires_on=_when(facts["expires_on"]),
            created_on=_when(facts["created_on"]),
            tags=dict(facts["tags"]),
            policy=policy_from_json(facts["policy"]),
            leaf=LeafFacts(**facts["leaf"]) if "leaf" in facts else None,
        )
        return KeptVersion(current, entity["thumbprint"], dt.datetime.fromisoformat(facts["read_at"]))
    except (KeyError, TypeError, ValueError):
        return None  # a row this code cannot read is read again from Key Vault, not trusted


class TableVersionFacts:
    def __init__(self, storage: Any) -> None:
        self._table = storage.table_client(settings.VERSION_FACTS_TABLE)

    def load(self, vault: str) -> dict[str, KeptVersion]:
        from azure.core.exceptions import HttpResponseError

        kept: dict[str, KeptVersion] = {}
        try:
            # Only the three properties read: the service's Timestamp and etag cost a conversion per row.
            rows = self._table.query_entities(
                "PartitionKey eq @vault", parameters={"vault": vault}, select=["RowKey", "thumbprint", "facts"]
            )
            for entity in rows:
                row = _kept(vault, entity)
                if row is not None:
                    kept[row.current.name] = row
        except HttpResponseError as exc:
            raise StoreUnavailable(f"version facts of {vault}: {exc.message}") from exc
        return kept

    def keep(self, vault: str, versions: Sequence[CertificateVersion], *, read_at: dt.datetime) -> None:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        entities = [_entity(vault, v, read_at) for v in versions]
        try:
            for start in range(0, len(entities), BATCH):
                batch = [("upsert", e) for e in entities[start : start + BATCH]]
                try:
                    self._table.submit_transaction(batch)
                except (ServiceRequestError, ServiceResponseError):
                    # A transaction is not retried by the SDK (a POST); upserts are idempotent, so once more.
                    self._table.submit_transaction(batch)
        except HttpResponseError as exc:
            raise StoreUnavailable(f"keeping version facts of {vault}: {exc.message}") from exc

    def forget(self, vault: str, names: Sequence[str]) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            for start in range(0, len(names), BATCH):
                batch = names[start : start + BATCH]
                self._table.submit_transaction([("delete", {"PartitionKey": vault, "RowKey": n}) for n in batch])
        except HttpResponseError as exc:
            raise StoreUnavailable(f"forgetting version facts of {vault}: {exc.message}") from exc
