//! Settings for the state store ([`crate::store`]): the same storage connection the Functions
//! host uses, or a local directory when none is configured.
//!
//! | Setting | Meaning |
//! |---|---|
//! | `AzureWebJobsStorage` | A connection string: `UseDevelopmentStorage=true` (Azurite), `AccountName=..;AccountKey=..` (a short-lived account SAS is minted from the key), or `..;SharedAccessSignature=..` (used as it is). `BlobEndpoint=` / `QueueEndpoint=` override the endpoints. |
//! | `AzureWebJobsStorage__accountName` | Identity-based connection: `https://<name>.blob.core.windows.net` and `.queue.`. |
//! | `AzureWebJobsStorage__blobServiceUri`, `AzureWebJobsStorage__queueServiceUri` | Identity-based connection with explicit https endpoints (both needed; they win over `__accountName`). |
//! | `AzureWebJobsStorage__credential` | `managedidentity` (the default in Azure); unset locally means the Azure CLI / Developer CLI login. |
//! | `AzureWebJobsStorage__clientId` | Client id (GUID) of a user-assigned managed identity. |
//! | `SIGNUP_STATE_DIR` | The embedded store's directory when no storage is configured (default `.signup-state` in the working directory). |
//! | `SIGNUP_STORAGE_NAME_PREFIX` | Tests and shared accounts only: `<prefix>-` before every container and queue name. Leave unset with the Functions host, whose queue trigger names `signup-provision`. |
//!
//! The identity needs the *Storage Blob Data Contributor* and *Storage Queue Data
//! Contributor* roles (the host itself needs them too). A connection string is never echoed
//! in a problem: it holds a key.

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;
use uuid::Uuid;

use super::{Reader, SettingsError, parse_endpoint};
use crate::store::connection::{AccountKey, ConnectionAuth, SasToken, StorageAccount, resource_url};

pub const AZURE_WEB_JOBS_STORAGE: &str = "AzureWebJobsStorage";
pub const ACCOUNT_NAME: &str = "AzureWebJobsStorage__accountName";
pub const BLOB_SERVICE_URI: &str = "AzureWebJobsStorage__blobServiceUri";
pub const QUEUE_SERVICE_URI: &str = "AzureWebJobsStorage__queueServiceUri";
pub const CREDENTIAL: &str = "AzureWebJobsStorage__credential";
pub const CLIENT_ID: &str = "AzureWebJobsStorage__clientId";
pub const STATE_DIR: &str = "SIGNUP_STATE_DIR";
pub const NAME_PREFIX: &str = "SIGNUP_STORAGE_NAME_PREFIX";

/// Every setting this module reads, for reports.
pub const ALL: [&str; 8] = [
    AZURE_WEB_JOBS_STORAGE,
    ACCOUNT_NAME,
    BLOB_SERVICE_URI,
    QUEUE_SERVICE_URI,
    CREDENTIAL,
    CLIENT_ID,
    STATE_DIR,
    NAME_PREFIX,
];

