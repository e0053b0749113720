"""Fan a DeploymentNotice out to the deployers whose match applies; any failure raises so the
deployments queue retries the notice (receivers de-duplicate by its idempotency key)."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence

from renewal.errors import DeliveryFailed
from renewal.model import DeploymentNotice
from renewal.observability import log_event
from renewal.ports import Deployer

log = logging.getLogger("renewal.flow.deploy")


def applies(deployer_config: object, notice: DeploymentNotice) -> bool:
    vault = getattr(deployer_config, "vault", None)
    match = getattr(deployer_config, "match", "*")
    return (vault is None or vault == notice.vault) and fnmatch.fnmatchcase(notice.name, match)


def deliver_notice(notice: DeploymentNotice, deployers: Sequence[Deployer]) -> list[str]:
    """Deliver to every applicable deployer; returns their names; raises DeliveryFailed listing failures."""
    delivered: list[str] = []
    failures: list[str] = []
    for deployer in deployers:
        if not applies(getattr(deployer, "config", None), notice):
            continue
        try:
            deployer.deliver(notice)
            delivered.append(deployer.name)
        except Exception as exc:  # noqa: BLE001 - one deployer's failure must not hide the others
            failures.append(f"{deployer.name}: {exc}")
            log_event(
                log,
                "deploy.failed",
                level=logging.WARNING,
                deployer=deployer.name,
                vault=notice.vault,
                certificate=notice.name,
                version=notice.new_version,
                error=str(exc),
            )
    if failures:
        raise DeliveryFailed("; ".join(failures))
    return delivered
