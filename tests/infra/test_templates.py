"""The Bicep templates keep the deployment's promises; each checker is also run on a broken copy."""

from __future__ import annotations

import json
import re

import pytest

from renewal import settings
from tests.infra import templates as t

TEMPLATES = t.load_templates()
CERT_VAULT = "app/certificate-vault.bicep"
CONFIG_VAULT = "app/config-vault.bicep"
PLATFORM = "app/platform.bicep"
BACKUP = "app/backup.bicep"
EVENT_SUB = "app/event-subscription.bicep"
VAULT_LOCATION = "app/vault-location.bicep"
APP_GATEWAY = "app/rollout-application-gateway.bicep"
GATEWAY_IDENTITY = "app/rollout-gateway-identity.bicep"
APP_SERVICE_CERT = "app/rollout-app-service-certificate.bicep"
API_MANAGEMENT = "app/rollout-api-management.bicep"
FRONT_DOOR = "app/rollout-front-door.bicep"


def mutated(path: str, old: str, new: str) -> t.Templates:
    """A copy of the templates with one edit; fails if the edit does not apply (the test would prove nothing)."""
    assert old in TEMPLATES[path], f"{old!r} not in {path}"
    copy = dict(TEMPLATES)
    copy[path] = TEMPLATES[path].replace(old, new)
    return copy


def test_the_expected_templates_exist():
    assert {t.MAIN, t.SUBSCRIPTIONS, CERT_VAULT, CONFIG_VAULT, PLATFORM, EVENT_SUB} <= set(TEMPLATES)
    assert {APP_GATEWAY, GATEWAY_IDENTITY, APP_SERVICE_CERT, API_MANAGEMENT, FRONT_DOOR} <= set(TEMPLATES)


@pytest.mark.parametrize("path", sorted(TEMPLATES))
def test_every_bicep_file_parses(path):
    assert t.check_syntax({path: TEMPLATES[path]}) == []


def test_a_syntax_error_is_caught():
    broken = mutated(PLATFORM, "resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {", "resource plan = {")
    assert t.check_syntax(broken)


def test_modules_referenced_by_the_entry_templates_exist():
    for entry in (t.MAIN, t.SUBSCRIPTIONS):
        for mod in t.modules(t.parse(TEMPLATES[entry])).values():
            assert mod["path"] in TEMPLATES, f"{entry} uses missing module {mod['path']}"


# --- roles --------------------------------------------------------------------------------------------


def test_only_allowed_roles_on_the_right_kind_of_resource():
    assert t.check_roles(TEMPLATES) == []


def test_the_expected_role_assignments_are_present():
    grants = {(g.file, next(iter(g.role_ids))) for g in t.role_grants(TEMPLATES)}
    assert grants == {
        (CERT_VAULT, t.CERTIFICATES_OFFICER),
        (CONFIG_VAULT, t.SECRETS_USER),
        (PLATFORM, t.BLOB_DATA_OWNER),
        (PLATFORM, t.QUEUE_DATA_CONTRIBUTOR),
        (PLATFORM, t.TABLE_DATA_CONTRIBUTOR),
        (PLATFORM, t.METRICS_PUBLISHER),
        ("app/deadletter-access.bicep", t.BLOB_DATA_CONTRIBUTOR),
        (BACKUP, t.BLOB_DATA_CONTRIBUTOR),
        (APP_GATEWAY, t.NETWORK_CONTRIBUTOR),
        (GATEWAY_IDENTITY, t.MANAGED_IDENTITY_OPERATOR),
        (APP_SERVICE_CERT, t.WEBSITE_CONTRIBUTOR),
        (API_MANAGEMENT, t.API_MANAGEMENT_OPERATOR),
        (FRONT_DOOR, t.CDN_PROFILE_CONTRIBUTOR),
    }


