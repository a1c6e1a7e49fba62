//! The Microsoft Graph client shared by PollAuditLogs and ProvisionUser.
//!
//! Typed operations: directory audits with a filter, users created since a time, get a user
//! (with extension attributes), patch a user, add a group member (`$ref`; "already exist" is
//! success). Every request goes through [`crate::retry`] (429/503/504 honour `Retry-After`;
//! 408/5xx/connection errors/timeouts back off with jitter; a time bound per request) and
//! carries a fresh `client-request-id`. Paging follows `@odata.nextLink` only when it points
//! at the configured Graph origin (scheme, host, port): the token is never sent elsewhere.
//! Errors keep Graph's error code and request ids, never the token, the error message or
//! the request URL (which can hold personal data in `$filter`).

mod admin;
pub mod models;
mod resume;
pub mod throttle;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

pub use models::{DirectoryAudit, Membership, User, UserPatch};

use crate::retry::{self, Failure, RetryPolicy, Stop};
use crate::settings::graph::GraphSettings;

/// Query values are percent-encoded except unreserved characters (spaces become `%20`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Page size for user listings (Graph's maximum for `/users`).
const USERS_PAGE_SIZE: u32 = 999;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with a status that another attempt would not change.
    #[error("Graph {operation}: HTTP {status}{}{}", code_note(.code), request_note(.request_id, .client_request_id))]
    Api {
        operation: &'static str,
        status: u16,
        code: Option<String>,
        request_id: Option<String>,
        client_request_id: String,
    },
    /// Still throttled (429) or unavailable (408/5xx) when the retry policy gave up.
    #[error("Graph {operation}: HTTP {status} after {attempts} attempt(s){}{}{}", stop_note(*.stop), code_note(.code), request_note(.request_id, .client_request_id))]
    GaveUp {
        operation: &'static str,
        status: u16,
        code: Option<String>,
        attempts: u32,
        stop: Stop,
        retry_after: Option<Duration>,
        request_id: Option<String>,
        client_request_id: String,
    },
    /// Connection failures or timeouts until the retry policy gave up.
    #[error("Graph {operation}: {reason} after {attempts} attempt(s){}", stop_note(*.stop))]
    Transport {
        operation: &'static str,
        reason: &'static str,
        attempts: u32,
        stop: Stop,
    },
    #[error("Graph {operation}: could not get a token: {source}")]
    Token {
        operation: &'static str,
        source: azure_core::Error,
    },
    #[error("Graph {operation}: refused to follow @odata.nextLink to {origin}: it is not the configured Graph host")]
    ForeignNextLink { operation: &'static str, origin: String },
    #[error("Graph {operation}: the response could not be read ({detail})")]
    InvalidResponse { operation: &'static str, detail: String },
}

fn code_note(code: &Option<String>) -> String {
    code.as_ref().map(|code| format!(" {code}")).unwrap_or_default()
}

fn request_note(request_id: &Option<String>, client_request_id: &str) -> String {
    match request_id {
        Some(request_id) => format!(" (request-id {request_id}, client-request-id {client_request_id})"),
        None => format!(" (client-request-id {client_request_id})"),
    }
}

fn stop_note(stop: Stop) -> String {
    match stop {
        Stop::RetryAfterTooLong(wait) => format!(", then asked to wait {} s", wait.as_secs()),
        Stop::OutOfTime => ", out of time".to_string(),
        Stop::NotRetryable | Stop::AttemptsExhausted => String::new(),
    }
}

impl GraphError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } | GraphError::GaveUp { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's `error.code`, e.g. `Authorization_RequestDenied`.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api { code, .. } | GraphError::GaveUp { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Api { request_id, .. } | GraphError::GaveUp { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The server's last `Retry-After`, when it gave one: when to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::GaveUp { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Worth trying again later (throttling, outages, network), as opposed to a request or
    /// permission problem.
    pub fn is_transient(&self) -> bool {
        matches!(self, GraphError::GaveUp { .. } | GraphError::Transport { .. })
    }
}

/// A Graph client: cheap to clone, share it.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: Url,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    retry: RetryPolicy,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.base_url.as_str())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Filters for [`GraphClient::directory_audits`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// `activityDisplayName eq '...'`, e.g. `Add user`.
    pub activity: Option<String>,
    /// `activityDateTime ge ...` (whole seconds, rounded down).
    pub since: Option<DateTime<Utc>>,
    /// `activityDateTime lt ...`.
    pub until: Option<DateTime<Utc>>,
    /// `$top`: records per page.
    pub top: Option<u32>,
}

impl AuditQuery {
    /// `Add user` events since `since`.
    pub fn added_users_since(since: DateTime<Utc>) -> AuditQuery {
        AuditQuery {
            activity: Some("Add user".to_string()),
            since: Some(since),
            ..AuditQuery::default()
        }
    }

