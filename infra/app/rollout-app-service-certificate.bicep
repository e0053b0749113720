// One App Service certificate imported from Key Vault (Microsoft.Web/certificates) that the `app_service` deployer
// syncs, deployed in the certificate resource's own resource group (and subscription).
//
// The deployer re-PUTs the certificate resource with the same keyVaultId and keyVaultSecretName (what the portal's
// Sync does); the hostname bindings follow. The app identity gets Website Contributor on this certificate resource
// only: it is the built-in role that holds Microsoft.Web/certificates/* (no narrower built-in role has it), and
// scoped to the certificate it reaches no site, plan or other certificate. The App Service resource provider's
// principal needs Key Vault Certificate User on the vault; the operator grants that, not this template.

@description('Name of the Microsoft.Web/certificates resource (in this resource group).')
param certificateName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource certificate 'Microsoft.Web/certificates@2024-04-01' existing = {
  name: certificateName
}

resource websiteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(certificate.id, principalId, 'de139f84-1756-47ae-9be6-808fbbe84772')
  scope: certificate
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'de139f84-1756-47ae-9be6-808fbbe84772')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
