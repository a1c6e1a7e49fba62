//! Salesforce: upserts a Contact by an External ID field holding the Entra object id.
//!
//! Token: the OAuth 2.0 client credentials flow on the org's My Domain,
//! `POST {login}/services/oauth2/token` → `{access_token, instance_url, ...}`. Salesforce
//! sends no `expires_in` for this flow (the token lives as long as the run-as user's
//! session policy allows), so the token is cached until a call answers 401
//! `INVALID_SESSION_ID`; then it is fetched again, once, and the call repeated. Concurrent
//! callers share one token request (single flight).
//!
//! Upsert: `PATCH {instance_url}/services/data/{version}/sobjects/Contact/{field}/{object id}`
//! with `{FirstName, LastName, Email}`: 201 created, 200 (API 46+) or 204 updated.
//! 300 means several Contacts carry this object id: nothing is written, and that stays so
//! until someone de-duplicates them, so it is a permanent error saying exactly that.

use std::fmt;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use url::Url;

use super::{DestinationError, NewUser, Outcome, classify_status, error_body, http_client, http_code, redact, send};
use crate::settings::destinations::SalesforceSettings;
use crate::settings::parse_endpoint;

const TOKEN: &str = "Salesforce token request";
const UPSERT: &str = "Salesforce upsert Contact";

/// Contact field lengths: longer values fail the whole upsert with `STRING_TOO_LONG`.
const FIRST_NAME_MAX: usize = 40;
const LAST_NAME_MAX: usize = 80;
/// Contact.LastName is required; this stands in when Entra has neither surname nor name.
pub const UNKNOWN_LAST_NAME: &str = "(unknown)";

/// A Salesforce REST client for Contacts of one org.
#[derive(Clone)]
pub struct SalesforceClient {
    http: reqwest::Client,
    login_url: Url,
    client_id: String,
    client_secret: SecretString,
    api_version: String,
    external_id_field: String,
    token: Arc<Mutex<Option<Arc<AccessToken>>>>,
}

impl fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.login_url.as_str())
            .field("api_version", &self.api_version)
            .field("external_id_field", &self.external_id_field)
            .finish_non_exhaustive()
    }
}

struct AccessToken {
    value: SecretString,
    instance_url: Url,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct UpsertResult {
    #[serde(default)]
    id: Option<String>,
}

/// One entry of Salesforce's error array.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl SalesforceClient {
    pub fn new(settings: &SalesforceSettings) -> Result<SalesforceClient, DestinationError> {
        Ok(SalesforceClient {
            http: http_client(settings.timeout, 10)?,
            login_url: settings.login_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            api_version: settings.api_version.clone(),
            external_id_field: settings.external_id_field.clone(),
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// Creates or updates the user's Contact. [`Outcome::Done`] carries the Contact's record
    /// id when Salesforce returns it (201, and 200 from API version 46 on).
    pub async fn upsert_contact(&self, user: &NewUser) -> Result<Outcome, DestinationError> {
        let body = contact_fields(user);
        let token = self.token().await?;
        match self.patch(&token, user, &body).await? {
            Patched::Done(outcome) => Ok(outcome),
            Patched::SessionExpired => {
                self.forget(&token).await;
                let fresh = self.token().await?;
                match self.patch(&fresh, user, &body).await? {
                    Patched::Done(outcome) => Ok(outcome),
                    Patched::SessionExpired => Err(DestinationError::permanent(
                        "http_401:INVALID_SESSION_ID",
                        format!(
                            "{UPSERT}: HTTP 401 INVALID_SESSION_ID with a token issued just now; check the app's \
                             run-as user and its API access"
                        ),
                    )),
                }
            }
        }
    }

    /// The cached token, or a new one. The lock is held while fetching, so callers that
    /// arrive meanwhile wait for that one request instead of making their own.
    async fn token(&self) -> Result<Arc<AccessToken>, DestinationError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = Arc::new(self.fetch_token().await?);
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops `used` from the cache, unless another caller already replaced it.
    async fn forget(&self, used: &Arc<AccessToken>) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|current| Arc::ptr_eq(current, used)) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<AccessToken, DestinationError> {
        let url = super::endpoint(&self.login_url, &["services", "oauth2", "token"]);
        let request = self.http.post(url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ]);
        let response = send(request, TOKEN).await?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let error: TokenError = serde_json::from_str(&error_body(response).await).unwrap_or_default();
            let secrets = [self.client_secret.expose_secret().to_string()];
            let code = error.error.as_deref().map(|code| redact(code, &secrets));
            let description = redact(error.error_description.as_deref().unwrap_or_default(), &secrets);
            let message = format!(
                "{TOKEN}: HTTP {} {}: {} (check SALESFORCE_CLIENT_ID/SECRET and that the app allows the client \
                 credentials flow with a run-as user)",
                status.as_u16(),
                code.as_deref().unwrap_or("error"),
                if description.is_empty() {
                    "no description"
                } else {
                    &description
                },
            );
            return Err(classify_status(status, &headers, code.as_deref(), message));
        }
        let token: TokenResponse = response.json().await.map_err(|_| {
            DestinationError::transient("invalid_response", format!("{TOKEN}: the response could not be read"))
        })?;
        // The token goes wherever instance_url points: only https (or a loopback fake).
        let instance_url = parse_endpoint(&token.instance_url).map_err(|_| {
            DestinationError::permanent(
                "invalid_instance_url",
                format!("{TOKEN}: the token's instance_url is not an https:// URL"),
            )
        })?;
        Ok(AccessToken {
            value: SecretString::from(token.access_token),
            instance_url,
        })
    }

