// Role assignments for the Function App's system-assigned identity (and, optionally, for the
// operator who creates the certificate and secrets). Role definition ids are the built-in ids:
//
//   Storage Blob Data Owner        b7e6dc6d-f1e8-4753-8033-0f276bb0955b  host storage (keys, timer lock,
//                                  Flex deployment package) and signup-bridge's checkpoint/ledger blobs
//   Storage Queue Data Contributor 974c5e8b-45b9-4653-ba55-5f855dd0fb88  the ProvisionUser queue trigger and
//                                  PollAuditLogs enqueueing to signup-provision
//   Key Vault Secrets User         4633458b-17de-408a-b874-0445c86b69e6  the Graph certificate (read as the
//                                  secret of the same name) and the Key Vault references
//   Key Vault Certificates Officer a4417e6f-fecd-4de8-b567-7b0420356985  operator: create the certificate
//   Key Vault Secrets Officer      b86a8fe4-44ce-4948-aee5-eccb2c155cd7  operator: set the destinations' secrets
//
// Storage Account Contributor (17d1049b-9a84-46fb-8f53-869881c3d3ab) is not assigned: it is a
// management-plane role the host needs only for identity-based connections to Azure Files
// (the Consumption content share), which cannot use an identity anyway (Y1 uses the account
// key for it); blob and queue data roles cover everything else.

@description('Principal id of the Function App\'s system-assigned identity.')
param principalId string

@description('Storage account name.')
param storageAccountName string

@description('Key Vault name.')
param keyVaultName string

@description('Optional: object id of the operator (user or group) who creates the certificate and secrets.')
param operatorPrincipalId string = ''

@description('principalType of operatorPrincipalId: User, Group or ServicePrincipal.')
param operatorPrincipalType string = 'User'

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420356985'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorCertificates 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a4417e6f-fecd-4de8-b567-7b0420356985')
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource operatorSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
