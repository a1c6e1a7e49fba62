//! Graph tokens by the client-credentials flow with a certificate, as Microsoft recommends:
//! a client assertion JWT signed PS256 with the `x5t#S256` header, posted to
//! `{authority}/{tenant}/oauth2/v2.0/token`.
//!
//! - The certificate is loaded once per process (lazily, at the first token), and again only
//!   when it has expired or when the token endpoint rejects it (`invalid_client`, e.g.
//!   AADSTS700027 after a rotation in Key Vault): then it is reloaded once and the request
//!   retried once.
//! - Tokens are cached per scope until shortly before they expire (5 minutes, or half the
//!   lifetime for short-lived tokens).
//! - Concurrent callers share one acquisition (single flight): the state is behind one async
//!   lock, held across the load and the request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use super::certificate::ClientCertificate;
use super::{CertificateLoadError, CertificateSource};
use crate::retry::{self, Failure, RetryPolicy, Stop};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ASSERTION_LIFETIME_SECONDS: i64 = 600;
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("could not load the certificate: {0}")]
    Certificate(#[from] CertificateLoadError),
    #[error("the token endpoint refused the request: {0}")]
    Rejected(Box<TokenEndpointError>),
    #[error("the token endpoint failed after {attempts} attempt(s){}: {reason}", stop_note(*.stop))]
    Unavailable { attempts: u32, stop: Stop, reason: String },
    #[error("the token endpoint's answer could not be read")]
    InvalidResponse,
    #[error("the client assertion could not be signed")]
    Signing,
}

fn stop_note(stop: Stop) -> String {
    match stop {
        Stop::RetryAfterTooLong(wait) => format!(" (asked to wait {} s)", wait.as_secs()),
        Stop::OutOfTime => " (out of time)".to_string(),
        Stop::NotRetryable | Stop::AttemptsExhausted => String::new(),
    }
}

