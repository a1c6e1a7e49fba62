// The Function App (custom handler) and its plan, with every app setting signup-bridge reads.
//
// hostingPlan:
//   'Consumption'     Linux Consumption (Y1), the design's choice. Microsoft retires Linux
//                     Consumption on 30 September 2028: plan the move to Flex Consumption.
//   'FlexConsumption' Flex Consumption (FC1): identity-based host storage only (no keys), the
//                     deployment package in a blob container, 30 min default function timeout.

@description('Azure region.')
param location string

@allowed([
  'Consumption'
  'FlexConsumption'
])
param hostingPlan string

param planName string
param functionAppName string
param storageAccountName string
param keyVaultUri string
param applicationInsightsConnectionString string

@description('Flex Consumption only: blob container holding the deployment package.')
param deploymentContainerName string

param entraTenantId string
param extensionAppId string
param extensionAudiences string
param graphClientId string
param graphCertificateName string
param pollSchedule string

param enableMailchimp bool
param mailchimpListId string
param enableStripe bool
param enableSalesforce bool
param salesforceLoginUrl string
param salesforceClientId string
param enablePostgres bool

@description('Any app setting, replacing the defaults below (e.g. { POLL_SOURCE: \'users\', GROUPS_STATIC: \'<group id>\' }).')
param appSettingOverrides object = {}

param tags object = {}

var isFlex = hostingPlan == 'FlexConsumption'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// Only Linux Consumption uses the account key (only that branch of if() is evaluated).
var storageConnectionString = isFlex ? '' : 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'

// Secrets are Key Vault references, resolved by the platform with the app's managed identity
// (Key Vault Secrets User). Each is added only when its destination is enabled: an unresolved
// reference would reach the binary as text and fail start-up.
var secretUri = '${keyVaultUri}secrets/'

// app-settings:begin (tests/deploy_consistency.rs reads the setting names between these markers)
var hostSettings = isFlex ? {
  // Flex: identity-based host storage; the runtime (custom) is set in functionAppConfig, and
  // FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION / WEBSITE_CONTENT* are not allowed.
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
} : {
  // Linux Consumption: the content share (Azure Files) needs a connection string, and
  // `func azure functionapp publish` / zip deploy upload the package to the AzureWebJobsStorage
  // account with it (WEBSITE_RUN_FROM_PACKAGE); the key is therefore in the settings anyway.
  AzureWebJobsStorage: storageConnectionString
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: storageConnectionString
  WEBSITE_CONTENTSHARE: toLower(take(functionAppName, 63))
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'custom'
}

var appSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  RUST_LOG: 'info'
  // AttributeSubmit
  ENTRA_TENANT_ID: entraTenantId
  EXTENSION_APP_ID: extensionAppId
  EXTENSION_AUDIENCES: extensionAudiences
  EXTENSION_JWKS_URLS: ''
  EXTENSION_JWKS_REFRESH_MINUTES: '60'
  SIGNUP_RULES_PATH: 'signup-rules.toml'
  // Graph (PollAuditLogs, ProvisionUser)
  GRAPH_TENANT_ID: entraTenantId
  GRAPH_CLIENT_ID: graphClientId
  GRAPH_KEY_VAULT_URL: keyVaultUri
  GRAPH_CERTIFICATE_NAME: graphCertificateName
  GRAPH_BASE_URL: 'https://graph.microsoft.com'
  AZURE_AUTHORITY_HOST: 'https://login.microsoftonline.com'
  // PollAuditLogs
  POLL_SCHEDULE: pollSchedule
  POLL_SOURCE: 'auditLog'
  POLL_OVERLAP_MINUTES: '30'
  POLL_START_AT: ''
  POLL_PAGE_SIZE: '500'
  POLL_RUN_BUDGET_SECONDS: '240' // under host.json functionTimeout (5 min)
  // ProvisionUser (blank = unset = the documented default or the feature off)
  PROVISION_EXTENSION_APP_ID: ''
  PROVISION_EXTRA_ATTRIBUTES: ''
  PROVISION_RETRY_SCHEDULE: ''
  DIRECTORY_DISPLAY_NAME_TEMPLATE: ''
  DIRECTORY_UPN_TEMPLATE: ''
  DIRECTORY_UPN_DOMAIN: ''
  GROUPS_STATIC: ''
  GROUPS_RULES: ''
  STRIPE_CUSTOMER_ID_ATTRIBUTE: ''
  // Destinations: enabled by their settings being present
  MAILCHIMP_LIST_ID: enableMailchimp ? mailchimpListId : ''
  MAILCHIMP_CONSENT_ATTRIBUTE: ''
  MAILCHIMP_MERGE_FIELDS: ''
  MAILCHIMP_STATUS_IF_NEW: ''
  STRIPE_SEARCH_BEFORE_CREATE: ''
  STRIPE_BASE_URL: 'https://api.stripe.com'
  SALESFORCE_LOGIN_URL: enableSalesforce ? salesforceLoginUrl : ''
  SALESFORCE_CLIENT_ID: enableSalesforce ? salesforceClientId : ''
  SALESFORCE_API_VERSION: ''
  SALESFORCE_EXTERNAL_ID_FIELD: ''
  SIGNUP_DATABASE_POOL_SIZE: ''
  DESTINATIONS_TIMEOUT_SECONDS: '30'
}

var mailchimpSecrets = enableMailchimp ? {
  MAILCHIMP_API_KEY: '@Microsoft.KeyVault(SecretUri=${secretUri}mailchimp-api-key/)'
} : {}
var stripeSecrets = enableStripe ? {
  STRIPE_API_KEY: '@Microsoft.KeyVault(SecretUri=${secretUri}stripe-api-key/)'
} : {}
var salesforceSecrets = enableSalesforce ? {
  SALESFORCE_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${secretUri}salesforce-client-secret/)'
} : {}
var postgresSecrets = enablePostgres ? {
  SIGNUP_DATABASE_URL: '@Microsoft.KeyVault(SecretUri=${secretUri}signup-database-url/)'
} : {}
// app-settings:end

var allSettings = union(hostSettings, appSettings, mailchimpSecrets, stripeSecrets, salesforceSecrets, postgresSecrets, appSettingOverrides)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'Y1'
    tier: 'Dynamic'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    } : null
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output principalId string = functionApp.identity.principalId
