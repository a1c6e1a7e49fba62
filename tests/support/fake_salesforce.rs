//! A fake Salesforce org: the OAuth 2.0 client credentials token endpoint on the My Domain
//! URL (`POST /services/oauth2/token`, form-encoded, answering `access_token` and
//! `instance_url` without `expires_in`), and Contact upserts by an External ID field
//! (`PATCH /services/data/vXX.X/sobjects/Contact/{field}/{value}`, Bearer token, JSON body):
//! 201 created / 200 updated with `{id, success, errors, created}`, 300 with the matching
//! record URLs when several Contacts share the value, Salesforce's error arrays otherwise.
//! Switches: expire every issued token, mark a value as duplicated, inject failures.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use url::Url;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Reply;

#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub fields: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Injected {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    client_id: String,
    client_secret: String,
    external_id_field: String,
    instance_url: String,
    tokens_issued: usize,
    valid_tokens: HashSet<String>,
    contacts: BTreeMap<String, Contact>,
    duplicated: BTreeSet<String>,
    calls: Vec<Call>,
    injected: VecDeque<Injected>,
}

pub struct FakeSalesforce {
    url: Url,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeSalesforce {
    /// An org whose Contact has the External ID field `external_id_field`, and a connected
    /// app with these credentials.
    pub async fn start(client_id: &str, client_secret: &str, external_id_field: &str) -> FakeSalesforce {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let port = listener.local_addr().expect("local address").port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("fake URL");
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            external_id_field: external_id_field.to_string(),
            // Tokens name the instance to call: here the same server.
            instance_url: url.as_str().trim_end_matches('/').to_string(),
            ..State::default()
        }));
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method, path: warp::path::FullPath, headers: HeaderMap, body: Bytes| {
                    handle(&shared, method.as_str(), path.as_str(), &headers, &body)
                },
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        FakeSalesforce {
            url,
            state,
            _stop: stop,
        }
    }

    /// Tokens name this `instance_url` instead: for a proxy in front of the fake.
    pub fn set_public_url(&self, url: &Url) {
        self.state.lock().unwrap().instance_url = url.as_str().trim_end_matches('/').to_string();
    }

    /// The My Domain URL (what `SALESFORCE_LOGIN_URL` takes).
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    pub fn contacts(&self) -> BTreeMap<String, Contact> {
        self.state.lock().unwrap().contacts.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }

    /// Every token issued so far stops working (session timeout, revoked).
    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().valid_tokens.clear();
    }

    /// Several Contacts carry this external id value: upserts answer 300.
    pub fn duplicate(&self, external_id: &str) {
        self.state.lock().unwrap().duplicated.insert(external_id.to_string());
    }

    /// The next upsert (after the token check) gets this answer.
    pub fn fail_next(&self, status: u16, body: Value, headers: &[(&str, &str)]) {
        self.state.lock().unwrap().injected.push_back(Injected {
            status,
            body,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
    }
}

fn handle(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> warp::reply::Response {
    let mut state = state.lock().unwrap();
    let (status, body, extra) = respond(&mut state, method, path, headers, body);
    state.calls.push(Call {
        method: method.to_string(),
        path: path.to_string(),
        status,
    });
    let mut response = match &body {
        Some(body) => {
            let mut response = serde_json::to_vec(body).unwrap().into_response();
            response
                .headers_mut()
                .insert("content-type", "application/json;charset=UTF-8".parse().unwrap());
            response
        }
        None => Vec::<u8>::new().into_response(),
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in extra {
        response.headers_mut().insert(
            warp::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

fn errors(code: &str, message: &str) -> Option<Value> {
    Some(json!([{ "message": message, "errorCode": code, "fields": [] }]))
}

type Answer = (u16, Option<Value>, Vec<(String, String)>);

fn respond(state: &mut State, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if (method, path) == ("POST", "/services/oauth2/token") {
        return token(state, &content_type, body);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["services", "data", version, "sobjects", "Contact", field, value] = segments.as_slice() else {
        return (
            404,
            errors("NOT_FOUND", "The requested resource does not exist"),
            Vec::new(),
        );
    };
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| state.valid_tokens.contains(token)) {
        return (
            401,
            errors("INVALID_SESSION_ID", "Session expired or invalid"),
            Vec::new(),
        );
    }
    let version_ok = version
        .strip_prefix('v')
        .and_then(|number| number.split_once('.'))
        .is_some_and(|(major, minor)| major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok());
    if !version_ok {
        return (
            404,
            errors("NOT_FOUND", "The requested resource does not exist"),
            Vec::new(),
        );
    }
    if method != "PATCH" {
        return (
            405,
            errors("METHOD_NOT_ALLOWED", &format!("HTTP Method '{method}' not allowed")),
            Vec::new(),
        );
    }
    if *field != state.external_id_field {
        return (
            404,
            errors(
                "NOT_FOUND",
                &format!("Provided external ID field does not exist or is not accessible: {field}"),
            ),
            Vec::new(),
        );
    }
    if let Some(injected) = state.injected.pop_front() {
        return (injected.status, Some(injected.body), injected.headers);
    }
    if state.duplicated.contains(*value) {
        let urls = json!([
            format!("/services/data/{version}/sobjects/Contact/003000000000001AAA"),
            format!("/services/data/{version}/sobjects/Contact/003000000000002AAA"),
        ]);
        return (300, Some(urls), Vec::new());
    }
    if !content_type.starts_with("application/json") {
        return (
            415,
            errors("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"),
            Vec::new(),
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return (400, errors("JSON_PARSER_ERROR", "Unexpected body"), Vec::new());
    };
    if fields.contains_key(*field) {
        // The value is in the URL; the client should not repeat it in the body.
        return (
            400,
            errors("INVALID_FIELD", &format!("{field} is specified in the URL")),
            Vec::new(),
        );
    }
    if let Some(contact) = state.contacts.get_mut(*value) {
        contact.fields.extend(fields);
        let body = json!({"id": contact.id, "success": true, "errors": [], "created": false});
        return (200, Some(body), Vec::new());
    }
    if fields.get("LastName").and_then(Value::as_str).is_none_or(str::is_empty) {
        return (
            400,
            Some(
                json!([{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}]),
            ),
            Vec::new(),
        );
    }
    let id = format!("003fake{:011}", state.contacts.len() + 1);
    state
        .contacts
        .insert(value.to_string(), Contact { id: id.clone(), fields });
    (
        201,
        Some(json!({"id": id, "success": true, "errors": [], "created": true})),
        Vec::new(),
    )
}

fn token(state: &mut State, content_type: &str, body: &[u8]) -> Answer {
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return (
            400,
            Some(json!({"error": "invalid_request", "error_description": "unsupported content type"})),
            Vec::new(),
        );
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            400,
            Some(json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"})),
            Vec::new(),
        );
    }
    if form.get("client_id") != Some(&state.client_id) || form.get("client_secret") != Some(&state.client_secret) {
        return (
            400,
            Some(json!({"error": "invalid_client", "error_description": "invalid client credentials"})),
            Vec::new(),
        );
    }
    state.tokens_issued += 1;
    let access_token = format!("00Dfake!token{}", state.tokens_issued);
    state.valid_tokens.insert(access_token.clone());
    let body = json!({
        "access_token": access_token,
        "signature": "c2lnbmF0dXJl",
        "scope": "api",
        "instance_url": state.instance_url,
        "id": format!("{}/id/00Dfake/005fake", state.instance_url),
        "token_type": "Bearer",
        "issued_at": "1700000000000",
    });
    (200, Some(body), Vec::new())
}
