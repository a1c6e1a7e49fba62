//! Settings for Microsoft Graph access: which app registration, where its certificate is,
//! and which endpoints to use. Needed only by the functions and commands that call Graph
//! (PollAuditLogs, ProvisionUser, `signup-bridge check`): when the required settings are
//! missing, [`GraphSettings::from_reader`] answers [`GraphConfig::NotConfigured`] and only
//! [`GraphConfig::require`] turns that into an error. A setting that is present but malformed
//! is always an error, at start-up.
//!
//! | Setting | Required | Default | Meaning |
//! |---|---|---|---|
//! | `GRAPH_TENANT_ID` | yes¹ | `ENTRA_TENANT_ID` | The directory (tenant) id, a GUID. |
//! | `GRAPH_CLIENT_ID` | yes | | The app registration's application (client) id, a GUID. |
//! | `GRAPH_KEY_VAULT_URL` | yes² | | The vault holding the certificate, e.g. `https://contoso-kv.vault.azure.net/`. |
//! | `GRAPH_CERTIFICATE_NAME` | yes² | | The certificate's name in that vault (its secret of the same name is read). |
//! | `GRAPH_CERTIFICATE_PATH` | yes² | | A PFX (empty password) or PEM file (key + certificate); skips Key Vault. |
//! | `AZURE_AUTHORITY_HOST` | no | `https://login.microsoftonline.com` | The Entra token authority (sovereign clouds, tests). |
//! | `GRAPH_BASE_URL` | no | `https://graph.microsoft.com` | The Graph root, without `/v1.0`. |
//! | `MANAGED_IDENTITY_CLIENT_ID` | no | `AZURE_CLIENT_ID` in Azure | Client id of the user-assigned identity that reads Key Vault. |
//!
//! ¹ `GRAPH_TENANT_ID` falls back to `ENTRA_TENANT_ID`.
//! ² Either `GRAPH_KEY_VAULT_URL` + `GRAPH_CERTIFICATE_NAME`, or `GRAPH_CERTIFICATE_PATH`
//! (which wins when both are set).
//!
//! Key Vault is read with the Function App's managed identity when running in Azure
//! (`IDENTITY_ENDPOINT` or `WEBSITE_INSTANCE_ID` is set, or `MANAGED_IDENTITY_CLIENT_ID` is set
//! explicitly), otherwise with the developer's Azure CLI / Azure Developer CLI login.
//! Endpoints must be `https://`, except on loopback addresses (local fakes).

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;
use uuid::Uuid;

use super::{Reader, SettingProblem, SettingsError, parse_endpoint};

pub const GRAPH_TENANT_ID: &str = "GRAPH_TENANT_ID";
pub const ENTRA_TENANT_ID: &str = "ENTRA_TENANT_ID";
pub const GRAPH_CLIENT_ID: &str = "GRAPH_CLIENT_ID";
pub const GRAPH_KEY_VAULT_URL: &str = "GRAPH_KEY_VAULT_URL";
pub const GRAPH_CERTIFICATE_NAME: &str = "GRAPH_CERTIFICATE_NAME";
pub const GRAPH_CERTIFICATE_PATH: &str = "GRAPH_CERTIFICATE_PATH";
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
pub const GRAPH_BASE_URL: &str = "GRAPH_BASE_URL";
pub const MANAGED_IDENTITY_CLIENT_ID: &str = "MANAGED_IDENTITY_CLIENT_ID";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";

/// Every setting this module reads, for reports.
pub const ALL: [&str; 10] = [
    GRAPH_TENANT_ID,
    ENTRA_TENANT_ID,
    GRAPH_CLIENT_ID,
    GRAPH_KEY_VAULT_URL,
    GRAPH_CERTIFICATE_NAME,
    GRAPH_CERTIFICATE_PATH,
    AZURE_AUTHORITY_HOST,
    GRAPH_BASE_URL,
    MANAGED_IDENTITY_CLIENT_ID,
    AZURE_CLIENT_ID,
];

pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";

const CERTIFICATE_SETTINGS: &str = "GRAPH_KEY_VAULT_URL + GRAPH_CERTIFICATE_NAME, or GRAPH_CERTIFICATE_PATH";
const GUID: &str = "a GUID such as aaaabbbb-0000-cccc-1111-dddd2222eeee";
const ENDPOINT: &str = "an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)";

/// Graph access is configured, or which settings are missing.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once at start-up
pub enum GraphConfig {
    Configured(GraphSettings),
    NotConfigured(GraphNotConfigured),
}

/// The required settings that are missing.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNotConfigured {
    pub missing: Vec<MissingSetting>,
}

/// A required setting that is not set, and what a good value looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingSetting {
    pub setting: &'static str,
    pub expected: &'static str,
}

impl GraphNotConfigured {
    pub fn problems(&self) -> Vec<SettingProblem> {
        self.missing
            .iter()
            .map(|missing| SettingProblem {
                setting: missing.setting,
                problem: "is not set".to_string(),
                expected: missing.expected,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub certificate: CertificateLocation,
    pub authority_host: Url,
    pub base_url: Url,
    pub key_vault_identity: KeyVaultIdentity,
}

/// Where the app registration's certificate (with its private key) is.
#[derive(Debug, Clone, PartialEq)]
pub enum CertificateLocation {
    /// A Key Vault certificate: its secret of the same name holds the key and certificate.
    KeyVault { vault_url: Url, certificate_name: String },
    /// A PFX or PEM file on disk.
    File(PathBuf),
}

/// How the process authenticates to Key Vault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyVaultIdentity {
    /// The Function App's managed identity; `client_id` selects a user-assigned one.
    ManagedIdentity { client_id: Option<Uuid> },
    /// The developer's `az login` (or `azd auth login`).
    DeveloperTools,
}

impl GraphConfig {
    /// The settings, or an error naming every missing setting.
    pub fn require(&self) -> Result<&GraphSettings, SettingsError> {
        match self {
            GraphConfig::Configured(settings) => Ok(settings),
            GraphConfig::NotConfigured(missing) => Err(SettingsError {
                problems: missing.problems(),
            }),
        }
    }

    pub fn settings(&self) -> Option<&GraphSettings> {
        match self {
            GraphConfig::Configured(settings) => Some(settings),
            GraphConfig::NotConfigured(_) => None,
        }
    }

    /// Reads only the Graph settings (for `check` and tests); malformed values are errors.
    pub fn from_map(values: &HashMap<String, String>) -> Result<GraphConfig, SettingsError> {
        let mut reader = Reader::new(values);
        let config = GraphSettings::from_reader(&mut reader);
        reader.finish(config)
    }

    pub fn from_env() -> Result<GraphConfig, SettingsError> {
        GraphConfig::from_map(&std::env::vars().collect())
    }
}

impl GraphSettings {
    /// Reads the Graph settings, recording malformed values as problems on `reader`.
    pub(crate) fn from_reader(reader: &mut Reader<'_>) -> GraphConfig {
        let mut missing = Vec::new();
        let mut missing_setting =
            |setting: &'static str, expected: &'static str| missing.push(MissingSetting { setting, expected });

        let tenant_id = match reader.raw(GRAPH_TENANT_ID) {
            Some(_) => reader.parsed::<Uuid>(GRAPH_TENANT_ID, GUID),
            // ENTRA_TENANT_ID is validated where it is required; here it is only a default.
            None => reader.raw(ENTRA_TENANT_ID).and_then(|raw| raw.parse().ok()),
        };
        if tenant_id.is_none() && reader.raw(GRAPH_TENANT_ID).is_none() {
            missing_setting(GRAPH_TENANT_ID, "the tenant id, a GUID (defaults to ENTRA_TENANT_ID)");
        }

        let client_id = reader.parsed::<Uuid>(GRAPH_CLIENT_ID, GUID);
        if reader.raw(GRAPH_CLIENT_ID).is_none() {
            missing_setting(
                GRAPH_CLIENT_ID,
                "the app registration's application (client) id, a GUID",
            );
        }

        let vault_url = endpoint(reader, GRAPH_KEY_VAULT_URL);
        let certificate_name = reader.raw(GRAPH_CERTIFICATE_NAME).map(str::to_string);
        if let Some(name) = &certificate_name {
            let valid = name.len() <= 127 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                reader.problem(
                    GRAPH_CERTIFICATE_NAME,
                    "is not a valid Key Vault certificate name",
                    "1-127 letters, digits and dashes",
                );
            }
        }
        let certificate_path = reader.raw(GRAPH_CERTIFICATE_PATH).map(PathBuf::from);
        if let Some(path) = &certificate_path
            && !path.is_file()
        {
            reader.problem(
                GRAPH_CERTIFICATE_PATH,
                "names a file that does not exist",
                "the path of a PFX (empty password) or PEM file holding the private key and certificate",
            );
        }
        let certificate = match (certificate_path, vault_url, certificate_name) {
            (Some(path), _, _) => Some(CertificateLocation::File(path)),
            (None, Some(vault_url), Some(certificate_name)) => Some(CertificateLocation::KeyVault {
                vault_url,
                certificate_name,
            }),
            (None, Some(_), None) => {
                missing_setting(GRAPH_CERTIFICATE_NAME, "the name of the certificate in the Key Vault");
                None
            }
            (None, None, Some(_)) if reader.raw(GRAPH_KEY_VAULT_URL).is_none() => {
                missing_setting(
                    GRAPH_KEY_VAULT_URL,
                    "the vault URL, e.g. https://contoso-kv.vault.azure.net/",
                );
                None
            }
            (None, None, _) if reader.raw(GRAPH_KEY_VAULT_URL).is_none() => {
                missing_setting(
                    CERTIFICATE_SETTINGS,
                    "a Key Vault URL and certificate name (in Azure), or a PFX/PEM file path (local development)",
                );
                None
            }
            _ => None, // a malformed vault URL, already recorded
        };

        let authority_host = endpoint(reader, AZURE_AUTHORITY_HOST)
            .unwrap_or_else(|| Url::parse(DEFAULT_AUTHORITY_HOST).expect("a valid default"));
        let base_url = endpoint(reader, GRAPH_BASE_URL)
            .unwrap_or_else(|| Url::parse(DEFAULT_GRAPH_BASE_URL).expect("a valid default"));
        let version_path = base_url.path().trim_end_matches('/');
        if version_path.ends_with("/v1.0") || version_path.ends_with("/beta") {
            reader.problem(
                GRAPH_BASE_URL,
                "ends with an API version",
                "the Graph root without /v1.0, e.g. https://graph.microsoft.com",
            );
        }

        let explicit_identity = reader.parsed::<Uuid>(MANAGED_IDENTITY_CLIENT_ID, GUID);
        let in_azure = reader.raw("IDENTITY_ENDPOINT").is_some() || reader.raw("WEBSITE_INSTANCE_ID").is_some();
        let key_vault_identity = if explicit_identity.is_some() {
            KeyVaultIdentity::ManagedIdentity {
                client_id: explicit_identity,
            }
        } else if in_azure {
            KeyVaultIdentity::ManagedIdentity {
                client_id: reader.parsed::<Uuid>(AZURE_CLIENT_ID, GUID),
            }
        } else {
            KeyVaultIdentity::DeveloperTools
        };

        match (tenant_id, client_id, certificate) {
            (Some(tenant_id), Some(client_id), Some(certificate)) if missing.is_empty() => {
                GraphConfig::Configured(GraphSettings {
                    tenant_id,
                    client_id,
                    certificate,
                    authority_host,
                    base_url,
                    key_vault_identity,
                })
            }
            _ => GraphConfig::NotConfigured(GraphNotConfigured { missing }),
        }
    }

    /// The token endpoint: `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Url {
        let mut url = self.authority_host.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{}/oauth2/v2.0/token", self.tenant_id));
        url.set_query(None);
        url
    }

