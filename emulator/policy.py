"""Certificate policies on the wire: validation like the service, and the defaults it fills in."""

from __future__ import annotations

import copy
import re
from typing import Any

from .crypto import KEY_USAGE_FLAGS
from .errors import bad_parameter

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]+$")
KEY_TYPES = {"RSA", "RSA-HSM", "EC", "EC-HSM"}
RSA_SIZES = {2048, 3072, 4096}
CURVE_SIZES = {"P-256": 256, "P-384": 384, "P-521": 521}
CONTENT_TYPES = {"application/x-pkcs12", "application/x-pem-file"}
ACTIONS = {"EmailContacts", "AutoRenew"}
OID = re.compile(r"^[0-2](\.[0-9]+)+$")
DEFAULT_EKUS = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]
DEFAULT_KEY_USAGE = ["digitalSignature", "keyEncipherment"]


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or len(name) > 127:
        raise bad_parameter(f"The certificate name '{name}' is invalid. It must match ^[0-9a-zA-Z-]+$.")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_parameter(f"Property {where} must be an object.")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_parameter(f"Property {where} must be an array of strings.")
    return list(value)


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_parameter(f"Property {where} must be an integer.")
    return value


def _bool(value: Any, where: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad_parameter(f"Property {where} must be a boolean.")
    return value


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        elif value is not None:
            out[key] = copy.deepcopy(value)
    return out


# Top-level policy fields the emulator reads; any other (platformManaged, fields of newer api-versions)
# is kept as sent and returned, as Key Vault does.
KNOWN_POLICY_FIELDS = frozenset(
    {"id", "key_props", "secret_props", "x509_props", "lifetime_actions", "issuer", "attributes"}
)


def normalize(raw: Any, *, require_subject: bool = True, derived: bool = False) -> dict[str, Any]:
    """Validate a wire policy and return it with the service's defaults filled in (no id/attributes).

    ``derived``: the policy Key Vault derives from an imported certificate, not one a user sent; values
    outside a user policy's ranges (a 30-year validity) are kept within them instead of refused."""
    policy = _obj(raw, "policy")
    if policy.get("platformManaged") is not None:
        _obj(policy["platformManaged"], "policy.platformManaged")
        require_subject = False  # the platform decides the certificate's names
    key = _obj(policy.get("key_props"), "policy.key_props")
    kty = key.get("kty") or "RSA"
    if kty not in KEY_TYPES:
        raise bad_parameter(f"Property policy.key_props.kty has invalid value '{kty}'.")
    size = _int(key.get("key_size"), "policy.key_props.key_size")
    crv = key.get("crv")
    if kty.startswith("EC"):
        crv = crv or {256: "P-256", 384: "P-384", 521: "P-521"}.get(size or 256)
        if crv not in CURVE_SIZES:
            raise bad_parameter(f"Property policy.key_props.crv has invalid value '{crv}'.")
        if size is not None and size != CURVE_SIZES[crv]:
            raise bad_parameter(f"Property policy.key_props.key_size {size} does not match curve {crv}.")
        size = CURVE_SIZES[crv]
    else:
        if crv is not None:
            raise bad_parameter("Property policy.key_props.crv is only valid for EC keys.")
        size = size or 2048
        if size not in RSA_SIZES:
            raise bad_parameter(f"Property policy.key_props.key_size has invalid value '{size}'.")
    exportable = _bool(key.get("exportable"), "policy.key_props.exportable")
    if exportable is None:
        exportable = not kty.endswith("-HSM")
    if exportable and kty.endswith("-HSM"):
        raise bad_parameter("HSM keys cannot be exportable.")
    key_props: dict[str, Any] = {
        "exportable": exportable,
        "kty": kty,
        "key_size": size,
        "reuse_key": bool(_bool(key.get("reuse_key"), "policy.key_props.reuse_key")),
    }
    if crv:
        key_props["crv"] = crv

    secret = _obj(policy.get("secret_props"), "policy.secret_props")
    content_type = secret.get("contentType") or "application/x-pkcs12"
    if content_type not in CONTENT_TYPES:
        raise bad_parameter(f"Property policy.secret_props.contentType has invalid value '{content_type}'.")

    x509_raw = _obj(policy.get("x509_props"), "policy.x509_props")
    subject = x509_raw.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise bad_parameter("Property policy.x509_props.subject must be a string.")
    sans_raw = _obj(x509_raw.get("sans"), "policy.x509_props.sans")
    sans = {}
    for field in ("emails", "dns_names", "upns", "uris", "ipAddresses"):
        values = _str_list(sans_raw.get(field), f"policy.x509_props.sans.{field}")
        if values:
            sans[field] = values
    if subject:
        from .crypto import parse_subject  # local: keeps the module import light

        try:
            parse_subject(subject)
        except ValueError as exc:
            raise bad_parameter(f"Property policy.x509_props.subject is invalid: {subject}") from exc
    elif require_subject and not sans:
        raise bad_parameter("Property policy.x509_props must have a subject or subject alternative names.")
    ekus = _str_list(x509_raw.get("ekus"), "policy.x509_props.ekus")
    for oid in ekus:
        if not OID.match(oid):
            raise bad_parameter(f"Property policy.x509_props.ekus has invalid value '{oid}'.")
    usages = _str_list(x509_raw.get("key_usage"), "policy.x509_props.key_usage")
    for usage in usages:
        if usage not in KEY_USAGE_FLAGS:
            raise bad_parameter(f"Property policy.x509_props.key_usage has invalid value '{usage}'.")
    months = _int(x509_raw.get("validity_months"), "policy.x509_props.validity_months")
    months = 12 if months is None else months
    if derived:
        months = min(max(months, 1), 1200)
    if not 1 <= months <= 1200:
        raise bad_parameter("Property policy.x509_props.validity_months must be between 1 and 1200.")
    x509_props: dict[str, Any] = {
        "subject": subject or "",
        "sans": sans,
        "ekus": ekus if "ekus" in x509_raw else list(DEFAULT_EKUS),
        "key_usage": usages if "key_usage" in x509_raw else list(DEFAULT_KEY_USAGE),
        "validity_months": months,
    }

    issuer_raw = _obj(policy.get("issuer"), "policy.issuer")
    issuer_name = issuer_raw.get("name") or "Unknown"
    if not isinstance(issuer_name, str):
        raise bad_parameter("Property policy.issuer.name must be a string.")
    issuer: dict[str, Any] = {"name": issuer_name}
    for field in ("cty",):
        if isinstance(issuer_raw.get(field), str):
            issuer[field] = issuer_raw[field]
    if isinstance(issuer_raw.get("cert_transparency"), bool):
        issuer["cert_transparency"] = issuer_raw["cert_transparency"]

    actions_raw = policy.get("lifetime_actions")
    if actions_raw is None:
        action = "AutoRenew" if issuer_name.lower() == "self" else "EmailContacts"
        actions = [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": action}}]
    else:
        actions = _lifetime_actions(actions_raw, months)

    attrs = _obj(policy.get("attributes"), "policy.attributes")
    enabled = _bool(attrs.get("enabled"), "policy.attributes.enabled")
    kept = {k: v for k, v in policy.items() if k not in KNOWN_POLICY_FIELDS}
    return {
        **kept,
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": actions,
        "issuer": issuer,
        "attributes": {"enabled": True if enabled is None else enabled},
    }


def _lifetime_actions(raw: Any, months: int) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise bad_parameter("Property policy.lifetime_actions must be an array.")
    actions = []
    for i, item in enumerate(raw):
        where = f"policy.lifetime_actions[{i}]"
        item = _obj(item, where)
        trigger = _obj(item.get("trigger"), f"{where}.trigger")
        pct = _int(trigger.get("lifetime_percentage"), f"{where}.trigger.lifetime_percentage")
        days = _int(trigger.get("days_before_expiry"), f"{where}.trigger.days_before_expiry")
        if (pct is None) == (days is None):
            raise bad_parameter(f"{where}.trigger needs exactly one of lifetime_percentage and days_before_expiry.")
        if pct is not None and not 1 <= pct <= 99:
            raise bad_parameter(f"{where}.trigger.lifetime_percentage must be between 1 and 99.")
        if days is not None and not 1 <= days <= months * 27:
            raise bad_parameter(f"{where}.trigger.days_before_expiry must be between 1 and {months * 27}.")
        action = _obj(item.get("action"), f"{where}.action").get("action_type")
        if action not in ACTIONS:
            raise bad_parameter(f"{where}.action.action_type has invalid value '{action}'.")
        actions.append(
            {
                "trigger": {"lifetime_percentage": pct} if pct is not None else {"days_before_expiry": days},
                "action": {"action_type": action},
            }
        )
    return actions
