"""Renders stored objects as the service's JSON bundles (ids are built from the vault's base URL)."""

from __future__ import annotations

import base64
from typing import Any

from .store import RECOVERABLE_DAYS, Certificate, Version

RECOVERY_LEVEL = "Recoverable+Purgeable"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def version_attributes(v: Version) -> dict[str, Any]:
    return {
        "enabled": v.enabled,
        "nbf": v.not_before,
        "exp": v.expires,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
    }


def policy(base: str, cert: Certificate) -> dict[str, Any]:
    body = dict(cert.policy)
    body["id"] = f"{base}/certificates/{cert.name}/policy"
    body["attributes"] = dict(cert.policy.get("attributes", {"enabled": True})) | {
        "created": cert.policy_created,
        "updated": cert.policy_updated,
    }
    return body


def bundle(base: str, cert: Certificate, v: Version) -> dict[str, Any]:
    out = {
        "id": f"{base}/certificates/{cert.name}/{v.version}",
        "kid": f"{base}/keys/{cert.name}/{v.version}",
        "sid": f"{base}/secrets/{cert.name}/{v.version}",
        "x5t": v.x5t(),
        "cer": v.cer_b64(),
        "attributes": version_attributes(v),
        "tags": v.tags,
        "policy": policy(base, cert),
        "preserveCertOrder": cert.preserve_order,
    }
    if cert.pending is not None:
        out["pending"] = {"id": f"{base}/certificates/{cert.name}/pending"}
    return out


def pending_bundle(base: str, cert: Certificate) -> dict[str, Any]:
    """A certificate whose first version is not merged yet: shown disabled, without cer or x5t."""
    assert cert.pending is not None
    p = cert.pending
    return {
        "id": f"{base}/certificates/{cert.name}/{p.version}",
        "kid": f"{base}/keys/{cert.name}/{p.version}",
        "sid": f"{base}/secrets/{cert.name}/{p.version}",
        "attributes": {
            "enabled": False,
            "created": cert.policy_created,
            "updated": cert.policy_updated,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        },
        "tags": p.tags,
        "policy": policy(base, cert),
        "pending": {"id": f"{base}/certificates/{cert.name}/pending"},
        "preserveCertOrder": cert.preserve_order,
    }


def item(base: str, cert: Certificate, v: Version | None, *, with_version: bool) -> dict[str, Any]:
    """List items carry only id, attributes, tags and x5t."""
    if v is None:  # pending-only certificate listed with includePending=true
        return {k: val for k, val in pending_bundle(base, cert).items() if k in ("attributes", "tags")} | {
            "id": f"{base}/certificates/{cert.name}"
        }
    suffix = f"/{v.version}" if with_version else ""
    return {
        "id": f"{base}/certificates/{cert.name}{suffix}",
        "attributes": version_attributes(v),
        "tags": v.tags,
        "x5t": v.x5t(),
    }


def operation(base: str, cert: Certificate) -> dict[str, Any]:
    assert cert.pending is not None
    p = cert.pending
    out: dict[str, Any] = {
        "id": f"{base}/certificates/{cert.name}/pending",
        "issuer": p.issuer,
        "csr": b64(p.csr),
        "cancellation_requested": p.cancellation_requested,
        "status": p.status,
        "status_details": p.status_details,
        "request_id": p.request_id,
    }
    if p.target:
        out["target"] = p.target
    if p.error:
        out["error"] = p.error
    return out


def deleted_fields(base: str, cert: Certificate) -> dict[str, Any]:
    return {
        "recoveryId": f"{base}/deletedcertificates/{cert.name}",
        "deletedDate": cert.deleted_date,
        "scheduledPurgeDate": cert.scheduled_purge,
    }


def secret(base: str, cert: Certificate, v: Version, value: str) -> dict[str, Any]:
    return {
        "value": value,
        "contentType": v.content_type,
        "id": f"{base}/secrets/{cert.name}/{v.version}",
        "attributes": version_attributes(v),
        "tags": v.tags,
        "kid": f"{base}/keys/{cert.name}/{v.version}",
        "managed": True,
    }