    /// The OData `$filter` expression, if any filter is set.
    pub fn filter(&self) -> Option<String> {
        let mut clauses = Vec::new();
        if let Some(activity) = &self.activity {
            clauses.push(format!("activityDisplayName eq '{}'", activity.replace('\'', "''")));
        }
        if let Some(since) = self.since {
            clauses.push(format!("activityDateTime ge {}", odata_time(since)));
        }
        if let Some(until) = self.until {
            clauses.push(format!("activityDateTime lt {}", odata_time(until)));
        }
        (!clauses.is_empty()).then(|| clauses.join(" and "))
    }
}

fn odata_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A raw final response (2xx or a non-retryable status).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
    client_request_id: String,
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "innerError")]
    inner_error: Option<InnerError>,
}

#[derive(Deserialize, Default)]
struct InnerError {
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
}

impl Answer {
    fn envelope(&self) -> ErrorEnvelope {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn request_id(&self, envelope: &ErrorEnvelope) -> Option<String> {
        header(&self.headers, "request-id").or_else(|| {
            envelope
                .error
                .inner_error
                .as_ref()
                .and_then(|inner| inner.request_id.clone())
        })
    }

    fn into_error(self, operation: &'static str) -> GraphError {
        let envelope = self.envelope();
        GraphError::Api {
            operation,
            status: self.status.as_u16(),
            request_id: self.request_id(&envelope),
            code: envelope.error.code,
            client_request_id: self.client_request_id,
        }
    }

    fn json<T: DeserializeOwned>(&self, operation: &'static str) -> Result<T, GraphError> {
        serde_json::from_slice(&self.body).map_err(|error| GraphError::InvalidResponse {
            operation,
            // The category and position only: serde's message can quote the data.
            detail: format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
        })
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// What one attempt ended with, before the retry policy decides.
enum Attempted {
    Status(Answer),
    Transport(&'static str),
    Token(azure_core::Error),
}

#[derive(Deserialize)]
struct PageBody<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// Pages of a collection; follows `@odata.nextLink` within the Graph origin only.
pub struct Pager<T> {
    client: GraphClient,
    operation: &'static str,
    next: Option<Url>,
    /// A refused nextLink, reported by the call after the page that carried it.
    refused: Option<GraphError>,
    pages: u32,
    item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Pager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pager")
            .field("operation", &self.operation)
            .field("pages", &self.pages)
            .field("done", &(self.next.is_none() && self.refused.is_none()))
            .finish()
    }
}

impl<T: DeserializeOwned> Pager<T> {
    /// The next page, or `None` when the collection is exhausted. A page whose nextLink
    /// leaves the Graph origin is still returned; the following call fails with
    /// [`GraphError::ForeignNextLink`] (so records already read are not lost).
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, GraphError> {
        if let Some(refused) = self.refused.take() {
            return Err(refused);
        }
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let answer = self.client.execute(self.operation, Method::GET, url, None).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error(self.operation));
        }
        let page: PageBody<T> = answer.json(self.operation)?;
        self.pages += 1;
        if let Some(link) = page.next_link {
            match self.client.checked_next_link(self.operation, &link) {
                Ok(next) => self.next = Some(next),
                Err(refused) => self.refused = Some(refused),
            }
        }
        Ok(Some(page.value))
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Every remaining item, all pages.
    pub async fn collect_all(mut self) -> Result<Vec<T>, GraphError> {
        let mut items = Vec::new();
        while let Some(page) = self.next_page().await? {
            items.extend(page);
        }
        Ok(items)
    }
}

impl GraphClient {
    /// `base_url` is the Graph root (`https://graph.microsoft.com`); tokens are requested for
    /// `{origin}/.default`.
    pub fn new(http: reqwest::Client, base_url: Url, credential: Arc<dyn TokenCredential>) -> GraphClient {
        let scope = format!("{}/.default", base_url.origin().ascii_serialization());
        GraphClient {
            http,
            base_url,
            scope,
            credential,
            retry: RetryPolicy::graph(),
        }
    }

    pub fn from_settings(
        settings: &GraphSettings,
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
    ) -> GraphClient {
        GraphClient::new(http, settings.base_url.clone(), credential)
    }

    /// The production client: the certificate credential the settings describe (Key Vault
    /// with the managed identity / developer login, or a file). Build it once per process and
    /// share it, so the certificate is read once and the token reused.
    pub fn for_settings(
        settings: &GraphSettings,
        http: reqwest::Client,
    ) -> Result<GraphClient, crate::credentials::KeyVaultError> {
        let credential = crate::credentials::graph_credential(settings, &http, None)?;
        Ok(GraphClient::from_settings(settings, http, Arc::new(credential)))
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> GraphClient {
        self.retry = retry;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// `GET /v1.0/auditLogs/directoryAudits` with the query's filter (needs AuditLog.Read.All).
    pub fn directory_audits(&self, query: &AuditQuery) -> Pager<DirectoryAudit> {
        let mut parameters = Vec::new();
        if let Some(filter) = query.filter() {
            parameters.push(("$filter", filter));
        }
        if let Some(top) = query.top {
            parameters.push(("$top", top.to_string()));
        }
        self.pager("list directory audits", "v1.0/auditLogs/directoryAudits", &parameters)
    }

    /// `GET /v1.0/users?$filter=createdDateTime ge ...&$select=...` (needs User.Read.All).
    /// `id` is always selected. No `$orderby` (not supported with this filter without
    /// advanced query parameters).
    pub fn users_created_since(&self, since: DateTime<Utc>, select: &[&str]) -> Pager<User> {
        let parameters = vec![
            ("$filter", format!("createdDateTime ge {}", odata_time(since))),
            ("$select", select_list(select)),
            ("$top", USERS_PAGE_SIZE.to_string()),
        ];
        self.pager("list users created since", "v1.0/users", &parameters)
    }

    /// `GET /v1.0/users/{id}?$select=...`; `None` when the user does not exist (404).
    pub async fn get_user(&self, id: Uuid, select: &[&str]) -> Result<Option<User>, GraphError> {
        const OPERATION: &str = "get user";
        let url = self.url(&format!("v1.0/users/{id}"), &[("$select", select_list(select))]);
        let answer = self.execute(OPERATION, Method::GET, url, None).await?;
        match answer.status {
            status if status.is_success() => answer.json(OPERATION).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.into_error(OPERATION)),
        }
    }

    /// `PATCH /v1.0/users/{id}` (needs User.ReadWrite.All). An empty patch sends nothing.
    pub async fn patch_user(&self, id: Uuid, patch: &UserPatch) -> Result<(), GraphError> {
        const OPERATION: &str = "patch user";
        if patch.is_empty() {
            return Ok(());
        }
        let url = self.url(&format!("v1.0/users/{id}"), &[]);
        let answer = self
            .execute(OPERATION, Method::PATCH, url, Some(&patch.to_json()))
            .await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(OPERATION))
        }
    }

    /// `POST /v1.0/groups/{group}/members/$ref` (needs GroupMember.ReadWrite.All); Graph's
    /// 400 "... already exist ..." means the user is a member already, which is success.
    pub async fn add_group_member(&self, group: Uuid, member: Uuid) -> Result<Membership, GraphError> {
        const OPERATION: &str = "add group member";
        let url = self.url(&format!("v1.0/groups/{group}/members/$ref"), &[]);
        let reference = self.url(&format!("v1.0/directoryObjects/{member}"), &[]);
        let body = serde_json::json!({ "@odata.id": reference.as_str() });
        let answer = self.execute(OPERATION, Method::POST, url, Some(&body)).await?;
        if answer.status.is_success() {
            return Ok(Membership::Added);
        }
        if answer.status == StatusCode::BAD_REQUEST {
            let already = answer
                .envelope()
                .error
                .message
                .is_some_and(|message| message.to_ascii_lowercase().contains("already exist"));
            if already {
                return Ok(Membership::AlreadyMember);
            }
        }
        Err(answer.into_error(OPERATION))
    }

    /// The id of the user whose `userPrincipalName` is `upn`, if any
    /// (`GET /v1.0/users?$filter=userPrincipalName eq '...'&$select=id`; needs User.Read.All).
    pub async fn user_id_by_principal_name(&self, upn: &str) -> Result<Option<Uuid>, GraphError> {
        let filter = format!("userPrincipalName eq '{}'", upn.replace('\'', "''"));
        let mut pager: Pager<User> = self.pager(
            "find user by principal name",
            "v1.0/users",
            &[("$filter", filter), ("$select", "id".to_string())],
        );
        Ok(pager
            .next_page()
            .await?
            .and_then(|page| page.first().map(|user| user.id)))
    }

    /// One `GET /v1.0/auditLogs/directoryAudits?$top=1` (for `check`): the number of records
    /// returned (0 or 1).
    pub async fn probe_audit_log(&self) -> Result<usize, GraphError> {
        let mut pager = self.directory_audits(&AuditQuery {
            top: Some(1),
            ..AuditQuery::default()
        });
        Ok(pager.next_page().await?.map(|page| page.len()).unwrap_or(0))
    }

    fn pager<T>(&self, operation: &'static str, path: &str, parameters: &[(&str, String)]) -> Pager<T> {
        Pager {
            client: self.clone(),
            operation,
            next: Some(self.url(path, parameters)),
            refused: None,
            pages: 0,
            item: PhantomData,
        }
    }

    /// `{base}/{path}?{k=v&...}` with OData-friendly encoding.
    fn url(&self, path: &str, parameters: &[(&str, String)]) -> Url {
        let mut url = self.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/{path}"));
        if parameters.is_empty() {
            url.set_query(None);
        } else {
            let query = parameters
                .iter()
                .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, QUERY_VALUE)))
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&query));
        }
        url
    }

    /// A nextLink is followed only within the configured Graph origin.
    fn checked_next_link(&self, operation: &'static str, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|_| GraphError::InvalidResponse {
            operation,
            detail: "@odata.nextLink is not a URL".to_string(),
        })?;
        if url.origin() == self.base_url.origin() {
            Ok(url)
        } else {
            log::warn!(
                "Graph {operation}: not following @odata.nextLink to {}; expected {}",
                url.origin().ascii_serialization(),
                self.base_url.origin().ascii_serialization()
            );
            Err(GraphError::ForeignNextLink {
                operation,
                origin: url.origin().ascii_serialization(),
            })
        }
    }

    /// Sends one request with retries; answers the final response (2xx or not retryable).
    async fn execute(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, GraphError> {
        let client_request_id = Uuid::new_v4().to_string();
        let outcome = retry::run(&self.retry, |attempt| {
            let (method, url, client_request_id) = (method.clone(), url.clone(), client_request_id.clone());
            async move {
                let token = self
                    .credential
                    .get_token(&[self.scope.as_str()], None)
                    .await
                    .map_err(|error| Failure::Permanent(Attempted::Token(error)))?;
                let mut request = self
                    .http
                    .request(method, url)
                    .timeout(attempt.timeout)
                    .header(AUTHORIZATION, format!("Bearer {}", token.token.secret()))
                    .header("client-request-id", &client_request_id)
                    .header("return-client-request-id", "true");
                if let Some(body) = body {
                    request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
                }
                let response = request.send().await.map_err(|error| transport_failure(&error))?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(|error| transport_failure(&error))?;
                let answer = Answer {
                    status,
                    headers,
                    body,
                    client_request_id,
                };
                match retry::classify_response(status, &answer.headers) {
                    Some(retry_after) => {
                        log::info!(
                            "Graph {operation}: HTTP {} on attempt {}; retrying{}",
                            status.as_u16(),
                            attempt.number,
                            retry_after
                                .map(|wait| format!(" after {} s (Retry-After)", wait.as_secs()))
                                .unwrap_or_default()
                        );
                        Err(Failure::retryable(Attempted::Status(answer), retry_after))
                    }
                    None => Ok(answer),
                }
            }
        })
        .await;
        outcome.map_err(|failure| match failure.error {
            Attempted::Status(answer) => {
                let envelope = answer.envelope();
                GraphError::GaveUp {
                    operation,
                    status: answer.status.as_u16(),
                    request_id: answer.request_id(&envelope),
                    code: envelope.error.code,
                    attempts: failure.attempts,
                    stop: failure.stop,
                    retry_after: retry::retry_after(&answer.headers),
                    client_request_id: answer.client_request_id,
                }
            }
            Attempted::Transport(reason) => GraphError::Transport {
                operation,
                reason,
                attempts: failure.attempts,
                stop: failure.stop,
            },
            Attempted::Token(source) => GraphError::Token { operation, source },
        })
    }
}

