//! The external destinations of ProvisionUser: Mailchimp, Stripe, Salesforce and PostgreSQL,
//! each in its own module with its own small client, and the types they share with the
//! pipeline (which also uses [`Destination`], [`Outcome`] and [`DestinationError`] for the
//! Graph-based destinations it runs itself).
//!
//! Every destination is idempotent at the destination: Mailchimp is an add-or-update `PUT`
//! keyed by the address hash, Stripe a create with a deterministic `Idempotency-Key`,
//! Salesforce an upsert by an external-id field, PostgreSQL an `INSERT ... ON CONFLICT`.
//! A call is one attempt plus a classification: the pipeline owns retries across minutes
//! (it re-enqueues the user with a delay), so [`DestinationError::Transient`] carries the
//! server's `Retry-After` when there is one. Only a connection that could not be opened is
//! retried at once, once.
//!
//! Error messages never hold personal data or secrets: vendor messages pass through
//! `redact` (the user's email, names and attribute values, any email-like text, the
//! destination's secret) and are shortened.

pub mod mailchimp;
pub mod postgres;
pub mod salesforce;
pub mod stripe;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::retry;

/// Every destination of ProvisionUser, by its stable name (ledger keys, logs, `status`).
/// Declared in the order the pipeline runs them: directory fix-ups first (the others may
/// read the fixed display name), PostgreSQL last (it records the external ids of the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Display name and UPN fix-ups (Graph).
    Directory,
    /// Birthright group memberships (Graph).
    Groups,
    Mailchimp,
    Stripe,
    Salesforce,
    Postgres,
}

