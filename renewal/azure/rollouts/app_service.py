"""App Service (and Functions): make a Key Vault certificate resource re-read the vault's secret.

App Service syncs a ``Microsoft.Web/certificates`` resource imported from Key Vault within 24 hours. Re-PUTting
the resource with the same ``keyVaultId``, ``keyVaultSecretName``, ``serverFarmId`` and location (what the
portal's Sync does) makes it read the current version now; site bindings that had the old thumbprint follow.
Verified by the resource's ``thumbprint`` and ``keyVaultSecretStatus``. Multi-tenant App Service serves
clients that trust only public roots: a certificate from a private CA is skipped.
"""

from __future__ import annotations

from typing import Any

from renewal.azure.rollouts.rollout import AzureRollout, RolloutStep, properties
from renewal.config import AppServiceDeployerConfig
from renewal.model import RolloutOutcome

API_VERSION = "2025-05-01"
APP_SERVICE_PRINCIPAL = "abfa0a7c-a6b6-4736-8310-5855508787cd"
KEY_VAULT_CERTIFICATE_USER = "Key Vault Certificate User (db79e9a7-68ee-4b58-9aeb-b90e7c24fcba)"
PENDING_STATUSES = frozenset({"initialized", "waitingoncertificateorder"})
_STATUS_HINTS = {
    "azureserviceunauthorizedtoaccesskeyvault": (
        f"grant the App Service resource provider (app id {APP_SERVICE_PRINCIPAL}) {KEY_VAULT_CERTIFICATE_USER} "
        "on the vault"
    ),
    "operationnotpermittedonkeyvault": (
        "the vault refused App Service (its firewall must admit trusted Microsoft services)"
    ),
    "keyvaultsecretdoesnotexist": "the vault has no such secret",
    "keyvaultdoesnotexist": "the vault does not exist",
}


def sync_body(certificate: dict[str, Any]) -> dict[str, Any]:
    """The certificate resource with the fields a sync re-PUTs, as read."""
    props = properties(certificate)
    kept = {k: props[k] for k in ("keyVaultId", "keyVaultSecretName", "serverFarmId") if props.get(k) is not None}
    return {"location": certificate.get("location"), "properties": kept}


class AppServiceRollout(AzureRollout):
    kind = "app_service"
    service = "App Service"
    api_version = API_VERSION
    public_clients = "clients that trust only public roots (multi-tenant App Service)"
    config: AppServiceDeployerConfig

    def _pass(self, step: RolloutStep) -> RolloutOutcome:
        certificate = self.arm.get(step.target, API_VERSION).body
        props = properties(certificate)
        if not step.certificate.named_by_vault_id(props.get("keyVaultId"), props.get("keyVaultSecretName")):
            return step.skipped(f"does not use {step.certificate.label}")
        if reason := self.unfit(step):
            return step.skipped(reason)
        waiting = step.resumed and str(props.get("keyVaultSecretStatus") or "").lower() in PENDING_STATUSES
        if step.is_new(props.get("thumbprint")) or step.acted or waiting:
            return self._verify(step, props)
        reply = self.arm.put(step.target, API_VERSION, sync_body(certificate))
        self._log(step, "rollout.certificate_resynced", status=reply.status)
        if (started := self._started(step, reply, "certificate re-PUT (sync from the vault)")) is not None:
            return started
        step.acted = True
        body = reply.body if properties(reply.body) else self.arm.get(step.target, API_VERSION).body
        return self._verify(step, properties(body))

    def _verify(self, step: RolloutStep, props: dict[str, Any]) -> RolloutOutcome:
        thumbprint = props.get("thumbprint")
        status = str(props.get("keyVaultSecretStatus") or "")
        if step.is_new(thumbprint):
            evidence = f"thumbprint {thumbprint.upper()}, keyVaultSecretStatus {status or 'not given'}"
            return step.done(step.bound("re-read from the vault by a certificate re-PUT", evidence), thumbprint)
        if status.lower() in PENDING_STATUSES:
            return step.in_progress(f"keyVaultSecretStatus {status}: waiting for App Service to read the vault")
        if status and status.lower() != "succeeded":
            hint = _STATUS_HINTS.get(status.lower())
            return step.failed(
                f"keyVaultSecretStatus {status}: App Service cannot read {step.certificate.label}"
                + (f" ({hint})" if hint else "")
            )
        return step.failed(
            f"thumbprint {thumbprint or '(none)'} after the certificate re-PUT, expected {step.thumbprint}"
        )
