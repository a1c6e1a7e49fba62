// The storage account of the Functions host (AzureWebJobsStorage) and of signup-bridge's state:
// blobs (checkpoint, ledgers, the timer lock, function keys) and queues (signup-provision and
// its poison queue). Flex Consumption also keeps the deployment package here.

@description('Azure region.')
param location string

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
param storageAccountName string

@description('Keep shared-key access: Linux Consumption (Y1) mounts its content share (Azure Files) with the account key.')
param allowSharedKeyAccess bool

@description('Blob container for the Flex Consumption deployment package; empty for none.')
param deploymentContainerName string = ''

param tags object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (!empty(deploymentContainerName)) {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(deploymentContainerName)) {
  parent: blobService
  name: empty(deploymentContainerName) ? 'unused' : deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