/// An OAuth error answer from the token endpoint, without its free-text parts that could
/// identify anyone (there are none in client-credentials errors, but only the first sentence
/// of the description is kept).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEndpointError {
    pub status: u16,
    /// `invalid_client`, `unauthorized_client`, `invalid_request`, ...
    pub error: String,
    /// The AADSTS numbers, e.g. 700027.
    pub codes: Vec<u64>,
    pub description: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl TokenEndpointError {
    /// The endpoint did not accept our certificate (unknown, removed after a rotation, expired).
    pub fn is_certificate_rejection(&self) -> bool {
        self.error == "invalid_client"
    }

    pub fn has_code(&self, code: u64) -> bool {
        self.codes.contains(&code)
    }
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.error)?;
        if !self.description.is_empty() {
            write!(f, ": {}", self.description)?;
        }
        if let Some(trace_id) = &self.trace_id {
            write!(f, " (trace id {trace_id}")?;
            if let Some(correlation_id) = &self.correlation_id {
                write!(f, ", correlation id {correlation_id}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// A `TokenCredential` for an app registration that authenticates with a certificate.
pub struct CertificateCredential {
    client_id: Uuid,
    token_url: Url,
    source: CertificateSource,
    http: reqwest::Client,
    retry: RetryPolicy,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    certificate: Option<Arc<ClientCertificate>>,
    tokens: HashMap<String, CachedToken>,
}

struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url.as_str())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: String,
    sub: String,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: NumberOrString,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

impl CertificateCredential {
    /// `token_url` is `{authority}/{tenant}/oauth2/v2.0/token` ([`GraphSettings::token_url`](crate::settings::graph::GraphSettings::token_url)).
    pub fn new(
        client_id: Uuid,
        token_url: Url,
        source: CertificateSource,
        http: reqwest::Client,
    ) -> CertificateCredential {
        CertificateCredential {
            client_id,
            token_url,
            source,
            http,
            retry: RetryPolicy::token_endpoint(),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> CertificateCredential {
        self.retry = retry;
        self
    }

    pub fn source(&self) -> &CertificateSource {
        &self.source
    }

    pub fn client_id(&self) -> Uuid {
        self.client_id
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The certificate in use, loading it if this is the first use.
    pub async fn certificate(&self) -> Result<Arc<ClientCertificate>, CredentialError> {
        let mut state = self.state.lock().await;
        self.current_certificate(&mut state).await
    }

    /// A token for `scope` (e.g. `https://graph.microsoft.com/.default`), from the cache when
    /// it is not about to expire.
    pub async fn token(&self, scope: &str) -> Result<AccessToken, CredentialError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.tokens.get(scope)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let certificate = self.current_certificate(&mut state).await?;
        let result = match self.request_token(&certificate, scope).await {
            Err(CredentialError::Rejected(rejection)) if rejection.is_certificate_rejection() => {
                log::warn!(
                    "the token endpoint rejected certificate {} ({}); reloading it from {}",
                    certificate.sha1_thumbprint(),
                    rejection
                        .codes
                        .first()
                        .map(|c| format!("AADSTS{c}"))
                        .unwrap_or(rejection.error.clone()),
                    self.source.describe()
                );
                let reloaded = Arc::new(self.source.load().await?);
                state.certificate = Some(reloaded.clone());
                if reloaded.x5t_s256() == certificate.x5t_s256() {
                    log::warn!("the reloaded certificate is the same one; not retrying");
                    Err(CredentialError::Rejected(rejection))
                } else {
                    log::info!("using the rotated certificate {}", reloaded.sha1_thumbprint());
                    self.request_token(&reloaded, scope).await
                }
            }
            other => other,
        };
        let (token, lifetime) = result?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        state.tokens.insert(
            scope.to_string(),
            CachedToken {
                token: token.clone(),
                refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            },
        );
        Ok(token)
    }

    async fn current_certificate(&self, state: &mut State) -> Result<Arc<ClientCertificate>, CredentialError> {
        if let Some(certificate) = &state.certificate {
            if !certificate.is_expired(chrono::Utc::now()) {
                return Ok(certificate.clone());
            }
            log::warn!(
                "certificate {} expired on {}; reloading it from {}",
                certificate.sha1_thumbprint(),
                certificate.not_after(),
                self.source.describe()
            );
        }
        let certificate = Arc::new(self.source.load().await?);
        log::info!(
            "loaded certificate {} (expires {}) from {}",
            certificate.sha1_thumbprint(),
            certificate.not_after().format("%Y-%m-%d"),
            self.source.describe()
        );
        state.certificate = Some(certificate.clone());
        Ok(certificate)
    }

    fn assertion(&self, certificate: &ClientCertificate) -> Result<String, CredentialError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            aud: self.token_url.as_str(),
            iss: self.client_id.to_string(),
            sub: self.client_id.to_string(),
            jti: Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECONDS,
        };
        certificate.sign(&claims).map_err(|_| CredentialError::Signing)
    }

    async fn request_token(
        &self,
        certificate: &ClientCertificate,
        scope: &str,
    ) -> Result<(AccessToken, Duration), CredentialError> {
        let client_id = self.client_id.to_string();
        let outcome = retry::run(&self.retry, |attempt| {
            let client_id = &client_id;
            async move {
                // A fresh assertion (new jti) for every attempt.
                let assertion = self
                    .assertion(certificate)
                    .map_err(|error| Failure::Permanent(Attempted::Signing(error)))?;
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", scope),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion.as_str()),
                ];
                let response = self
                    .http
                    .post(self.token_url.clone())
                    .timeout(attempt.timeout)
                    .form(&form)
                    .send()
                    .await
                    .map_err(|error| {
                        let reason = describe_transport_error(&error);
                        if retry::is_retryable_error(&error) {
                            Failure::retryable(Attempted::Transport(reason), None)
                        } else {
                            Failure::Permanent(Attempted::Transport(reason))
                        }
                    })?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(|error| {
                    Failure::retryable(Attempted::Transport(describe_transport_error(&error)), None)
                })?;
                if status.is_success() {
                    return Ok(body);
                }
                let parsed: ErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
                let error = TokenEndpointError {
                    status: status.as_u16(),
                    error: if parsed.error.is_empty() {
                        status.canonical_reason().unwrap_or("error").to_string()
                    } else {
                        parsed.error
                    },
                    codes: parsed.error_codes,
                    description: first_sentence(&parsed.error_description),
                    trace_id: parsed.trace_id,
                    correlation_id: parsed.correlation_id,
                };
                match retry::classify_response(status, &headers) {
                    Some(retry_after) => Err(Failure::retryable(Attempted::Endpoint(error), retry_after)),
                    None => Err(Failure::Permanent(Attempted::Endpoint(error))),
                }
            }
        })
        .await;
        let body = match outcome {
            Ok(body) => body,
            Err(failure) => {
                return Err(match failure.error {
                    Attempted::Endpoint(error) if failure.stop == Stop::NotRetryable => {
                        CredentialError::Rejected(Box::new(error))
                    }
                    Attempted::Signing(error) => error,
                    Attempted::Endpoint(error) => CredentialError::Unavailable {
                        attempts: failure.attempts,
                        stop: failure.stop,
                        reason: error.to_string(),
                    },
                    Attempted::Transport(reason) => CredentialError::Unavailable {
                        attempts: failure.attempts,
                        stop: failure.stop,
                        reason,
                    },
                });
            }
        };
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| CredentialError::InvalidResponse)?;
        let expires_in = match parsed.expires_in {
            NumberOrString::Number(seconds) => seconds,
            NumberOrString::String(text) => text.trim().parse().map_err(|_| CredentialError::InvalidResponse)?,
        };
        let lifetime = Duration::from_secs(expires_in);
        let expires_on = OffsetDateTime::now_utc() + lifetime;
        Ok((AccessToken::new(Secret::new(parsed.access_token), expires_on), lifetime))
    }
}

/// What one attempt at the token endpoint ended with.
enum Attempted {
    Endpoint(TokenEndpointError),
    Transport(String),
    Signing(CredentialError),
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        "the connection failed".to_string()
    }
}

/// The first sentence of an AADSTS description ("AADSTS700027: Client assertion failed ...").
fn first_sentence(description: &str) -> String {
    let line = description.lines().next().unwrap_or_default().trim();
    let end = line.find(". ").map(|i| i + 1).unwrap_or(line.len());
    line[..end].chars().take(300).collect()
}

#[async_trait::async_trait]
impl TokenCredential for CertificateCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.token(&scopes.join(" "))
            .await
            .map_err(|error| azure_core::Error::new(azure_core::error::ErrorKind::Credential, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_sentence_of_a_description_is_kept() {
        let description = "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.] Trace ID: 1\r\nCorrelation ID: 2";
        assert_eq!(
            first_sentence(description),
            "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application."
        );
    }
}
