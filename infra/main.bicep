// One-command deployment of the certificate renewal service (`azd up`).
//
// This template (subscription scope) creates the platform and everything per vault that does not
// need the function code to exist: the function app and its identity, storage, monitoring, the
// role assignments, and one Event Grid system topic per certificate vault. The event
// subscriptions that point at the function `on_certificate_event` are created afterwards by
// infra/subscriptions.bicep, which the azd hooks deploy once the code is live (Event Grid refuses
// an AzureFunction destination that does not exist yet). See docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region of the resource group and the app resources.')
param location string

@description('Name of the resource group for the app resources. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Resource ids of the Key Vaults whose certificates the service renews. They may live in other resource groups and other subscriptions of the same tenant.')
param certificateVaultIds array = []

@description('Resource id of the configuration vault that holds issuer credentials (CA passwords, HMAC/EAB keys, ACME account keys). Must not be one of certificateVaultIds.')
param configVaultId string

@description('The renewal configuration document (vaults, issuers, routes); stored as JSON in RENEWAL_CONFIG.')
param renewalConfig object = {}

@description('Path of the configuration document inside the app, used when renewalConfig is empty.')
param renewalConfigPath string = ''

@description('App settings that carry issuer credentials, as [{ "setting": "CFSSL_HMAC", "secret": "cfssl-hmac" }]: each becomes an app setting holding a Key Vault reference to that secret in the configuration vault, resolved by the platform with the app identity.')
param issuerSecretSettings array = []

@description('NCRONTAB schedule (UTC) of the nightly sweep.')
param sweepSchedule string = '0 30 2 * * *'

@description('Region of the backup archive: a second region of the vaults\' geography (Key Vault restores only within a geography), normally their paired region. Empty: no backups.')
param backupLocation string = ''

@description('Days each backup is kept immutable in the archive.')
@minValue(1)
@maxValue(146000)
param backupRetentionDays int = 400

@description('NCRONTAB schedule (UTC) of the weekly backup of certificates the service did not renew.')
param backupSchedule string = '0 0 4 * * 0'

@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
@description('Log level of the renewal loggers.')
param logLevel string = 'INFO'

@description('Upper bound of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  2048
  4096
])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@description('Client id of the Entra ID app registration operators sign in with to the dashboard. Set: App Service authentication (Easy Auth) is turned on for the dashboard routes, and the dashboard trusts the signed-in principal. Empty: authentication stays off; the function key alone guards the routes.')
param dashboardEntraClientId string = ''

@description('Resource id of an action group that the alert rules notify (certificate expiring unrenewed, renewal failures, poison queue). Empty: alerts are raised without notification.')
param alertActionGroupId string = ''

@description('Resource ids of the Application Gateways (v2) the application_gateway deployer refreshes (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/applicationGateways/<name>; any resource group or subscription of the tenant). The app identity gets Network Contributor on each gateway only. Each gateway\'s own identity needs Key Vault Secrets User on the vault it reads its certificate from: the operator grants that, this template does not.')
param applicationGatewayIds array = []

@description('Resource ids of the user-assigned identities of those Application Gateways (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>). Needed only when the application_gateway deployer may repair a pinned (versioned) secret id with a full PUT of the gateway, which ARM allows only to a caller that may assign the gateway\'s identity: the app identity gets Managed Identity Operator on each identity listed, nothing else. Empty: tag refreshes still work, repairs fail with LinkedAuthorizationFailed.')
param applicationGatewayIdentityIds array = []

@description('Resource ids of the App Service certificates imported from Key Vault that the app_service deployer syncs (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Web/certificates/<name>; the certificate resources, not the sites). The app identity gets Website Contributor on each certificate resource only. The App Service resource provider\'s principal (Microsoft Azure App Service) needs Key Vault Certificate User on the vault: the operator grants that, this template does not.')
param appServiceCertificateIds array = []

@description('Resource ids of the API Management services whose custom hostnames the api_management deployer refreshes (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ApiManagement/service/<name>). The app identity gets API Management Service Operator Role on each service only. Each service\'s own identity needs Key Vault Secrets User on the vault: the operator grants that, this template does not.')
param apiManagementIds array = []

@description('Resource ids of the Front Door Standard/Premium profiles whose Key Vault secrets the front_door deployer moves to the new version (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Cdn/profiles/<name>; the deployer writes the profile\'s secrets). The app identity gets CDN Profile Contributor on each profile only. Front Door\'s own read access to the vault (Key Vault Secrets User for the Front Door principal or the profile\'s identity) is the operator\'s to grant, not this template\'s.')
param frontDoorProfileIds array = []

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var backupAccountName = 'stbackup${resourceToken}'
// Known before the account exists, so the app's settings need not wait for the backup module (which
// needs the app's identity): no cycle.
var backupBlobEndpoint = empty(backupLocation) ? '' : 'https://${backupAccountName}.blob.${environment().suffixes.storage}/'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module platform 'app/platform.bicep' = {
  name: 'platform'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    configVaultId: configVaultId
    renewalConfig: empty(renewalConfig) ? '' : string(renewalConfig)
    renewalConfigPath: renewalConfigPath
    issuerSecretSettings: issuerSecretSettings
    sweepSchedule: sweepSchedule
    backupBlobEndpoint: backupBlobEndpoint
    backupSchedule: backupSchedule
    logLevel: logLevel
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    dashboardEntraClientId: dashboardEntraClientId
  }
}