impl Destination {
    pub const ALL: [Destination; 6] = [
        Destination::Directory,
        Destination::Groups,
        Destination::Mailchimp,
        Destination::Stripe,
        Destination::Salesforce,
        Destination::Postgres,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Destination::Directory => "directory",
            Destination::Groups => "groups",
            Destination::Mailchimp => "mailchimp",
            Destination::Stripe => "stripe",
            Destination::Salesforce => "salesforce",
            Destination::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a destination name; expected one of directory, groups, mailchimp, stripe, salesforce, postgres")]
pub struct UnknownDestination;

impl FromStr for Destination {
    type Err = UnknownDestination;

    fn from_str(text: &str) -> Result<Destination, UnknownDestination> {
        Destination::ALL
            .into_iter()
            .find(|destination| destination.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or(UnknownDestination)
    }
}

/// A user's object id in Entra: a GUID, not the nil GUID. Not personal data on its own, so
/// it is what logs and error messages name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(Uuid);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an object id; expected a GUID such as aaaabbbb-0000-cccc-1111-dddd2222eeee")]
pub struct InvalidObjectId;

impl ObjectId {
    pub fn parse(text: &str) -> Result<ObjectId, InvalidObjectId> {
        match Uuid::try_parse(text.trim()) {
            Ok(uuid) => ObjectId::try_from(uuid),
            Err(_) => Err(InvalidObjectId),
        }
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl TryFrom<Uuid> for ObjectId {
    type Error = InvalidObjectId;

    fn try_from(uuid: Uuid) -> Result<ObjectId, InvalidObjectId> {
        if uuid.is_nil() {
            Err(InvalidObjectId)
        } else {
            Ok(ObjectId(uuid))
        }
    }
}

impl TryFrom<String> for ObjectId {
    type Error = InvalidObjectId;

    fn try_from(text: String) -> Result<ObjectId, InvalidObjectId> {
        ObjectId::parse(&text)
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.to_string()
    }
}

impl FromStr for ObjectId {
    type Err = InvalidObjectId;

    fn from_str(text: &str) -> Result<ObjectId, InvalidObjectId> {
        ObjectId::parse(text)
    }
}

/// Lower-case, hyphenated: the form Graph uses.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// An email address, trimmed and lower-cased (the form Mailchimp hashes, and the one every
/// destination is sent, so they all agree). Personal data: `Debug` masks it
/// (`j***@contoso.com`) and there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable email address; expected local-part@domain.tld")]
pub struct InvalidEmail;

impl Email {
    /// A pragmatic check, not RFC 5322: one `@`, a local part of at most 64 characters, a
    /// dotted domain, no spaces or control characters, at most 254 characters in all.
    pub fn parse(text: &str) -> Result<Email, InvalidEmail> {
        let normalized = text.trim().to_lowercase();
        let (local, domain) = normalized.split_once('@').ok_or(InvalidEmail)?;
        let valid = normalized.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && !normalized.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Email(normalized))
        } else {
            Err(InvalidEmail)
        }
    }

    /// The trimmed, lower-cased address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, domain)| domain).unwrap_or_default()
    }

    /// `j***@contoso.com`: enough to recognise a domain in a support case, not the person.
    pub fn masked(&self) -> String {
        let first = self.0.chars().next().unwrap_or('*');
        format!("{first}***@{}", self.domain())
    }
}

impl FromStr for Email {
    type Err = InvalidEmail;

    fn from_str(text: &str) -> Result<Email, InvalidEmail> {
        Email::parse(text)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// What the destinations know of a new user (read from Graph by the pipeline).
#[derive(Clone)]
pub struct NewUser {
    pub object_id: ObjectId,
    pub email: Option<Email>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: Option<String>,
    /// Graph's `createdDateTime`.
    pub created: Option<DateTime<Utc>>,
    /// Extension attributes by short name (`onMailingList`, not
    /// `extension_<app id>_onMailingList`); looked up ignoring case.
    pub attributes: BTreeMap<String, Value>,
}

impl NewUser {
    /// A user known only by id; fill in the rest with struct update syntax.
    pub fn new(object_id: ObjectId) -> NewUser {
        NewUser {
            object_id,
            email: None,
            given_name: None,
            surname: None,
            display_name: None,
            created: None,
            attributes: BTreeMap::new(),
        }
    }

    /// An extension attribute by short name, ignoring case; `null` counts as absent.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// A property as text, by its Graph name (`givenName`, `surname`, `displayName`, `mail`
    /// or `email`, `id` or `objectId`, `createdDateTime`) or else an extension attribute's
    /// short name. Blank values count as absent; lists are joined with commas.
    pub fn property(&self, name: &str) -> Option<String> {
        let text = match name.to_ascii_lowercase().as_str() {
            "givenname" => self.given_name.clone(),
            "surname" => self.surname.clone(),
            "displayname" => self.display_name.clone(),
            "mail" | "email" => self.email.as_ref().map(|email| email.as_str().to_string()),
            "id" | "objectid" => Some(self.object_id.to_string()),
            "createddatetime" => self
                .created
                .map(|created| created.to_rfc3339_opts(SecondsFormat::Secs, true)),
            _ => self.attribute(name).and_then(value_text),
        };
        text.map(|text| text.trim().to_string()).filter(|text| !text.is_empty())
    }

    /// The display name, else given name and surname joined.
    pub fn full_name(&self) -> Option<String> {
        let display = self
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty());
        if let Some(display) = display {
            return Some(display.to_string());
        }
        let parts: Vec<&str> = [self.given_name.as_deref(), self.surname.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Every value of this user that could identify them, for `redact`.
    pub(crate) fn personal_values(&self) -> Vec<String> {
        let mut values: Vec<String> = [&self.given_name, &self.surname, &self.display_name]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(email) = &self.email {
            values.push(email.as_str().to_string());
            values.extend(email.as_str().split('@').next().map(str::to_string));
        }
        // Strings only: `true` or `42` identify nobody, and redacting them would garble messages.
        for value in self.attributes.values() {
            match value {
                Value::String(text) => values.push(text.clone()),
                Value::Array(items) => values.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
                _ => {}
            }
        }
        values
    }
}

/// Names and values stay out of `Debug`: the id, a masked email and the attribute names.
impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("object_id", &self.object_id)
            .field("email", &self.email)
            .field("created", &self.created)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A JSON value as text: strings as they are, numbers and booleans printed, lists joined.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::Object(_) => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(value_text).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
    }
}

/// What a destination did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record exists at the destination (created now, or already there).
    /// `external_id` is the destination's id for it, when it has one worth keeping.
    Done { external_id: Option<String> },
    /// Nothing to do for this user (e.g. no consent to the mailing list); not an error.
    Skipped { reason: &'static str },
}

/// Why a destination failed. `code` is short and stable (`http_429`, `http_400:resource_missing`,
/// `timeout`, `sqlstate_40001`, ...); `message` says what happened, with the HTTP status and
/// the vendor's error code. Neither holds personal data or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// Worth another attempt later: 408, 429, 5xx, timeouts, connection failures.
    #[error("{message} ({code}, transient)")]
    Transient {
        code: String,
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Another attempt would fail the same way until someone changes something.
    #[error("{message} ({code})")]
    Permanent { code: String, message: String },
}

impl DestinationError {
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> DestinationError {
        DestinationError::Transient {
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> DestinationError {
        DestinationError::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DestinationError::Transient { .. })
    }

    pub fn code(&self) -> &str {
        match self {
            DestinationError::Transient { code, .. } | DestinationError::Permanent { code, .. } => code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DestinationError::Transient { message, .. } | DestinationError::Permanent { message, .. } => message,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DestinationError::Transient { retry_after, .. } => *retry_after,
            DestinationError::Permanent { .. } => None,
        }
    }
}

/// `http_{status}`, or `http_{status}:{vendor code}` when the vendor gave one.
pub fn http_code(status: StatusCode, vendor_code: Option<&str>) -> String {
    match vendor_code.map(str::trim).filter(|code| !code.is_empty()) {
        Some(code) => format!("http_{}:{}", status.as_u16(), code),
        None => format!("http_{}", status.as_u16()),
    }
}

/// Classifies a non-success response: 408, 429 and 5xx are transient (with the server's
/// `Retry-After`, seconds or HTTP date), any other status is permanent. `message` must
/// already be free of personal data (see `redact`).
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    vendor_code: Option<&str>,
    message: String,
) -> DestinationError {
    let code = http_code(status, vendor_code);
    if retry::is_retryable_status(status) {
        DestinationError::Transient {
            code,
            message,
            retry_after: retry::retry_after(headers),
        }
    } else {
        DestinationError::Permanent { code, message }
    }
}

/// A request that got no response. Never uses the library's text: it holds the URL, which
/// can hold personal data (Mailchimp's path is a hash of the address).
pub(crate) fn classify_transport(operation: &str, error: &reqwest::Error) -> DestinationError {
    if error.is_timeout() {
        DestinationError::transient("timeout", format!("{operation}: no response within the time limit"))
    } else if error.is_connect() {
        DestinationError::transient("connect", format!("{operation}: could not connect"))
    } else if error.is_builder() {
        DestinationError::permanent("request", format!("{operation}: the request could not be built"))
    } else {
        DestinationError::transient(
            "network",
            format!("{operation}: the connection failed during the request"),
        )
    }
}

/// Sends one request. A connection that could not be opened is tried once more after a
/// short pause (the request never reached the server, and every call here is idempotent
/// anyway); every other failure is classified and returned for the pipeline to schedule.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    operation: &str,
) -> Result<reqwest::Response, DestinationError> {
    let second = request.try_clone();
    match request.send().await {
        Ok(response) => Ok(response),
        Err(error) if error.is_connect() && second.is_some() => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match second {
                Some(second) => second
                    .send()
                    .await
                    .map_err(|error| classify_transport(operation, &error)),
                None => Err(classify_transport(operation, &error)),
            }
        }
        Err(error) => Err(classify_transport(operation, &error)),
    }
}

/// The HTTP client of one destination: an overall time limit on every call, a shorter one
/// for connecting, and our name in `User-Agent` (vendors' logs then say who called).
pub(crate) fn http_client(timeout: Duration, max_idle_per_host: usize) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(max_idle_per_host)
        .user_agent(concat!("signup-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| DestinationError::permanent("client", "the HTTP client could not be created (TLS set-up failed)"))
}

/// `base` with `segments` appended as path segments (each percent-encoded), keeping any
/// path prefix `base` has (a proxy in front of the vendor, a fake in tests).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url.set_query(None);
    url
}

const MAX_MESSAGE_CHARS: usize = 300;

static EMAIL_LIKE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"[^\s"'<>(),;:\[\]]+@[^\s"'<>(),;:\[\]]+"#).expect("a valid regular expression")
});

