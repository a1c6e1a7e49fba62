//! Azure Storage connection strings, as the Functions host reads `AzureWebJobsStorage`:
//!
//! - `UseDevelopmentStorage=true`: Azurite's well-known account `devstoreaccount1` and key,
//!   blobs at `http://127.0.0.1:10000/devstoreaccount1`, queues at `:10001`.
//! - `DefaultEndpointsProtocol=https;AccountName=..;AccountKey=..;EndpointSuffix=core.windows.net`,
//!   with `BlobEndpoint=` / `QueueEndpoint=` overriding the derived endpoints.
//! - `BlobEndpoint=..;QueueEndpoint=..;SharedAccessSignature=sv=..` (or `AccountName=` instead of
//!   the endpoints): the SAS is used as it is.
//!
//! Keys are case-insensitive; values may contain `=`. Errors say what is wrong without
//! quoting the string: it holds a key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use url::Url;

use crate::settings::parse_endpoint;

/// Azurite's account, documented by Microsoft and the same on every machine.
pub const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published key for [`DEVELOPMENT_ACCOUNT`] (not a secret).
const DEVELOPMENT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEVELOPMENT_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
const DEVELOPMENT_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";
const DEFAULT_ENDPOINT_SUFFIX: &str = "core.windows.net";

/// A storage account reached through a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageAccount {
    pub blob_endpoint: Url,
    pub queue_endpoint: Url,
    pub auth: ConnectionAuth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionAuth {
    /// Shared key: the store mints short-lived account SAS tokens from it.
    AccountKey { account_name: String, key: AccountKey },
    /// A SAS token (without the leading `?`), appended to every URL as it is.
    Sas(SasToken),
}

/// The decoded account key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKey(Vec<u8>);

impl AccountKey {
    pub fn from_base64(text: &str) -> Option<AccountKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        (!bytes.is_empty()).then_some(AccountKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

/// A SAS token's query string. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken(String);

impl SasToken {
    pub fn new(query: &str) -> SasToken {
        SasToken(query.trim().trim_start_matches('?').to_string())
    }

    pub(crate) fn query(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasToken(<redacted>)")
    }
}

/// What is wrong with a connection string, in words that quote none of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("part {0} is not of the form Key=Value")]
    NotKeyValue(usize),
    #[error("part {0} is not a known connection-string key")]
    UnknownKey(usize),
    #[error("{0} appears twice")]
    Duplicate(&'static str),
    #[error("UseDevelopmentStorage must be true when present")]
    DevelopmentNotTrue,
    #[error("UseDevelopmentStorage=true cannot be combined with other keys")]
    DevelopmentWithOthers,
    #[error("AccountKey is not valid base64")]
    BadKey,
    #[error("AccountKey needs AccountName")]
    KeyWithoutName,
    #[error("AccountKey and SharedAccessSignature cannot both be set")]
    KeyAndSas,
    #[error("neither AccountKey nor SharedAccessSignature is set")]
    NoCredential,
    #[error("{0} is not set and cannot be derived without AccountName")]
    NoEndpoint(&'static str),
    #[error("DefaultEndpointsProtocol must be https or http")]
    BadProtocol,
    #[error("{key}: {problem}")]
    BadEndpoint { key: &'static str, problem: String },
    #[error("AccountName is not a valid account name")]
    BadAccountName,
}

const KEYS: [&str; 14] = [
    "UseDevelopmentStorage",
    "DevelopmentStorageProxyUri",
    "DefaultEndpointsProtocol",
    "AccountName",
    "AccountKey",
    "EndpointSuffix",
    "BlobEndpoint",
    "QueueEndpoint",
    "SharedAccessSignature",
    // Present in portal-copied strings; this app uses neither tables nor files.
    "TableEndpoint",
    "FileEndpoint",
    "BlobSecondaryEndpoint",
    "QueueSecondaryEndpoint",
    "TableSecondaryEndpoint",
];

impl StorageAccount {
    pub fn parse(text: &str) -> Result<StorageAccount, ConnectionStringError> {
        let mut values: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
        let parts = text.split(';').map(str::trim).filter(|part| !part.is_empty());
        for (index, part) in parts.enumerate() {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConnectionStringError::NotKeyValue(index + 1));
            };
            let Some(slot) = KEYS.iter().position(|known| known.eq_ignore_ascii_case(key.trim())) else {
                return Err(ConnectionStringError::UnknownKey(index + 1));
            };
            if values[slot].is_some() {
                return Err(ConnectionStringError::Duplicate(KEYS[slot]));
            }
            values[slot] = Some(value.trim());
        }
        let get = |key: &str| {
            let slot = KEYS.iter().position(|known| *known == key).expect("a known key");
            values[slot].filter(|value| !value.is_empty())
        };

        if let Some(development) = get("UseDevelopmentStorage") {
            if !development.eq_ignore_ascii_case("true") {
                return Err(ConnectionStringError::DevelopmentNotTrue);
            }
            if values.iter().filter(|value| value.is_some()).count() > 1 {
                return Err(ConnectionStringError::DevelopmentWithOthers);
            }
            return Ok(StorageAccount {
                blob_endpoint: Url::parse(DEVELOPMENT_BLOB_ENDPOINT).expect("a valid URL"),
                queue_endpoint: Url::parse(DEVELOPMENT_QUEUE_ENDPOINT).expect("a valid URL"),
                auth: ConnectionAuth::AccountKey {
                    account_name: DEVELOPMENT_ACCOUNT.to_string(),
                    key: AccountKey::from_base64(DEVELOPMENT_KEY).expect("valid base64"),
                },
            });
        }

        let account_name = get("AccountName");
        if let Some(name) = account_name
            && !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ConnectionStringError::BadAccountName);
        }
        let protocol = match get("DefaultEndpointsProtocol").map(str::to_ascii_lowercase).as_deref() {
            None | Some("https") => "https",
            Some("http") => "http",
            Some(_) => return Err(ConnectionStringError::BadProtocol),
        };
        let suffix = get("EndpointSuffix").unwrap_or(DEFAULT_ENDPOINT_SUFFIX);
        let endpoint = |key: &'static str, service: &str| -> Result<Url, ConnectionStringError> {
            let text = match (get(key), account_name) {
                (Some(explicit), _) => explicit.to_string(),
                (None, Some(account)) => format!("{protocol}://{account}.{service}.{suffix}"),
                (None, None) => return Err(ConnectionStringError::NoEndpoint(key)),
            };
            service_endpoint(&text).map_err(|problem| ConnectionStringError::BadEndpoint { key, problem })
        };