def test_the_backup_archive_is_in_its_own_region_immutable_and_written_only_through_its_container():
    main = t.parse(TEMPLATES[t.MAIN])
    (module,) = [m for m in t.modules(main).values() if m["path"] == BACKUP]
    assert module["body"]["config"]["params"]["location"] == "backupLocation"  # never the app's own region
    assert "backupLocation" in str(module["body"]["condition"])  # no archive without a region for it
    doc = t.parse(TEMPLATES[BACKUP])
    kinds = {r.type: r.body for r in t.resources(doc)}
    policy = kinds["Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"]
    assert policy["properties"]["immutabilityPeriodSinceCreationInDays"] == "retentionDays"
    assert policy["properties"]["allowProtectedAppendWrites"] is False
    account = kinds["Microsoft.Storage/storageAccounts"]["properties"]
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    (grant,) = [g for g in t.role_grants(TEMPLATES) if g.file == BACKUP]
    assert grant.scope_type == "Microsoft.Storage/storageAccounts/blobServices/containers"


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        # Owner on the storage account instead of Blob Data Owner.
        (PLATFORM, "'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')\n", "'8e3af657-a8ff-443c-a75c-2fe8c4bcb635')\n"),
        # Metrics Publisher on the storage account instead of Application Insights.
        (PLATFORM, "scope: appInsights", "scope: storage"),
        # The topic's Blob Data Contributor on the whole account instead of the container.
        ("app/deadletter-access.bicep", "scope: deadLetterContainer", "scope: storage"),
        # The app's backup writes on the whole backup account instead of its container.
        ("app/backup.bicep", "scope: backupContainer", "scope: backupStorage"),
        # Network Contributor on the gateway's whole resource group instead of the gateway.
        (APP_GATEWAY, "  scope: gateway\n", "  scope: resourceGroup()\n"),
        # No scope at all: the assignment lands on the resource group the module is deployed to.
        (FRONT_DOOR, "  scope: frontDoorProfile\n", ""),
        # Network Contributor on an API Management service (it is for application gateways only).
        (
            API_MANAGEMENT,
            "roleDefinitions', 'e022efe7-f5ba-4159-bbe4-b44f577e9b61')",
            "roleDefinitions', '4d97b98b-1d4f-4787-a291-c67834d212e7')",
        ),
        # Website Contributor on the site instead of the certificate resource.
        (
            APP_SERVICE_CERT,
            "resource certificate 'Microsoft.Web/certificates@2024-04-01' existing",
            "resource certificate 'Microsoft.Web/sites@2024-04-01' existing",
        ),
        # Managed Identity Operator on the gateway instead of its identity.
        (
            GATEWAY_IDENTITY,
            "resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing",
            "resource gatewayIdentity 'Microsoft.Network/applicationGateways@2024-05-01' existing",
        ),
        # Contributor on a Front Door profile instead of CDN Profile Contributor.
        (
            FRONT_DOOR,
            "roleDefinitions', 'ec156ff8-a8d1-4d15-830c-5b80698ca432')",
            "roleDefinitions', 'b24988ac-6180-42a0-ab88-20f7382dd24c')",
        ),
        # A role id that is not a literal.
        (
            CERT_VAULT,
            "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
            "'a4417e6f-fecd-4de8-b567-7b0420556985')",
            "roleDefinitionId: roleId",
        ),
    ],
)
def test_role_checker_catches(path, old, new):
    assert t.check_roles(mutated(path, old, new))


ROLLOUT_MODULES = {target.module: target for target in t.ROLLOUT_TARGETS.values()}


def test_the_rollout_modules_are_the_ones_this_file_names():
    assert set(ROLLOUT_MODULES) == {APP_GATEWAY, GATEWAY_IDENTITY, APP_SERVICE_CERT, API_MANAGEMENT, FRONT_DOOR}
    assert set(t.ROLLOUT_TARGETS) == {
        "applicationGatewayIds",
        "applicationGatewayIdentityIds",
        "appServiceCertificateIds",
        "apiManagementIds",
        "frontDoorProfileIds",
    }


