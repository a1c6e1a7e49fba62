//! A fake Microsoft Graph (TLS): directory audits with paging (`$skiptoken` in an
//! `@odata.nextLink` on the same origin, or an overridden link), users, user PATCH, group
//! members via `$ref`, and injected responses (429/503 with `Retry-After`, 4xx errors) that
//! are answered before normal handling. Only tokens the Entra fake issued are accepted;
//! every request is recorded (without the token).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use url::Url;

use super::fake_server::{FakeServer, Request, Response, Tokens};
use super::tls::TestCa;

#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    pub authorized: bool,
    pub had_authorization_header: bool,
    pub client_request_id: Option<String>,
    pub body: Value,
    /// When the request arrived (for pacing checks).
    pub at: std::time::Instant,
}

pub struct FakeGraph {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

struct State {
    base: String,
    accepted: Tokens,
    requests: Vec<GraphRequest>,
    injected: VecDeque<Response>,
    audit_pages: Vec<Vec<Value>>,
    next_link_override: Option<String>,
    users: HashMap<String, Value>,
    members: HashMap<String, HashSet<String>>,
    /// When set, directory audits are served from this log: filtered by the query's
    /// `activityDateTime ge`, newest first, `$top` per page (as Graph does).
    audit_log: Option<Vec<Value>>,
    /// Responses injected once this many more requests have been served.
    inject_after: Option<(usize, VecDeque<Response>)>,
    /// The audit API's throttle, when enforced.
    audit_throttle: Option<AuditThrottle>,
    /// Random failures: the chance per request, and the seeded generator.
    random_failures: Option<(f64, fastrand::Rng)>,
    random_failures_answered: usize,
}

/// Graph's limit on the audit API: at most `limit` requests in any `window`; one more is
/// answered 429 with `Retry-After` (whole seconds until a slot frees). Only answered
/// requests take a slot.
struct AuditThrottle {
    limit: usize,
    window: std::time::Duration,
    answered: VecDeque<std::time::Instant>,
    throttled: usize,
}

impl FakeGraph {
    pub fn start(ca: &TestCa, accepted: Tokens) -> FakeGraph {
        let state = Arc::new(Mutex::new(State {
            base: String::new(),
            accepted,
            requests: Vec::new(),
            injected: VecDeque::new(),
            audit_pages: vec![Vec::new()],
            next_link_override: None,
            users: HashMap::new(),
            members: HashMap::new(),
            audit_log: None,
            inject_after: None,
            audit_throttle: None,
            random_failures: None,
            random_failures_answered: 0,
        }));
        let handler_state = state.clone();
        let server = FakeServer::start(
            Some(ca.server_config()),
            Arc::new(move |request| handle(&mut handler_state.lock().unwrap(), request)),
        );
        state.lock().unwrap().base = server.url().as_str().trim_end_matches('/').to_string();
        FakeGraph { server, state }
    }

    /// `GRAPH_BASE_URL`.
    pub fn url(&self) -> Url {
        self.server.url()
    }

    /// The token scope Graph expects: `{origin}/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.server.url().origin().ascii_serialization())
    }

    pub fn set_audit_pages(&self, pages: Vec<Vec<Value>>) {
        self.state.lock().unwrap().audit_pages = pages;
    }

    /// The `@odata.nextLink` sent on the first page instead of the real one.
    pub fn set_next_link(&self, link: &str) {
        self.state.lock().unwrap().next_link_override = Some(link.to_string());
    }

    /// Serves directory audits from a log filtered by time (see [`audit_record`]).
    pub fn set_audit_log(&self, records: Vec<Value>) {
        self.state.lock().unwrap().audit_log = Some(records);
    }

    /// Adds a record to the log, as the audit pipeline ingests it (possibly late).
    pub fn ingest_audit_record(&self, record: Value) {
        self.state
            .lock()
            .unwrap()
            .audit_log
            .get_or_insert_with(Vec::new)
            .push(record);
    }

