//! Stripe: makes sure the user has a customer, tagged `metadata[entra_object_id]`.
//!
//! Three guards against a second customer, in order:
//! 1. A customer id the pipeline already knows (from the ledger, or the user's extension
//!    attribute that the pipeline writes back): no call at all.
//! 2. Optionally (`STRIPE_SEARCH_BEFORE_CREATE`, on by default) a search by
//!    `metadata['entra_object_id']`. Stripe's search is eventually consistent (new
//!    customers show up after about a minute, at worst an hour; not available at all to
//!    accounts in India), so it only protects retries that come late.
//! 3. The real guarantee: `POST /v1/customers` carries
//!    `Idempotency-Key: signup-bridge-customer-<object id>`, derived from the user, so any
//!    retry within Stripe's key retention (at least 24 hours) gets the first customer back.
//!
//! Stripe replays the saved response for a key, including a 500, and refuses a key reused
//! with different parameters (`idempotency_error`, e.g. the name changed between attempts):
//! then the customer is looked up by search (and its email and name brought up to date);
//! until search sees it the error is transient, so the pipeline retries later.
//! `Stripe-Should-Retry`, when Stripe sends it, decides transient or permanent.

use std::fmt;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{
    DestinationError, NewUser, ObjectId, Outcome, classify_status, error_body, http_client, http_code, redact, send,
};
use crate::settings::destinations::StripeSettings;

/// The metadata key holding the Entra object id on every customer we create.
pub const METADATA_KEY: &str = "entra_object_id";

const CREATE: &str = "Stripe create customer";
const SEARCH: &str = "Stripe search customers";
const UPDATE: &str = "Stripe update customer";

/// A Stripe customer id (`cus_...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe customer id; expected cus_ followed by letters and digits")]
pub struct InvalidCustomerId;

