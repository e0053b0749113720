"""The four rollout deployers against the ARM stand-in (tests/servers/arm.py), which reads the Key Vault emulator:
done, skipped, pinned, long-running and failed, pass by pass as the deployments stage drives them."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import pytest
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, KeyCurveName, KeyType
from cryptography import x509

from devtools.arm import ArmStandIn, GatewayFrontEnd
from emulator.testing import EmulatorHandle
from renewal.azure.keyvault import open_store
from renewal.azure.rollouts import build_rollout
from renewal.config import parse_config
from renewal.model import CertificateVersion, DeploymentNotice, RolloutOutcome, RolloutRecord, RolloutState

RG = "rg-edge"
VAULT = "kv-alpha"
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _public_root() -> x509.Certificate:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roots = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
    return next(r for r in roots if "ISRG Root X1" in r.subject.rfc4514_string())


PUBLIC_ROOT = _public_root()


def new_version(kv: EmulatorHandle, name: str, host: str, *, key: str = "RSA") -> str:
    """A new self-signed version of ``name`` (exportable, PKCS#12); its version id."""
    policy = CertificatePolicy(
        issuer_name="Self",
        subject=f"CN={host}",
        san_dns_names=[host],
        exportable=True,
        key_type=KeyType.ec if key == "EC" else KeyType.rsa,
        key_size=None if key == "EC" else 2048,
        key_curve_name=KeyCurveName.p_256 if key == "EC" else None,
        reuse_key=False,
        content_type=CertificateContentType.pkcs12,
        validity_in_months=12,
    )
    return kv.certificate_client(VAULT).begin_create_certificate(name, policy).result().properties.version


def secret_id(kv: EmulatorHandle, name: str, version: str | None = None) -> str:
    return f"{kv.vault_url(VAULT)}secrets/{name}" + (f"/{version}" if version else "")


def announced(kv: EmulatorHandle, name: str) -> tuple[DeploymentNotice, CertificateVersion]:
    """The notice the deployments stage would hand over for the current version, and that version."""
    store = open_store(VAULT, kv.vault_url(VAULT), kv.credential, connection_verify=kv.ca_bundle)
    current = store.get_current(name)
    assert current is not None
    notice = DeploymentNotice(
        vault=VAULT,
        name=name,
        new_version=current.version,
        old_version=None,
        certificate_id=current.id,
        thumbprint_sha1=hashlib.sha1(current.cer).hexdigest(),
        not_before=current.not_before or T0,
        not_after=current.expires_on or T0,
        issuer="corp",
        request_id="req-rollout",
    )
    return notice, current


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def deployer(
    kv: EmulatorHandle,
    arm: ArmStandIn,
    section: dict[str, Any],
    *,
    roots: Callable[[str], list[Any]] = lambda issuer: [PUBLIC_ROOT],
    clock: Clock | None = None,
) -> Any:
    config = parse_config(
        {
            "vaults": [{"name": VAULT, "url": kv.vault_url(VAULT)}],
            "issuers": [
                {
                    "name": "corp",
                    "type": "local",
                    "ca_certificate": "/x",
                    "ca_key": {"file": "/x"},
                    "trust_anchors": "system",
                }
            ],
            "default_issuer": "corp",
            "deployers": [{"arm_endpoint": arm.base_url, "ca_bundle": arm.ca_bundle, **section}],
        }
    ).deployers[0]
    return build_rollout(config, credential_factory=lambda: kv.credential, issuer_roots=roots, clock=clock or Clock())


def drive(
    rollout: Any, notice: DeploymentNotice, current: CertificateVersion, target: str, *, passes: int = 6
) -> list[RolloutOutcome]:
    """Passes over one target until it settles or fails, as the re-queued notice would bring them."""
    outcomes: list[RolloutOutcome] = []
    record: RolloutRecord | None = None
    for _ in range(passes):
        outcome = rollout.roll_out(notice, current, target, record)
        outcomes.append(outcome)
        if outcome.state is not RolloutState.IN_PROGRESS:
            break
        record = RolloutRecord.after(record, outcome, vault=VAULT, name=notice.name, version=notice.new_version, now=T0)
    return outcomes


def writes(arm: ArmStandIn) -> list[tuple[str, str]]:
    return [(method, path.rsplit("/", 1)[-1]) for method, path, _, _ in arm.requests if method in ("PUT", "PATCH")]


# -- Application Gateway ---------------------------------------------------------------------------------------
def test_gateway_tag_refresh_then_the_probe_sees_the_new_leaf(
    kv: EmulatorHandle, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd
) -> None:
    new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
        tags={"owner": "edge"},
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    section = {
        "type": "application_gateway",
        "name": "agw",
        "targets": [{"id": gateway, "probe": gateway_front_end.address}],
    }
    [outcome] = drive(deployer(kv, arm, section), notice, current, gateway)
    assert (outcome.state, outcome.thumbprint) == (RolloutState.DONE, notice.thumbprint_sha1.upper())
    assert outcome.detail == (
        f"refresh requested (tag change); TLS probe {gateway_front_end.address} (SNI www.example.test) presents it"
    )
    assert arm.resource(gateway)["tags"] == {"owner": "edge", "renewal-refresh": f"{VAULT}/web/{notice.new_version}"}
    assert [r[2] for r in arm.requests if r[0] == "PATCH"] == ["2026-03-01"]
    again = deployer(kv, arm, section).roll_out(notice, current, gateway, None)
    assert again.detail.startswith("already bound (TLS probe") and writes(arm) == [("PATCH", "agw-edge")]


def test_gateway_without_a_probe_is_refreshed_but_not_verified(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    [outcome] = drive(
        deployer(kv, arm, {"type": "application_gateway", "name": "agw", "targets": [gateway]}),
        notice,
        current,
        gateway,
    )
    assert (outcome.state, outcome.thumbprint) == (RolloutState.DONE, None)
    assert outcome.detail == "refresh requested (tag change); not verified: no probe address"
    assert arm.bound_thumbprint(gateway, "web-cert") == notice.thumbprint_sha1.upper()


def test_gateway_that_applies_late_stays_in_progress_then_times_out(
    kv: EmulatorHandle, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd
) -> None:
    old = new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    arm.gateway_apply_delay_seconds = 3600
    clock = Clock()
    section = {
        "type": "application_gateway",
        "name": "agw",
        "targets": [{"id": gateway, "probe": gateway_front_end.address}],
        "timeout_minutes": 30,
    }
    rollout = deployer(kv, arm, section, clock=clock)
    first = rollout.roll_out(notice, current, gateway, None)
    assert first.state is RolloutState.IN_PROGRESS and first.operation is None and first.check_after_seconds == 120
    assert "still presents" in first.detail and old != notice.new_version
    record = RolloutRecord.after(None, first, vault=VAULT, name="web", version=notice.new_version, now=T0)
    clock.now = T0 + dt.timedelta(minutes=31)
    late = rollout.roll_out(notice, current, gateway, record)
    assert late.state is RolloutState.FAILED
    assert late.detail.startswith(f"{gateway}: still in progress after 30 minutes (refresh requested (tag change); ")
    assert writes(arm) == [("PATCH", "agw-edge")]


def test_gateway_not_using_the_certificate_is_skipped(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    new_version(kv, "api", "api.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"api-cert": secret_id(kv, "api")},
        listeners={"api": ("api.example.test", "api-cert")},
    )
    notice, current = announced(kv, "web")
    [outcome] = drive(
        deployer(kv, arm, {"type": "application_gateway", "name": "agw", "targets": [gateway]}),
        notice,
        current,
        gateway,
    )
    assert (outcome.state, outcome.detail) == (RolloutState.SKIPPED, f"does not use {VAULT}/web")
    assert writes(arm) == []


def test_gateway_pinned_is_reported_then_repaired_by_a_followed_put(
    kv: EmulatorHandle, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd
) -> None:
    v1 = new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web", v1)},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    targets = [{"id": gateway, "probe": gateway_front_end.address}]
    [reported] = drive(
        deployer(kv, arm, {"type": "application_gateway", "name": "agw", "targets": targets}), notice, current, gateway
    )
    assert reported.state is RolloutState.FAILED and writes(arm) == []
    assert (
        f"sslCertificates[web-cert].keyVaultSecretId {secret_id(kv, 'web', v1)} is pinned to version {v1}"
        in reported.detail
    )
    assert f"set it to {secret_id(kv, 'web')}" in reported.detail

    arm.lro_polls = 1
    fixing = deployer(
        kv, arm, {"type": "application_gateway", "name": "agw", "targets": targets, "fix_references": True}
    )
    outcomes = drive(fixing, notice, current, gateway)
    assert [o.state for o in outcomes] == [RolloutState.IN_PROGRESS, RolloutState.IN_PROGRESS, RolloutState.DONE]
    assert outcomes[0].operation and outcomes[0].operation.startswith(arm.base_url)
    assert (
        outcomes[0].detail
        == "full PUT started to make sslCertificates[web-cert].keyVaultSecretId versionless (waiting for the operation)"
    )
    assert outcomes[-1].thumbprint == notice.thumbprint_sha1.upper()
    assert outcomes[-1].detail.startswith("secret id repaired by a full PUT; TLS probe")
    after = arm.resource(gateway)
    assert after["properties"]["sslCertificates"][0]["properties"]["keyVaultSecretId"] == secret_id(kv, "web")
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert writes(arm) == [("PUT", "agw-edge")]


def test_gateway_put_without_the_identity_role_names_it(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    v1 = new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-mi",
        certificates={"web-cert": secret_id(kv, "web", v1)},
        listeners={"web": ("www.example.test", "web-cert")},
        user_assigned_identity=True,
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    arm.identity_operator_granted = False
    section = {"type": "application_gateway", "name": "agw", "targets": [gateway], "fix_references": True}
    [outcome] = drive(deployer(kv, arm, section), notice, current, gateway)
    assert outcome.state is RolloutState.FAILED
    assert outcome.detail.startswith(f"{gateway}: HTTP 403 LinkedAuthorizationFailed: The client")
    assert "Managed Identity Operator (f1a07417-d97a-45cb-824c-7a7467783830)" in outcome.detail
    assert "userAssignedIdentities/agw-mi-identity" in outcome.detail


def test_gateway_failed_operation_is_failed(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    v1 = new_version(kv, "web", "www.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web", v1)},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    arm.lro_outcome, arm.lro_error_code, arm.lro_error_message = (
        "Failed",
        "ApplicationGatewayKeyVaultSecretException",
        "no access",
    )
    section = {"type": "application_gateway", "name": "agw", "targets": [gateway], "fix_references": True}
    outcomes = drive(deployer(kv, arm, section), notice, current, gateway)
    assert outcomes[-1].state is RolloutState.FAILED
    assert (
        outcomes[-1].detail == f"{gateway}: the operation Failed: ApplicationGatewayKeyVaultSecretException: no access"
    )


# -- App Service -------------------------------------------------------------------------------------------------
def test_app_service_re_put_binds_the_new_version_and_the_site_follows(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    certificate = arm.add_app_service_certificate(
        RG, "www-cert", vault=VAULT, secret_name="web", sites=[("site-www", "www.example.test")]
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    rollout = deployer(kv, arm, {"type": "app_service", "name": "web-app", "targets": [certificate]})
    [outcome] = drive(rollout, notice, current, certificate)
    thumbprint = notice.thumbprint_sha1.upper()
    assert (outcome.state, outcome.thumbprint) == (RolloutState.DONE, thumbprint)
    assert outcome.detail == (
        f"re-read from the vault by a certificate re-PUT; thumbprint {thumbprint}, keyVaultSecretStatus Succeeded"
    )
    [(_, _, api_version, body)] = [r for r in arm.requests if r[0] == "PUT"]
    assert api_version == "2025-05-01" and body["properties"]["keyVaultSecretName"] == "web"
    assert set(body["properties"]) == {"keyVaultId", "keyVaultSecretName", "serverFarmId"}
    site = certificate.rsplit("/providers/", 1)[0] + "/providers/Microsoft.Web/sites/site-www"
    assert arm.bound_thumbprint(site, "www.example.test") == thumbprint
    again = rollout.roll_out(notice, current, certificate, None)
    assert again.detail.startswith("already bound (thumbprint") and len(writes(arm)) == 1


def test_app_service_skips_a_private_ca_and_reports_a_refusal(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    certificate = arm.add_app_service_certificate(RG, "www-cert", vault=VAULT, secret_name="web")
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    private = x509.load_der_x509_certificate(current.cer)  # the self-signed leaf stands for a private root
    section = {"type": "app_service", "name": "web-app", "targets": [certificate]}
    [skipped] = drive(deployer(kv, arm, section, roots=lambda issuer: [private]), notice, current, certificate)
    assert skipped.state is RolloutState.SKIPPED and writes(arm) == []
    assert skipped.detail.startswith("issuer 'corp' is not publicly trusted: App Service serves clients")
    arm.fail_next("PUT", "/certificates/www-cert", 403, "AuthorizationFailed", "no write on www-cert")
    [refused] = drive(deployer(kv, arm, section), notice, current, certificate)
    assert refused.state is RolloutState.FAILED
    assert refused.detail == f"{certificate}: HTTP 403 AuthorizationFailed: no write on www-cert"


# -- API Management ------------------------------------------------------------------------------------------------
def test_api_management_update_is_followed_to_the_new_thumbprint(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "api", "api.example.test")
    new_version(kv, "portal", "portal.example.test")
    service = arm.add_api_management(
        RG,
        "apim-edge",
        hostnames={"api.example.test": secret_id(kv, "api"), "portal.example.test": secret_id(kv, "portal")},
    )
    new_version(kv, "api", "api.example.test")
    notice, current = announced(kv, "api")
    arm.lro_polls = 2
    outcomes = drive(
        deployer(kv, arm, {"type": "api_management", "name": "apim", "targets": [service]}), notice, current, service
    )
    assert [o.state for o in outcomes] == [RolloutState.IN_PROGRESS] * 3 + [RolloutState.DONE]
    assert outcomes[0].detail == "hostname update started (api.example.test) (waiting for the operation)"
    assert outcomes[-1].thumbprint == notice.thumbprint_sha1.upper()
    [(_, _, api_version, body)] = [r for r in arm.requests if r[0] == "PATCH"]
    assert api_version == "2024-05-01"
    hosts = [entry["hostName"] for entry in body["properties"]["hostnameConfigurations"]]
    assert hosts == ["apim-edge.azure-api.net", "api.example.test", "portal.example.test"], "the full list"
    after = {e["hostName"]: e for e in arm.resource(service)["properties"]["hostnameConfigurations"]}
    assert set(after) == set(hosts)
    assert arm.bound_thumbprint(service, "api.example.test") == notice.thumbprint_sha1.upper()


def test_api_management_pinned_is_reported_or_made_versionless(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    v1 = new_version(kv, "api", "api.example.test")
    service = arm.add_api_management(RG, "apim-edge", hostnames={"api.example.test": secret_id(kv, "api", v1)})
    new_version(kv, "api", "api.example.test")
    notice, current = announced(kv, "api")
    section = {"type": "api_management", "name": "apim", "targets": [service]}
    [reported] = drive(deployer(kv, arm, section), notice, current, service)
    assert reported.state is RolloutState.FAILED and writes(arm) == []
    assert (
        f"hostnameConfigurations[api.example.test].keyVaultId {secret_id(kv, 'api', v1)} is pinned" in reported.detail
    )
    outcomes = drive(deployer(kv, arm, {**section, "fix_references": True}), notice, current, service)
    assert outcomes[-1].state is RolloutState.DONE and outcomes[-1].thumbprint == notice.thumbprint_sha1.upper()
    entry = arm.resource(service)["properties"]["hostnameConfigurations"][1]
    assert entry["keyVaultId"] == secret_id(kv, "api")


def test_api_management_busy_with_another_update_waits(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "api", "api.example.test")
    service = arm.add_api_management(RG, "apim-edge", hostnames={"api.example.test": secret_id(kv, "api")})
    new_version(kv, "api", "api.example.test")
    notice, current = announced(kv, "api")
    rollout = deployer(kv, arm, {"type": "api_management", "name": "apim", "targets": [service]})
    started = rollout.roll_out(notice, current, service, None)
    assert started.state is RolloutState.IN_PROGRESS and started.operation
    busy = rollout.roll_out(notice, current, service, None)  # a second, unrelated pass while it runs
    assert (busy.state, busy.operation) == (RolloutState.IN_PROGRESS, None)
    assert (
        busy.detail == "API Management is busy with another operation (AnotherOperationInProgress); trying again later"
    )


# -- Front Door ------------------------------------------------------------------------------------------------------
def test_front_door_pinned_secret_moves_to_the_new_version(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    v1 = new_version(kv, "web", "www.example.test")
    secret = arm.add_front_door_secret(RG, "afd-edge", "www-secret", vault=VAULT, secret_name="web", version=v1)
    v2 = new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    outcomes = drive(
        deployer(kv, arm, {"type": "front_door", "name": "afd", "targets": [secret]}), notice, current, secret
    )
    assert [o.state for o in outcomes] == [RolloutState.IN_PROGRESS, RolloutState.IN_PROGRESS, RolloutState.DONE]
    assert outcomes[0].detail == f"secret PUT with secretVersion {v2} (was {v1}) (waiting for the operation)"
    thumbprint = notice.thumbprint_sha1.upper()
    assert outcomes[-1].thumbprint == thumbprint
    assert outcomes[-1].detail == (
        f"secret moved to the new version; secret reports thumbprint {thumbprint} (secretVersion {v2})"
    )
    [(_, _, api_version, body)] = [r for r in arm.requests if r[0] == "PUT"]
    assert api_version == "2026-10-01"
    assert body["properties"]["parameters"]["secretVersion"] == v2
    assert body["properties"]["parameters"]["useLatestVersion"] is False


def test_front_door_latest_version_secret_is_put_again(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    secret = arm.add_front_door_secret(
        RG, "afd-edge", "www-secret", vault=VAULT, secret_name="web", version=None, use_latest=True
    )
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    outcomes = drive(
        deployer(kv, arm, {"type": "front_door", "name": "afd", "targets": [secret]}), notice, current, secret
    )
    assert outcomes[-1].state is RolloutState.DONE and outcomes[-1].thumbprint == notice.thumbprint_sha1.upper()
    [(_, _, _, body)] = [r for r in arm.requests if r[0] == "PUT"]
    assert "secretVersion" not in body["properties"]["parameters"]
    assert body["properties"]["parameters"]["useLatestVersion"] is True


def test_front_door_skips_an_ec_key_and_fails_a_failed_operation(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web-ec", "ec.example.test", key="EC")
    ec_secret = arm.add_front_door_secret(
        RG, "afd-edge", "ec-secret", vault=VAULT, secret_name="web-ec", version=None, use_latest=True
    )
    notice, current = announced(kv, "web-ec")
    [skipped] = drive(
        deployer(kv, arm, {"type": "front_door", "name": "afd", "targets": [ec_secret]}), notice, current, ec_secret
    )
    assert (skipped.state, skipped.detail) == (RolloutState.SKIPPED, "Front Door does not take EC keys (RSA only)")

    v1 = new_version(kv, "web", "www.example.test")
    secret = arm.add_front_door_secret(RG, "afd-edge", "www-secret", vault=VAULT, secret_name="web", version=v1)
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    arm.lro_outcome, arm.lro_error_code, arm.lro_error_message = (
        "Failed",
        "BadRequest",
        "The Key Vault secret could not be read",
    )
    outcomes = drive(
        deployer(kv, arm, {"type": "front_door", "name": "afd", "targets": [secret]}), notice, current, secret
    )
    assert outcomes[-1].state is RolloutState.FAILED
    assert outcomes[-1].detail == f"{secret}: the operation Failed: BadRequest: The Key Vault secret could not be read"


@pytest.mark.parametrize("kind", ["application_gateway", "app_service", "api_management", "front_door"])
def test_a_missing_target_is_a_failure_naming_it(kv: EmulatorHandle, arm: ArmStandIn, kind: str) -> None:
    new_version(kv, "web", "www.example.test")
    notice, current = announced(kv, "web")
    base = f"/subscriptions/{arm.subscription_id}/resourceGroups/{RG}/providers"
    target = {
        "application_gateway": f"{base}/Microsoft.Network/applicationGateways/nowhere",
        "app_service": f"{base}/Microsoft.Web/certificates/nowhere",
        "api_management": f"{base}/Microsoft.ApiManagement/service/nowhere",
        "front_door": f"{base}/Microsoft.Cdn/profiles/nowhere/secrets/nowhere",
    }[kind]
    [outcome] = drive(deployer(kv, arm, {"type": kind, "name": "d", "targets": [target]}), notice, current, target)
    assert outcome.state is RolloutState.FAILED
    assert outcome.detail.startswith(f"{target}: HTTP 404 ResourceNotFound: The Resource ")
