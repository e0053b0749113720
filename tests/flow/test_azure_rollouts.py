"""Renewal -> notice -> rollout -> verified thumbprint, for each Azure service, through the functions and queues
(Azurite), the Key Vault emulator, the local CA and the ARM stand-in (devtools/arm.py, itself checked with the
real azure-mgmt SDKs in tests/azure/test_arm_standin.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import function_app
from devtools.arm import ArmStandIn, GatewayFrontEnd
from devtools.pump import QueuePump
from renewal import settings
from renewal.config import parse_config
from renewal.model import RolloutState
from renewal.service import RenewalService

from .conftest import DAY, make_config, near_expiry_event

RG = "rg-edge"
VAULT = "kv-alpha"


def exportable_policy(host: str, *, content_type: str = "application/x-pkcs12") -> dict[str, Any]:
    """What the four services need: an exportable RSA key kept as PKCS#12, issued through the service."""
    return {
        "issuer": {"name": "Unknown"},
        "key_props": {"kty": "RSA", "key_size": 2048, "exportable": True, "reuse_key": False},
        "secret_props": {"contentType": content_type},
        "x509_props": {"subject": f"CN={host}", "sans": {"dns_names": [host]}, "validity_months": 3},
        "lifetime_actions": [{"trigger": {"days_before_expiry": 30}, "action": {"action_type": "EmailContacts"}}],
    }


@pytest.fixture
def estate(request, flow, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd, hook):
    """``web`` in kv-alpha, used by one gateway, one App Service certificate, one API Management service and
    one Front Door secret (pinned to its version, Front Door's usual mode); the service wired to all four.
    ``@pytest.mark.private_app_service`` leaves the App Service deployer with the public roots alone."""
    now = flow.now()
    flow.kv.admin.seed(
        VAULT,
        certificates=[{"name": "web"}],
        not_before=int(now - 70 * DAY),
        expires=int(now + 20 * DAY),
        policy=exportable_policy("web.example.test"),
    )
    old = flow.current("web").properties.version
    secret = f"{flow.kv.vault_url(VAULT)}secrets/web"
    ids = {
        "gateway": arm.add_application_gateway(
            RG, "gw-edge", certificates={"web-cert": secret}, listeners={"https": ("web.example.test", "web-cert")}
        ),
        "app_service": arm.add_app_service_certificate(
            RG, "web-cert", vault=VAULT, secret_name="web", sites=[("web-app", "web.example.test")]
        ),
        "api_management": arm.add_api_management(RG, "apim-edge", hostnames={"api.example.test": secret}),
        "front_door": arm.add_front_door_secret(
            RG, "fd-edge", "web-secret", vault=VAULT, secret_name="web", version=old
        ),
    }
    common = {"arm_endpoint": arm.base_url, "ca_bundle": arm.ca_bundle, "check_after_seconds": 5}
    # The local CA stands for a public one here: App Service and Front Door take it when its root is listed.
    public_roots = [str(flow.ca_paths["root"])]
    deployers = [
        {
            "type": "application_gateway",
            "name": "gateway",
            "targets": [{"id": ids["gateway"], "probe": gateway_front_end.address}],
        },
        {"type": "app_service", "name": "app-service", "targets": [ids["app_service"]]}
        | ({} if request.node.get_closest_marker("private_app_service") else {"public_roots": public_roots}),
        {"type": "api_management", "name": "apim", "targets": [ids["api_management"]]},
        {"type": "front_door", "name": "front-door", "targets": [ids["front_door"]], "public_roots": public_roots},
    ]
    document = make_config(flow.kv, flow.ca_paths, hook.url)
    document["deployers"] += [{**common, **d} for d in deployers]
    service = RenewalService(
        parse_config(document),
        environ=flow.environ,
        storage=flow.storage,
        clock=flow.service.clock,
        keyvault_options={"sleep": lambda _s: None},
    )
    function_app._service = service
    yield service, ids, old
    function_app._service = None


def renew(flow, service: RenewalService, old: str) -> str:
    service.handle_event(near_expiry_event(VAULT, "web", old, base_url=flow.kv.vault_urls[VAULT]))
    stats = QueuePump(flow.storage, settings.JOBS_QUEUE, function_app.renewal_worker).run_until_idle(timeout=60)
    assert stats.processed == 1 and stats.poisoned == 0
    new = flow.current("web")
    assert new.properties.version != old
    return new.properties.version


def deliver(flow, **kw: Any):
    return QueuePump(flow.storage, settings.DEPLOYMENTS_QUEUE, function_app.deploy_notifier, **kw).run_until_idle(
        timeout=120, wait_for_delayed=True
    )


