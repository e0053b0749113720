"""Structured logs: one event name plus fields, with vault/certificate/version/request_id on every
renewal line. Values that look like credentials are never passed here; ``redact`` is a last guard."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

_SECRETISH = re.compile(r"(?i)(token|secret|password|pwd|hmac|key|authorization|signature)")


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _SECRETISH.search(k) and k not in _SAFE_KEYS else v) for k, v in fields.items()}


_SAFE_KEYS = frozenset({"idempotency_key", "key_type", "key_size"})


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with fields as a JSON tail and as ``extra`` (App Insights customDimensions)."""
    clean = redact({k: v for k, v in fields.items() if v is not None})
    logger.log(
        level,
        "%s %s",
        event,
        json.dumps(clean, default=str, sort_keys=True),
        extra={"event": event, **{f"renewal_{k}": v for k, v in clean.items()}},
    )
