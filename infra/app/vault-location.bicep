// The region of an existing vault, as a module output: a resource's `location` must be known when
// its deployment starts, and an existing resource's properties other than id/name/type/apiVersion are
// not (Bicep BCP120). Read here, it reaches certificate-vault.bicep as a parameter, which is.

@description('Name of the vault (in this resource group).')
param vaultName string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

output location string = vault.location
