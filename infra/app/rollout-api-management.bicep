// One API Management service whose custom hostnames the `api_management` deployer refreshes, deployed in the
// service's own resource group (and subscription).
//
// The deployer PATCHes the service with its full hostname list as read (there is no "sync hostname" call). The app
// identity gets API Management Service Operator Role on this service only: it manages the service (write,
// updatehostname) but not its APIs. The service's own identity needs Key Vault Secrets User on the vault; the
// operator grants that, not this template.

@description('Name of the API Management service (in this resource group).')
param serviceName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource apiManagement 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: serviceName
}

resource serviceOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apiManagement.id, principalId, 'e022efe7-f5ba-4159-bbe4-b44f577e9b61')
  scope: apiManagement
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'e022efe7-f5ba-4159-bbe4-b44f577e9b61')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