        let auth = match (get("AccountKey"), get("SharedAccessSignature")) {
            (Some(_), Some(_)) => return Err(ConnectionStringError::KeyAndSas),
            (Some(key), None) => ConnectionAuth::AccountKey {
                account_name: account_name.ok_or(ConnectionStringError::KeyWithoutName)?.to_string(),
                key: AccountKey::from_base64(key).ok_or(ConnectionStringError::BadKey)?,
            },
            (None, Some(sas)) => ConnectionAuth::Sas(SasToken::new(sas)),
            (None, None) => return Err(ConnectionStringError::NoCredential),
        };
        Ok(StorageAccount {
            blob_endpoint: endpoint("BlobEndpoint", "blob")?,
            queue_endpoint: endpoint("QueueEndpoint", "queue")?,
            auth,
        })
    }
}

/// A service root: https (http only on loopback), no query, no trailing slash.
pub fn service_endpoint(text: &str) -> Result<Url, String> {
    let mut url = parse_endpoint(text.trim()).map_err(|problem| problem.replace("an entry", "the endpoint"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the endpoint has a query or fragment (put a SAS in SharedAccessSignature)".to_string());
    }
    if url.cannot_be_a_base() {
        return Err("the endpoint is not a base URL".to_string());
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

/// `endpoint/name`, for a container or queue.
pub fn resource_url(endpoint: &Url, name: &str) -> Url {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .expect("endpoints are base URLs")
        .pop_if_empty()
        .push(name);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM="; // "secret-key-for-tests"

    fn parse(text: &str) -> Result<StorageAccount, ConnectionStringError> {
        StorageAccount::parse(text)
    }

    #[test]
    fn development_storage_is_azurite_with_its_published_key() {
        let account = parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            account.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(
            account.queue_endpoint.as_str(),
            "http://127.0.0.1:10001/devstoreaccount1"
        );
        let ConnectionAuth::AccountKey { account_name, key } = account.auth else {
            panic!("shared key")
        };
        assert_eq!(account_name, "devstoreaccount1");
        assert_eq!(key.bytes().len(), 64);
        assert_eq!(
            parse("usedevelopmentstorage=TRUE;").unwrap().blob_endpoint.port(),
            Some(10000)
        );
        assert_eq!(
            parse("UseDevelopmentStorage=false"),
            Err(ConnectionStringError::DevelopmentNotTrue)
        );
        assert_eq!(
            parse("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://proxy"),
            Err(ConnectionStringError::DevelopmentWithOthers)
        );
    }

    #[test]
    fn an_account_key_string_derives_endpoints_from_name_protocol_and_suffix() {
        let account = parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(
            account.blob_endpoint.as_str(),
            "https://contoso.blob.core.chinacloudapi.cn/"
        );
        assert_eq!(
            account.queue_endpoint.as_str(),
            "https://contoso.queue.core.chinacloudapi.cn/"
        );
        let ConnectionAuth::AccountKey { account_name, key } = &account.auth else {
            panic!("shared key")
        };
        assert_eq!(account_name, "contoso");
        assert_eq!(key.bytes(), b"secret-key-for-tests");

        let default_suffix = parse(&format!("AccountName=contoso;AccountKey={KEY}")).unwrap();
        assert_eq!(
            default_suffix.queue_endpoint.host_str(),
            Some("contoso.queue.core.windows.net")
        );
    }

    #[test]
    fn explicit_endpoints_override_and_keep_their_path() {
        let account = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:41000/devstoreaccount1/;QueueEndpoint=http://127.0.0.1:41001/devstoreaccount1;"
        ))
        .unwrap();
        assert_eq!(
            account.blob_endpoint.as_str(),
            "http://127.0.0.1:41000/devstoreaccount1"
        );
        assert_eq!(
            resource_url(&account.queue_endpoint, "signup-provision").as_str(),
            "http://127.0.0.1:41001/devstoreaccount1/signup-provision"
        );
        let root = parse(&format!("AccountName=a1;AccountKey={KEY}")).unwrap();
        assert_eq!(
            resource_url(&root.blob_endpoint, "signup-state").as_str(),
            "https://a1.blob.core.windows.net/signup-state"
        );
    }

    #[test]
    fn a_sas_string_is_used_as_it_is() {
        let account = parse(
            "BlobEndpoint=https://contoso.blob.core.windows.net;QueueEndpoint=https://contoso.queue.core.windows.net;\
             SharedAccessSignature=?sv=2022-11-02&ss=bq&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(
            account.auth,
            ConnectionAuth::Sas(SasToken::new("sv=2022-11-02&ss=bq&sig=abc%3D"))
        );
        let ConnectionAuth::Sas(sas) = account.auth else {
            panic!()
        };
        assert_eq!(sas.query(), "sv=2022-11-02&ss=bq&sig=abc%3D");
        let by_name = parse("AccountName=contoso;SharedAccessSignature=sv=1&sig=x").unwrap();
        assert_eq!(by_name.blob_endpoint.host_str(), Some("contoso.blob.core.windows.net"));
    }

    #[test]
    fn malformed_strings_are_refused_without_quoting_them() {
        let secret = "c2VjcmV0LWtleS1mb3ItdGVzdHM";
        let cases = [
            (
                format!("AccountName=contoso;{secret}"),
                ConnectionStringError::NotKeyValue(2),
            ),
            (
                format!("AccountName=contoso;AccountKey=x;{secret}=="),
                ConnectionStringError::UnknownKey(3),
            ),
            (
                format!("AccountName=contoso;AccountKey={secret}!"),
                ConnectionStringError::BadKey,
            ),
            (format!("AccountKey={KEY}"), ConnectionStringError::KeyWithoutName),
            ("AccountName=contoso".to_string(), ConnectionStringError::NoCredential),
            (
                format!("AccountName=contoso;AccountKey={KEY};SharedAccessSignature=sig=x"),
                ConnectionStringError::KeyAndSas,
            ),
            (
                format!("AccountName=contoso;AccountName=other;AccountKey={KEY}"),
                ConnectionStringError::Duplicate("AccountName"),
            ),
            (
                format!("DefaultEndpointsProtocol=ftp;AccountName=contoso;AccountKey={KEY}"),
                ConnectionStringError::BadProtocol,
            ),
            (
                "SharedAccessSignature=sig=x".to_string(),
                ConnectionStringError::NoEndpoint("BlobEndpoint"),
            ),
            (
                format!("AccountName=con/toso;AccountKey={KEY}"),
                ConnectionStringError::BadAccountName,
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert_eq!(error, expected, "{text}");
            let message = error.to_string();
            assert!(!message.contains(secret) && !message.contains(KEY), "{message}");
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let error = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=contoso;AccountKey={KEY}"
        ))
        .unwrap_err();
        assert!(matches!(
            error,
            ConnectionStringError::BadEndpoint {
                key: "BlobEndpoint",
                ..
            }
        ));
        assert!(error.to_string().contains("http://"), "{error}");
        let error = parse(&format!(
            "AccountName=contoso;AccountKey={KEY};BlobEndpoint=https://x.example/?sv=1;QueueEndpoint=https://y.example"
        ))
        .unwrap_err();
        assert!(matches!(
            error,
            ConnectionStringError::BadEndpoint {
                key: "BlobEndpoint",
                ..
            }
        ));
    }

    #[test]
    fn debug_never_shows_the_key_or_the_sas() {
        let account = parse(&format!("AccountName=contoso;AccountKey={KEY}")).unwrap();
        let sas = parse("AccountName=contoso;SharedAccessSignature=sv=1&sig=topsecret").unwrap();
        let text = format!("{account:?} {sas:?}");
        assert!(!text.contains(KEY) && !text.contains("topsecret") && !text.contains("secret-key"));
        assert!(text.contains("<redacted>"));
    }
}
