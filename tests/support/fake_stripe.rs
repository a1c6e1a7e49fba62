//! A fake Stripe API (customers only) with Stripe's idempotency semantics: the first request
//! with an `Idempotency-Key` that reaches execution has its status and body saved; a later
//! request with the same key and the same parameters gets that saved answer back
//! (`Idempotent-Replayed: true`), with other parameters a 400 `idempotency_error`. Bearer
//! auth with the secret key, form-encoded bodies, `metadata[...]` fields, and
//! `GET /v1/customers/search` with the `metadata['key']:'value'` query, whose index can be
//! made to lag (Stripe's search is eventually consistent). Injected failures answer before
//! execution (like Stripe's rate limiter) and are not saved under the key.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};
use url::Url;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Reply;

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub idempotency_key: Option<String>,
    pub status: u16,
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct Injected {
    pub status: u16,
    pub error: Value,
    pub headers: Vec<(String, String)>,
}

struct Saved {
    path: String,
    params: Vec<(String, String)>,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    api_key: String,
    customers: Vec<Customer>,
    keys: HashMap<String, Saved>,
    search_lags: bool,
    calls: Vec<Call>,
    injected: VecDeque<Injected>,
}

pub struct FakeStripe {
    url: Url,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
    replayed: bool,
}

impl Answer {
    fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            headers: Vec::new(),
            replayed: false,
        }
    }

    fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Answer {
        let mut error = json!({"type": kind, "message": message});
        if let Some(code) = code {
            error["code"] = json!(code);
        }
        Answer::new(status, json!({ "error": error }))
    }
}