fn transport_failure(error: &reqwest::Error) -> Failure<Attempted> {
    let reason = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    if retry::is_retryable_error(error) {
        Failure::retryable(Attempted::Transport(reason), None)
    } else {
        Failure::Permanent(Attempted::Transport(reason))
    }
}

fn select_list(select: &[&str]) -> String {
    let mut fields = vec!["id"];
    fields.extend(select.iter().copied().filter(|field| *field != "id"));
    fields.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_filter_quotes_and_formats_times() {
        let since = DateTime::parse_from_rfc3339("2026-11-20T10:00:00.987Z")
            .unwrap()
            .to_utc();
        let query = AuditQuery::added_users_since(since);
        assert_eq!(
            query.filter().unwrap(),
            "activityDisplayName eq 'Add user' and activityDateTime ge 2026-11-20T10:00:00Z"
        );
        let quoted = AuditQuery {
            activity: Some("Update user's group".into()),
            ..AuditQuery::default()
        };
        assert_eq!(
            quoted.filter().unwrap(),
            "activityDisplayName eq 'Update user''s group'"
        );
        assert_eq!(AuditQuery::default().filter(), None);
    }

    #[test]
    fn select_always_includes_the_id_once() {
        assert_eq!(select_list(&["displayName", "id", "mail"]), "id,displayName,mail");
        assert_eq!(select_list(&[]), "id");
    }
}