    /// Enforces the audit API's throttle: `limit` requests per `window` (Graph: 5 per 10 s).
    pub fn throttle_audits(&self, limit: usize, window: std::time::Duration) {
        self.state.lock().unwrap().audit_throttle = Some(AuditThrottle {
            limit,
            window,
            answered: VecDeque::new(),
            throttled: 0,
        });
    }

    /// How many audit requests the throttle answered with 429.
    pub fn audits_throttled(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.audit_throttle.as_ref().map_or(0, |throttle| throttle.throttled)
    }

    /// Answers this share of authorized requests (0 to 1) with 429 (`Retry-After: 1`), 500
    /// or 503 instead of handling them, chosen from `seed`; 0 turns it off.
    pub fn fail_at_random(&self, rate: f64, seed: u64) {
        self.state.lock().unwrap().random_failures = (rate > 0.0).then(|| (rate, fastrand::Rng::with_seed(seed)));
    }

    /// How many requests [`FakeGraph::fail_at_random`] failed.
    pub fn random_failures(&self) -> usize {
        self.state.lock().unwrap().random_failures_answered
    }

    /// Builds links (`@odata.nextLink`, `directoryObjects` references) on this origin: for a
    /// proxy in front of the fake.
    pub fn set_public_url(&self, url: &Url) {
        self.state.lock().unwrap().base = url.as_str().trim_end_matches('/').to_string();
    }

    /// The newest `activityDateTime` in the audit log.
    pub fn newest_audit_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let state = self.state.lock().unwrap();
        state
            .audit_log
            .as_ref()?
            .iter()
            .map(|record| record_time(record, "activityDateTime"))
            .max()
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().users.get(id).cloned()
    }

    pub fn add_user(&self, user: Value) {
        let id = user["id"].as_str().expect("user id").to_string();
        self.state.lock().unwrap().users.insert(id, user);
    }

    /// After `served` more requests are answered normally, answers with these responses.
    pub fn inject_after(&self, served: usize, responses: Vec<Response>) {
        let mut state = self.state.lock().unwrap();
        state.inject_after = Some((served, responses.into()));
    }

    /// Answers the next request(s) with these responses, in order.
    pub fn inject(&self, response: Response) {
        self.state.lock().unwrap().injected.push_back(response);
    }

    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn members(&self, group: &str) -> HashSet<String> {
        self.state
            .lock()
            .unwrap()
            .members
            .get(group)
            .cloned()
            .unwrap_or_default()
    }
}

/// A Graph error body with request ids, as Graph sends them.
pub fn graph_error(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {
            "date": "2026-11-20T10:00:00", "request-id": request_id, "client-request-id": request_id}}}),
    )
    .with_header("request-id", request_id)
}

