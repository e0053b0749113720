"""How Azure services name a Key Vault certificate, and whether a reference names the one a notice is about.

Two spellings occur: a secret URL (``https://<vault-host>/secrets/<name>[/<version>]``: Application Gateway,
API Management) and an ARM id of the vault (``.../providers/Microsoft.KeyVault/vaults/<vault>``, with the
secret name beside it or after ``/secrets/``: App Service, Front Door). A certificate's secret has the
certificate's name. A secret URL with a version is pinned: the service never picks up a later version.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from renewal.model import DeploymentNotice

_VAULT_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)"
    r"(?:/secrets/(?P<secret>[^/]+)(?:/.*)?)?/?$",
    re.IGNORECASE,
)


KEY_VAULT_DNS_SUFFIXES = frozenset(
    {"vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net", "vault.microsoftazure.de"}
)


def _netloc(url_host: str, port: int | None) -> str:
    host = url_host.lower()
    return host if port in (None, 443) else f"{host}:{port}"


@dataclass(frozen=True)
class VaultUrlReference:
    """A Key Vault object URL as a service holds it."""

    url: str
    netloc: str
    """Host (and port, unless 443), lower-case."""
    collection: Literal["secrets", "certificates"]
    name: str
    version: str | None

    @property
    def pinned(self) -> bool:
        return self.version is not None

    @property
    def misreferenced(self) -> bool:
        """A ``/certificates/`` URL where the service needs the certificate's secret."""
        return self.collection == "certificates"


def parse_vault_url(value: object) -> VaultUrlReference | None:
    """``https://<host>/(secrets|certificates)/<name>[/<version>]``, or None for anything else."""
    if not isinstance(value, str):
        return None
    parsed = urlparse(value.strip())
    if parsed.scheme.lower() != "https" or not parsed.hostname:
        return None
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) not in (2, 3) or parts[0].lower() not in ("secrets", "certificates"):
        return None
    try:
        port = parsed.port
    except ValueError:
        return None
    collection: Literal["secrets", "certificates"] = "secrets" if parts[0].lower() == "secrets" else "certificates"
    return VaultUrlReference(
        url=value,
        netloc=_netloc(parsed.hostname, port),
        collection=collection,
        name=parts[1],
        version=parts[2] if len(parts) == 3 else None,
    )


@dataclass(frozen=True)
class VaultIdReference:
    """An ARM id of a vault, or of a secret in it."""

    vault: str
    secret: str | None


def parse_vault_id(value: object) -> VaultIdReference | None:
    if not isinstance(value, str):
        return None
    found = _VAULT_ID.match(value.strip())
    return VaultIdReference(found["vault"], found["secret"]) if found else None


@dataclass(frozen=True)
class NoticedCertificate:
    """The certificate a notice is about, as references to it are compared."""

    vault: str
    """The configured vault name."""
    name: str
    version: str
    vault_url: str
    """What precedes ``/certificates/`` in the notice's certificate id (no trailing slash)."""
    netloc: str

    @classmethod
    def of(cls, notice: DeploymentNotice) -> NoticedCertificate:
        vault_url = notice.certificate_id.split("/certificates/", 1)[0].rstrip("/")
        parsed = urlparse(vault_url)
        try:
            port = parsed.port
        except ValueError:
            port = None
        return cls(
            vault=notice.vault,
            name=notice.name,
            version=notice.new_version,
            vault_url=vault_url,
            netloc=_netloc(parsed.hostname or "", port),
        )

    @property
    def label(self) -> str:
        return f"{self.vault}/{self.name}"

    @property
    def vault_names(self) -> set[str]:
        """Names an ARM vault id may give this vault: the configured name, and the first label of the vault's
        DNS name (``contoso-kv`` of ``contoso-kv.vault.azure.net``)."""
        names = {self.vault.lower()}
        host = urlparse(self.vault_url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if "." in host:
                names.add(host.split(".", 1)[0].lower())
        return names

    def named_by_url(self, reference: VaultUrlReference | None) -> bool:
        """Same vault (its URL's host, or ``<vault name>.<Key Vault DNS suffix>``) and the certificate's name."""
        if reference is None or reference.name.lower() != self.name.lower():
            return False
        if reference.netloc == self.netloc:
            return True
        label, _, suffix = reference.netloc.partition(".")
        return suffix in KEY_VAULT_DNS_SUFFIXES and label in self.vault_names

    def named_by_vault_id(self, vault_id: str | None, secret_name: str | None) -> bool:
        reference = parse_vault_id(vault_id)
        if reference is None:
            return False
        secret = reference.secret if reference.secret is not None else secret_name
        return reference.vault.lower() in self.vault_names and (secret or "").lower() == self.name.lower()

    def versionless_secret_url(self, reference: VaultUrlReference) -> str:
        """The versionless secret URL for a reference to this certificate, spelled with the reference's host."""
        parsed = urlparse(reference.url.strip())
        return f"https://{parsed.netloc}/secrets/{reference.name}"

    def describe_pin(self, where: str, reference: VaultUrlReference) -> str:
        """Why ``reference`` will not follow new versions, and the fix."""
        fix = self.versionless_secret_url(reference)
        if reference.misreferenced:
            return f"{where} {reference.url} names the certificate, not its secret: set it to {fix}"
        return f"{where} {reference.url} is pinned to version {reference.version} and never rotates: set it to {fix}"
