//! A fake Mailchimp Marketing API (just list members), following the documented request
//! shape: `PUT /3.0/lists/{list}/members/{md5(lower(email))}`, Basic auth with the API key as
//! password, a JSON body with `email_address` (whose hash must match the path) and
//! `status_if_new` for new members. Add-or-update semantics: an existing member keeps its
//! status; merge fields are merged. Records every request and the most requests it was
//! handling at once; can delay answers, inject failures, and hold addresses in compliance
//! state. A warp server on 127.0.0.1:0, stopped when dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use url::Url;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Reply;

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub email_address: String,
    pub status: String,
    pub merge_fields: Map<String, Value>,
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A failure to answer instead of handling the next request.
#[derive(Debug, Clone)]
pub struct Injected {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub retry_after: Option<String>,
}

#[derive(Default)]
struct State {
    api_key: String,
    list_id: String,
    members: BTreeMap<String, Member>,
    compliance: BTreeSet<String>,
    calls: Vec<Call>,
    in_flight: usize,
    max_in_flight: usize,
    delay: Duration,
    /// When set, each answer waits a random time in this range instead of `delay`.
    latency: Option<(Duration, Duration)>,
    injected: VecDeque<Injected>,
}

pub struct FakeMailchimp {
    url: Url,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn subscriber_hash(email: &str) -> String {
    hex::encode(Md5::digest(email.trim().to_lowercase().as_bytes()))
}

impl FakeMailchimp {
    /// Serves one audience, `list_id`, to callers presenting `api_key`.
    pub async fn start(api_key: &str, list_id: &str) -> FakeMailchimp {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_string(),
            list_id: list_id.to_string(),
            ..State::default()
        }));
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method, path: warp::path::FullPath, headers: HeaderMap, body: Bytes| {
                    let state = shared.clone();
                    async move { handle(state, method.to_string(), path.as_str().to_string(), headers, body).await }
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
        FakeMailchimp {
            url: Url::parse(&format!("http://127.0.0.1:{port}")).expect("fake URL"),
            state,
            _stop: stop,
        }
    }

    /// The API root (what `MAILCHIMP_BASE_URL` takes).
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    pub fn members(&self) -> BTreeMap<String, Member> {
        self.state.lock().unwrap().members.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The most requests the fake was handling at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Every answer waits this long (so concurrent requests overlap).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Every answer waits a random time between `min` and `max`.
    pub fn set_latency(&self, min: Duration, max: Duration) {
        self.state.lock().unwrap().latency = Some((min, max));
    }

    /// The next request gets this answer instead (after auth and routing checks).
    pub fn fail_next(&self, status: u16, title: &str, detail: &str, retry_after: Option<&str>) {
        self.state.lock().unwrap().injected.push_back(Injected {
            status,
            title: title.to_string(),
            detail: detail.to_string(),
            retry_after: retry_after.map(str::to_string),
        });
    }

    /// The address unsubscribed earlier: Mailchimp refuses to re-add it.
    pub fn put_in_compliance_state(&self, email: &str) {
        self.state.lock().unwrap().compliance.insert(subscriber_hash(email));
    }
}

fn problem(status: u16, title: &str, detail: &str) -> (u16, Value) {
    (
        status,
        json!({
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": "00000000-0000-0000-0000-000000000000",
        }),
    )
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    let delay = {
        let mut state = state.lock().unwrap();
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        match state.latency {
            Some((min, max)) => {
                let spread = max.saturating_sub(min).as_micros() as u64;
                min + Duration::from_micros(fastrand::u64(0..=spread))
            }
            None => state.delay,
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = state.lock().unwrap();
    state.in_flight -= 1;
    let (status, body, retry_after) = respond(&mut state, &method, &path, &headers, &body);
    state.calls.push(Call { method, path, status });
    let mut response = serde_json::to_vec(&body).unwrap().into_response();
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let content_type = if status < 300 {
        "application/json"
    } else {
        "application/problem+json"
    };
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().unwrap());
    }
    response
}

fn respond(
    state: &mut State,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Value, Option<String>) {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .is_some_and(|pair| pair.split_once(':').is_some_and(|(_, key)| key == state.api_key));
    if !authorized {
        let (status, body) = problem(
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        );
        return (status, body, None);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["3.0", "lists", list, "members", hash] = segments.as_slice() else {
        let (status, body) = problem(404, "Resource Not Found", "The requested resource could not be found.");
        return (status, body, None);
    };
    if method != "PUT" {
        let (status, body) = problem(
            405,
            "Method Not Allowed",
            "The requested method and resource are not compatible.",
        );
        return (status, body, None);
    }
    if *list != state.list_id {
        let (status, body) = problem(404, "Resource Not Found", "The requested resource could not be found.");
        return (status, body, None);
    }
    if let Some(injected) = state.injected.pop_front() {
        let (status, body) = problem(injected.status, &injected.title, &injected.detail);
        return (status, body, injected.retry_after);
    }
    let json_body = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let (Some(parsed), true) = (parsed, json_body) else {
        let (status, body) = problem(
            400,
            "Invalid Resource",
            "The resource submitted could not be validated.",
        );
        return (status, body, None);
    };
    let Some(email) = parsed.get("email_address").and_then(Value::as_str) else {
        let (status, body) = problem(400, "Invalid Resource", "email_address is required.");
        return (status, body, None);
    };
    if subscriber_hash(email) != *hash {
        let (status, body) = problem(
            400,
            "Invalid Resource",
            "The email address does not match the subscriber hash.",
        );
        return (status, body, None);
    }
    if state.compliance.contains(*hash) {
        let (status, body) = problem(
            400,
            "Member In Compliance State",
            &format!(
                "{email} is already a list member in compliance state due to unsubscribe, bounce, or compliance review."
            ),
        );
        return (status, body, None);
    }
    let merge_fields = match parsed.get("merge_fields") {
        None => Map::new(),
        Some(Value::Object(fields)) if fields.values().all(Value::is_string) => fields.clone(),
        Some(_) => {
            let (status, body) = problem(400, "Invalid Resource", "merge_fields must be an object of strings.");
            return (status, body, None);
        }
    };
    let member = match state.members.get_mut(*hash) {
        Some(member) => {
            // Add-or-update: the status of an existing member never changes here.
            member.email_address = email.to_string();
            member.merge_fields.extend(merge_fields);
            member.clone()
        }
        None => {
            let status = parsed
                .get("status_if_new")
                .or_else(|| parsed.get("status"))
                .and_then(Value::as_str);
            let Some(status @ ("subscribed" | "pending" | "unsubscribed" | "cleaned" | "transactional")) = status
            else {
                let (status, body) = problem(400, "Invalid Resource", "status_if_new is required for a new member.");
                return (status, body, None);
            };
            let member = Member {
                email_address: email.to_string(),
                status: status.to_string(),
                merge_fields,
            };
            state.members.insert(hash.to_string(), member.clone());
            member
        }
    };
    let body = json!({
        "id": hash,
        "email_address": member.email_address,
        "unique_email_id": format!("ue{}", &hash[..10]),
        "contact_id": format!("c{}", &hash[..12]),
        "status": member.status,
        "merge_fields": member.merge_fields,
        "list_id": state.list_id,
    });
    (200, body, None)
}
