//! The handler's HTTP server, as the Functions host drives it.
//!
//! - `GET /`: the host's readiness probe (sent every 25 ms until any response).
//! - `POST /{FunctionName}`: a non-HTTP invocation (JSON payload in, JSON object out).
//! - `/api/...`: an HTTP-triggered function with `enableForwardingHttpRequest`, the raw
//!   request proxied by the host; the response goes back to the caller as is.
//! - Anything else: 404 with a JSON body.

use super::invocation::{InvocationLog, InvocationRequest, InvocationResponse};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// Forwarded HTTP requests are capped: Entra's payloads are a few KiB.
pub const HTTP_BODY_LIMIT: usize = 64 * 1024;
/// Invocation payloads: queue messages are at most 64 KiB, base64 and JSON add overhead.
pub const INVOCATION_BODY_LIMIT: usize = 1024 * 1024;

/// A forwarded HTTP request, with its body already read (within the limit).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A JSON HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    pub body: Value,
}

impl HttpResponse {
    pub fn json(status: StatusCode, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// An error body: a stable code and a short message for the caller, nothing internal.
    pub fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
        HttpResponse::json(status, json!({ "error": { "code": code, "message": message } }))
    }

    fn into_reply(self) -> warp::reply::Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = warp::reply::Response::new(body.into());
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

type InvocationHandler =
    Arc<dyn Fn(InvocationRequest, InvocationLog) -> BoxFuture<'static, InvocationResponse> + Send + Sync>;
type HttpHandler = Arc<dyn Fn(HttpRequest) -> BoxFuture<'static, HttpResponse> + Send + Sync>;

struct HttpFunction {
    methods: Vec<Method>,
    handler: HttpHandler,
}

/// The functions this handler serves, by the names and routes the host uses.
#[derive(Default, Clone)]
pub struct FunctionTable {
    /// Function name (lower-cased: the host's names are case-insensitive) to handler.
    invocations: HashMap<String, (String, InvocationHandler)>,
    /// Forwarded route (`/api/...`, lower-cased) to handler.
    http: HashMap<String, Arc<HttpFunction>>,
}

impl FunctionTable {
    pub fn new() -> FunctionTable {
        FunctionTable::default()
    }

    /// A non-HTTP function (timer, queue) invoked at `POST /{name}`.
    pub fn invocation<F, Fut>(mut self, name: &str, handler: F) -> FunctionTable
    where
        F: Fn(InvocationRequest, InvocationLog) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = InvocationResponse> + Send + 'static,
    {
        let handler: InvocationHandler = Arc::new(move |request, log| Box::pin(handler(request, log)));
        self.invocations
            .insert(name.to_ascii_lowercase(), (name.to_string(), handler));
        self
    }

    /// An HTTP function whose requests the host forwards to `route` (e.g. `/api/AttributeSubmit`).
    pub fn forwarded_http<F, Fut>(mut self, route: &str, methods: &[Method], handler: F) -> FunctionTable
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        let handler: HttpHandler = Arc::new(move |request| Box::pin(handler(request)));
        let function = HttpFunction {
            methods: methods.to_vec(),
            handler,
        };
        self.http.insert(route.to_ascii_lowercase(), Arc::new(function));
        self
    }

    async fn dispatch(
        &self,
        method: Method,
        path: String,
        headers: HeaderMap,
        body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    ) -> HttpResponse {
        let key = path.to_ascii_lowercase();
        if key == "/" {
            return if method == Method::GET || method == Method::HEAD {
                HttpResponse::json(StatusCode::OK, json!({ "status": "ready" }))
            } else {
                method_not_allowed()
            };
        }

        if let Some(function) = self.http.get(key.trim_end_matches('/')) {
            if !function.methods.contains(&method) {
                return method_not_allowed();
            }
            let body = match read_limited(&headers, body, HTTP_BODY_LIMIT).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            return (function.handler)(HttpRequest {
                method,
                path,
                headers,
                body,
            })
            .await;
        }

        let function_name = key.trim_start_matches('/');
        if let Some((name, handler)) = self.invocations.get(function_name) {
            if method != Method::POST {
                return method_not_allowed();
            }
            let body = match read_limited(&headers, body, INVOCATION_BODY_LIMIT).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let request = match InvocationRequest::parse(&body) {
                Ok(request) => request,
                Err(error) => {
                    log::warn!(
                        "{name}: invocation payload is not the host's JSON shape (line {} column {})",
                        error.line(),
                        error.column()
                    );
                    return HttpResponse::error(
                        StatusCode::BAD_REQUEST,
                        "bad_invocation",
                        "the body is not a Functions invocation payload {\"Data\": {...}, \"Metadata\": {...}}",
                    );
                }
            };
            if let Some(invocation_id) = headers
                .get("x-azure-functions-invocationid")
                .and_then(|v| v.to_str().ok())
            {
                log::debug!("{name}: invocation {invocation_id}");
            }
            let response = handler(request, InvocationLog::new(name)).await;
            let status = if response.failed {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            let body = serde_json::to_value(response)
                .unwrap_or_else(|_| json!({"Outputs": {}, "Logs": [], "ReturnValue": null}));
            return HttpResponse::json(status, body);
        }

        HttpResponse::error(StatusCode::NOT_FOUND, "not_found", "no function is served at this path")
    }

    /// The warp filter serving this table. Never rejects: every request gets a JSON answer.
    pub fn into_filter(
        self,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static {
        let table = Arc::new(self);
        warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(move |method, path: warp::path::FullPath, headers, body| {
                let table = table.clone();
                async move {
                    let body = Box::pin(body);
                    table
                        .dispatch(method, path.as_str().to_string(), headers, body)
                        .await
                        .into_reply()
                }
            })
            .recover(|_rejection: warp::Rejection| async {
                Ok::<_, Infallible>(
                    HttpResponse::error(StatusCode::BAD_REQUEST, "bad_request", "the request could not be read")
                        .into_reply(),
                )
            })
            .unify()
    }
}

fn method_not_allowed() -> HttpResponse {
    HttpResponse::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here",
    )
}

fn payload_too_large(limit: usize) -> HttpResponse {
    HttpResponse::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the body exceeds {} KiB", limit / 1024),
    )
}

/// Reads the body up to `limit` bytes: a declared `Content-Length` over the limit is refused
/// before reading, a chunked body is cut off as soon as it passes the limit.
async fn read_limited(
    headers: &HeaderMap,
    mut body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit: usize,
) -> Result<Bytes, HttpResponse> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(payload_too_large(limit));
    }
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| {
            HttpResponse::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            )
        })?;
        if collected.len() + chunk.remaining() > limit {
            return Err(payload_too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let advanced = part.len();
            chunk.advance(advanced);
        }
    }
    Ok(collected.freeze())
}

/// Serves the table on an already-bound listener until `shutdown` completes.
pub async fn serve(
    table: FunctionTable,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(table.into_filter())
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