@pytest.mark.parametrize("path", sorted(ROLLOUT_MODULES))
def test_each_rollout_grant_is_on_the_existing_target_resource_itself(path):
    target = ROLLOUT_MODULES[path]
    (grant,) = [g for g in t.role_grants(TEMPLATES) if g.file == path]
    assert grant.role_ids == {target.role}
    assert grant.scope_type == target.resource_type  # not a resource group, not a subscription
    doc = t.parse(TEMPLATES[path])
    scoped = {r.symbol: r for r in t.resources(doc)}[grant.scope_symbol]
    assert scoped.existing and scoped.body["name"] == target.name_param
    assert "resourceGroup()" not in TEMPLATES[path] and "subscription()" not in TEMPLATES[path]


def test_rollout_targets_are_wired_from_main_to_one_grant_per_target():
    assert t.check_rollout_targets(TEMPLATES) == []
    found = t.modules(t.parse(TEMPLATES[t.MAIN]))
    looped = {m["loop_over"]: m["path"] for m in found.values() if m["path"] in ROLLOUT_MODULES}
    assert looped == {param: target.module for param, target in t.ROLLOUT_TARGETS.items()}


@pytest.mark.parametrize(
    ("param", "operator_grants"),
    [
        ("applicationGatewayIds", "Key Vault Secrets User"),
        ("appServiceCertificateIds", "Key Vault Certificate User"),
        ("apiManagementIds", "Key Vault Secrets User"),
        ("frontDoorProfileIds", "Key Vault Secrets User"),
    ],
)
def test_target_parameters_say_which_key_vault_role_the_operator_grants_the_service(param, operator_grants):
    (description,) = [
        d["argument"]
        for d in t.parse(TEMPLATES[t.MAIN])["parameters"][param]["decorators"]
        if d["type"] == "description"
    ]
    assert operator_grants in description and "operator" in description
    # ...and nothing here grants it: the only secrets role the templates hold is the configuration vault's.
    assert t.check_vault_roles(TEMPLATES) == []


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        # A parameter no module loops over: its targets would get no role.
        (t.MAIN, "in apiManagementIds: {", "in []: {"),
        # The parameter itself gone.
        (t.MAIN, "param frontDoorProfileIds array = []\n", ""),
        # A parameter that must be given (no default).
        (t.MAIN, "param applicationGatewayIdentityIds array = []", "param applicationGatewayIdentityIds array"),
        # The module deployed in the app's resource group instead of the target's.
        (
            t.MAIN,
            "scope: resourceGroup(split(certificateId, '/')[2], split(certificateId, '/')[4])",
            "scope: rg",
        ),
        # The resource group segment taken from the wrong place of the id.
        (
            t.MAIN,
            "scope: resourceGroup(split(gatewayId, '/')[2], split(gatewayId, '/')[4])",
            "scope: resourceGroup(split(gatewayId, '/')[2], split(gatewayId, '/')[6])",
        ),
        # The name wired from the wrong segment.
        (t.MAIN, "profileName: split(profileId, '/')[8]", "profileName: split(profileId, '/')[4]"),
        # The grant for some other principal than the app identity.
        (
            t.MAIN,
            "    serviceName: split(serviceId, '/')[8]\n    principalId: platform.outputs.identityPrincipalId",
            "    serviceName: split(serviceId, '/')[8]\n    principalId: platform.outputs.identityClientId",
        ),
        # The gateway module fed from the identity list.
        (t.MAIN, "in applicationGatewayIds: {", "in applicationGatewayIdentityIds: {"),
        # A deployment name without the environment: two environments would overwrite each other.
        (t.MAIN, "name: 'rollout-apim-${resourceToken}-${i}'", "name: 'rollout-apim-${i}'"),
        # The grant on the resource group instead of the gateway.
        (APP_GATEWAY, "  scope: gateway\n", "  scope: resourceGroup()\n"),
        # Network Contributor on an API Management service.
        (
            API_MANAGEMENT,
            "roleDefinitions', 'e022efe7-f5ba-4159-bbe4-b44f577e9b61')",
            "roleDefinitions', '4d97b98b-1d4f-4787-a291-c67834d212e7')",
        ),
        # The target created (and so overwritten) instead of referenced.
        (
            FRONT_DOOR,
            "resource frontDoorProfile 'Microsoft.Cdn/profiles@2024-09-01' existing = {",
            "resource frontDoorProfile 'Microsoft.Cdn/profiles@2024-09-01' = {",
        ),
        # An assignment name that is not unique per resource, principal and role.
        (
            APP_SERVICE_CERT,
            "name: guid(certificate.id, principalId, 'de139f84-1756-47ae-9be6-808fbbe84772')",
            "name: guid(certificate.id, 'de139f84-1756-47ae-9be6-808fbbe84772')",
        ),
        # The grant to some other principal than the module's parameter.
        (GATEWAY_IDENTITY, "    principalId: principalId\n", "    principalId: identityName\n"),
    ],
)
def test_rollout_target_checker_catches(path, old, new):
    assert t.check_rollout_targets(mutated(path, old, new))


