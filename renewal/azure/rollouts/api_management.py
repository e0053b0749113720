"""API Management: make custom hostnames whose certificate comes from Key Vault take the new version.

API Management polls Key Vault within a day or two, and only through a versionless ``keyVaultId``. There is no
"sync hostname" call: the operation is a PATCH of the service with the FULL hostname list as read (a hostname
left out is deleted), long-running (15 minutes and more), after which every Key Vault hostname's certificate
is re-read. Verified by ``hostnameConfigurations[].certificate.thumbprint`` of the hostnames that use it.

A ``keyVaultId`` pinned to a version never rotates: reported, or, with ``fix_references``, made versionless in
that same PATCH (only those entries change).
"""

from __future__ import annotations

import copy
from typing import Any

from renewal.azure.rollouts.references import VaultUrlReference, parse_vault_url
from renewal.azure.rollouts.rollout import AzureRollout, RolloutStep, properties
from renewal.config import ApiManagementDeployerConfig
from renewal.model import RolloutOutcome

API_VERSION = "2024-05-01"


def our_hostnames(service: dict[str, Any], step: RolloutStep) -> list[tuple[int, dict[str, Any], VaultUrlReference]]:
    """(index in the list, entry, reference) of each hostname whose keyVaultId names the notice's certificate."""
    found = []
    for i, entry in enumerate(properties(service).get("hostnameConfigurations") or []):
        if isinstance(entry, dict):
            reference = parse_vault_url(entry.get("keyVaultId"))
            if reference is not None and step.certificate.named_by_url(reference):
                found.append((i, entry, reference))
    return found


def _where(entry: dict[str, Any]) -> str:
    return f"hostnameConfigurations[{entry.get('hostName')}].keyVaultId"


def _thumbprint(entry: dict[str, Any]) -> str | None:
    certificate = entry.get("certificate") if isinstance(entry.get("certificate"), dict) else {}
    value = certificate.get("thumbprint")
    return value.upper() if isinstance(value, str) and value else None


class ApiManagementRollout(AzureRollout):
    kind = "api_management"
    service = "API Management"
    api_version = API_VERSION
    config: ApiManagementDeployerConfig

    def _pass(self, step: RolloutStep) -> RolloutOutcome:
        service = self.arm.get(step.target, API_VERSION).body
        ours = our_hostnames(service, step)
        if not ours:
            return step.skipped(f"does not use {step.certificate.label}")
        if reason := self.unfit(step):
            return step.skipped(reason)
        pinned = [(i, entry, ref) for i, entry, ref in ours if ref.pinned or ref.misreferenced]
        repair = self.config.fix_references and bool(pinned) and not step.acted
        stale = [
            (i, entry, ref) for i, entry, ref in pinned if ref.misreferenced or ref.version != step.certificate.version
        ]
        if stale and not repair:
            fixes = "; ".join(step.certificate.describe_pin(_where(entry), ref) for _, entry, ref in stale)
            return step.failed(fixes + ("" if step.acted else " (or turn on fix_references)"))
        if not repair and all(step.is_new(_thumbprint(entry)) for _, entry, _ in ours):
            return self._done(step, ours)
        if step.acted:
            return self._verify(step, ours)
        if step.resumed and any(
            str(entry.get("certificateStatus") or "").lower() == "inprogress" for _, entry, _ in ours
        ):
            return step.in_progress("hostname certificates are being updated (certificateStatus InProgress)")
        return self._update(step, service, ours, pinned if repair else [])

    def _update(
        self,
        step: RolloutStep,
        service: dict[str, Any],
        ours: list[tuple[int, dict[str, Any], VaultUrlReference]],
        repair: list[tuple[int, dict[str, Any], VaultUrlReference]],
    ) -> RolloutOutcome:
        hostnames = copy.deepcopy(properties(service).get("hostnameConfigurations") or [])
        for i, _, ref in repair:
            hostnames[i]["keyVaultId"] = step.certificate.versionless_secret_url(ref)
        names = ", ".join(str(entry.get("hostName")) for _, entry, _ in ours)
        what = f"hostname update started ({names})"
        if repair:
            what += "; making " + ", ".join(_where(entry) for _, entry, _ in repair) + " versionless"
        reply = self.arm.patch(step.target, API_VERSION, {"properties": {"hostnameConfigurations": hostnames}})
        self._log(
            step, "rollout.hostnames_updated", status=reply.status, hostnames=len(hostnames), repaired=len(repair)
        )
        if (started := self._started(step, reply, what)) is not None:
            return started
        step.acted = True
        body = reply.body if properties(reply.body) else self.arm.get(step.target, API_VERSION).body
        return self._verify(step, our_hostnames(body, step) or ours)

    def _verify(self, step: RolloutStep, ours: list[tuple[int, dict[str, Any], VaultUrlReference]]) -> RolloutOutcome:
        waiting, wrong = [], []
        for _, entry, _ in ours:
            status = str(entry.get("certificateStatus") or "")
            if step.is_new(_thumbprint(entry)):
                continue
            if status.lower() == "inprogress":
                waiting.append(str(entry.get("hostName")))
            else:
                state = f", certificateStatus {status}" if status else ""
                wrong.append(f"{entry.get('hostName')}: thumbprint {_thumbprint(entry) or '(none)'}{state}")
        if wrong:
            return step.failed(f"after the hostname update {'; '.join(wrong)}; expected {step.thumbprint}")
        if waiting:
            return step.in_progress(f"certificateStatus InProgress for {', '.join(waiting)}")
        return self._done(step, ours)

    def _done(self, step: RolloutStep, ours: list[tuple[int, dict[str, Any], VaultUrlReference]]) -> RolloutOutcome:
        names = ", ".join(str(entry.get("hostName")) for _, entry, _ in ours)
        return step.done(
            step.bound("hostnames updated", f"{names} report thumbprint {step.thumbprint}"), step.thumbprint
        )
