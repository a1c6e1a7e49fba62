//! Credentials for Microsoft Graph: the app registration's certificate (from Key Vault or a
//! file) and the tokens it earns.
//!
//! ```text
//! GraphSettings ──► CertificateSource ──load──► ClientCertificate (PFX or PEM)
//!                   │  Key Vault: SecretClient + managed identity (Azure) / az login (local)
//!                   │  File: GRAPH_CERTIFICATE_PATH
//!                   ▼
//!               CertificateCredential (TokenCredential): client assertion PS256 + x5t#S256,
//!               token cache, single flight, reload-once on rejection
//! ```
//!
//! TLS is rustls with aws-lc-rs throughout (no OpenSSL, so the binary does not depend on the
//! Functions image's libssl); outbound clients trust the operating system's store and honour
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` and `HTTPS_PROXY`. Tests pass their own
//! `reqwest::Client` to trust a test CA.

pub mod certificate;
pub mod key_vault;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

pub use certificate::{CertificateError, ClientCertificate};
pub use key_vault::{KeyVaultCertificate, KeyVaultError};
pub use token::{CertificateCredential, CredentialError, TokenEndpointError};

use crate::settings::graph::{CertificateLocation, GraphSettings, KeyVaultIdentity};

/// Connection set-up limit for every outbound call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for one outbound request (callers may set a shorter one per request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The outbound HTTP client: OS trust store (plus `SSL_CERT_FILE`/`SSL_CERT_DIR`), system
/// proxy settings, timeouts, no redirects (a bearer token is never sent to a redirect target).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    http_client_builder().build()
}

/// [`http_client`]'s settings, for callers (tests) that add a root certificate.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("signup-bridge/", env!("CARGO_PKG_VERSION")))
}

/// Where the certificate is loaded from.
#[derive(Debug)]
pub enum CertificateSource {
    KeyVault(Box<KeyVaultCertificate>),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CertificateLoadError {
    #[error(transparent)]
    KeyVault(#[from] KeyVaultError),
    #[error("could not read the certificate file {}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("the certificate file {} is not usable: {source}", path.display())]
    Parse { path: PathBuf, source: CertificateError },
}

impl CertificateSource {
    /// Reads and parses the certificate (one Key Vault read, or one file read).
    pub async fn load(&self) -> Result<ClientCertificate, CertificateLoadError> {
        match self {
            CertificateSource::KeyVault(vault) => Ok(vault.read().await?),
            CertificateSource::File(path) => load_file(path).await,
        }
    }

    /// For logs and reports: the vault and certificate name, or the file path.
    pub fn describe(&self) -> String {
        match self {
            CertificateSource::KeyVault(vault) => {
                format!("Key Vault {} certificate \"{}\"", vault.vault_url(), vault.name())
            }
            CertificateSource::File(path) => format!("file {}", path.display()),
        }
    }
}

async fn load_file(path: &Path) -> Result<ClientCertificate, CertificateLoadError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| CertificateLoadError::File {
            path: path.to_path_buf(),
            source,
        })?;
    ClientCertificate::from_file_bytes(&bytes).map_err(|source| CertificateLoadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The credential that reads Key Vault: the managed identity in Azure, the developer's
/// Azure CLI / Azure Developer CLI login locally.
pub fn key_vault_credential(
    identity: KeyVaultIdentity,
    http: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, KeyVaultError> {
    let credential: Arc<dyn TokenCredential> = match identity {
        KeyVaultIdentity::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_string())),
                client_options: key_vault::client_options(http),
            };
            ManagedIdentityCredential::new(Some(options)).map_err(|error| KeyVaultError::Credential {
                identity: identity_name(identity),
                message: error.to_string(),
            })?
        }
        KeyVaultIdentity::DeveloperTools => {
            DeveloperToolsCredential::new(None).map_err(|error| KeyVaultError::Credential {
                identity: identity_name(identity),
                message: error.to_string(),
            })?
        }
    };
    Ok(credential)
}

/// How reports name the Key Vault identity.
pub fn identity_name(identity: KeyVaultIdentity) -> &'static str {
    match identity {
        KeyVaultIdentity::ManagedIdentity { client_id: None } => "system-assigned managed identity",
        KeyVaultIdentity::ManagedIdentity { client_id: Some(_) } => "user-assigned managed identity",
        KeyVaultIdentity::DeveloperTools => "Azure CLI / Azure Developer CLI login",
    }
}

/// The certificate source the settings describe. `key_vault_credential` overrides the
/// credential chosen from the settings (tests; other hosts).
pub fn certificate_source(
    settings: &GraphSettings,
    http: &reqwest::Client,
    key_vault_credential: Option<Arc<dyn TokenCredential>>,
) -> Result<CertificateSource, KeyVaultError> {
    match &settings.certificate {
        CertificateLocation::File(path) => Ok(CertificateSource::File(path.clone())),
        CertificateLocation::KeyVault {
            vault_url,
            certificate_name,
        } => {
            let (credential, identity) = match key_vault_credential {
                Some(credential) => (credential, "the given credential"),
                None => (
                    self::key_vault_credential(settings.key_vault_identity, http)?,
                    identity_name(settings.key_vault_identity),
                ),
            };
            Ok(CertificateSource::KeyVault(Box::new(KeyVaultCertificate::new(
                vault_url,
                certificate_name,
                credential,
                identity,
                http,
            )?)))
        }
    }
}

/// The Graph credential the settings describe.
pub fn graph_credential(
    settings: &GraphSettings,
    http: &reqwest::Client,
    key_vault_credential: Option<Arc<dyn TokenCredential>>,
) -> Result<CertificateCredential, KeyVaultError> {
    let source = certificate_source(settings, http, key_vault_credential)?;
    Ok(CertificateCredential::new(
        settings.client_id,
        settings.token_url(),
        source,
        http.clone(),
    ))
}
