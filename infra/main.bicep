// signup-bridge: the Azure resources of one deployment, in one resource group.
//
//   az deployment group create -g <group> -f infra/main.bicep -p infra/main.parameters.json
//
// Function App (Linux Consumption Y1 by default, or Flex Consumption FC1) with a
// system-assigned identity; storage account; Log Analytics + Application Insights; Key Vault
// (RBAC) for the Graph certificate and the destinations' secrets; the identity's roles.
// Linux Consumption retires on 30 September 2028: hostingPlan 'FlexConsumption' is the way on.

targetScope = 'resourceGroup'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Short name the resource names are made from (lowercase letters, digits, dashes).')
@minLength(3)
@maxLength(16)
param baseName string = 'signup-bridge'

@description('Consumption = Linux Consumption (Y1, retires 30 September 2028); FlexConsumption = Flex Consumption (FC1).')
@allowed([
  'Consumption'
  'FlexConsumption'
])
param hostingPlan string = 'Consumption'

@description('The external tenant id (GUID): ENTRA_TENANT_ID and GRAPH_TENANT_ID.')
param entraTenantId string

@description('Client id of the custom extension\'s app registration: EXTENSION_APP_ID.')
param extensionAppId string

@description('More accepted token audiences, comma-separated (e.g. the app\'s identifier URI): EXTENSION_AUDIENCES.')
param extensionAudiences string = ''

@description('Client id of the Graph app registration: GRAPH_CLIENT_ID.')
param graphClientId string

@description('Name of the Graph certificate in the Key Vault: GRAPH_CERTIFICATE_NAME.')
param graphCertificateName string = 'graph-client'

@description('NCRONTAB schedule of PollAuditLogs: POLL_SCHEDULE.')
param pollSchedule string = '0 */5 * * * *'

@description('Mailchimp: needs the Key Vault secret mailchimp-api-key.')
param enableMailchimp bool = false
param mailchimpListId string = ''

@description('Stripe: needs the Key Vault secret stripe-api-key.')
param enableStripe bool = false

@description('Salesforce: needs the Key Vault secret salesforce-client-secret.')
param enableSalesforce bool = false
param salesforceLoginUrl string = ''
param salesforceClientId string = ''

@description('PostgreSQL: needs the Key Vault secret signup-database-url.')
param enablePostgres bool = false

@description('Any app setting, replacing the defaults (see infra/modules/functionapp.bicep).')
param appSettingOverrides object = {}

@description('Optional: object id of the operator who creates the certificate and secrets (az ad signed-in-user show --query id -o tsv).')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

param tags object = {
  application: 'signup-bridge'
}

var suffix = uniqueString(resourceGroup().id, baseName)
var compactName = toLower(replace(baseName, '-', ''))
var functionAppName = '${baseName}-${suffix}'
var storageAccountName = take('st${compactName}${suffix}', 24)
var keyVaultName = take('kv${compactName}${suffix}', 24)
var deploymentContainerName = 'app-package-${take(suffix, 20)}'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    logAnalyticsName: 'log-${functionAppName}'
    applicationInsightsName: 'appi-${functionAppName}'
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    storageAccountName: storageAccountName
    allowSharedKeyAccess: hostingPlan == 'Consumption'
    deploymentContainerName: hostingPlan == 'FlexConsumption' ? deploymentContainerName : ''
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    keyVaultName: keyVaultName
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    hostingPlan: hostingPlan
    planName: 'plan-${functionAppName}'
    functionAppName: functionAppName
    storageAccountName: storage.outputs.name
    keyVaultUri: keyVault.outputs.uri
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    deploymentContainerName: deploymentContainerName
    entraTenantId: entraTenantId
    extensionAppId: extensionAppId
    extensionAudiences: extensionAudiences
    graphClientId: graphClientId
    graphCertificateName: graphCertificateName
    pollSchedule: pollSchedule
    enableMailchimp: enableMailchimp
    mailchimpListId: mailchimpListId
    enableStripe: enableStripe
    enableSalesforce: enableSalesforce
    salesforceLoginUrl: salesforceLoginUrl
    salesforceClientId: salesforceClientId
    enablePostgres: enablePostgres
    appSettingOverrides: appSettingOverrides
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

output functionAppName string = functionApp.outputs.name
@description('AttributeSubmit without its function key; `signup-bridge setup` needs the URL with ?code=<key> (see README, Deployment).')
output attributeSubmitUrl string = 'https://${functionApp.outputs.defaultHostName}/api/AttributeSubmit'
output principalId string = functionApp.outputs.principalId
output keyVaultName string = keyVault.outputs.name
output keyVaultUri string = keyVault.outputs.uri
output storageAccountName string = storage.outputs.name