impl FakeStripe {
    pub async fn start(api_key: &str) -> FakeStripe {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_string(),
            ..State::default()
        }));
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    handle(&shared, method.as_str(), path.as_str(), &query, &headers, &body)
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let port = listener.local_addr().expect("local address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        FakeStripe {
            url: Url::parse(&format!("http://127.0.0.1:{port}")).expect("fake URL"),
            state,
            _stop: stop,
        }
    }

    pub fn url(&self) -> Url {
        self.url.clone()
    }

    pub fn customers(&self) -> Vec<Customer> {
        self.state.lock().unwrap().customers.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// While true, search finds nothing (its index has not caught up).
    pub fn set_search_lags(&self, lags: bool) {
        self.state.lock().unwrap().search_lags = lags;
    }

    /// Stripe prunes keys after at least 24 hours.
    pub fn forget_idempotency_keys(&self) {
        self.state.lock().unwrap().keys.clear();
    }

    /// The next request gets this error (before execution: not saved under its key).
    pub fn fail_next(&self, status: u16, error: Value, headers: &[(&str, &str)]) {
        self.state.lock().unwrap().injected.push_back(Injected {
            status,
            error,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
    }

    /// Adds a customer directly, as if made elsewhere (dashboard, another system).
    pub fn insert_customer(&self, email: Option<&str>, metadata: &[(&str, &str)]) -> String {
        let mut state = self.state.lock().unwrap();
        let id = format!("cus_fake{:06}", state.customers.len() + 1);
        state.customers.push(Customer {
            id: id.clone(),
            email: email.map(str::to_string),
            name: None,
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
        id
    }
}

fn customer_json(customer: &Customer) -> Value {
    json!({
        "id": customer.id,
        "object": "customer",
        "email": customer.email,
        "name": customer.name,
        "metadata": customer.metadata,
        "livemode": false,
    })
}

fn handle(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> warp::reply::Response {
    let mut state = state.lock().unwrap();
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let answer = respond(&mut state, method, path, query, headers, body, key.as_deref());
    state.calls.push(Call {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        idempotency_key: key,
        status: answer.status,
        replayed: answer.replayed,
    });
    let mut response = serde_json::to_vec(&answer.body).unwrap().into_response();
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response.headers_mut().insert("request-id", "req_fake".parse().unwrap());
    for (name, value) in &answer.headers {
        response.headers_mut().insert(
            warp::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    if answer.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", "true".parse().unwrap());
    }
    response
}

fn respond(
    state: &mut State,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
) -> Answer {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if bearer != Some(state.api_key.as_str()) {
        return Answer::error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_test_****",
        );
    }
    if let Some(injected) = state.injected.pop_front() {
        let mut answer = Answer::new(injected.status, json!({ "error": injected.error }));
        answer.headers = injected.headers;
        return answer;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["v1", "customers", "search"]) => search(state, query),
        ("POST", ["v1", "customers"]) | ("POST", ["v1", "customers", _]) => {
            let form_encoded = headers
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
            if !form_encoded {
                return Answer::error(400, "invalid_request_error", None, "Invalid request: use form encoding");
            }
            let mut params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            params.sort();
            let Some(key) = key else {
                return execute(state, &segments, &params);
            };
            if let Some(saved) = state.keys.get(key) {
                if saved.path != path || saved.params != params {
                    return Answer::error(
                        400,
                        "idempotency_error",
                        None,
                        &format!(
                            "Keys for idempotent requests can only be used with the same parameters they were first \
                             used with. Try using a key other than '{key}' if you meant to execute a different request."
                        ),
                    );
                }
                let mut answer = Answer::new(saved.status, saved.body.clone());
                answer.replayed = true;
                return answer;
            }
            let answer = execute(state, &segments, &params);
            // Stripe saves what execution produced, failures included; validation errors
            // before execution are not saved (the fake's are all execution errors).
            state.keys.insert(
                key.to_string(),
                Saved {
                    path: path.to_string(),
                    params,
                    status: answer.status,
                    body: answer.body.clone(),
                },
            );
            answer
        }
        _ => Answer::error(
            404,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL ({method}: {path})"),
        ),
    }
}

fn execute(state: &mut State, segments: &[&str], params: &[(String, String)]) -> Answer {
    let value = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    if let Some(email) = value("email")
        && !email.contains('@')
    {
        return Answer::error(
            400,
            "invalid_request_error",
            Some("email_invalid"),
            &format!("Invalid email address: {email}"),
        );
    }
    let metadata: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_string(), value.clone()))
        })
        .collect();
    match segments {
        [_, _] => {
            let customer = Customer {
                id: format!("cus_fake{:06}", state.customers.len() + 1),
                email: value("email"),
                name: value("name"),
                metadata,
            };
            state.customers.push(customer.clone());
            Answer::new(200, customer_json(&customer))
        }
        [_, _, id] => {
            let Some(customer) = state.customers.iter_mut().find(|customer| customer.id == *id) else {
                return Answer::error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such customer: '{id}'"),
                );
            };
            if let Some(email) = value("email") {
                customer.email = Some(email);
            }
            if let Some(name) = value("name") {
                customer.name = Some(name);
            }
            customer.metadata.extend(metadata);
            Answer::new(200, customer_json(customer))
        }
        _ => unreachable!("routed above"),
    }
}

fn search(state: &State, query: &str) -> Answer {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let Some(search) = params.get("query") else {
        return Answer::error(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: query.",
        );
    };
    // The one form the client uses: metadata['key']:'value'.
    let parsed = search
        .strip_prefix("metadata['")
        .and_then(|rest| rest.split_once("']:'"))
        .and_then(|(key, value)| Some((key, value.strip_suffix('\'')?)));
    let Some((key, value)) = parsed else {
        return Answer::error(400, "invalid_request_error", None, "Invalid search query.");
    };
    let data: Vec<Value> = if state.search_lags {
        Vec::new()
    } else {
        state
            .customers
            .iter()
            .rev()
            .filter(|customer| customer.metadata.get(key).map(String::as_str) == Some(value))
            .map(customer_json)
            .collect()
    };
    Answer::new(
        200,
        json!({"object": "search_result", "url": "/v1/customers/search", "has_more": false, "data": data}),
    )
}
