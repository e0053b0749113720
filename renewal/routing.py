"""Which configured issuer renews a certificate: its ``renewal-issuer`` tag, else the first matching
route (name glob, vault), else the vault's default, else the global default."""

from __future__ import annotations

from collections.abc import Mapping

from .config import RenewalConfig
from .policy import ISSUER_TAG


class NoRoute(ValueError):
    """No issuer applies, or the tag names an issuer that is not configured."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def route_issuer(config: RenewalConfig, vault: str, name: str, tags: Mapping[str, str] | None) -> str:
    tagged = (tags or {}).get(ISSUER_TAG)
    if tagged is not None:
        if tagged not in config.issuer_names():
            raise NoRoute(
                f"tags.{ISSUER_TAG}",
                f"{vault}/{name} names issuer {tagged!r}, which is not configured "
                f"(configured: {sorted(config.issuer_names())})",
            )
        return tagged
    for route in config.routes:
        if route.applies(vault, name):
            return route.issuer
    vault_config = config.vault(vault)
    if vault_config is not None and vault_config.default_issuer:
        return vault_config.default_issuer
    if config.default_issuer:
        return config.default_issuer
    raise NoRoute("routes", f"no route, vault default or default_issuer applies to {vault}/{name}")
