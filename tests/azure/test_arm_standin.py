"""The ARM stand-in (devtools/arm.py) driven by the real azure-mgmt SDK clients, reading the Key Vault emulator."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, KeyType

from devtools.arm import ArmStandIn, GatewayFrontEnd
from emulator.testing import EmulatorHandle

RG = "rg-edge"
VAULT = "kv-alpha"


def sdk_kwargs(arm: ArmStandIn) -> dict[str, Any]:
    # azure-core falls back to polling_interval when Retry-After is 0, so the clients wait 0 s between polls.
    return {"base_url": arm.base_url, "connection_verify": arm.ca_bundle, "polling_interval": 0, "retry_total": 0}


def network(arm: ArmStandIn, kv: EmulatorHandle) -> Any:
    from azure.mgmt.network import NetworkManagementClient

    return NetworkManagementClient(kv.credential, arm.subscription_id, **sdk_kwargs(arm))


def web(arm: ArmStandIn, kv: EmulatorHandle) -> Any:
    from azure.mgmt.web import WebSiteManagementClient

    return WebSiteManagementClient(kv.credential, arm.subscription_id, **sdk_kwargs(arm))


def apim(arm: ArmStandIn, kv: EmulatorHandle) -> Any:
    from azure.mgmt.apimanagement import ApiManagementClient

    return ApiManagementClient(kv.credential, arm.subscription_id, **sdk_kwargs(arm))


def cdn(arm: ArmStandIn, kv: EmulatorHandle) -> Any:
    from azure.mgmt.cdn import CdnManagementClient

    return CdnManagementClient(kv.credential, arm.subscription_id, **sdk_kwargs(arm))


def new_version(kv: EmulatorHandle, name: str, host: str) -> tuple[str, str]:
    """A new version of ``name`` (self-signed, exportable RSA, PKCS#12): (version, upper-case thumbprint)."""
    policy = CertificatePolicy(
        issuer_name="Self",
        subject=f"CN={host}",
        san_dns_names=[host],
        exportable=True,
        key_type=KeyType.rsa,
        key_size=2048,
        reuse_key=False,
        content_type=CertificateContentType.pkcs12,
        validity_in_months=12,
    )
    certificate = kv.certificate_client(VAULT).begin_create_certificate(name, policy).result()
    return certificate.properties.version, certificate.properties.x509_thumbprint.hex().upper()


def secret_id(kv: EmulatorHandle, name: str, version: str | None = None) -> str:
    return f"{kv.vault_url(VAULT)}secrets/{name}" + (f"/{version}" if version else "")


def leaf_over_tls(address: str, host: str) -> str:
    """TLS handshake with SNI ``host``: the upper-case SHA-1 of the leaf served (and an HTTP 200 after it)."""
    ip, port = address.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((ip, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert tls.recv(64).startswith(b"HTTP/1.1 200")
    assert der is not None
    return hashlib.sha1(der).hexdigest().upper()


def test_sdk_models_read_the_stand_in_resources(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    web_version, web_thumb = new_version(kv, "web", "www.example.test")
    api_version, api_thumb = new_version(kv, "api", "api.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web"), "api-cert": secret_id(kv, "api", api_version)},
        listeners={"web": ("www.example.test", "web-cert"), "api": (["api.example.test"], "api-cert")},
        tags={"owner": "edge"},
    )
    arm.add_app_service_certificate(
        RG, "www-cert", vault=VAULT, secret_name="web", sites=[("site-www", "www.example.test")]
    )
    arm.add_api_management(RG, "apim-edge", hostnames={"api.example.test": secret_id(kv, "api")})
    arm.add_front_door_secret(RG, "afd-edge", "www-secret", vault=VAULT, secret_name="web", version=web_version)

    got = network(arm, kv).application_gateways.get(RG, "agw-edge")
    assert got.id == gateway and got.tags == {"owner": "edge"} and got.provisioning_state == "Succeeded"
    by_name = {c.name: c for c in got.ssl_certificates}
    assert by_name["web-cert"].key_vault_secret_id == secret_id(kv, "web")
    assert by_name["api-cert"].key_vault_secret_id == secret_id(kv, "api", api_version)
    listeners = {listener.name: listener for listener in got.http_listeners}
    assert listeners["web"].host_name == "www.example.test" and listeners["api"].host_names == ["api.example.test"]
    assert listeners["web"].ssl_certificate.id == f"{gateway}/sslCertificates/web-cert"
    assert arm.bound_thumbprint(gateway, "web-cert") == web_thumb

    certificate = web(arm, kv).certificates.get(RG, "www-cert")
    assert certificate.thumbprint == web_thumb and certificate.key_vault_secret_name == "web"
    assert certificate.key_vault_id.endswith(f"/providers/Microsoft.KeyVault/vaults/{VAULT}")
    assert certificate.key_vault_secret_status == "Succeeded" and certificate.expiration_date is not None
    site = web(arm, kv).web_apps.get(RG, "site-www")
    states = {state.name: state for state in site.host_name_ssl_states}
    assert states["www.example.test"].ssl_state == "SniEnabled" and states["www.example.test"].thumbprint == web_thumb
    assert states["site-www.azurewebsites.net"].ssl_state == "Disabled"

    service = apim(arm, kv).api_management_service.get(RG, "apim-edge")
    hosts = {entry.host_name: entry for entry in service.hostname_configurations}
    assert hosts["apim-edge.azure-api.net"].certificate_source == "BuiltIn"
    assert hosts["api.example.test"].certificate.thumbprint == api_thumb
    assert hosts["api.example.test"].certificate_status == "Completed"
    assert hosts["api.example.test"].key_vault_id == secret_id(kv, "api")

    secret = cdn(arm, kv).secrets.get(RG, "afd-edge", "www-secret")
    assert secret.properties.parameters.secret_version == web_version
    assert secret.properties.parameters.thumbprint == web_thumb
    assert secret.properties.parameters.use_latest_version is False
    assert secret.properties.parameters.secret_source.id.endswith(f"/vaults/{VAULT}/secrets/web")
    domain = cdn(arm, kv).afd_custom_domains.get(RG, "afd-edge", "www-secret-domain")
    assert domain.deployment_status == "Succeeded" and domain.tls_settings.secret.id.endswith("/secrets/www-secret")

    # ARM ids are case-insensitive; api-versions are the SDKs' defaults.
    assert network(arm, kv).application_gateways.get(RG.upper(), "AGW-EDGE").id == gateway
    versions = {path.split("/providers/")[1].split("/")[0]: version for _, path, version, _ in arm.requests}
    assert versions == {
        "Microsoft.Network": "2026-03-01",
        "Microsoft.Web": "2025-05-01",
        "Microsoft.ApiManagement": "2024-05-01",
        "Microsoft.Cdn": "2026-10-01",
    }


def test_gateway_tags_patch_rebinds_versionless_and_keeps_pinned(
    kv: EmulatorHandle, arm: ArmStandIn, gateway_front_end: GatewayFrontEnd
) -> None:
    from azure.mgmt.network.models import TagsObject

    _, web_old = new_version(kv, "web", "www.example.test")
    api_v1, api_old = new_version(kv, "api", "api.example.test")
    gateway = arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web"), "api-cert": secret_id(kv, "api", api_v1)},
        listeners={"web": ("www.example.test", "web-cert"), "api": ("api.example.test", "api-cert")},
    )
    assert leaf_over_tls(gateway_front_end.address, "www.example.test") == web_old
    assert leaf_over_tls(gateway_front_end.address, "api.example.test") == api_old
    _, web_new = new_version(kv, "web", "www.example.test")
    _, api_new = new_version(kv, "api", "api.example.test")

    client = network(arm, kv)
    updated = client.application_gateways.update_tags(RG, "agw-edge", TagsObject(tags={"cert-version": "next"}))
    assert updated.tags == {"cert-version": "next"}
    assert arm.requests[-1][0] == "PATCH" and arm.requests[-1][3] == {"tags": {"cert-version": "next"}}
    assert arm.bound_thumbprint(gateway, "web-cert") == web_new
    assert arm.bound_thumbprint(gateway, "api-cert") == api_old  # pinned: never rotates
    assert api_new != api_old
    assert leaf_over_tls(gateway_front_end.address, "www.example.test") == web_new
    assert leaf_over_tls(gateway_front_end.address, "api.example.test") == api_old
    assert gateway_front_end.handshakes[-1] == "api.example.test"

    # A delayed apply: the first probe still sees the old leaf.
    _, web_third = new_version(kv, "web", "www.example.test")
    arm.gateway_apply_delay_seconds = 0.5
    client.application_gateways.update_tags(RG, "agw-edge", TagsObject(tags={"cert-version": "third"}))
    assert leaf_over_tls(gateway_front_end.address, "www.example.test") == web_new
    deadline = time.monotonic() + 10
    while arm.bound_thumbprint(gateway, "web-cert") != web_third and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leaf_over_tls(gateway_front_end.address, "www.example.test") == web_third


def test_gateway_full_put_runs_through_the_sdk_poller(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    gateway = arm.add_application_gateway(
        RG,
        "agw-mi",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
        user_assigned_identity=True,
    )
    _, fresh = new_version(kv, "web", "www.example.test")
    client = network(arm, kv)
    arm.lro_polls = 2
    current = client.application_gateways.get(RG, "agw-edge")
    result = client.application_gateways.begin_create_or_update(RG, "agw-edge", current).result()
    assert result.provisioning_state == "Succeeded"
    methods = [(method, path.rsplit("/", 2)[-2]) for method, path, _, _ in arm.requests[-5:]]
    assert methods == [("PUT", "applicationGateways"), *[("GET", "operations")] * 3, ("GET", "applicationGateways")]
    put_body = arm.requests[-5][3]
    assert "provisioningState" not in put_body["properties"]  # the SDK leaves read-only fields out
    assert put_body["properties"]["sslCertificates"][0]["properties"] == {"keyVaultSecretId": secret_id(kv, "web")}
    assert arm.bound_thumbprint(f"{gateway[: -len('agw-mi')]}agw-edge", "web-cert") == fresh

    # Without Managed Identity Operator on the gateway's identity, ARM refuses the PUT.
    arm.identity_operator_granted = False
    with pytest.raises(HttpResponseError) as refused:
        client.application_gateways.begin_create_or_update(RG, "agw-mi", client.application_gateways.get(RG, "agw-mi"))
    assert refused.value.status_code == 403 and refused.value.error.code == "LinkedAuthorizationFailed"
    assert "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action" in refused.value.error.message
    assert "Microsoft.Network/applicationGateways/write" in refused.value.error.message

    # Another operation in progress, then a Failed operation.
    arm.fail_next("PUT", "/applicationGateways/agw-edge", 409, "AnotherOperationInProgress", "Another operation ...")
    with pytest.raises(ResourceExistsError) as busy:
        client.application_gateways.begin_create_or_update(RG, "agw-edge", current)
    assert busy.value.error.code == "AnotherOperationInProgress"
    arm.lro_outcome = "Failed"
    with pytest.raises(HttpResponseError) as failed:
        client.application_gateways.begin_create_or_update(RG, "agw-edge", current).result()
    assert failed.value.error.code == "InternalServerError"
    assert client.application_gateways.get(RG, "agw-edge").provisioning_state == "Failed"

    # A /certificates/ id is no secret id: nothing is bound, and a full PUT fails reading Key Vault.
    arm.lro_outcome = "Succeeded"
    misreferenced = secret_id(kv, "web").replace("/secrets/", "/certificates/")
    wrong = arm.add_application_gateway(
        RG, "agw-wrong", certificates={"c": misreferenced}, listeners={"l": ("www.example.test", "c")}
    )
    assert arm.bound_thumbprint(wrong, "c") is None
    with pytest.raises(HttpResponseError) as unreadable:
        client.application_gateways.begin_create_or_update(
            RG, "agw-wrong", client.application_gateways.get(RG, "agw-wrong")
        ).result()
    assert unreadable.value.error.code == "ApplicationGatewayKeyVaultSecretException"

    with pytest.raises(ResourceNotFoundError) as missing:
        client.application_gateways.get(RG, "agw-nowhere")
    assert missing.value.error.code == "ResourceNotFound"


def test_app_service_certificate_put_updates_thumbprint_and_bindings(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    from azure.mgmt.web.models import Certificate, HostNameBinding

    _, old = new_version(kv, "web", "www.example.test")
    certificate_id = arm.add_app_service_certificate(
        RG, "www-cert", vault=VAULT, secret_name="web", sites=[("site-www", "www.example.test")]
    )
    _, fresh = new_version(kv, "web", "www.example.test")
    client = web(arm, kv)
    current = client.certificates.get(RG, "www-cert")
    assert current.thumbprint == old
    synced = client.certificates.create_or_update(
        RG,
        "www-cert",
        Certificate(
            location=current.location,
            key_vault_id=current.key_vault_id,
            key_vault_secret_name=current.key_vault_secret_name,
            server_farm_id=current.server_farm_id,
        ),
    )
    assert synced.thumbprint == fresh and arm.bound_thumbprint(certificate_id) == fresh
    site = client.web_apps.get(RG, "site-www")
    assert {s.name: s.thumbprint for s in site.host_name_ssl_states}["www.example.test"] == fresh

    with pytest.raises(HttpResponseError) as refused:
        client.certificates.create_or_update(RG, "www-cert", Certificate(location=current.location))
    assert refused.value.status_code == 400
    elsewhere = Certificate(location="East US", key_vault_id=current.key_vault_id, key_vault_secret_name="web")
    with pytest.raises(HttpResponseError) as moved:
        client.certificates.create_or_update(RG, "www-cert", elsewhere)
    assert moved.value.status_code == 409 and moved.value.error.code == "InvalidResourceLocation"
    created = client.certificates.create_or_update(
        RG,
        "www-cert-2",
        Certificate(location="West Europe", key_vault_id=current.key_vault_id, key_vault_secret_name="web"),
    )
    assert created.thumbprint == fresh and created.id.endswith("/certificates/www-cert-2")

    binding = client.web_apps.create_or_update_host_name_binding(
        RG, "site-www", "shop.example.test", HostNameBinding(ssl_state="SniEnabled", thumbprint=fresh)
    )
    assert binding.thumbprint == fresh and binding.ssl_state == "SniEnabled"
    assert arm.bound_thumbprint(site.id, "shop.example.test") == fresh
    with pytest.raises(HttpResponseError):
        client.web_apps.create_or_update_host_name_binding(
            RG, "site-www", "shop.example.test", HostNameBinding(ssl_state="SniEnabled", thumbprint="AB" * 20)
        )


def test_api_management_update_replaces_the_hostname_list(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    from azure.mgmt.apimanagement.models import ApiManagementServiceUpdateParameters

    _, api_old = new_version(kv, "api", "api.example.test")
    new_version(kv, "portal", "portal.example.test")
    service_id = arm.add_api_management(
        RG,
        "apim-edge",
        hostnames={"api.example.test": secret_id(kv, "api"), "portal.example.test": secret_id(kv, "portal")},
    )
    _, api_new = new_version(kv, "api", "api.example.test")
    client = apim(arm, kv)
    service = client.api_management_service.get(RG, "apim-edge")
    poller = client.api_management_service.begin_update(
        RG, "apim-edge", ApiManagementServiceUpdateParameters(hostname_configurations=service.hostname_configurations)
    )
    assert arm.resource(service_id)["properties"]["provisioningState"] == "Updating"
    assert arm.bound_thumbprint(service_id, "api.example.test") == api_old
    updated = poller.result()
    assert updated.provisioning_state == "Succeeded"
    polls = [path for method, path, _, _ in arm.requests if method == "GET" and "/operations/" in path]
    assert len(polls) == 2  # InProgress once (lro_polls=1), then Succeeded
    hosts = {entry.host_name: entry for entry in updated.hostname_configurations}
    assert hosts["api.example.test"].certificate.thumbprint == api_new
    assert arm.bound_thumbprint(service_id, "api.example.test") == api_new
    patch = next(body for method, _, _, body in arm.requests if method == "PATCH")
    assert [e["hostName"] for e in patch["properties"]["hostnameConfigurations"]] == list(hosts)

    # A partial list deletes the hostnames left out (the built-in one stays).
    partial = [entry for entry in updated.hostname_configurations if entry.host_name != "portal.example.test"]
    client.api_management_service.begin_update(
        RG, "apim-edge", ApiManagementServiceUpdateParameters(hostname_configurations=partial)
    ).result()
    remaining = {e.host_name for e in client.api_management_service.get(RG, "apim-edge").hostname_configurations}
    assert remaining == {"apim-edge.azure-api.net", "api.example.test"}
    assert arm.binding(service_id, "portal.example.test") is None

    # While an update runs, another one is refused; the SDK's own defaults ride along in the PATCH body.
    client.api_management_service.begin_update(
        RG, "apim-edge", ApiManagementServiceUpdateParameters(hostname_configurations=partial), polling=False
    )
    assert arm.resource(service_id)["properties"]["provisioningState"] == "Updating"
    with pytest.raises(HttpResponseError) as busy:
        client.api_management_service.begin_update(
            RG, "apim-edge", ApiManagementServiceUpdateParameters(hostname_configurations=partial)
        )
    assert busy.value.status_code == 409 and busy.value.error.code == "AnotherOperationInProgress"
    arm.complete_operations()
    properties = arm.resource(service_id)["properties"]
    assert properties["provisioningState"] == "Succeeded" and properties["legacyPortalStatus"] == "Enabled"


def test_front_door_secret_put_with_a_new_version(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    from azure.mgmt.cdn.models import CustomerCertificateParameters, ResourceReference, Secret, SecretProperties

    v1, old = new_version(kv, "web", "www.example.test")
    secret_id_arm = arm.add_front_door_secret(RG, "afd-edge", "www-secret", vault=VAULT, secret_name="web", version=v1)
    v2, fresh = new_version(kv, "web", "www.example.test")
    client = cdn(arm, kv)
    current = client.secrets.get(RG, "afd-edge", "www-secret")
    source = current.properties.parameters.secret_source.id

    def put(version: str, use_latest: bool = False) -> Any:
        parameters = CustomerCertificateParameters(
            secret_source=ResourceReference(id=source), secret_version=version, use_latest_version=use_latest
        )
        return client.secrets.begin_create(
            RG, "afd-edge", "www-secret", Secret(properties=SecretProperties(parameters=parameters))
        )

    arm.front_door_deployment_polls = 1
    result = put(v2).result()
    assert result.properties.parameters.secret_version == v2 and result.properties.parameters.thumbprint == fresh
    assert arm.bound_thumbprint(secret_id_arm) == fresh
    body = next(body for method, _, _, body in arm.requests if method == "PUT")
    assert body["properties"]["parameters"] == {
        "type": "CustomerCertificate",
        "secretSource": {"id": source},
        "secretVersion": v2,
        "useLatestVersion": False,
    }
    domains = [client.afd_custom_domains.get(RG, "afd-edge", "www-secret-domain").deployment_status for _ in range(2)]
    assert domains == ["InProgress", "Succeeded"]

    with pytest.raises(HttpResponseError) as flipped:
        put(v2, use_latest=True)
    assert flipped.value.status_code == 400

    arm.lro_outcome, arm.lro_error_code = "Failed", "BadRequest"
    with pytest.raises(HttpResponseError) as failed:
        put(v1).result()
    assert failed.value.error.code == "BadRequest"
    assert arm.bound_thumbprint(secret_id_arm) == fresh and old != fresh


def test_bearer_token_required_and_claims_challenge_handled(kv: EmulatorHandle, arm: ArmStandIn) -> None:
    new_version(kv, "web", "www.example.test")
    arm.add_application_gateway(
        RG,
        "agw-edge",
        certificates={"web-cert": secret_id(kv, "web")},
        listeners={"web": ("www.example.test", "web-cert")},
    )
    path = f"/subscriptions/{arm.subscription_id}/resourceGroups/{RG}/providers/Microsoft.Network"
    path += "/applicationGateways/agw-edge"
    anonymous = requests.get(f"{arm.base_url}{path}?api-version=2026-03-01", verify=arm.ca_bundle, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    no_version = requests.get(
        f"{arm.base_url}{path}", headers={"Authorization": "Bearer t"}, verify=arm.ca_bundle, timeout=10
    )
    assert no_version.status_code == 400 and no_version.json()["error"]["code"] == "MissingApiVersionParameter"

    arm.claims_challenge()
    assert network(arm, kv).application_gateways.get(RG, "agw-edge").name == "agw-edge"
    assert [method for method, *_ in arm.requests[-2:]] == ["GET", "GET"]
