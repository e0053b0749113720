"""Which configured issuer renews a certificate: its ``renewal-issuer`` tag, else the first matching
route (name glob, vault), else the vault's default, else the global default."""

from __future__ import annotations

from collections.abc import Mapping

from renewal.config import RenewalConfig
from renewal.errors import NoRoute
from renewal.flow.due import ISSUER_TAG


def routed_issuer_or_none(config: RenewalConfig, vault: str, name: str, tags: Mapping[str, str] | None) -> str | None:
    """The issuer, or None where no route applies (for views that show, rather than act on, a route)."""
    try:
        return route_issuer(config, vault, name, tags)
    except NoRoute:
        return None


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
