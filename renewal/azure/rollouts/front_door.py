"""Front Door Standard/Premium: move a customer-certificate secret to the new version.

A Front Door secret (``Microsoft.Cdn/profiles/secrets``) names the Key Vault secret by ARM id and either pins
a ``secretVersion`` (its normal mode: the operation is a PUT with the new version) or follows the latest
version (``useLatestVersion``: picked up within a day; a re-PUT of the same parameters picks it up now).
Secrets are PUT-only and the PUT is long-running; switching between the two modes needs a new secret, so it
is never attempted. Verified by ``parameters.thumbprint``. Front Door takes RSA keys from publicly trusted
CAs only.
"""

from __future__ import annotations

from typing import Any

from renewal.azure.rollouts.rollout import AzureRollout, RolloutStep, properties
from renewal.config import FrontDoorDeployerConfig
from renewal.model import RolloutOutcome

API_VERSION = "2026-10-01"
CUSTOMER_CERTIFICATE = "CustomerCertificate"


def parameters(secret: dict[str, Any]) -> dict[str, Any]:
    value = properties(secret).get("parameters")
    return value if isinstance(value, dict) else {}


def secret_source(params: dict[str, Any]) -> str | None:
    source = params.get("secretSource")
    return source.get("id") if isinstance(source, dict) else None


def put_body(params: dict[str, Any], version: str) -> dict[str, Any]:
    """The secret's parameters for a PUT: the same source and mode; a pinned secret gets ``version``."""
    latest = params.get("useLatestVersion") is True
    body: dict[str, Any] = {
        "type": CUSTOMER_CERTIFICATE,
        "secretSource": {"id": secret_source(params)},
        "useLatestVersion": latest,
    }
    if not latest:
        body["secretVersion"] = version
    return {"properties": {"parameters": body}}


class FrontDoorRollout(AzureRollout):
    kind = "front_door"
    service = "Front Door"
    api_version = API_VERSION
    needs_pkcs12 = False
    rsa_only = True
    public_clients = "browsers and other clients that trust only public roots"
    config: FrontDoorDeployerConfig

    def _pass(self, step: RolloutStep) -> RolloutOutcome:
        secret = self.arm.get(step.target, API_VERSION).body
        params = parameters(secret)
        if params.get("type") != CUSTOMER_CERTIFICATE:
            kind = params.get("type") or "no"
            return step.skipped(f"does not use {step.certificate.label} (a {kind} secret, not a customer certificate)")
        if not step.certificate.named_by_vault_id(secret_source(params), None):
            return step.skipped(f"does not use {step.certificate.label}")
        if reason := self.unfit(step):
            return step.skipped(reason)
        if step.is_new(params.get("thumbprint")) or step.acted:
            return self._verify(step, secret)
        latest = params.get("useLatestVersion") is True
        what = (
            "secret re-PUT (follows the latest version)"
            if latest
            else f"secret PUT with secretVersion {step.certificate.version} (was {params.get('secretVersion')})"
        )
        reply = self.arm.put(step.target, API_VERSION, put_body(params, step.certificate.version))
        self._log(step, "rollout.secret_updated", status=reply.status, use_latest_version=latest)
        if (started := self._started(step, reply, what)) is not None:
            return started
        step.acted = True
        return self._verify(step, reply.body if parameters(reply.body) else self.arm.get(step.target, API_VERSION).body)

    def _verify(self, step: RolloutStep, secret: dict[str, Any]) -> RolloutOutcome:
        params = parameters(secret)
        thumbprint = params.get("thumbprint")
        if not step.is_new(thumbprint):
            return step.failed(
                f"thumbprint {thumbprint or '(none)'} after the secret update (secretVersion "
                f"{params.get('secretVersion')}), expected {step.thumbprint}"
            )
        deployment = str(properties(secret).get("deploymentStatus") or "")
        if deployment.lower() == "failed":
            return step.failed(f"the secret holds {step.thumbprint} but its deploymentStatus is Failed")
        if deployment.lower() == "inprogress":
            return step.in_progress(f"the secret holds {step.thumbprint}; deploymentStatus InProgress")
        evidence = f"secret reports thumbprint {step.thumbprint} (secretVersion {params.get('secretVersion')})"
        action = "secret moved to the new version" if params.get("useLatestVersion") is not True else "secret re-PUT"
        return step.done(step.bound(action, evidence), step.thumbprint)
