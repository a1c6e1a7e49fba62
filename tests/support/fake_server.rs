//! A small HTTP(S) server for the fakes: a synchronous handler sees each request (method,
//! path, query, headers, body) and returns a response. Runs on its own thread and Tokio
//! runtime, so it keeps answering whatever the test's runtime does; dropping it stops it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use url::Url;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Decoded query parameters.
    pub fn query_params(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

pub struct FakeServer {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Starts on 127.0.0.1 and an ephemeral port; TLS when `tls` is given.
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let is_tls = tls.is_some();
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let handler = handler.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                match acceptor {
                                    Some(acceptor) => {
                                        if let Ok(stream) = acceptor.accept(stream).await {
                                            serve(TokioIo::new(stream), handler).await;
                                        }
                                    }
                                    None => serve(TokioIo::new(stream), handler).await,
                                }
                            });
                        }
                    }
                }
            });
        });
        FakeServer {
            addr,
            tls: is_tls,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:{port}` (or `http://`).
    pub fn url(&self) -> Url {
        let scheme = if self.tls { "https" } else { "http" };
        Url::parse(&format!("{scheme}://127.0.0.1:{}", self.addr.port())).expect("server URL")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve<I>(io: TokioIo<I>, handler: Handler)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let request = Request {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                headers: parts
                    .headers
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
                    .collect(),
                body: body.to_vec(),
            };
            let response = handler(&request);
            let mut builder = hyper::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name, value);
            }
            Ok::<_, Infallible>(
                builder
                    .body(Full::new(Bytes::from(response.body)))
                    .expect("a valid response"),
            )
        }
    });
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

/// Tokens one fake issued and another accepts (identity → Key Vault, Entra → Graph).
#[derive(Clone, Default)]
pub struct Tokens(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl Tokens {
    pub fn issue(&self, prefix: &str) -> String {
        let token = format!("{prefix}-{}", uuid::Uuid::new_v4());
        self.0.lock().unwrap().insert(token.clone());
        token
    }

    pub fn accepts(&self, token: Option<&str>) -> bool {
        token.is_some_and(|token| self.0.lock().unwrap().contains(token))
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}