fn handle(state: &mut State, request: &Request) -> Response {
    let authorized = state.accepted.accepts(request.bearer());
    state.requests.push(GraphRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query_params(),
        authorized,
        had_authorization_header: request.header("authorization").is_some(),
        client_request_id: request.header("client-request-id").map(str::to_string),
        body: request.json(),
        at: std::time::Instant::now(),
    });
    let request_id = uuid::Uuid::new_v4().to_string();
    if !authorized {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
            &request_id,
        );
    }
    if let Some((served, responses)) = state.inject_after.take() {
        if served == 0 {
            state.injected.extend(responses);
        } else {
            state.inject_after = Some((served - 1, responses));
        }
    }
    if let Some(response) = state.injected.pop_front() {
        return response;
    }
    if let Some((rate, rng)) = state.random_failures.as_mut()
        && rng.f64() < *rate
    {
        let answer = match rng.u8(0..3) {
            0 => graph_error(429, "TooManyRequests", "Too many requests.", &request_id).with_header("Retry-After", "1"),
            1 => graph_error(500, "generalException", "An internal error occurred.", &request_id),
            _ => graph_error(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable.",
                &request_id,
            ),
        };
        state.random_failures_answered += 1;
        return answer;
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if segments == ["v1.0", "auditLogs", "directoryAudits"]
        && let Some(throttle) = state.audit_throttle.as_mut()
    {
        let now = std::time::Instant::now();
        while throttle
            .answered
            .front()
            .is_some_and(|at| now.duration_since(*at) >= throttle.window)
        {
            throttle.answered.pop_front();
        }
        if throttle.answered.len() >= throttle.limit {
            throttle.throttled += 1;
            let frees_in = throttle.window - now.duration_since(throttle.answered[0]);
            let retry_after = frees_in.as_secs() + u64::from(frees_in.subsec_nanos() > 0);
            return graph_error(429, "TooManyRequests", "Too many requests.", &request_id)
                .with_header("Retry-After", &retry_after.to_string());
        }
        throttle.answered.push_back(now);
    }
    let response = match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["v1.0", "auditLogs", "directoryAudits"]) if state.audit_log.is_some() => {
            let params = request.query_params();
            let log = state.audit_log.as_ref().unwrap();
            let since = filter_time(params.get("$filter"), "activityDateTime ge ");
            let mut records: Vec<Value> = log
                .iter()
                .filter(|record| {
                    params.get("$filter").is_none_or(|f| {
                        f.contains(&format!(
                            "eq '{}'",
                            record["activityDisplayName"].as_str().unwrap_or_default()
                        ))
                    })
                })
                .filter(|record| since.is_none_or(|since| record_time(record, "activityDateTime") >= since))
                .cloned()
                .collect();
            records.sort_by_key(|record| std::cmp::Reverse(record_time(record, "activityDateTime")));
            paged(&state.base, "v1.0/auditLogs/directoryAudits", &params, records)
        }
        ("GET", ["v1.0", "users"]) if params_have_created_filter(request) => {
            let params = request.query_params();
            let since = filter_time(params.get("$filter"), "createdDateTime ge ");
            let mut users: Vec<Value> = state
                .users
                .values()
                .filter(|user| since.is_none_or(|since| record_time(user, "createdDateTime") >= since))
                .cloned()
                .collect();
            users.sort_by_key(|user| user["id"].as_str().unwrap_or_default().to_string());
            paged(&state.base, "v1.0/users", &params, users)
        }
        ("GET", ["v1.0", "auditLogs", "directoryAudits"]) => {
            let params = request.query_params();
            let page: usize = params.get("$skiptoken").and_then(|t| t.parse().ok()).unwrap_or(0);
            let values = state.audit_pages.get(page).cloned().unwrap_or_default();
            let mut body = json!({
                "@odata.context": format!("{}/v1.0/$metadata#auditLogs/directoryAudits", state.base),
                "value": values,
            });
            if page == 0
                && let Some(link) = &state.next_link_override
            {
                body["@odata.nextLink"] = json!(link);
            } else if page + 1 < state.audit_pages.len() {
                let mut next = Url::parse(&format!("{}/v1.0/auditLogs/directoryAudits", state.base)).unwrap();
                if let Some(filter) = params.get("$filter") {
                    next.query_pairs_mut().append_pair("$filter", filter);
                }
                next.query_pairs_mut()
                    .append_pair("$skiptoken", &(page + 1).to_string());
                body["@odata.nextLink"] = json!(next.as_str());
            }
            Response::json(200, &body)
        }
        ("GET", ["v1.0", "users"])
            if request
                .query_params()
                .get("$filter")
                .is_some_and(|filter| filter.starts_with("userPrincipalName eq '")) =>
        {
            let filter = request.query_params()["$filter"].clone();
            let upn = filter
                .trim_start_matches("userPrincipalName eq '")
                .trim_end_matches('\'')
                .replace("''", "'");
            let users: Vec<Value> = state
                .users
                .values()
                .filter(|user| {
                    user["userPrincipalName"]
                        .as_str()
                        .is_some_and(|existing| existing.eq_ignore_ascii_case(&upn))
                })
                .map(|user| json!({"id": user["id"]}))
                .collect();
            Response::json(200, &json!({"value": users}))
        }
        ("GET", ["v1.0", "users"]) => {
            let users: Vec<Value> = state.users.values().cloned().collect();
            Response::json(200, &json!({"value": users}))
        }
        ("GET", ["v1.0", "users", id]) => match state.users.get(*id) {
            Some(user) => Response::json(200, user),
            None => graph_error(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                ),
                &request_id,
            ),
        },
        ("PATCH", ["v1.0", "users", id]) => match state.users.get_mut(*id) {
            Some(user) => {
                if let (Some(user), Value::Object(patch)) = (user.as_object_mut(), request.json()) {
                    user.extend(patch);
                }
                Response::empty(204)
            }
            None => graph_error(404, "Request_ResourceNotFound", "not found", &request_id),
        },
        ("POST", ["v1.0", "groups", group, "members", "$ref"]) => {
            let reference = request.json()["@odata.id"].as_str().unwrap_or_default().to_string();
            let expected_prefix = format!("{}/v1.0/directoryObjects/", state.base);
            let Some(member) = reference.strip_prefix(&expected_prefix) else {
                return graph_error(400, "Request_BadRequest", "Invalid object identifier.", &request_id);
            };
            let members = state.members.entry(group.to_string()).or_default();
            if members.insert(member.to_string()) {
                Response::empty(204)
            } else {
                graph_error(
                    400,
                    "Request_BadRequest",
                    "One or more added object references already exist for the following modified properties: 'members'.",
                    &request_id,
                )
            }
        }
        _ => graph_error(400, "BadRequest", "Unsupported request.", &request_id),
    };
    if response.headers.iter().any(|(name, _)| name == "request-id") {
        response
    } else {
        response.with_header("request-id", &request_id)
    }
}

