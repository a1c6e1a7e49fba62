//! Reads the certificate from Key Vault: the private key of a Key Vault certificate is in the
//! secret of the same name (`GET {vault}/secrets/{name}`), PKCS#12 base64 or PEM.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use url::Url;

use super::certificate::{CertificateError, ClientCertificate};

/// The longest a Key Vault read may take, its own retries included.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("could not get a token for Key Vault ({identity}): {message}")]
    Credential { identity: &'static str, message: String },
    #[error("Key Vault answered HTTP {status}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Http { status: u16, code: Option<String> },
    #[error("could not connect to Key Vault")]
    Connection,
    #[error("Key Vault did not answer within {} s", READ_TIMEOUT.as_secs())]
    Timeout,
    #[error("the Key Vault secret has no value")]
    EmptySecret,
    #[error("the Key Vault secret does not hold a usable certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("the Key Vault client could not be created: {0}")]
    Client(String),
    #[error("reading the Key Vault secret failed ({0})")]
    Other(String),
}

impl KeyVaultError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KeyVaultError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A certificate stored in Key Vault.
pub struct KeyVaultCertificate {
    client: SecretClient,
    vault_url: Url,
    name: String,
    identity: &'static str,
}

impl std::fmt::Debug for KeyVaultCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultCertificate")
            .field("vault_url", &self.vault_url.as_str())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KeyVaultCertificate {
    /// `identity` names the credential in error messages ("managed identity", "Azure CLI").
    pub fn new(
        vault_url: &Url,
        name: &str,
        credential: Arc<dyn TokenCredential>,
        identity: &'static str,
        http: &reqwest::Client,
    ) -> Result<KeyVaultCertificate, KeyVaultError> {
        let options = SecretClientOptions {
            client_options: client_options(http),
            // Key Vault's challenge names the resource (vault.azure.net) a token is for, and the
            // SDK checks that the vault's host is under it. A loopback vault (a local fake) cannot
            // be, and is trusted by definition.
            verify_challenge_resource: Some(!is_loopback(vault_url)),
            ..Default::default()
        };
        let client = SecretClient::new(vault_url.as_str(), credential, Some(options))
            .map_err(|error| KeyVaultError::Client(error.to_string()))?;
        Ok(KeyVaultCertificate {
            client,
            vault_url: vault_url.clone(),
            name: name.to_string(),
            identity,
        })
    }

    pub fn vault_url(&self) -> &Url {
        &self.vault_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the current version of the certificate's secret and parses it.
    pub async fn read(&self) -> Result<ClientCertificate, KeyVaultError> {
        let response = tokio::time::timeout(READ_TIMEOUT, self.client.get_secret(&self.name, None))
            .await
            .map_err(|_| KeyVaultError::Timeout)?
            .map_err(|error| self.map_error(error))?;
        let secret = response.into_model().map_err(|error| self.map_error(error))?;
        let value = secret
            .value
            .filter(|v| !v.is_empty())
            .ok_or(KeyVaultError::EmptySecret)?;
        Ok(ClientCertificate::from_key_vault_secret(
            &value,
            secret.content_type.as_deref(),
        )?)
    }

    fn map_error(&self, error: azure_core::Error) -> KeyVaultError {
        match error.kind() {
            ErrorKind::HttpResponse { status, error_code, .. } => KeyVaultError::Http {
                status: u16::from(*status),
                code: error_code.clone(),
            },
            ErrorKind::Credential => KeyVaultError::Credential {
                identity: self.identity,
                message: cause_chain(&error),
            },
            ErrorKind::Connection | ErrorKind::Io => KeyVaultError::Connection,
            ErrorKind::DataConversion => KeyVaultError::Other("the response could not be read".into()),
            ErrorKind::Other => KeyVaultError::Other(first_line(&error.to_string())),
        }
    }
}

/// SDK client options that send through our `reqwest::Client` (its trust store and timeouts)
/// and keep the SDK's own retries short.
pub fn client_options(http: &reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(500),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(30),
            max_delay: azure_core::time::Duration::seconds(10),
        }),
        ..Default::default()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

/// The error and its causes on one line, without repeats ("a: b: c").
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let line = error
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !line.is_empty() && !parts.iter().any(|part| part.contains(&line)) {
            parts.push(line);
        }
        current = error.source();
    }
    let joined = parts.join(": ");
    joined.chars().take(600).collect()
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}