/// A vendor's error text made safe for logs and the ledger: every value in `personal`
/// (the user's email, names, attribute values; the destination's secret) and anything
/// that looks like an email address replaced, control characters dropped, and at most
/// 300 characters kept.
pub(crate) fn redact(text: &str, personal: &[String]) -> String {
    let mut text = EMAIL_LIKE.replace_all(text, "[email]").into_owned();
    for value in personal
        .iter()
        .map(|value| value.trim())
        .filter(|value| value.chars().count() >= 2)
    {
        if let Ok(pattern) = regex::RegexBuilder::new(&regex::escape(value))
            .case_insensitive(true)
            .build()
        {
            text = pattern.replace_all(&text, "[redacted]").into_owned();
        }
    }
    let mut cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        cleaned.push('…');
    }
    cleaned.trim().to_string()
}

/// Reads an error body as text, for classification; an unreadable body is an empty one.
pub(crate) async fn error_body(response: reqwest::Response) -> String {
    response.text().await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use serde_json::json;

    const ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";

    #[test]
    fn object_ids_are_guids_printed_lower_case() {
        let id = ObjectId::parse(" AAAABBBB-0000-CCCC-1111-DDDD2222EEEE ").unwrap();
        assert_eq!(id.to_string(), ID);
        assert_eq!(format!("{id:?}"), format!("ObjectId({ID})"));
        assert_eq!(ObjectId::parse("not-a-guid"), Err(InvalidObjectId));
        assert_eq!(
            ObjectId::parse("00000000-0000-0000-0000-000000000000"),
            Err(InvalidObjectId)
        );
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{ID}\""));
        assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ObjectId>("\"nope\"").is_err());
    }

    #[test]
    fn emails_are_trimmed_lower_cased_and_masked_in_debug() {
        let email = Email::parse("  Jane.Doe@Contoso.COM ").unwrap();
        assert_eq!(email.as_str(), "jane.doe@contoso.com");
        assert_eq!(email.domain(), "contoso.com");
        assert_eq!(format!("{email:?}"), "Email(j***@contoso.com)");
        for bad in [
            "",
            "jane",
            "@contoso.com",
            "jane@",
            "jane@contoso",
            "jane@@contoso.com",
            "ja ne@contoso.com",
            "jane@.contoso.com",
            "jane@contoso..com",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@contoso.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn a_new_users_debug_shows_no_names_or_address() {
        let user = NewUser {
            email: Some(Email::parse("jane@contoso.com").unwrap()),
            given_name: Some("Jane".into()),
            surname: Some("Doe".into()),
            display_name: Some("Jane Doe".into()),
            attributes: BTreeMap::from([("favouriteColour".to_string(), json!("teal"))]),
            ..NewUser::new(ObjectId::parse(ID).unwrap())
        };
        let debug = format!("{user:?}");
        assert!(debug.contains(ID) && debug.contains("j***@contoso.com") && debug.contains("favouriteColour"));
        for personal in ["jane@", "Jane", "Doe", "teal"] {
            assert!(!debug.contains(personal), "{personal} in {debug}");
        }
    }

    #[test]
    fn properties_come_from_graph_names_or_extension_attributes() {
        let user = NewUser {
            email: Some(Email::parse("jane@contoso.com").unwrap()),
            given_name: Some("Jane".into()),
            surname: Some("  ".into()),
            attributes: BTreeMap::from([
                ("OnMailingList".to_string(), json!(true)),
                ("groups".to_string(), json!(["Faculty", "Staff"])),
                ("nothing".to_string(), Value::Null),
            ]),
            ..NewUser::new(ObjectId::parse(ID).unwrap())
        };
        assert_eq!(user.property("givenName").as_deref(), Some("Jane"));
        assert_eq!(user.property("surname"), None);
        assert_eq!(user.property("mail").as_deref(), Some("jane@contoso.com"));
        assert_eq!(user.property("objectId").as_deref(), Some(ID));
        assert_eq!(user.property("onMailingList").as_deref(), Some("true"));
        assert_eq!(user.property("groups").as_deref(), Some("Faculty,Staff"));
        assert_eq!(user.property("nothing"), None);
        assert_eq!(user.attribute("onmailinglist"), Some(&json!(true)));
        assert_eq!(user.full_name().as_deref(), Some("Jane"));
    }

    #[test]
    fn statuses_are_classified_with_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        let throttled = classify_status(StatusCode::TOO_MANY_REQUESTS, &headers, None, "slow down".into());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(17)));
        assert_eq!(throttled.code(), "http_429");
        for status in [408, 500, 502, 503, 504] {
            let error = classify_status(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                None,
                "x".into(),
            );
            assert!(error.is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 422] {
            let error = classify_status(StatusCode::from_u16(status).unwrap(), &headers, Some("bad"), "x".into());
            assert!(!error.is_transient(), "{status}");
            assert_eq!(error.code(), format!("http_{status}:bad"));
            assert_eq!(error.retry_after(), None);
        }
    }

    #[test]
    fn redaction_removes_personal_values_emails_and_secrets() {
        let personal = vec!["Jane".to_string(), "sk_test_123".to_string(), "x".to_string()];
        let text = "Invalid email: JANE.doe+1@contoso.com for jane (key sk_test_123)\nmore";
        let redacted = redact(text, &personal);
        assert_eq!(redacted, "Invalid email: [email] for [redacted] (key [redacted]) more");
        let long = redact(&"a".repeat(1000), &[]);
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_segments() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            endpoint(&base, &["3.0", "lists", "a/b"]).as_str(),
            "http://127.0.0.1:9/prefix/3.0/lists/a%2Fb"
        );
        let bare = Url::parse("https://api.stripe.com").unwrap();
        assert_eq!(
            endpoint(&bare, &["v1", "customers"]).as_str(),
            "https://api.stripe.com/v1/customers"
        );
    }

    #[test]
    fn destinations_have_stable_names() {
        for destination in Destination::ALL {
            assert_eq!(destination.as_str().parse::<Destination>(), Ok(destination));
            assert_eq!(serde_json::to_value(destination).unwrap(), json!(destination.as_str()));
        }
        assert!("ftp".parse::<Destination>().is_err());
    }
}
