// Key Vault with RBAC authorization (no access policies): it holds the Graph app's
// certificate (created after deployment, see README, Deployment) and the destinations' secrets,
// which the Function App reads through Key Vault references with its managed identity.

@description('Azure region.')
param location string

@description('Key Vault name: 3-24 letters, digits and dashes, globally unique.')
param keyVaultName string

param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
// Ends with a slash: https://<name>.vault.azure.net/
output uri string = vault.properties.vaultUri
