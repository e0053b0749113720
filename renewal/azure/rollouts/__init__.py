"""Rollout deployers: make Azure services that use a Key Vault certificate take a new version, and read back
the thumbprint each one has bound (DESIGN.md, "Deployers").

One module per service, each one ARM client's few calls: ``application_gateway``, ``app_service``,
``api_management``, ``front_door``. A pass never blocks on a long-running operation: it is followed up on the
next pass of the re-queued notice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from renewal.config import (
    ApiManagementDeployerConfig,
    ApplicationGatewayDeployerConfig,
    AppServiceDeployerConfig,
    FrontDoorDeployerConfig,
    RolloutDeployerConfig,
)
from renewal.ports import TargetRollout

if TYPE_CHECKING:
    from renewal.azure.rollouts.rollout import AzureRollout


def build_rollout(
    config: RolloutDeployerConfig,
    *,
    credential_factory: Callable[[], Any],
    issuer_roots: Callable[[str], list[Any]],
    clock: Callable[[], dt.datetime] | None = None,
) -> TargetRollout:
    """The rollout deployer for a config section."""
    from renewal.azure.rollouts.api_management import ApiManagementRollout
    from renewal.azure.rollouts.app_service import AppServiceRollout
    from renewal.azure.rollouts.application_gateway import ApplicationGatewayRollout
    from renewal.azure.rollouts.front_door import FrontDoorRollout

    kinds: dict[type, type[AzureRollout]] = {
        ApplicationGatewayDeployerConfig: ApplicationGatewayRollout,
        AppServiceDeployerConfig: AppServiceRollout,
        ApiManagementDeployerConfig: ApiManagementRollout,
        FrontDoorDeployerConfig: FrontDoorRollout,
    }
    rollout = kinds.get(type(config))
    if rollout is None:
        raise TypeError(f"not a rollout deployer's configuration: {type(config).__name__}")
    return rollout(config, credential_factory=credential_factory, issuer_roots=issuer_roots, clock=clock)
