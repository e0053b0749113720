// Lets each vault's Event Grid system topic write dead-lettered events into the dead-letter
// container (deadLetterWithResourceIdentity): Storage Blob Data Contributor, scoped to that one
// container, for the topic's system-assigned identity.

param storageAccountName string

@description('Principal ids of the system topics\' identities.')
param topicPrincipalIds array

// renewal/settings.py: DEADLETTER_CONTAINER.
var deadLetterContainerName = 'eventgrid-deadletter'

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource topicBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for topicPrincipalId in topicPrincipalIds: {
  name: guid(deadLetterContainer.id, topicPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}]
