//! Mailchimp: adds the user to an audience, only when they consented (the boolean extension
//! attribute named by `MAILCHIMP_CONSENT_ATTRIBUTE` is true).
//!
//! `PUT {base}/3.0/lists/{list}/members/{md5(lower(trim(email)))}` with Basic auth
//! `anystring:{key}` and `{"email_address", "status_if_new", "merge_fields"}` is Mailchimp's
//! add-or-update: repeating it changes nothing, and it never changes an existing member's
//! status (someone who unsubscribed stays unsubscribed).
//!
//! Mailchimp allows 10 simultaneous connections per API key and answers 429 beyond that, so
//! the client lets at most [`MAX_CONNECTIONS`] calls run at once. Clones share that limit:
//! build one client per process.

use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use url::Url;

use super::{DestinationError, Email, NewUser, Outcome, classify_status, error_body, http_client, redact, send};
use crate::settings::destinations::{MailchimpSettings, MailchimpStatus, MergeField};

/// Mailchimp's limit of simultaneous connections per API key.
pub const MAX_CONNECTIONS: usize = 10;

const OPERATION: &str = "Mailchimp add-or-update member";

/// A Mailchimp Marketing API client for one audience. Cheap to clone; clones share the
/// connection limit.
#[derive(Clone)]
pub struct MailchimpClient {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    list_id: String,
    consent_attribute: String,
    merge_fields: Vec<MergeField>,
    status_if_new: MailchimpStatus,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for MailchimpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailchimpClient")
            .field("base_url", &self.base_url.as_str())
            .field("list_id", &self.list_id)
            .finish_non_exhaustive()
    }
}

/// The parts of a member Mailchimp returns that we use.
#[derive(Deserialize)]
struct Member {
    /// Mailchimp's opaque id for the address across all its accounts (unlike `id`, which is
    /// the MD5 of the address and so personal data).
    #[serde(default)]
    unique_email_id: Option<String>,
}

/// Mailchimp's error document (RFC 7807 problem details).
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl MailchimpClient {
    pub fn new(settings: &MailchimpSettings) -> Result<MailchimpClient, DestinationError> {
        Ok(MailchimpClient {
            http: http_client(settings.timeout, MAX_CONNECTIONS)?,
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone(),
            list_id: settings.list_id.clone(),
            consent_attribute: settings.consent_attribute.clone(),
            merge_fields: settings.merge_fields.clone(),
            status_if_new: settings.status_if_new,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// Mailchimp's subscriber hash: the MD5 of the lower-cased address, in hex.
    pub fn subscriber_hash(email: &Email) -> String {
        hex::encode(Md5::digest(email.as_str().as_bytes()))
    }

    /// True when the consent attribute is `true` (a boolean, or the text `true`/`yes`/`1`).
    pub fn has_consent(&self, user: &NewUser) -> bool {
        match user.attribute(&self.consent_attribute) {
            Some(Value::Bool(consent)) => *consent,
            Some(Value::String(text)) => ["true", "yes", "1"]
                .iter()
                .any(|yes| text.trim().eq_ignore_ascii_case(yes)),
            Some(Value::Number(number)) => number.as_u64() == Some(1),
            _ => false,
        }
    }

    /// Adds or updates the user as a member of the audience when they consented; without
    /// consent, [`Outcome::Skipped`] and no call.
    pub async fn subscribe(&self, user: &NewUser) -> Result<Outcome, DestinationError> {
        if !self.has_consent(user) {
            return Ok(Outcome::Skipped {
                reason: "the user did not consent to the mailing list",
            });
        }
        let Some(email) = &user.email else {
            return Err(DestinationError::permanent(
                "no_email",
                format!("{OPERATION}: user has no email"),
            ));
        };
        let hash = MailchimpClient::subscriber_hash(email);
        let url = super::endpoint(&self.base_url, &["3.0", "lists", &self.list_id, "members", &hash]);
        let body = json!({
            "email_address": email.as_str(),
            "status_if_new": self.status_if_new.as_str(),
            "merge_fields": self.merge_values(user),
        });
        let request = self
            .http
            .put(url)
            .basic_auth("signup-bridge", Some(self.api_key.expose_secret()))
            .json(&body);

        // Held until the body is read: the connection is busy until then.
        let permit = self.permits.acquire().await.map_err(|_| {
            DestinationError::transient("shutdown", format!("{OPERATION}: the client is shutting down"))
        })?;
        let response = send(request, OPERATION).await?;
        let status = response.status();
        if status.is_success() {
            let member: Option<Member> = response.json().await.ok();
            return Ok(Outcome::Done {
                external_id: member.and_then(|member| member.unique_email_id),
            });
        }
        let headers = response.headers().clone();
        let problem: Problem = serde_json::from_str(&error_body(response).await).unwrap_or_default();
        drop(permit);
        self.classify(user, status, &headers, problem)
    }

    /// Merge values for the tags in settings; properties the user lacks are left out (an
    /// empty value would erase what an existing member has).
    fn merge_values(&self, user: &NewUser) -> Value {
        let values: Map<String, Value> = self
            .merge_fields
            .iter()
            .filter_map(|field| Some((field.tag.clone(), Value::String(user.property(&field.source)?))))
            .collect();
        Value::Object(values)
    }

    fn classify(
        &self,
        user: &NewUser,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        problem: Problem,
    ) -> Result<Outcome, DestinationError> {
        let title = problem.title.unwrap_or_default();
        // Mailchimp refuses, for good, to re-add an address that unsubscribed, bounced or was
        // "forgotten" (GDPR erasure). That is the person's earlier choice, not a failure.
        if status == StatusCode::BAD_REQUEST {
            if title.eq_ignore_ascii_case("Member In Compliance State") {
                return Ok(Outcome::Skipped {
                    reason: "Mailchimp keeps this address in compliance state (unsubscribed, bounced or reported earlier)",
                });
            }
            if title.eq_ignore_ascii_case("Forgotten Email Not Subscribed") {
                return Ok(Outcome::Skipped {
                    reason: "the address was permanently deleted from this Mailchimp audience and cannot be re-added by the API",
                });
            }
        }
        let mut personal = user.personal_values();
        personal.push(self.api_key.expose_secret().to_string());
        let detail = redact(problem.detail.as_deref().unwrap_or_default(), &personal);
        let title = redact(&title, &personal);
        let message = match (title.is_empty(), detail.is_empty()) {
            (true, _) => format!("{OPERATION}: HTTP {}", status.as_u16()),
            (false, true) => format!("{OPERATION}: HTTP {} {title}", status.as_u16()),
            (false, false) => format!("{OPERATION}: HTTP {} {title}: {detail}", status.as_u16()),
        };
        Err(classify_status(
            status,
            headers,
            Some(&title).filter(|t| !t.is_empty()).map(|t| t.as_str()),
            message,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscriber_hash_is_the_md5_of_the_lower_cased_address() {
        // Mailchimp's documented example address.
        let email = Email::parse(" URIST.McVankab@freddiesjokes.com ").unwrap();
        assert_eq!(
            MailchimpClient::subscriber_hash(&email),
            "62eeb292278cc15f5817cb78f7790b08"
        );
    }
}
