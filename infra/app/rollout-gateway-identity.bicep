// One user-assigned identity of an Application Gateway, deployed in the identity's own resource group (and
// subscription).
//
// A full PUT of a gateway names its user-assigned identity, and ARM then checks that the caller may assign that
// identity (Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action; without it the PUT fails with
// LinkedAuthorizationFailed). The `application_gateway` deployer makes that PUT only to repair a pinned secret id,
// so the app identity gets Managed Identity Operator on this identity only, when the operator lists it.

@description('Name of the gateway\'s user-assigned identity (in this resource group).')
param identityName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource identityOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(gatewayIdentity.id, principalId, 'f1a07417-d97a-45cb-824c-7a7467783830')
  scope: gatewayIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'f1a07417-d97a-45cb-824c-7a7467783830')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
