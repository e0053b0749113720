// One Application Gateway (v2) that the `application_gateway` deployer refreshes, deployed in the gateway's own
// resource group (and subscription).
//
// The app identity gets Network Contributor on this gateway only: a tags-only PATCH makes the gateway read Key
// Vault again, and a pinned (versioned) secret id is repaired with a full PUT of the gateway. Nothing on the
// resource group, the virtual network or anything else. The gateway's own identity needs Key Vault Secrets User on
// the vault it reads; the operator grants that, not this template.

@description('Name of the application gateway (in this resource group).')
param gatewayName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource gateway 'Microsoft.Network/applicationGateways@2024-05-01' existing = {
  name: gatewayName
}

resource networkContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(gateway.id, principalId, '4d97b98b-1d4f-4787-a291-c67834d212e7')
  scope: gateway
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4d97b98b-1d4f-4787-a291-c67834d212e7')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