def test_rollout_target_checker_catches_a_second_grant_in_a_module():
    grant = TEMPLATES[APP_GATEWAY].split("resource networkContributor")[1]
    broken = dict(TEMPLATES)
    broken[APP_GATEWAY] = (
        TEMPLATES[APP_GATEWAY]
        + "\nresource another"
        + grant.replace("'4d97b98b-1d4f-4787-a291-c67834d212e7'", "'acdd72a7-3385-48ef-bd42-f606fba81ae7'")
    )
    assert any("2 role assignments" in p for p in t.check_rollout_targets(broken))
    assert t.check_roles(broken)  # Reader is not in the allowed set either


def test_certificate_vaults_get_only_certificates_officer_and_secrets_only_the_config_vault():
    assert t.check_vault_roles(TEMPLATES) == []
    certificate, config = t.vault_module_files(TEMPLATES)
    assert certificate == {CERT_VAULT, VAULT_LOCATION}
    assert "roleAssignments" not in TEMPLATES[VAULT_LOCATION]  # it only reads the vault's region
    assert config == {CONFIG_VAULT}


@pytest.mark.parametrize(
    "role",
    [
        t.SECRETS_USER,
        "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",  # Certificate User: reads the certificate's secret
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",  # Key Vault Administrator
    ],
)
def test_vault_checker_catches_a_secrets_role_on_a_certificate_vault(role):
    broken = mutated(
        CERT_VAULT,
        "roleDefinitions', 'a4417e6f-fecd-4de8-b567-7b0420556985')",
        f"roleDefinitions', '{role}')",
    )
    problems = t.check_vault_roles(broken)
    assert any("certificate vault" in p for p in problems), problems
    assert t.check_roles(broken) or role == t.SECRETS_USER


def test_vault_checker_catches_a_second_role_on_a_certificate_vault():
    extra = (
        TEMPLATES[CERT_VAULT]
        .split("// A vault has at most one system topic")[0]
        .split("resource certificatesOfficer")[1]
    )
    added = "resource certificatesOfficer" + extra.replace(
        "a4417e6f-fecd-4de8-b567-7b0420556985')\n    principalId",
        "4633458b-17de-408a-b874-0445c86b69e6')\n    principalId",
    ).replace("certificatesOfficer", "secretsToo", 1)
    broken = dict(TEMPLATES)
    broken[CERT_VAULT] = (
        TEMPLATES[CERT_VAULT] + "\n" + added.replace("resource certificatesOfficer", "resource secretsToo")
    )
    assert any("Key Vault Secrets User on a certificate vault" in p for p in t.check_vault_roles(broken))


def test_vault_checker_catches_a_wrong_role_on_the_config_vault():
    broken = mutated(
        CONFIG_VAULT,
        "roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')",
        "roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')",
    )
    assert t.check_vault_roles(broken)


def test_vault_checker_catches_certificate_vaults_served_by_the_config_module():
    broken = mutated(
        t.MAIN,
        "module certificateVaults 'app/certificate-vault.bicep'",
        "module certificateVaults 'app/config-vault.bicep'",
    )
    assert t.check_vault_roles(broken)


def test_vault_checker_catches_a_secrets_role_granted_outside_the_config_vault_module():
    broken = mutated(PLATFORM, "'0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')\n", "'4633458b-17de-408a-b874-0445c86b69e6')\n")
    assert t.check_vault_roles(broken)


