// The backup archive (docs/disaster-recovery.md): a storage account in a second region that holds the
// Key Vault backup of every certificate version, written by the app's identity and kept immutable.
//
// Key Vault restores a backup only into a vault of the same subscription and geography, so the second
// region should be the vaults' paired region (same geography). The container has a time-based retention
// policy: no one, the app included, can change or delete a backup before it ages out. The policy is left
// unlocked so a mistaken retention can be corrected; lock it once agreed (docs/disaster-recovery.md).

param location string
param tags object
param accountName string

@description('Principal id of the app identity: Storage Blob Data Contributor on the backup container only.')
param principalId string

@minValue(1)
@maxValue(146000)
param retentionDays int

// renewal/settings.py: BACKUP_CONTAINER.
var backupContainerName = 'certificate-backups'

resource backupStorage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Cool'
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
  parent: backupStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource backupContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: backupContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource retention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2024-01-01' = {
  parent: backupContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: retentionDays
    allowProtectedAppendWrites: false
  }
}

resource appBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(backupContainer.id, principalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: backupContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output blobEndpoint string = backupStorage.properties.primaryEndpoints.blob
