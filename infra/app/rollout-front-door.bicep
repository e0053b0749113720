// One Azure Front Door Standard/Premium profile whose Key Vault secrets the `front_door` deployer moves to a new
// version, deployed in the profile's own resource group (and subscription).
//
// Front Door secrets (Microsoft.Cdn/profiles/secrets) are PUT-only; the deployer PUTs the profile's secret with the
// new secretVersion (or re-PUTs one that follows the latest version). The app identity gets CDN Profile Contributor
// on this profile only. Front Door's own access to the vault (Key Vault Secrets User for the Front Door service
// principal or the profile's managed identity) is the operator's to grant, not this template's.

@description('Name of the Front Door profile (in this resource group).')
param profileName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource frontDoorProfile 'Microsoft.Cdn/profiles@2024-09-01' existing = {
  name: profileName
}

resource profileContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(frontDoorProfile.id, principalId, 'ec156ff8-a8d1-4d15-830c-5b80698ca432')
  scope: frontDoorProfile
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ec156ff8-a8d1-4d15-830c-5b80698ca432')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