# --- event subscriptions -----------------------------------------------------------------------------


def test_event_subscriptions_filter_retry_and_dead_letter():
    assert t.check_event_subscriptions(TEMPLATES) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("        'Microsoft.KeyVault.CertificateExpired'\n", ""),
        ("    filter: {\n      includedEventTypes: [", "    filter: {\n      excludedEventTypes: ["),
        ("deadLetterWithResourceIdentity: {", "deadLetterNowhere: {"),
        ("var deadLetterContainerName = 'eventgrid-deadletter'", "var deadLetterContainerName = 'elsewhere'"),
        (
            "        type: 'SystemAssigned'\n      }\n      deadLetterDestination",
            "        type: 'None'\n      }\n      deadLetterDestination",
        ),
        ("    retryPolicy: {", "    retryPolicyOff: {"),
        ("var functionName = 'on_certificate_event'", "var functionName = 'other_function'"),
    ],
)
def test_event_subscription_checker_catches(old, new):
    assert t.check_event_subscriptions(mutated(EVENT_SUB, old, new))


def test_event_subscription_checker_catches_a_missing_subscription():
    broken = {k: v for k, v in TEMPLATES.items() if k != EVENT_SUB}
    assert t.check_event_subscriptions(broken)


def test_main_template_creates_one_system_topic_per_vault_and_no_subscription():
    doc = t.parse(TEMPLATES[CERT_VAULT])
    topics = [r for r in t.resources(doc) if r.type == "Microsoft.EventGrid/systemTopics"]
    assert len(topics) == 1
    props = topics[0].body["properties"]
    assert props["topicType"] == "Microsoft.KeyVault.vaults"
    assert topics[0].body["identity"]["type"] == "SystemAssigned"
    # The subscription needs the function; only the second pass (subscriptions.bicep) may create it.
    reachable_from_main = {t.MAIN} | {m["path"] for m in t.modules(t.parse(TEMPLATES[t.MAIN])).values()}
    assert EVENT_SUB not in reachable_from_main
    assert EVENT_SUB in {m["path"] for m in t.modules(t.parse(TEMPLATES[t.SUBSCRIPTIONS])).values()}


# --- app settings -------------------------------------------------------------------------------------


def test_every_setting_the_code_reads_is_set_and_no_dev_only_one():
    assert t.check_app_settings(TEMPLATES) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  RENEWAL_LOG_LEVEL: logLevel\n", ""),
        ("  AZURE_CLIENT_ID: identity.properties.clientId\n", ""),
        ("  RENEWAL_LOG_LEVEL: logLevel\n", "  RENEWAL_LOG_LEVEL: logLevel\n  RENEWAL_KEYVAULT_CA_BUNDLE: ''\n"),
        (
            "  AzureWebJobsStorage__credential: 'managedidentity'\n",
            "  AzureWebJobsStorage__credential: 'connectionstring'\n",
        ),
        ("  RENEWAL_LOG_LEVEL: logLevel\n", "  RENEWAL_LOG_LEVEL: logLevel\n  FUNCTIONS_WORKER_RUNTIME: 'python'\n"),
        ("properties: union(issuerSecretReferences, serviceSettings)", "properties: issuerSecretReferences"),
    ],
)
def test_app_settings_checker_catches(old, new):
    assert t.check_app_settings(mutated(PLATFORM, old, new))


def test_issuer_secret_settings_become_key_vault_references_to_the_config_vault():
    doc = t.parse(TEMPLATES[PLATFORM])
    text = json.dumps(doc["variables"]["issuerSecretReferences"])
    assert "@Microsoft.KeyVault(SecretUri=https://${configVaultName}" in text
    assert t.resolve(doc, "configVaultName") != "configVaultName"


