//! A local stand-in for a tenant's `discovery/v2.0/keys` endpoint.
//!
//! Runs on its own thread and Tokio runtime, so it works from any test or benchmark (sync or
//! async, any runtime flavour) and keeps answering while the caller's runtime is blocked.
//! The served keys, the status, a raw body and a response delay can be changed mid-run;
//! `request_count` counts `GET /keys` requests. Dropping the server stops it.
//!
//! ```ignore
//! let server = JwksServer::start(vec![key.jwk_json()]);
//! let config = JwksConfig::new(vec![server.url()]);
//! server.set_keys(vec![new_key.jwk_json()]); // rotation
//! assert_eq!(server.request_count(), 2);
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use warp::Filter as _;
use warp::http::StatusCode;

pub struct JwksServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    requests: AtomicUsize,
    response: Mutex<Response>,
}

#[derive(Clone)]
struct Response {
    keys: Vec<Value>,
    status: u16,
    raw_body: Option<String>,
    delay: Duration,
}

impl JwksServer {
    /// Starts serving `GET /keys` → `{"keys": keys}` on 127.0.0.1 at a free port.
    pub fn start(keys: Vec<Value>) -> Self {
        let state = Arc::new(State {
            requests: AtomicUsize::new(0),
            response: Mutex::new(Response {
                keys,
                status: 200,
                raw_body: None,
                delay: Duration::ZERO,
            }),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();

        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("jwks-server-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("JWKS server runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let route = warp::path("keys")
                        .and(warp::path::end())
                        .and(warp::get())
                        .then(move || respond(Arc::clone(&served)));
                    tokio::select! {
                        () = warp::serve(route).incoming(listener).run() => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn JWKS server thread");

        Self {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The key set URL, `http://127.0.0.1:<port>/keys`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/keys", self.addr)).expect("valid URL")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the served key set (key rotation).
    pub fn set_keys(&self, keys: Vec<Value>) {
        self.response().keys = keys;
    }

    /// Answers with this status from now on (200 restores normal service). A non-2xx status
    /// comes with a small JSON error body, as Entra's endpoints do.
    pub fn set_status(&self, status: u16) {
        self.response().status = status;
    }

    /// Serves this exact body instead of the key set (malformed documents); `None` restores it.
    pub fn set_raw_body(&self, body: Option<String>) {
        self.response().raw_body = body;
    }

    /// Delays every response by this much (a slow endpoint).
    pub fn set_delay(&self, delay: Duration) {
        self.response().delay = delay;
    }

    /// Number of `GET /keys` requests received so far, counted when they arrive.
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn response(&self) -> std::sync::MutexGuard<'_, Response> {
        self.state
            .response
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn respond(state: Arc<State>) -> warp::reply::Response {
    use warp::Reply as _;
    state.requests.fetch_add(1, Ordering::SeqCst);
    let response = state
        .response
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let status = StatusCode::from_u16(response.status).expect("valid status code");
    let body = match (status.is_success(), response.raw_body) {
        (true, Some(raw)) => raw,
        (true, None) => json!({ "keys": response.keys }).to_string(),
        (false, _) => json!({ "error": "temporarily_unavailable" }).to_string(),
    };
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", "application/json"),
        status,
    )
    .into_response()
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
