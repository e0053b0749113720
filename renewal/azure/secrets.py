"""Resolves secret references in config: ``{"setting": NAME}``, ``{"file": PATH}`` or
``{"secret": "https://<configuration vault>/secrets/<name>[/<version>]"}``.

Promise 4: the only vault the service reads secrets from is the configured configuration vault.
A reference into any other vault (in particular a certificate vault) is refused before any call.
This is the only module that imports ``azure.keyvault.secrets``; a test enforces that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from renewal.errors import SecretReferenceError


class ConfigSecretResolver:
    def __init__(
        self,
        *,
        configuration_vault: str | None,
        certificate_vaults: set[str],
        credential_factory: Callable[[], Any] | None = None,
        environ: Mapping[str, str] | None = None,
        connection_verify: str | None = None,
    ) -> None:
        self._config_host = urlparse(configuration_vault).hostname if configuration_vault else None
        self._config_url = configuration_vault.rstrip("/") if configuration_vault else None
        self._cert_hosts = {urlparse(u).hostname for u in certificate_vaults}
        self._credential_factory = credential_factory
        self._environ = environ if environ is not None else os.environ
        self._verify = connection_verify
        self._client: Any = None
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}

    def resolve(self, reference: Any, *, field: str) -> str:
        if not isinstance(reference, dict) or len(reference) != 1:
            raise SecretReferenceError(f"{field}: not a secret reference")
        kind, target = next(iter(reference.items()))
        if not isinstance(target, str) or not target:
            raise SecretReferenceError(f"{field}.{kind}: must be a non-empty string")
        if kind == "setting":
            value = self._environ.get(target)
            if not value:
                raise SecretReferenceError(f"{field}: app setting {target!r} is not set")
            return value
        if kind == "file":
            try:
                return Path(target).read_text()
            except OSError as exc:
                raise SecretReferenceError(f"{field}: cannot read file {target!r} ({exc.strerror})") from None
        if kind == "secret":
            return self._vault_secret(target, field=field)
        raise SecretReferenceError(f"{field}: unknown reference kind {kind!r}")

    def _vault_secret(self, uri: str, *, field: str) -> str:
        parsed = urlparse(uri)
        parts = [p for p in parsed.path.split("/") if p]
        if parsed.scheme != "https" or len(parts) not in (2, 3) or parts[0] != "secrets":
            raise SecretReferenceError(f"{field}: {uri!r} is not a Key Vault secret URI")
        if parsed.hostname in self._cert_hosts:
            raise SecretReferenceError(
                f"{field}: refused: {parsed.hostname} is a certificate vault; the service reads no secrets there"
            )
        if self._config_host is None or parsed.hostname != self._config_host:
            raise SecretReferenceError(
                f"{field}: refused: secrets are read only from the configuration vault "
                f"({self._config_host or 'configuration_vault is not set'})"
            )
        if uri in self._cache:
            return self._cache[uri]
        with self._lock:
            if self._client is None:
                from azure.keyvault.secrets import SecretClient

                if self._credential_factory is None:
                    raise SecretReferenceError(f"{field}: no credential to read the configuration vault")
                kwargs = {"connection_verify": self._verify} if self._verify else {}
                self._client = SecretClient(self._config_url, self._credential_factory(), **kwargs)
        version = parts[2] if len(parts) == 3 else None
        try:
            value = self._client.get_secret(parts[1], version).value
        except Exception as exc:  # noqa: BLE001 - the SDK message may be long; keep the field and type
            raise SecretReferenceError(f"{field}: reading {parts[1]!r} failed ({type(exc).__name__})") from None
        if not value:
            raise SecretReferenceError(f"{field}: secret {parts[1]!r} is empty")
        self._cache[uri] = value
        return value