impl CustomerId {
    pub fn parse(text: &str) -> Result<CustomerId, InvalidCustomerId> {
        let text = text.trim();
        match text.strip_prefix("cus_") {
            Some(rest) if !rest.is_empty() && rest.len() <= 250 && rest.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok(CustomerId(text.to_string()))
            }
            _ => Err(InvalidCustomerId),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Idempotency-Key` of a user's customer creation: the same for every attempt for the
/// same user, different for every user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn for_customer(object_id: &ObjectId) -> IdempotencyKey {
        IdempotencyKey(format!("signup-bridge-customer-{object_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Stripe API client (customers only).
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    search_before_create: bool,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("base_url", &self.base_url.as_str())
            .field("search_before_create", &self.search_before_create)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Customer {
    id: String,
}

#[derive(Deserialize)]
struct SearchResult {
    data: Vec<Customer>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: StripeError,
}

#[derive(Deserialize, Default)]
struct StripeError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A failed call, before classification.
struct Failure {
    status: StatusCode,
    headers: HeaderMap,
    error: StripeError,
}

impl StripeClient {
    pub fn new(settings: &StripeSettings) -> Result<StripeClient, DestinationError> {
        Ok(StripeClient {
            http: http_client(settings.timeout, 10)?,
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone(),
            search_before_create: settings.search_before_create,
        })
    }

    /// The user's customer: `known` when the pipeline has one, else one found by search or
    /// created. [`Outcome::Done`] carries the customer id, which the pipeline writes back to
    /// the user in Entra.
    pub async fn ensure_customer(
        &self,
        user: &NewUser,
        known: Option<&CustomerId>,
    ) -> Result<Outcome, DestinationError> {
        if let Some(known) = known {
            return Ok(done(known.as_str()));
        }
        if self.search_before_create {
            match self.find_customer(user).await {
                Ok(Some(found)) => return Ok(done(&found)),
                Ok(None) => {}
                Err(error) if error.is_transient() => return Err(error),
                // Search is only an optimisation (and missing in some regions): the
                // idempotency key still protects the create.
                Err(error) => log::warn!(
                    "user {}: Stripe customer search failed ({}); creating with the idempotency key",
                    user.object_id,
                    error.code()
                ),
            }
        }
        self.create_customer(user).await
    }

    /// The newest customer whose `metadata['entra_object_id']` is this user's object id, as
    /// far as Stripe's search index knows yet.
    pub async fn find_customer(&self, user: &NewUser) -> Result<Option<String>, DestinationError> {
        let url = super::endpoint(&self.base_url, &["v1", "customers", "search"]);
        let query = format!("metadata['{METADATA_KEY}']:'{}'", user.object_id);
        let request = self
            .http
            .get(url)
            .bearer_auth(self.api_key.expose_secret())
            .query(&[("query", query.as_str()), ("limit", "1")]);
        let response = send(request, SEARCH).await?;
        if !response.status().is_success() {
            return Err(self.classify(SEARCH, user, failure(response).await));
        }
        let result: SearchResult = response.json().await.map_err(|_| {
            DestinationError::transient("invalid_response", format!("{SEARCH}: the response could not be read"))
        })?;
        Ok(result.data.into_iter().next().map(|customer| customer.id))
    }

    async fn create_customer(&self, user: &NewUser) -> Result<Outcome, DestinationError> {
        let url = super::endpoint(&self.base_url, &["v1", "customers"]);
        let request = self
            .http
            .post(url)
            .bearer_auth(self.api_key.expose_secret())
            .header(
                "Idempotency-Key",
                IdempotencyKey::for_customer(&user.object_id).as_str(),
            )
            .form(&customer_fields(user, true));
        let response = send(request, CREATE).await?;
        if response.status().is_success() {
            let customer: Customer = response.json().await.map_err(|_| {
                DestinationError::transient("invalid_response", format!("{CREATE}: the response could not be read"))
            })?;
            return Ok(done(&customer.id));
        }
        let failure = failure(response).await;
        if failure.status == StatusCode::BAD_REQUEST && failure.error.kind.as_deref() == Some("idempotency_error") {
            return self.recover_from_changed_parameters(user, failure).await;
        }
        Err(self.classify(CREATE, user, failure))
    }

    /// The key was first used with other parameters (the user's name or email changed
    /// since): the first attempt's customer exists, or the first attempt failed. Find it and
    /// update it; if search cannot see it yet, come back later.
    async fn recover_from_changed_parameters(
        &self,
        user: &NewUser,
        failure: Failure,
    ) -> Result<Outcome, DestinationError> {
        if let Ok(Some(found)) = self.find_customer(user).await {
            self.update_customer(user, &found).await?;
            return Ok(done(&found));
        }
        Err(DestinationError::transient(
            http_code(failure.status, Some("idempotency_error")),
            format!(
                "{CREATE}: HTTP 400 idempotency_error: the user's details changed since the first attempt with this \
                 idempotency key, and search does not show that attempt's customer yet; retrying later"
            ),
        ))
    }

    /// Sets email and name on an existing customer (a plain update: idempotent).
    async fn update_customer(&self, user: &NewUser, customer: &str) -> Result<(), DestinationError> {
        let url = super::endpoint(&self.base_url, &["v1", "customers", customer]);
        let request = self
            .http
            .post(url)
            .bearer_auth(self.api_key.expose_secret())
            .form(&customer_fields(user, false));
        let response = send(request, UPDATE).await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.classify(UPDATE, user, failure(response).await))
    }

    fn classify(&self, operation: &str, user: &NewUser, failure: Failure) -> DestinationError {
        let Failure { status, headers, error } = failure;
        let mut personal = user.personal_values();
        personal.push(self.api_key.expose_secret().to_string());
        let vendor_code = error.code.as_deref().or(error.kind.as_deref());
        let kind = error.kind.as_deref().map(|kind| redact(kind, &[])).unwrap_or_default();
        let detail = redact(error.message.as_deref().unwrap_or_default(), &personal);
        let code_text = match (&error.code, kind.is_empty()) {
            (Some(code), false) => format!(" {kind}/{}", redact(code, &[])),
            (Some(code), true) => format!(" {}", redact(code, &[])),
            (None, false) => format!(" {kind}"),
            (None, true) => String::new(),
        };
        let message = if detail.is_empty() {
            format!("{operation}: HTTP {}{code_text}", status.as_u16())
        } else {
            format!("{operation}: HTTP {}{code_text}: {detail}", status.as_u16())
        };
        let code = http_code(status, vendor_code);
        // Stripe says whether a retry can succeed; it knows better than the status code.
        let should_retry = headers
            .get("stripe-should-retry")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().eq_ignore_ascii_case("true"));
        match should_retry {
            Some(true) => DestinationError::Transient {
                code,
                message,
                retry_after: crate::retry::retry_after(&headers),
            },
            Some(false) => DestinationError::Permanent { code, message },
            // 409: another request with the same key is still running; it will finish.
            None if status == StatusCode::CONFLICT => DestinationError::Transient {
                code,
                message,
                retry_after: crate::retry::retry_after(&headers),
            },
            None => classify_status(status, &headers, vendor_code, message),
        }
    }
}

fn done(customer: &str) -> Outcome {
    Outcome::Done {
        external_id: Some(customer.to_string()),
    }
}

/// Form fields of a customer. The creation always sends the same fields for the same user
/// data, so a retry matches the first attempt's parameters.
fn customer_fields(user: &NewUser, with_metadata: bool) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(email) = &user.email {
        fields.push(("email".to_string(), email.as_str().to_string()));
    }
    if let Some(name) = user.full_name() {
        fields.push(("name".to_string(), name));
    }
    if with_metadata {
        fields.push((format!("metadata[{METADATA_KEY}]"), user.object_id.to_string()));
    }
    fields
}

async fn failure(response: reqwest::Response) -> Failure {
    let status = response.status();
    let headers = response.headers().clone();
    let body: ErrorBody = serde_json::from_str(&error_body(response).await).unwrap_or_default();
    Failure {
        status,
        headers,
        error: body.error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_and_keys() {
        assert_eq!(
            CustomerId::parse(" cus_NffrFeUfNV2Hib ").unwrap().as_str(),
            "cus_NffrFeUfNV2Hib"
        );
        for bad in ["", "cus_", "NffrFeUfNV2Hib", "cus_a b", "sub_123"] {
            assert!(CustomerId::parse(bad).is_err(), "{bad:?}");
        }
        let id = ObjectId::parse("aaaabbbb-0000-cccc-1111-dddd2222eeee").unwrap();
        assert_eq!(
            IdempotencyKey::for_customer(&id).as_str(),
            "signup-bridge-customer-aaaabbbb-0000-cccc-1111-dddd2222eeee"
        );
    }
}
