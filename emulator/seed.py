"""Bulk seeding for benchmarks: thousands of completed certificates without key generation or signing."""

from __future__ import annotations

from typing import Any

from . import policy
from .clock import Clock
from .errors import bad_parameter
from .store import Certificate, Vault, Version, new_id


def _int(spec: dict[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_parameter(f"Seed field {key} must be an integer.")
    return value


def seed(vault: Vault, spec: dict[str, Any], clock: Clock) -> int:
    """Create completed certificates from ``spec``; returns how many were created.

    ``spec``: ``count`` and ``prefix`` (names ``<prefix>-<n>``, from ``start``) or ``certificates``
    (a list of ``{"name", "not_before"?, "expires"?, "tags"?}``); defaults for every certificate:
    ``not_before``, ``expires`` (Unix seconds), ``tags``, ``enabled``, ``policy`` (wire policy).
    """
    now = clock.seconds()
    not_before = _int(spec, "not_before", now - 86400)
    expires = _int(spec, "expires", now + 365 * 86400)
    tags = spec.get("tags") or {}
    if not isinstance(tags, dict):
        raise bad_parameter("Seed field tags must be an object.")
    raw_policy = spec.get("policy") or {"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=seeded"}}
    base_policy = policy.normalize(raw_policy, require_subject=False)
    items = spec.get("certificates")
    if items is None:
        count, start, prefix = _int(spec, "count", 0), _int(spec, "start", 0), str(spec.get("prefix", "seed"))
        items = [{"name": f"{prefix}-{i}"} for i in range(start, start + count)]
    if not isinstance(items, list):
        raise bad_parameter("Seed field certificates must be an array.")
    content_type = base_policy["secret_props"]["contentType"]
    exportable = base_policy["key_props"]["exportable"]
    with vault.lock:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise bad_parameter("Each seeded certificate needs a name.")
            name = item["name"]
            policy.check_name(name)
            item_policy = dict(base_policy)
            subject = base_policy["x509_props"]["subject"] or f"CN={name}"
            version = Version(
                version=new_id(),
                created=now,
                updated=now,
                enabled=bool(item.get("enabled", spec.get("enabled", True))),
                not_before=int(item.get("not_before", not_before)),
                expires=int(item.get("expires", expires)),
                tags=dict(item.get("tags", tags)),
                content_type=content_type,
                exportable=exportable,
                subject=subject,
            )
            cert = vault.certificates.get(name) or Certificate(name, item_policy, now, now)
            cert.versions[version.version] = version
            cert.current = version.version
            vault.certificates[name] = cert
    return len(items)
