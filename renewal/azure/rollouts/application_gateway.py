"""Application Gateway v2: make a gateway re-read the certificate's secret, and see which leaf it serves.

A gateway polls Key Vault every 4 hours, and only through a versionless ``keyVaultSecretId``. Any change to the
gateway, a tags-only PATCH included, makes it read Key Vault again: that is the operation (synchronous in ARM;
the gateway applies it in the background). ARM shows only the secret id, so the new version is verified by a
TLS handshake with the listener's server name to the gateway's front end, comparing the leaf's SHA-1.

A pinned reference (a version in the secret id) or a ``/certificates/`` id never rotates: it is reported, or,
with ``fix_references``, made versionless by a full PUT (long-running; the caller also needs Managed Identity
Operator on the gateway's user-assigned identity, or ARM answers 403 LinkedAuthorizationFailed).
"""

from __future__ import annotations

import copy
import ssl
from typing import Any

from renewal.azure.rollouts.arm import ArmError
from renewal.azure.rollouts.probe import presented_leaf, server_name_for, sha1_thumbprint
from renewal.azure.rollouts.references import VaultUrlReference, parse_vault_url
from renewal.azure.rollouts.rollout import AzureRollout, RolloutStep, properties
from renewal.config import ApplicationGatewayDeployerConfig
from renewal.model import RolloutOutcome

API_VERSION = "2026-03-01"
REFRESH_TAG = "renewal-refresh"
"""The tag whose change makes the gateway re-read Key Vault; its value is the notice's idempotency key."""
TAG_VALUE_LIMIT = 256
MANAGED_IDENTITY_OPERATOR = "Managed Identity Operator (f1a07417-d97a-45cb-824c-7a7467783830)"


def our_certificates(gateway: dict[str, Any], step: RolloutStep) -> list[tuple[dict[str, Any], VaultUrlReference]]:
    """The gateway's sslCertificates whose keyVaultSecretId names the notice's certificate."""
    found = []
    for entry in properties(gateway).get("sslCertificates") or []:
        if isinstance(entry, dict):
            reference = parse_vault_url(properties(entry).get("keyVaultSecretId"))
            if reference is not None and step.certificate.named_by_url(reference):
                found.append((entry, reference))
    return found


def stale_references(
    ours: list[tuple[dict[str, Any], VaultUrlReference]], step: RolloutStep
) -> list[tuple[dict[str, Any], VaultUrlReference]]:
    """References that will not follow new versions. One pinned to the new version serves it now; it is
    only repaired when repairing is on."""
    return [
        (entry, ref)
        for entry, ref in ours
        if ref.misreferenced or (ref.pinned and ref.version != step.certificate.version)
    ]


def pinned_references(
    ours: list[tuple[dict[str, Any], VaultUrlReference]],
) -> list[tuple[dict[str, Any], VaultUrlReference]]:
    return [(entry, ref) for entry, ref in ours if ref.pinned or ref.misreferenced]


def listener_server_names(
    gateway: dict[str, Any], ours: list[tuple[dict[str, Any], VaultUrlReference]]
) -> list[str | None]:
    """The server name (SNI) of each HTTPS listener that serves one of ``ours`` (None: a listener for any name)."""
    ids = {str(entry.get("id") or "").lower() for entry, _ in ours}
    names = {str(entry.get("name") or "").lower() for entry, _ in ours}
    found: list[str | None] = []
    for listener in properties(gateway).get("httpListeners") or []:
        if not isinstance(listener, dict):
            continue
        props = properties(listener)
        certificate_id = str((props.get("sslCertificate") or {}).get("id") or "").lower()
        if not certificate_id or not (certificate_id in ids or certificate_id.rsplit("/", 1)[-1] in names):
            continue
        host_names = props.get("hostNames") or []
        name = server_name_for(props.get("hostName") or (host_names[0] if host_names else None))
        if name not in found:
            found.append(name)
    return found


READ_ONLY = frozenset({"etag", "provisioningState", "resourceGuid", "operationalState"})
"""What ARM computes and a PUT leaves out (as the SDK's models do), at any depth of the gateway."""


def writable(value: Any) -> Any:
    """The gateway as a PUT body: read-only fields dropped; a user-assigned identity named, not described."""
    if isinstance(value, list):
        return [writable(item) for item in value]
    if not isinstance(value, dict):
        return value
    body = {k: writable(v) for k, v in value.items() if k not in READ_ONLY}
    identity = body.get("identity")
    if isinstance(identity, dict):
        assigned = identity.get("userAssignedIdentities")
        body["identity"] = {k: v for k, v in identity.items() if k not in ("principalId", "tenantId")}
        if isinstance(assigned, dict):
            body["identity"]["userAssignedIdentities"] = {key: {} for key in assigned}
    return body


def _where(entry: dict[str, Any]) -> str:
    return f"sslCertificates[{entry.get('name')}].keyVaultSecretId"


def _user_assigned_identities(gateway: dict[str, Any]) -> list[str]:
    identity = gateway.get("identity") if isinstance(gateway.get("identity"), dict) else {}
    return sorted((identity.get("userAssignedIdentities") or {}).keys())


