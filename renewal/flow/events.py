"""Key Vault Event Grid events (Event Grid schema or CloudEvents 1.0) -> renewal jobs.

A malformed event, an event for a vault that is not configured, or an object that is not a
certificate becomes an :class:`EventRejected` / :class:`EventIgnored` naming the field; it never
raises anything else and never touches another certificate.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from renewal.errors import EventRejected
from renewal.model import CERTIFICATE_NAME, VAULT_NAME, RenewalJob

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
EXPIRED = "Microsoft.KeyVault.CertificateExpired"
NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
RENEWAL_EVENT_TYPES = frozenset({NEAR_EXPIRY, EXPIRED})
_VERSION = re.compile(r"[0-9a-zA-Z]{1,64}")


@dataclass(frozen=True)
class EventIgnored:
    """A well-formed event the service deliberately does nothing with (another type or object)."""

    reason: str
    event_id: str


@dataclass(frozen=True)
class CertificateEvent:
    event_id: str
    event_type: str
    vault: str
    name: str
    version: str | None
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    topic: str

    def to_job(self) -> RenewalJob:
        return RenewalJob(
            vault=self.vault, name=self.name, reason="event", trigger_id=self.event_id, version=self.version or ""
        )


def _epoch(data: Mapping[str, Any], key: str) -> dt.datetime | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise EventRejected(f"data.{key}", "must be a Unix timestamp (number or numeric string)")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise EventRejected(f"data.{key}", f"must be a Unix timestamp, got {value!r:.40}") from None
    if not 0 <= seconds < 253_402_300_800:  # year 10000
        raise EventRejected(f"data.{key}", "timestamp out of range")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _text(data: Mapping[str, Any], key: str, *, field: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise EventRejected(field, "required string is missing")
    return value


def _same_origin(url: str, vault_url: str) -> bool:
    """Scheme, host and port as Key Vault names them (default port 443, host case-insensitive)."""
    a, b = urlsplit(url), urlsplit(vault_url)
    try:
        return (a.scheme.lower(), a.hostname, a.port or 443) == (b.scheme.lower(), b.hostname, b.port or 443)
    except ValueError:  # a port that is not a number
        return False


def _check_object_id(data: Mapping[str, Any], vault: str, vault_url: str, name: str, version: str | None) -> None:
    """``data.Id`` must be the named certificate in the configured vault's own URL: an event cannot point
    the service at another host, another vault or another object than the one it names."""
    object_id = _text(data, "Id", field="data.Id")
    parts = urlsplit(object_id)
    if parts.username or parts.password or parts.query or parts.fragment or not _same_origin(object_id, vault_url):
        raise EventRejected("data.Id", f"{object_id!r:.120} is not in vault {vault!r} ({vault_url})")
    segments = [s.lower() for s in parts.path.strip("/").split("/")]
    named = segments[:2] == ["certificates", name.lower()]
    versioned = len(segments) == 2 or (len(segments) == 3 and (version is None or segments[2] == version.lower()))
    if not (named and versioned):
        raise EventRejected("data.Id", f"{object_id!r:.120} is not certificate {name!r} of vault {vault!r}")


def parse_event(
    event: Mapping[str, Any] | Any, *, configured_vaults: Mapping[str, str]
) -> CertificateEvent | EventIgnored:
    """Accept one event in either schema; raise EventRejected naming the bad field.

    ``configured_vaults`` maps each configured vault name to its URL."""
    if not isinstance(event, Mapping):
        raise EventRejected("event", f"must be a JSON object, got {type(event).__name__}")
    cloud = "specversion" in event
    type_key = "type" if cloud else "eventType"
    event_type = event.get(type_key)
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected(type_key, "required string is missing")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventRejected("id", "required string is missing")
    if event_type not in RENEWAL_EVENT_TYPES:
        return EventIgnored(f"event type {event_type} is not a renewal trigger", event_id)
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise EventRejected("data", "must be an object")
    object_type = data.get("ObjectType")
    if object_type is not None and str(object_type).lower() != "certificate":
        return EventIgnored(f"object type {object_type!r} is not a certificate", event_id)
    vault = _text(data, "VaultName", field="data.VaultName")
    if not VAULT_NAME.fullmatch(vault):
        raise EventRejected("data.VaultName", f"not a vault name: {vault!r:.60}")
    if vault not in configured_vaults:
        raise EventRejected("data.VaultName", f"vault {vault!r} is not configured")
    name = _text(data, "ObjectName", field="data.ObjectName")
    if not CERTIFICATE_NAME.fullmatch(name):
        raise EventRejected("data.ObjectName", f"not a certificate name: {name!r:.60}")
    version = data.get("Version")
    if version is not None and (not isinstance(version, str) or not _VERSION.fullmatch(version)):
        raise EventRejected("data.Version", f"not a version id: {version!r:.60}")
    _check_object_id(data, vault, configured_vaults[vault], name, version or None)
    topic_key = "source" if cloud else "topic"
    topic = event.get(topic_key) or ""
    if not isinstance(topic, str):
        raise EventRejected(topic_key, "must be a string")
    if topic and not topic.lower().endswith(f"/vaults/{vault.lower()}"):
        raise EventRejected(topic_key, f"topic {topic!r:.120} is not the vault {vault!r}")
    return CertificateEvent(
        event_id=event_id,
        event_type=event_type,
        vault=vault,
        name=name,
        version=version or None,
        not_before=_epoch(data, "NBF"),
        expires_on=_epoch(data, "EXP"),
        topic=topic,
    )