def test_every_service_takes_the_renewed_version_and_reports_its_thumbprint(
    flow, estate, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd, hook
):
    service, ids, old = estate
    before = arm.bound_thumbprint(ids["app_service"])
    version = renew(flow, service, old)
    thumbprint = hashlib.sha1(flow.current("web").cer).hexdigest().upper()
    assert before != thumbprint

    stats = deliver(flow)
    # API Management and Front Door answer with long-running operations: their notice came back after a delay.
    assert stats.poisoned == 0 and stats.processed >= 3

    records = service.rollout_log.of_version(VAULT, "web", version)
    assert {k[0]: r.state for k, r in records.items()} == {
        "hook": RolloutState.DONE,
        "gateway": RolloutState.DONE,
        "app-service": RolloutState.DONE,
        "apim": RolloutState.DONE,
        "front-door": RolloutState.DONE,
    }
    for key, record in records.items():
        if key[0] != "hook":
            assert record.thumbprint == thumbprint, record
    assert records[("apim", ids["api_management"])].attempts >= 2  # started, then found finished
    assert len(hook.received) == 1

    # What each service now holds, read from the stand-in (which read it from the Key Vault emulator).
    assert arm.listener_binding("web.example.test").thumbprint == thumbprint
    assert gateway_front_end.handshakes and gateway_front_end.handshakes[-1] == "web.example.test"
    assert arm.bound_thumbprint(ids["app_service"]) == thumbprint
    assert arm.bound_thumbprint(ids["api_management"], "api.example.test") == thumbprint
    assert arm.bound_thumbprint(ids["front_door"]) == thumbprint
    front_door = arm.resource(ids["front_door"])["properties"]["parameters"]
    assert front_door["secretVersion"] == version and front_door["useLatestVersion"] is False
    # Every secret read was a service's own (the stand-in's), none the renewal app's: it never reads secrets.
    secret_calls = sum(v for k, v in flow.kv.admin.counters().items() if "secret" in k)
    assert secret_calls == arm.secret_reads > 0
    gateway_tags = arm.resource(ids["gateway"])["tags"]
    assert gateway_tags["renewal-refresh"] == f"{VAULT}/web/{version}"

    # A later delivery of the same notice (at least once) leaves the finished targets alone.
    writes = len([r for r in arm.requests if r[0] in ("PUT", "PATCH")])
    service.notices.enqueue(flow_notice(service, version))
    assert deliver(flow).processed == 1
    assert len([r for r in arm.requests if r[0] in ("PUT", "PATCH")]) == writes


def flow_notice(service: RenewalService, version: str):
    from renewal.flow.deploy import notice_of

    row = next(r for r in service.ledger.history(VAULT, "web") if r.new_version == version)
    current = service.stores[VAULT].get_current("web")
    return notice_of(row, current, occurred_at=row.updated_at)


def test_a_pinned_gateway_reference_fails_until_the_operator_fixes_it_then_replay_rolls_it_out(
    flow, estate, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd
):
    from azure.mgmt.network import NetworkManagementClient

    service, ids, old = estate
    # Someone bound the gateway to one version (what the portal and Terraform's .id produce).
    network = NetworkManagementClient(
        flow.kv.credential,
        arm.subscription_id,
        base_url=arm.base_url,
        connection_verify=arm.ca_bundle,
        polling_interval=0,
    )

    def set_reference(secret_id: str) -> None:
        gateway = network.application_gateways.get(RG, "gw-edge")
        gateway.ssl_certificates[0].key_vault_secret_id = secret_id
        network.application_gateways.begin_create_or_update(RG, "gw-edge", gateway).result()

    set_reference(f"{flow.kv.vault_url(VAULT)}secrets/web/{old}")
    version = renew(flow, service, old)
    assert deliver(flow, max_dequeue_count=2).poisoned == 1
    failed = service.rollout_log.of_version(VAULT, "web", version)[("gateway", ids["gateway"])]
    assert failed.state is RolloutState.FAILED
    assert f"pinned to version {old}" in failed.detail and "fix_references" in failed.detail
    others = {k[0]: r.state for k, r in service.rollout_log.of_version(VAULT, "web", version).items()}
    assert others["apim"] is RolloutState.DONE and others["front-door"] is RolloutState.DONE  # not held up
    assert arm.listener_binding("web.example.test").version == old

    # The operator makes the reference versionless and replays the poisoned notice: only the gateway runs.
    set_reference(f"{flow.kv.vault_url(VAULT)}secrets/web")
    apim_writes = [r for r in arm.requests if r[0] == "PATCH" and "apim-edge" in r[1]]
    assert service.replay().notices == 1
    assert deliver(flow).poisoned == 0
    record = service.rollout_log.of_version(VAULT, "web", version)[("gateway", ids["gateway"])]
    assert (
        record.state is RolloutState.DONE and record.thumbprint == arm.listener_binding("web.example.test").thumbprint
    )
    assert [r for r in arm.requests if r[0] == "PATCH" and "apim-edge" in r[1]] == apim_writes
    assert flow.current("web").properties.version == version  # nothing renewed again


@pytest.mark.private_app_service
def test_a_failed_long_running_operation_fails_its_target_and_a_private_issuer_is_skipped_by_app_service(
    flow, estate, arm: ArmStandIn
):
    service, ids, old = estate
    arm.lro_outcome = "Failed"
    arm.lro_error_code, arm.lro_error_message = "InvalidCertificate", "The certificate chain is incomplete."
    before = arm.resource(ids["app_service"])
    version = renew(flow, service, old)
    assert deliver(flow, max_dequeue_count=1).poisoned == 1
    records = service.rollout_log.of_version(VAULT, "web", version)
    apim = records[("apim", ids["api_management"])]
    assert apim.state is RolloutState.FAILED and "InvalidCertificate" in apim.detail
    assert records[("gateway", ids["gateway"])].state is RolloutState.DONE
    # Multi-tenant App Service accepts only publicly trusted CAs: the local CA's certificate is not sent.
    skipped = records[("app-service", ids["app_service"])]
    assert skipped.state is RolloutState.SKIPPED and "not publicly trusted" in skipped.detail
    assert arm.resource(ids["app_service"]) == before
    assert not [r for r in arm.requests if r[0] == "PUT" and "certificates/web-cert" in r[1]]
