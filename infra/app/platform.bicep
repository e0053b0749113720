// The service's own resources in the app resource group: user-assigned identity, storage (no
// shared keys), Application Insights (Entra ID auth only), the Flex Consumption plan and the
// function app, and the identity's roles on storage and monitoring.
//
// Names of queues, table and containers equal the constants in renewal/settings.py
// (tests/infra checks it). App settings are every setting renewal/settings.py reads, minus its
// DEV_ONLY ones.

param location string
param tags object
param resourceToken string

@description('Resource id of the configuration vault (issuer credentials).')
param configVaultId string

@description('RENEWAL_CONFIG value: the configuration document as JSON text.')
param renewalConfig string

param renewalConfigPath string
@description('[{ setting: APP_SETTING_NAME, secret: secret name in the configuration vault }]')
param issuerSecretSettings array
param sweepSchedule string

@description('Blob endpoint of the backup archive in the second region; empty: no backups.')
param backupBlobEndpoint string = ''
param backupSchedule string
param logLevel string
param maximumInstanceCount int
param instanceMemoryMB int

@secure()
@description('RENEWAL_DASHBOARD_SECRET: key of the dashboard CSRF tokens, shared by all instances; a new one each deployment.')
param dashboardSecret string = newGuid()

@description('Client id of the Entra ID app registration for the dashboard; empty: no App Service authentication.')
param dashboardEntraClientId string = ''

var functionAppName = 'func-renewal-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// renewal/settings.py: JOBS_QUEUE, DEPLOYMENTS_QUEUE and poison_queue() of each.
var queueNames = [
  'renewal-jobs'
  'renewal-jobs-poison'
  'deployments'
  'deployments-poison'
]
// renewal/settings.py: LEDGER_TABLE.
var ledgerTableName = 'renewals'
// renewal/settings.py: CLAIMS_CONTAINER and DEADLETTER_CONTAINER.
var claimsContainerName = 'renewal-claims'
var deadLetterContainerName = 'eventgrid-deadletter'


resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-renewal-${resourceToken}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: 'strenewal${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource claimsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: claimsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Event Grid writes undeliverable events here; `python -m renewal replay` lists and re-drives them.
resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: ledgerTableName
}

// Each vault's certificate-create budget, shared by every instance (renewal/azure/create_budget.py).
resource createBudgetTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: 'createbudget'
}

// What the operators' views need from each certificate version, read once (renewal/azure/version_facts.py).
resource versionFactsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: 'versionfacts'
}

// The CAs' suggested renewal windows (RFC 9773 ARI), kept until their Retry-After (renewal/azure/renewal_windows.py).
resource renewalWindowsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: 'renewalwindows'
}

// Each deployer target's last outcome per certificate version (renewal/azure/rollout_log.py, docs/deployers.md).
resource rolloutsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: 'rollouts'
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-renewal-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-renewal-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-renewal-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'renewal'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // App settings of the form @Microsoft.KeyVault(...) resolve with this identity.
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

var configVaultName = split(configVaultId, '/')[8]

// Issuer credentials given as app settings: Key Vault references into the configuration vault,
// resolved by the platform with keyVaultReferenceIdentity (Key Vault Secrets User on that vault).
var issuerSecretReferences = toObject(
  issuerSecretSettings,
  entry => entry.setting,
  entry => '@Microsoft.KeyVault(SecretUri=https://${configVaultName}${environment().suffixes.keyvaultDns}/secrets/${entry.secret})'
)

// Every setting renewal/settings.py reads in Azure. Flex Consumption sets the runtime itself, so
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not app settings here.
var serviceSettings = {
  // Host storage, identity-based (renewal/settings.py STORAGE and the AZURE_ONLY endpoints).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  AZURE_CLIENT_ID: identity.properties.clientId
  RENEWAL_CONFIG: renewalConfig
  RENEWAL_CONFIG_PATH: renewalConfigPath
  RENEWAL_SWEEP_SCHEDULE: sweepSchedule
  RENEWAL_BACKUP_STORAGE: backupBlobEndpoint
  RENEWAL_BACKUP_SCHEDULE: backupSchedule
  RENEWAL_KEYVAULT_CREDENTIAL: 'managed-identity'
  RENEWAL_LOG_LEVEL: logLevel
  RENEWAL_METRICS_EXPORTER: 'auto'
  RENEWAL_DASHBOARD_SECRET: dashboardSecret
}

// App Service authentication (Easy Auth) for the dashboard, when an Entra app registration is given. The
// platform then sets WEBSITE_AUTH_ENABLED, and only then does the dashboard trust x-ms-client-principal-id.
// Event Grid's webhook and the other ops routes stay reachable with their function keys alone.
resource easyAuth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(dashboardEntraClientId)) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
        '/api/ops/renew'
        '/api/ops/failures'
        '/api/ops/replay'
        '/api/ops/status'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: dashboardEntraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${dashboardEntraClientId}'
            dashboardEntraClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  // The service's own settings win over an issuer setting of the same name.
  properties: union(issuerSecretReferences, serviceSettings)
}

// Storage Blob Data Owner on the account: the Functions host keeps its singleton and timer
// leases and its own containers (azure-webjobs-hosts, -secrets) in blob storage and creates them
// on start, Flex reads the code package from the deployment container, the service takes blob
// leases in the claims container and `replay` reads and deletes dead-letter blobs. Owner is the
// role the Functions docs name for identity-based host storage (AzureWebJobsStorage); it is
// scoped to this account, which holds nothing but the service's own data.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor on the account: the queue triggers read and delete messages,
// the outputs and the orchestrator send (including delayed re-queues of pending jobs), the host
// moves failures to <queue>-poison, and `replay` re-drives poison messages. Reader + Message
// Processor + Message Sender would cover the triggers and outputs but not the poison moves.
resource storageQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor on the account: the renewal ledger (table `renewals`) inserts
// and updates rows with ETag checks; there is no narrower built-in table role that writes.
resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher on the Application Insights component only: local auth is off, so
// telemetry is sent with the identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output storageAccountName string = storage.name
output storageAccountId string = storage.id
output deadLetterContainerName string = deadLetterContainer.name