def test_platform_settings():
    doc = t.parse(TEMPLATES[PLATFORM])
    by_type = {r.type: r for r in t.resources(doc)}
    storage = by_type[t.STORAGE_ACCOUNT].body["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert by_type[t.APP_INSIGHTS].body["properties"]["DisableLocalAuth"] is True
    plan = by_type["Microsoft.Web/serverfarms"].body
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = by_type["Microsoft.Web/sites"].body
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert json.dumps(site["properties"]["keyVaultReferenceIdentity"]) == json.dumps(
        {"operator": {"type": "property_accessor", "operands": {"operand_1": "identity", "operand_2": "id"}}}
    )
    assert "listKeys" not in "".join(TEMPLATES.values())
    assert "AccountKey=" not in "".join(TEMPLATES.values())


def test_api_versions_are_stable_and_recent():
    for path, text in TEMPLATES.items():
        for res_type, version in re.findall(r"'([A-Za-z.]+/[A-Za-z/]+)@([0-9-]+[A-Za-z-]*)'", text):
            assert "preview" not in version, f"{path}: {res_type}@{version}"
            assert version >= "2020-02-02", f"{path}: {res_type}@{version}"


# --- storage names ------------------------------------------------------------------------------------


def test_queue_table_and_container_names_equal_the_settings_constants():
    assert t.check_storage_names(TEMPLATES) == []
    found = t.storage_names(TEMPLATES)
    assert settings.poison_queue(settings.JOBS_QUEUE) in found["queues"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  'deployments-poison'\n", ""),
        ("var ledgerTableName = 'renewals'", "var ledgerTableName = 'ledger'"),
        ("var claimsContainerName = 'renewal-claims'", "var claimsContainerName = 'claims'"),
        ("var deadLetterContainerName = 'eventgrid-deadletter'", "var deadLetterContainerName = 'deadletter'"),
    ],
)
def test_storage_name_checker_catches(old, new):
    assert t.check_storage_names(mutated(PLATFORM, old, new))


def test_storage_name_checker_catches_a_wrong_container_in_the_dead_letter_role():
    broken = mutated("app/deadletter-access.bicep", "= 'eventgrid-deadletter'", "= 'other'")
    assert t.check_storage_names(broken)


# --- deploy-time constants (Bicep BCP120) -----------------------------------------------------------------
def test_no_existing_resource_property_is_used_where_bicep_needs_it_at_deployment_start():
    assert t.check_deploy_time_constants(TEMPLATES) == []


def test_the_check_catches_the_vault_location_of_an_existing_vault():
    broken = mutated(CERT_VAULT, "  location: location\n", "  location: vault.location\n")
    problems = t.check_deploy_time_constants(broken)
    assert problems and "systemTopic.location uses vault.location" in problems[0]
    # id and name of an existing resource are known at the start: not a problem.
    fine = mutated(CERT_VAULT, "  name: 'evgt-${vaultName}'\n", "  name: 'evgt-${vault.name}'\n")
    assert t.check_deploy_time_constants(fine) == []


def test_the_vault_region_reaches_the_system_topic_as_a_module_parameter():
    found = t.modules(t.parse(TEMPLATES[t.MAIN]))
    assert "vaultLocations" in json.dumps(found["certificateVaults"]["body"]["params"]["location"], default=str)
    assert found["vaultLocations"]["path"] == VAULT_LOCATION


# --- Easy Auth ------------------------------------------------------------------------------------------
def test_easy_auth_is_turned_on_only_when_an_entra_app_is_given_and_event_grid_stays_reachable():
    platform = t.parse(TEMPLATES[PLATFORM])
    easy_auth = platform["resources"]["easyAuth"]
    assert easy_auth["type"] == "Microsoft.Web/sites/config"
    text = json.dumps(easy_auth, default=str)
    assert "dashboardEntraClientId" in json.dumps(easy_auth["config"].get("condition"), default=str), text[:300]
    body = json.dumps(easy_auth["config"]["config"], default=str)
    assert "authsettingsV2" in body and "/runtime/webhooks/eventgrid" in body and "requireAuthentication" in body
    main = t.parse(TEMPLATES[t.MAIN])
    assert "dashboardEntraClientId" in main["parameters"]
    assert "dashboardEntraClientId" in json.dumps(t.modules(main)["platform"]["body"]["params"], default=str)
