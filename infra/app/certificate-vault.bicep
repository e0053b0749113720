// One certificate vault, deployed in the vault's own resource group (and subscription).
//
// Least privilege (docs/deploy.md, promise 4): the app identity gets Key Vault Certificates
// Officer on this vault and nothing else. Certificates Officer creates versions, reads CSRs and
// merges chains without any data action on secrets. No Secrets role, no Certificate User (it
// reads the certificate's secret, i.e. the private key), no Administrator role is granted on a
// certificate vault.
//
// The vault's Event Grid system topic is created here too; its event subscription to the
// function follows in infra/subscriptions.bicep once the function exists.

@description('Name of the certificate vault (in this resource group).')
param vaultName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

@description('Region of the vault (its system topic must be there); read by vault-location.bicep.')
param location string

param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource certificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, 'a4417e6f-fecd-4de8-b567-7b0420556985')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a4417e6f-fecd-4de8-b567-7b0420556985')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// A vault has at most one system topic; its name and region follow the vault.
resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: 'evgt-${vaultName}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output systemTopicId string = systemTopic.id
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