// Alert rules over the service's metrics in Application Insights (docs/operations.md).
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    actionGroupId: alertActionGroupId
  }
  dependsOn: [
    platform
  ]
}

// The backup archive in a second region (docs/disaster-recovery.md), when backupLocation is set.
module backup 'app/backup.bicep' = if (!empty(backupLocation)) {
  name: 'backup-${resourceToken}'
  scope: rg
  params: {
    location: backupLocation
    tags: tags
    accountName: backupAccountName
    principalId: platform.outputs.identityPrincipalId
    retentionDays: backupRetentionDays
  }
}

// Each certificate vault, in its own resource group (and subscription): Certificates Officer for
// the app identity on that vault only, and the vault's Event Grid system topic.
module vaultLocations 'app/vault-location.bicep' = [for (vaultId, i) in certificateVaultIds: {
  name: 'vault-location-${resourceToken}-${i}'
  scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
  params: {
    vaultName: split(vaultId, '/')[8]
  }
}]

module certificateVaults 'app/certificate-vault.bicep' = [for (vaultId, i) in certificateVaultIds: {
  name: 'certificate-vault-${resourceToken}-${i}'
  scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
  params: {
    vaultName: split(vaultId, '/')[8]
    location: vaultLocations[i].outputs.location
    principalId: platform.outputs.identityPrincipalId
    tags: tags
  }
}]

// The configuration vault: Secrets User for the app identity on that vault only.
module configVault 'app/config-vault.bicep' = {
  name: 'config-vault-${resourceToken}'
  scope: resourceGroup(split(configVaultId, '/')[2], split(configVaultId, '/')[4])
  params: {
    vaultName: split(configVaultId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}

// Each system topic's identity may write dead-lettered events into the dead-letter container.
module deadLetterAccess 'app/deadletter-access.bicep' = {
  name: 'deadletter-access'
  scope: rg
  params: {
    storageAccountName: platform.outputs.storageAccountName
    topicPrincipalIds: [for (vaultId, i) in certificateVaultIds: certificateVaults[i].outputs.systemTopicPrincipalId]
  }
}

// Rollout targets of the deployers (docs/deploy.md), each in its own resource group (and subscription): the app
// identity gets the one role its deployer needs, on that resource only. The services' own identities' Key Vault
// roles are the operator's to grant.
module applicationGateways 'app/rollout-application-gateway.bicep' = [for (gatewayId, i) in applicationGatewayIds: {
  name: 'rollout-appgw-${resourceToken}-${i}'
  scope: resourceGroup(split(gatewayId, '/')[2], split(gatewayId, '/')[4])
  params: {
    gatewayName: split(gatewayId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}]

module applicationGatewayIdentities 'app/rollout-gateway-identity.bicep' = [for (identityId, i) in applicationGatewayIdentityIds: {
  name: 'rollout-appgw-identity-${resourceToken}-${i}'
  scope: resourceGroup(split(identityId, '/')[2], split(identityId, '/')[4])
  params: {
    identityName: split(identityId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}]

module appServiceCertificates 'app/rollout-app-service-certificate.bicep' = [for (certificateId, i) in appServiceCertificateIds: {
  name: 'rollout-appservice-${resourceToken}-${i}'
  scope: resourceGroup(split(certificateId, '/')[2], split(certificateId, '/')[4])
  params: {
    certificateName: split(certificateId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}]

module apiManagementServices 'app/rollout-api-management.bicep' = [for (serviceId, i) in apiManagementIds: {
  name: 'rollout-apim-${resourceToken}-${i}'
  scope: resourceGroup(split(serviceId, '/')[2], split(serviceId, '/')[4])
  params: {
    serviceName: split(serviceId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}]

module frontDoorProfiles 'app/rollout-front-door.bicep' = [for (profileId, i) in frontDoorProfileIds: {
  name: 'rollout-frontdoor-${resourceToken}-${i}'
  scope: resourceGroup(split(profileId, '/')[2], split(profileId, '/')[4])
  params: {
    profileName: split(profileId, '/')[8]
    principalId: platform.outputs.identityPrincipalId
  }
}]

// Read by azd (service discovery) and by infra/hooks (the event subscription pass).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = platform.outputs.functionAppName
output RENEWAL_FUNCTION_APP_ID string = platform.outputs.functionAppId
output RENEWAL_IDENTITY_CLIENT_ID string = platform.outputs.identityClientId
output RENEWAL_STORAGE_ACCOUNT_NAME string = platform.outputs.storageAccountName
output RENEWAL_DEADLETTER_STORAGE_ID string = platform.outputs.storageAccountId
output RENEWAL_BACKUP_STORAGE string = backupBlobEndpoint
output RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS array = [for (vaultId, i) in certificateVaultIds: certificateVaults[i].outputs.systemTopicId]
