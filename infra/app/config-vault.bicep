// The configuration vault: issuer credentials (CA passwords, HMAC/EAB keys, ACME account keys)
// live here as secrets. It is the only vault where the app identity may read secrets: Key Vault
// Secrets User, on this vault only. Key Vault references in app settings resolve through the
// same identity (the function app's keyVaultReferenceIdentity).

@description('Name of the configuration vault (in this resource group).')
param vaultName string

@description('Principal id of the service\'s user-assigned identity.')
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output vaultUri string = vault.properties.vaultUri