/// `2026-11-20T10:00:00Z` after `prefix` in an OData filter.
fn filter_time(filter: Option<&String>, prefix: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let filter = filter?;
    let start = filter.find(prefix)? + prefix.len();
    let text = filter[start..].split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&chrono::Utc))
}

fn record_time(record: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    record[field]
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

fn params_have_created_filter(request: &Request) -> bool {
    request
        .query_params()
        .get("$filter")
        .is_some_and(|filter| filter.contains("createdDateTime ge"))
}

/// One page of `items` at `$skiptoken` (an offset), `$top` per page (default 100), with a
/// nextLink that keeps the query.
fn paged(base: &str, path: &str, params: &HashMap<String, String>, items: Vec<Value>) -> Response {
    let top: usize = params.get("$top").and_then(|t| t.parse().ok()).unwrap_or(100).max(1);
    let offset: usize = params.get("$skiptoken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = items.iter().skip(offset).take(top).cloned().collect();
    let mut body = json!({ "value": page });
    if offset + top < items.len() {
        let mut next = Url::parse(&format!("{base}/{path}")).unwrap();
        for (name, value) in params.iter().filter(|(name, _)| *name != "$skiptoken") {
            next.query_pairs_mut().append_pair(name, value);
        }
        next.query_pairs_mut()
            .append_pair("$skiptoken", &(offset + top).to_string());
        body["@odata.nextLink"] = json!(next.as_str());
    }
    Response::json(200, &body)
}

/// An `Add user` audit record shaped like `directory-audits-page.json`.
pub fn audit_record(user: &str, time: chrono::DateTime<chrono::Utc>, result: &str) -> Value {
    json!({
        "id": format!("Directory_{}_{}", uuid::Uuid::new_v4(), time.timestamp_millis()),
        "category": "UserManagement",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "result": result,
        "resultReason": "",
        "activityDisplayName": "Add user",
        "activityDateTime": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "loggedByService": "Core Directory",
        "operationType": "Add",
        "initiatedBy": { "user": null, "app": { "appId": null, "displayName": "Microsoft.Online.Directory.Service" } },
        "targetResources": [{
            "id": user, "displayName": null, "type": "User",
            "userPrincipalName": format!("{user}@contoso.onmicrosoft.com"),
            "modifiedProperties": [ { "displayName": "AccountEnabled", "oldValue": "[]", "newValue": "[true]" } ]
        }],
        "additionalDetails": [ { "key": "User-Agent", "value": "Microsoft.Identity.CIAM" } ]
    })
}