/// The embedded store's directory when `SIGNUP_STATE_DIR` is unset.
pub const DEFAULT_STATE_DIR: &str = ".signup-state";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    Azure(Box<AzureStorageSettings>),
    /// The embedded store in this directory.
    Embedded(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureStorageSettings {
    /// Service roots, e.g. `https://contoso.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub blob_endpoint: Url,
    pub queue_endpoint: Url,
    pub auth: StorageAuth,
    /// `SIGNUP_STORAGE_NAME_PREFIX`.
    pub name_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageAuth {
    /// Account key: the store mints account SAS tokens from it.
    SharedKey { account_name: String, key: AccountKey },
    /// A SAS from the connection string.
    Sas(SasToken),
    /// The Function App's managed identity (user-assigned when a client id is given).
    ManagedIdentity { client_id: Option<Uuid> },
    /// The developer's Azure CLI / Azure Developer CLI login.
    DeveloperTools,
}

impl AzureStorageSettings {
    /// The physical container or queue name: the prefix, if any, then the logical name.
    pub fn physical_name(&self, name: &str) -> String {
        match &self.name_prefix {
            Some(prefix) => format!("{prefix}-{name}"),
            None => name.to_string(),
        }
    }

    /// For reports: where the store is, and how it authenticates (never the secret).
    pub fn describe(&self) -> String {
        let how = match &self.auth {
            StorageAuth::SharedKey { .. } => "account key (minted SAS)",
            StorageAuth::Sas(_) => "SAS from the connection string",
            StorageAuth::ManagedIdentity { client_id: None } => "system-assigned managed identity",
            StorageAuth::ManagedIdentity { client_id: Some(_) } => "user-assigned managed identity",
            StorageAuth::DeveloperTools => "Azure CLI / Azure Developer CLI login",
        };
        format!(
            "Azure Storage (blobs {}, queues {}, {how})",
            resource_url(&self.blob_endpoint, ""),
            resource_url(&self.queue_endpoint, "")
        )
    }
}

impl StorageSettings {
    pub fn from_map(values: &HashMap<String, String>) -> Result<StorageSettings, SettingsError> {
        let mut reader = Reader::new(values);
        let settings = StorageSettings::from_reader(&mut reader);
        reader.finish(settings)
    }

    pub fn from_env() -> Result<StorageSettings, SettingsError> {
        StorageSettings::from_map(&std::env::vars().collect())
    }

    /// Reads the storage settings, recording problems in `reader`. With problems, the value
    /// returned is a placeholder that [`Reader::finish`] discards.
    pub(crate) fn from_reader(reader: &mut Reader<'_>) -> StorageSettings {
        let name_prefix = reader.raw(NAME_PREFIX).map(str::to_string);
        if let Some(prefix) = &name_prefix
            && (!(1..=20).contains(&prefix.len())
                || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            reader.problem(
                NAME_PREFIX,
                "is not valid",
                "1-20 lowercase letters and digits, e.g. t42",
            );
        }

        let azure = if let Some(connection) = reader.raw(AZURE_WEB_JOBS_STORAGE) {
            match StorageAccount::parse(connection) {
                Ok(account) => Some(AzureStorageSettings {
                    blob_endpoint: account.blob_endpoint,
                    queue_endpoint: account.queue_endpoint,
                    auth: match account.auth {
                        ConnectionAuth::AccountKey { account_name, key } => {
                            StorageAuth::SharedKey { account_name, key }
                        }
                        ConnectionAuth::Sas(sas) => StorageAuth::Sas(sas),
                    },
                    name_prefix: name_prefix.clone(),
                }),
                Err(error) => {
                    reader.problem(
                        AZURE_WEB_JOBS_STORAGE,
                        format!("is not a usable connection string ({error})"),
                        "UseDevelopmentStorage=true, or DefaultEndpointsProtocol=https;AccountName=<name>;\
                         AccountKey=<key>;EndpointSuffix=core.windows.net (from the storage account's Access keys)",
                    );
                    None
                }
            }
        } else if [ACCOUNT_NAME, BLOB_SERVICE_URI, QUEUE_SERVICE_URI]
            .iter()
            .any(|setting| reader.raw(setting).is_some())
        {
            identity_settings(reader, name_prefix.clone())
        } else {
            for setting in [CREDENTIAL, CLIENT_ID] {
                if reader.raw(setting).is_some() {
                    reader.problem(
                        setting,
                        "is set without a storage account",
                        "AzureWebJobsStorage__accountName (or __blobServiceUri and __queueServiceUri) as well",
                    );
                }
            }
            let dir = reader.raw(STATE_DIR).unwrap_or(DEFAULT_STATE_DIR);
            return StorageSettings::Embedded(PathBuf::from(dir));
        };

        if reader.raw(STATE_DIR).is_some() {
            reader.problem(
                STATE_DIR,
                "is set while Azure Storage is configured (AzureWebJobsStorage*)",
                "unset: the embedded store is used only when no storage account is configured",
            );
        }
        match azure {
            Some(settings) => StorageSettings::Azure(Box::new(settings)),
            None => StorageSettings::Embedded(PathBuf::from(DEFAULT_STATE_DIR)), // discarded: problems recorded
        }
    }
}

fn identity_settings(reader: &mut Reader<'_>, name_prefix: Option<String>) -> Option<AzureStorageSettings> {
    const HTTPS: &str = "an https:// service URI such as https://contoso.blob.core.windows.net";
    let uri = |reader: &mut Reader<'_>, setting: &'static str| -> Option<Url> {
        let text = reader.raw(setting)?;
        match parse_endpoint(text) {
            Ok(url) if url.scheme() == "https" => Some(url),
            // azure_core sends no bearer token over plain http.
            _ => {
                reader.problem(setting, "is not an https:// URL", HTTPS);
                None
            }
        }
    };
    let blob = uri(reader, BLOB_SERVICE_URI);
    let queue = uri(reader, QUEUE_SERVICE_URI);
    let account = reader.raw(ACCOUNT_NAME);
    let endpoints = match (blob, queue, account) {
        (Some(blob), Some(queue), _) => Some((blob, queue)),
        (None, None, Some(account)) => {
            if account.len() < 3 || !account.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                reader.problem(
                    ACCOUNT_NAME,
                    "is not a storage account name",
                    "3-24 lowercase letters and digits",
                );
                None
            } else {
                let url = |service: &str| Url::parse(&format!("https://{account}.{service}.core.windows.net")).ok();
                url("blob").zip(url("queue"))
            }
        }
        (blob, queue, _) => {
            if blob.is_none() && reader.raw(BLOB_SERVICE_URI).is_none() {
                reader.problem(BLOB_SERVICE_URI, "is not set while __queueServiceUri is", HTTPS);
            }
            if queue.is_none() && reader.raw(QUEUE_SERVICE_URI).is_none() {
                reader.problem(
                    QUEUE_SERVICE_URI,
                    "is not set while __blobServiceUri is",
                    "an https:// service URI such as https://contoso.queue.core.windows.net",
                );
            }
            None
        }
    };

    let client_id = reader.parsed::<Uuid>(CLIENT_ID, "the user-assigned identity's client id, a GUID");
    let explicit_managed = match reader.raw(CREDENTIAL).map(str::to_ascii_lowercase).as_deref() {
        None => false,
        Some("managedidentity") => true,
        Some(_) => {
            reader.problem(CREDENTIAL, "is not supported", "managedidentity (or unset)");
            false
        }
    };
    let in_azure = reader.raw("IDENTITY_ENDPOINT").is_some() || reader.raw("WEBSITE_INSTANCE_ID").is_some();
    let auth = if explicit_managed || client_id.is_some() || in_azure {
        StorageAuth::ManagedIdentity { client_id }
    } else {
        StorageAuth::DeveloperTools
    };
    let (blob_endpoint, queue_endpoint) = endpoints?;
    Some(AzureStorageSettings {
        blob_endpoint: trim_slash(blob_endpoint),
        queue_endpoint: trim_slash(queue_endpoint),
        auth,
        name_prefix,
    })
}

fn trim_slash(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

    fn settings(pairs: &[(&str, &str)]) -> Result<StorageSettings, SettingsError> {
        StorageSettings::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn azure(pairs: &[(&str, &str)]) -> AzureStorageSettings {
        match settings(pairs).unwrap() {
            StorageSettings::Azure(azure) => *azure,
            other => panic!("expected Azure, got {other:?}"),
        }
    }

    #[test]
    fn nothing_configured_means_the_embedded_store() {
        assert_eq!(
            settings(&[]).unwrap(),
            StorageSettings::Embedded(PathBuf::from(".signup-state"))
        );
        assert_eq!(
            settings(&[(STATE_DIR, "/var/lib/signup")]).unwrap(),
            StorageSettings::Embedded(PathBuf::from("/var/lib/signup"))
        );
        // Blank counts as unset, as with every setting.
        assert!(matches!(
            settings(&[(AZURE_WEB_JOBS_STORAGE, "  ")]).unwrap(),
            StorageSettings::Embedded(_)
        ));
    }

    #[test]
    fn a_connection_string_selects_azure_storage() {
        let dev = azure(&[(AZURE_WEB_JOBS_STORAGE, "UseDevelopmentStorage=true")]);
        assert!(
            matches!(dev.auth, StorageAuth::SharedKey { ref account_name, .. } if account_name == "devstoreaccount1")
        );
        assert_eq!(dev.queue_endpoint.port(), Some(10001));
        assert_eq!(dev.physical_name("signup-state"), "signup-state");

        let keyed = azure(&[
            (AZURE_WEB_JOBS_STORAGE, &format!("AccountName=contoso;AccountKey={KEY}")),
            (NAME_PREFIX, "t42"),
        ]);
        assert_eq!(keyed.physical_name("signup-provision"), "t42-signup-provision");
        assert!(keyed.describe().contains("https://contoso.blob.core.windows.net/"));
        assert!(!keyed.describe().contains(KEY));
        assert!(!format!("{keyed:?}").contains(KEY) && !format!("{dev:?}").contains("Eby8vdM02"));
    }

    #[test]
    fn a_malformed_connection_string_names_the_setting_but_not_the_value() {
        let value = format!("AccountName=contoso;AccountKey={KEY}!!");
        let error = settings(&[(AZURE_WEB_JOBS_STORAGE, &value)]).unwrap_err();
        assert_eq!(error.problems.len(), 1);
        assert_eq!(error.problems[0].setting, AZURE_WEB_JOBS_STORAGE);
        let text = error.to_string();
        assert!(text.contains("AccountKey is not valid base64"), "{text}");
        assert!(!text.contains(KEY) && !text.contains("contoso"), "{text}");
        assert!(!format!("{error:?}").contains(KEY));
    }

    #[test]
    fn identity_connections_by_account_name_or_service_uris() {
        let by_name = azure(&[(ACCOUNT_NAME, "contoso")]);
        assert_eq!(by_name.blob_endpoint.as_str(), "https://contoso.blob.core.windows.net/");
        assert_eq!(
            by_name.queue_endpoint.as_str(),
            "https://contoso.queue.core.windows.net/"
        );
        assert_eq!(by_name.auth, StorageAuth::DeveloperTools);

        let in_azure = azure(&[(ACCOUNT_NAME, "contoso"), ("WEBSITE_INSTANCE_ID", "abc")]);
        assert_eq!(in_azure.auth, StorageAuth::ManagedIdentity { client_id: None });

        let user_assigned = azure(&[
            (BLOB_SERVICE_URI, "https://contoso.blob.core.usgovcloudapi.net/"),
            (QUEUE_SERVICE_URI, "https://contoso.queue.core.usgovcloudapi.net"),
            (CREDENTIAL, "managedidentity"),
            (CLIENT_ID, "11112222-bbbb-3333-cccc-4444dddd5555"),
            (ACCOUNT_NAME, "ignored"),
        ]);
        assert_eq!(
            user_assigned.blob_endpoint.host_str(),
            Some("contoso.blob.core.usgovcloudapi.net")
        );
        assert_eq!(
            user_assigned.auth,
            StorageAuth::ManagedIdentity {
                client_id: Some("11112222-bbbb-3333-cccc-4444dddd5555".parse().unwrap())
            }
        );
    }

    #[test]
    fn identity_problems_are_named() {
        let names = |pairs: &[(&str, &str)]| -> Vec<&'static str> {
            settings(pairs)
                .unwrap_err()
                .problems
                .iter()
                .map(|p| p.setting)
                .collect()
        };
        assert_eq!(
            names(&[(BLOB_SERVICE_URI, "https://contoso.blob.core.windows.net")]),
            vec![QUEUE_SERVICE_URI]
        );
        assert_eq!(
            names(&[
                (BLOB_SERVICE_URI, "http://127.0.0.1:10000/devstoreaccount1"),
                (QUEUE_SERVICE_URI, "https://contoso.queue.core.windows.net")
            ]),
            vec![BLOB_SERVICE_URI]
        );
        assert_eq!(
            names(&[
                (ACCOUNT_NAME, "contoso"),
                (CREDENTIAL, "clientsecret"),
                (CLIENT_ID, "nope")
            ]),
            vec![CLIENT_ID, CREDENTIAL]
        );
        assert_eq!(names(&[(ACCOUNT_NAME, "Contoso_1")]), vec![ACCOUNT_NAME]);
        assert_eq!(
            names(&[(CLIENT_ID, "11112222-bbbb-3333-cccc-4444dddd5555")]),
            vec![CLIENT_ID]
        );
    }

    #[test]
    fn the_state_dir_and_azure_storage_exclude_each_other_and_prefixes_are_checked() {
        let error = settings(&[
            (AZURE_WEB_JOBS_STORAGE, "UseDevelopmentStorage=true"),
            (STATE_DIR, "/tmp/x"),
        ])
        .unwrap_err();
        assert_eq!(error.problems[0].setting, STATE_DIR);
        let error = settings(&[
            (AZURE_WEB_JOBS_STORAGE, "UseDevelopmentStorage=true"),
            (NAME_PREFIX, "Bad-Prefix"),
        ])
        .unwrap_err();
        assert_eq!(error.problems[0].setting, NAME_PREFIX);
    }
}