    async fn patch(&self, token: &AccessToken, user: &NewUser, body: &Value) -> Result<Patched, DestinationError> {
        let object_id = user.object_id.to_string();
        let url = super::endpoint(
            &token.instance_url,
            &[
                "services",
                "data",
                &self.api_version,
                "sobjects",
                "Contact",
                &self.external_id_field,
                &object_id,
            ],
        );
        let request = self.http.patch(url).bearer_auth(token.value.expose_secret()).json(body);
        let response = send(request, UPSERT).await?;
        let status = response.status();
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let result: Option<UpsertResult> = response.json().await.ok();
                Ok(Patched::Done(Outcome::Done {
                    external_id: result.and_then(|result| result.id),
                }))
            }
            StatusCode::NO_CONTENT => Ok(Patched::Done(Outcome::Done { external_id: None })),
            StatusCode::MULTIPLE_CHOICES => {
                let matches = serde_json::from_str::<Vec<Value>>(&error_body(response).await)
                    .map(|records| records.len().to_string())
                    .unwrap_or_else(|_| "several".to_string());
                Err(DestinationError::permanent(
                    "http_300:MULTIPLE_MATCHES",
                    format!(
                        "{UPSERT}: HTTP 300: {matches} Contact records have {field} = {object_id}, so Salesforce \
                         refuses to choose one; de-duplicate those records (keep one) and mark {field} Unique, then \
                         replay this user",
                        field = self.external_id_field,
                    ),
                ))
            }
            _ => {
                let headers = response.headers().clone();
                let errors: Vec<ApiError> = serde_json::from_str(&error_body(response).await).unwrap_or_default();
                let first = errors.into_iter().next();
                let code = first.as_ref().and_then(|error| error.error_code.clone());
                if status == StatusCode::UNAUTHORIZED && code.as_deref().is_none_or(|code| code == "INVALID_SESSION_ID")
                {
                    return Ok(Patched::SessionExpired);
                }
                let message = first.and_then(|error| error.message).unwrap_or_default();
                Err(self.classify(user, status, &headers, code.as_deref(), &message))
            }
        }
    }

    fn classify(
        &self,
        user: &NewUser,
        status: StatusCode,
        headers: &HeaderMap,
        code: Option<&str>,
        message: &str,
    ) -> DestinationError {
        let code = code.map(|code| redact(code, &[]));
        let detail = redact(message, &user.personal_values());
        let mut text = format!(
            "{UPSERT}: HTTP {} {}",
            status.as_u16(),
            code.as_deref().unwrap_or("error")
        );
        if !detail.is_empty() {
            text = format!("{text}: {detail}");
        }
        match code.as_deref() {
            // The org's 24-hour API request limit, and record lock contention: both pass.
            Some("REQUEST_LIMIT_EXCEEDED") | Some("UNABLE_TO_LOCK_ROW") | Some("SERVER_UNAVAILABLE") => {
                DestinationError::Transient {
                    code: http_code(status, code.as_deref()),
                    message: text,
                    retry_after: crate::retry::retry_after(headers),
                }
            }
            Some("NOT_FOUND") if status == StatusCode::NOT_FOUND => DestinationError::permanent(
                http_code(status, code.as_deref()),
                format!(
                    "{text} (is {} an External ID field on Contact, visible to the app's run-as user?)",
                    self.external_id_field
                ),
            ),
            _ => classify_status(status, headers, code.as_deref(), text),
        }
    }
}

enum Patched {
    Done(Outcome),
    SessionExpired,
}

/// `FirstName`, `LastName` (required: surname, else the display name, else a placeholder),
/// `Email`. Absent values are left out so an update never blanks a field someone filled in.
fn contact_fields(user: &NewUser) -> Value {
    let mut fields = Map::new();
    let given = user.property("givenName");
    if let Some(given) = &given {
        fields.insert("FirstName".into(), Value::String(truncate(given, FIRST_NAME_MAX)));
    }
    let last = user
        .property("surname")
        .or_else(|| user.full_name())
        .unwrap_or_else(|| UNKNOWN_LAST_NAME.to_string());
    fields.insert("LastName".into(), Value::String(truncate(&last, LAST_NAME_MAX)));
    if let Some(email) = &user.email {
        fields.insert("Email".into(), Value::String(email.as_str().to_string()));
    }
    Value::Object(fields)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::destinations::{Email, ObjectId};
    use serde_json::json;

    fn user() -> NewUser {
        NewUser::new(ObjectId::parse("aaaabbbb-0000-cccc-1111-dddd2222eeee").unwrap())
    }

    #[test]
    fn last_name_falls_back_to_the_display_name_then_a_placeholder() {
        assert_eq!(contact_fields(&user()), json!({"LastName": "(unknown)"}));
        let named = NewUser {
            display_name: Some("Jane Doe".into()),
            email: Some(Email::parse("Jane@Contoso.com").unwrap()),
            ..user()
        };
        assert_eq!(
            contact_fields(&named),
            json!({"LastName": "Jane Doe", "Email": "jane@contoso.com"})
        );
        let full = NewUser {
            given_name: Some("Jane".into()),
            surname: Some("D".repeat(100)),
            ..named
        };
        let fields = contact_fields(&full);
        assert_eq!(fields["FirstName"], "Jane");
        assert_eq!(fields["LastName"].as_str().unwrap().len(), LAST_NAME_MAX);
    }
}