    /// The scope of a Graph token: `{graph origin}/.default`.
    pub fn graph_scope(&self) -> String {
        format!("{}/.default", self.base_url.origin().ascii_serialization())
    }
}

fn endpoint(reader: &mut Reader<'_>, setting: &'static str) -> Option<Url> {
    let raw = reader.raw(setting)?;
    match parse_endpoint(raw) {
        Ok(url) => Some(url),
        Err(problem) => {
            reader.problem(setting, problem.replace("an entry", "the value"), ENDPOINT);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
    const CLIENT: &str = "11112222-bbbb-3333-cccc-4444dddd5555";

    fn config(pairs: &[(&str, &str)]) -> Result<GraphConfig, SettingsError> {
        GraphConfig::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn key_vault() -> Vec<(&'static str, &'static str)> {
        vec![
            (GRAPH_TENANT_ID, TENANT),
            (GRAPH_CLIENT_ID, CLIENT),
            (GRAPH_KEY_VAULT_URL, "https://contoso-kv.vault.azure.net/"),
            (GRAPH_CERTIFICATE_NAME, "graph-client"),
        ]
    }

    #[test]
    fn key_vault_configuration_with_defaults() {
        let config = config(&key_vault()).unwrap();
        let settings = config.require().unwrap();
        assert_eq!(
            settings.certificate,
            CertificateLocation::KeyVault {
                vault_url: Url::parse("https://contoso-kv.vault.azure.net/").unwrap(),
                certificate_name: "graph-client".into()
            }
        );
        assert_eq!(
            settings.token_url().as_str(),
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
        );
        assert_eq!(settings.graph_scope(), "https://graph.microsoft.com/.default");
        assert_eq!(settings.key_vault_identity, KeyVaultIdentity::DeveloperTools);
    }

    #[test]
    fn nothing_set_is_not_configured_and_require_names_the_settings() {
        let config = config(&[]).unwrap();
        let error = config.require().unwrap_err();
        let names: Vec<_> = error.problems.iter().map(|p| p.setting).collect();
        assert_eq!(names, vec![GRAPH_TENANT_ID, GRAPH_CLIENT_ID, CERTIFICATE_SETTINGS]);
        let text = error.to_string();
        assert!(
            text.contains("GRAPH_KEY_VAULT_URL") && text.contains("GRAPH_CERTIFICATE_PATH"),
            "{text}"
        );
    }

    #[test]
    fn the_tenant_defaults_to_the_extension_tenant() {
        let mut pairs = key_vault();
        pairs.remove(0);
        pairs.push((ENTRA_TENANT_ID, TENANT));
        let config = config(&pairs).unwrap();
        assert_eq!(config.require().unwrap().tenant_id.to_string(), TENANT);
    }

    #[test]
    fn a_vault_without_a_certificate_name_is_not_configured() {
        let mut pairs = key_vault();
        pairs.pop();
        let error = config(&pairs).unwrap().require().unwrap_err();
        assert_eq!(error.problems[0].setting, GRAPH_CERTIFICATE_NAME);
    }

    #[test]
    fn a_file_wins_over_key_vault_and_must_exist() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().to_str().unwrap();
        let mut pairs = key_vault();
        pairs.push((GRAPH_CERTIFICATE_PATH, path));
        let config = config(&pairs).unwrap();
        assert_eq!(
            config.require().unwrap().certificate,
            CertificateLocation::File(PathBuf::from(path))
        );
        let error = config_error(&[(GRAPH_CERTIFICATE_PATH, "/nonexistent/app.pfx")]);
        assert_eq!(error.problems[0].setting, GRAPH_CERTIFICATE_PATH);
    }

    #[test]
    fn endpoints_must_be_https_except_loopback_and_are_overridable() {
        let mut pairs = key_vault();
        pairs.push((AZURE_AUTHORITY_HOST, "https://127.0.0.1:8443"));
        pairs.push((GRAPH_BASE_URL, "http://localhost:9000"));
        let config = config(&pairs).unwrap();
        let settings = config.require().unwrap();
        assert_eq!(
            settings.token_url().as_str(),
            format!("https://127.0.0.1:8443/{TENANT}/oauth2/v2.0/token")
        );
        assert_eq!(settings.graph_scope(), "http://localhost:9000/.default");

        let mut bad = key_vault();
        bad.push((GRAPH_BASE_URL, "http://graph.example"));
        bad.push((AZURE_AUTHORITY_HOST, "login"));
        bad[2] = (GRAPH_KEY_VAULT_URL, "http://contoso-kv.vault.azure.net");
        let error = config_error(&bad);
        let names: Vec<_> = error.problems.iter().map(|p| p.setting).collect();
        assert_eq!(names, vec![GRAPH_KEY_VAULT_URL, AZURE_AUTHORITY_HOST, GRAPH_BASE_URL]);
    }

    #[test]
    fn a_graph_url_with_a_version_is_refused() {
        let mut pairs = key_vault();
        pairs.push((GRAPH_BASE_URL, "https://graph.microsoft.com/v1.0/"));
        assert_eq!(config_error(&pairs).problems[0].setting, GRAPH_BASE_URL);
    }

    #[test]
    fn malformed_ids_are_errors_even_when_graph_is_not_otherwise_configured() {
        let error = config_error(&[(GRAPH_CLIENT_ID, "contoso-app"), (GRAPH_CERTIFICATE_NAME, "bad name!")]);
        let names: Vec<_> = error.problems.iter().map(|p| p.setting).collect();
        assert_eq!(names, vec![GRAPH_CLIENT_ID, GRAPH_CERTIFICATE_NAME]);
    }

    #[test]
    fn managed_identity_is_used_in_azure_and_a_user_assigned_one_is_selectable() {
        const IDENTITY: &str = "8e5c1a2b-3d4e-4f60-9a7b-8c9d0e1f2a3b";
        let mut pairs = key_vault();
        pairs.push(("IDENTITY_ENDPOINT", "http://localhost:8081/msi/token"));
        let settings = config(&pairs).unwrap().require().unwrap().clone();
        assert_eq!(
            settings.key_vault_identity,
            KeyVaultIdentity::ManagedIdentity { client_id: None }
        );

        pairs.push((AZURE_CLIENT_ID, IDENTITY));
        let settings = config(&pairs).unwrap().require().unwrap().clone();
        assert_eq!(
            settings.key_vault_identity,
            KeyVaultIdentity::ManagedIdentity {
                client_id: Some(IDENTITY.parse().unwrap())
            }
        );

        // Locally, AZURE_CLIENT_ID alone (a service principal for other tools) does not switch.
        let mut local = key_vault();
        local.push((AZURE_CLIENT_ID, IDENTITY));
        let settings = config(&local).unwrap().require().unwrap().clone();
        assert_eq!(settings.key_vault_identity, KeyVaultIdentity::DeveloperTools);

        local.push((MANAGED_IDENTITY_CLIENT_ID, IDENTITY));
        let settings = config(&local).unwrap().require().unwrap().clone();
        assert!(matches!(
            settings.key_vault_identity,
            KeyVaultIdentity::ManagedIdentity { client_id: Some(_) }
        ));
    }

    fn config_error(pairs: &[(&str, &str)]) -> SettingsError {
        config(pairs).unwrap_err()
    }
}