class ApplicationGatewayRollout(AzureRollout):
    kind = "application_gateway"
    service = "Application Gateway"
    api_version = API_VERSION
    config: ApplicationGatewayDeployerConfig

    def _pass(self, step: RolloutStep) -> RolloutOutcome:
        gateway = self.arm.get(step.target, API_VERSION).body
        ours = our_certificates(gateway, step)
        if not ours:
            return step.skipped(f"does not use {step.certificate.label}")
        if reason := self.unfit(step):
            return step.skipped(reason)
        stale = stale_references(ours, step)
        pinned = pinned_references(ours)
        if self.config.fix_references and pinned and not step.acted:
            return self._repair(step, gateway, pinned)
        if stale:
            fixes = "; ".join(step.certificate.describe_pin(_where(entry), ref) for entry, ref in stale)
            hint = "" if step.acted else " (or turn on fix_references)"
            return step.failed(f"{fixes}{hint}")
        return self._refresh_and_verify(step, gateway, ours)

    # -- the tags refresh and the probe ------------------------------------------------------------------------
    def _refresh_and_verify(
        self, step: RolloutStep, gateway: dict[str, Any], ours: list[tuple[dict[str, Any], VaultUrlReference]]
    ) -> RolloutOutcome:
        probe = self.config.probe_for(step.target)
        names = listener_server_names(gateway, ours)
        trouble: str | None = None
        if probe is not None and names:
            presented, trouble = self._probe(step, probe, names)
            if trouble is None:
                evidence = f"TLS probe {probe} {_sni(names)} presents it"
                action = "secret id repaired by a full PUT" if step.acted else "refresh requested (tag change)"
                return step.done(step.bound(action, evidence), presented)
        requested = self._request_refresh(step, gateway)
        if isinstance(requested, RolloutOutcome):
            return requested
        action, changed = requested
        if probe is None:
            return step.done(f"{action}; not verified: no probe address", None)
        if not names:
            return step.done(f"{action}; not verified: no HTTPS listener uses it", None)
        if changed:
            presented, trouble = self._probe(step, probe, names)
            if trouble is None:
                return step.done(f"{action}; TLS probe {probe} {_sni(names)} presents it", presented)
        return step.in_progress(f"{action}; {trouble}")

    def _request_refresh(self, step: RolloutStep, gateway: dict[str, Any]) -> tuple[str, bool] | RolloutOutcome:
        """PATCH the refresh tag, unless an earlier pass (or the repairing PUT) already set it for this version:
        (what was done, whether the gateway changed just now), or the outcome of an operation ARM accepted."""
        value = step.notice.idempotency_key[:TAG_VALUE_LIMIT]
        tags = gateway.get("tags") if isinstance(gateway.get("tags"), dict) else {}
        if step.acted:
            return "secret id repaired by a full PUT", True
        if tags.get(REFRESH_TAG) == value:
            return "refresh requested (tag change)", False
        reply = self.arm.patch(step.target, API_VERSION, {"tags": {**tags, REFRESH_TAG: value}})
        self._log(step, "rollout.refresh_requested", tag=REFRESH_TAG, status=reply.status)
        started = self._started(step, reply, "refresh requested (tag change)")
        return started if started is not None else ("refresh requested (tag change)", True)

    def _probe(self, step: RolloutStep, address: str, names: list[str | None]) -> tuple[str | None, str | None]:
        """(the new thumbprint when every listener name presents it, else None; what is still wrong, or None)."""
        for name in names:
            try:
                thumbprint = sha1_thumbprint(presented_leaf(address, name))
            except (OSError, ssl.SSLError) as exc:
                self._log(step, "rollout.probe_failed", address=address, sni=name, error=str(exc)[:200])
                return None, f"TLS probe {address} {_sni([name])} failed: {type(exc).__name__}: {exc}"[:500]
            self._log(step, "rollout.probed", address=address, sni=name, thumbprint=thumbprint)
            if not step.is_new(thumbprint):
                return None, f"{address} {_sni([name])} still presents {thumbprint}, waiting for {step.thumbprint}"
        return step.thumbprint, None

    # -- the full PUT that repairs pinned references ----------------------------------------------------------
    def _repair(
        self, step: RolloutStep, gateway: dict[str, Any], pinned: list[tuple[dict[str, Any], VaultUrlReference]]
    ) -> RolloutOutcome:
        body = copy.deepcopy(gateway)
        wanted = {id(entry): step.certificate.versionless_secret_url(ref) for entry, ref in pinned}
        for original, repaired in zip(
            properties(gateway).get("sslCertificates") or [], properties(body).get("sslCertificates") or [], strict=True
        ):
            if id(original) in wanted:
                repaired.setdefault("properties", {})["keyVaultSecretId"] = wanted[id(original)]
        tags = body.get("tags") if isinstance(body.get("tags"), dict) else {}
        body["tags"] = {**tags, REFRESH_TAG: step.notice.idempotency_key[:TAG_VALUE_LIMIT]}
        body = writable(body)
        what = "full PUT started to make " + ", ".join(_where(entry) for entry, _ in pinned) + " versionless"
        try:
            reply = self.arm.put(step.target, API_VERSION, body)
        except ArmError as exc:
            if exc.status == 403 and exc.code == "LinkedAuthorizationFailed":
                identities = ", ".join(_user_assigned_identities(gateway)) or "(none listed)"
                return step.failed(
                    f"HTTP 403 LinkedAuthorizationFailed: {exc.message}; repairing the secret id takes a full PUT, "
                    f"which needs {MANAGED_IDENTITY_OPERATOR} for this app's identity on the gateway's user-assigned "
                    f"identity {identities}"
                )
            raise
        self._log(step, "rollout.reference_repair_started", status=reply.status)
        started = self._started(step, reply, what)
        if started is not None:
            return started
        step.acted = True
        return self._pass(step)


def _sni(names: list[str | None]) -> str:
    shown = ", ".join(n or "(no SNI)" for n in names)
    return f"(SNI {shown})"
