"""Field types every client's config model shares: secret references and PEM-or-path values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

REFERENCE_KINDS = frozenset({"file", "setting", "secret"})
REFERENCE_HELP = 'must be a secret reference: {"file": path} | {"setting": NAME} | {"secret": URI}'


def is_secret_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in REFERENCE_KINDS


def check_secret_reference(value: Any) -> Any:
    """Pydantic validator: a secret is never a literal in config, only a reference to one."""
    if value is not None and not is_secret_reference(value):
        raise ValueError(REFERENCE_HELP)
    return value


SecretRef = Annotated[Any, AfterValidator(check_secret_reference)]
"""A required or optional (``SecretRef | None``) secret reference field."""


def check_http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
"""A CA endpoint base URL; the trailing slash is dropped so paths can be appended."""


def pem_text(value: str) -> str:
    """Public PEM material given inline or as a file path."""
    return value if "-----BEGIN" in value else Path(value).read_text()
