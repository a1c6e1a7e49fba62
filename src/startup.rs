//! Builds the handler from settings and serves it: the one place that wires business
//! functions into the Functions host protocol.

use crate::attribute_submit::jwks::{JwksCache, JwksConfig};
use crate::attribute_submit::rules::RuleSet;
use crate::attribute_submit::token::{TokenValidationConfig, TokenValidator};
use crate::attribute_submit::{self, AttributeSubmit, CallerCheck};
use crate::functions_host::{self, FunctionTable, HttpResponse};
use crate::poll_audit_logs::{self, PollAuditLogs};
use crate::settings::{Settings, TokenValidation};
use anyhow::Context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use warp::http::{HeaderValue, Method, StatusCode, header};

/// Outbound HTTP: rustls with the platform verifier (OS store, `SSL_CERT_FILE`,
/// `SSL_CERT_DIR`) and the system proxy settings (`HTTPS_PROXY`).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("signup-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// The running handler's parts that outlive the function table (background tasks).
pub struct Handler {
    pub functions: FunctionTable,
    background_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Handler {
    fn drop(&mut self) {
        for task in &self.background_tasks {
            task.abort();
        }
    }
}

pub async fn build(settings: &Settings) -> anyhow::Result<Handler> {
    let mut background_tasks = Vec::new();
    let submit_settings = &settings.attribute_submit;

    let rules = match &submit_settings.rules_path {
        Some(path) => RuleSet::load(path).context("SIGNUP_RULES_PATH: the rules file is not valid")?,
        None => RuleSet::empty(),
    };
    log::info!("{}: {} rules loaded", attribute_submit::FUNCTION_NAME, rules.len());

    let caller_check = match &submit_settings.token_validation {
        TokenValidation::Enabled(validation) => {
            let jwks_config = JwksConfig {
                refresh_interval: validation.jwks_refresh_interval,
                ..JwksConfig::new(validation.jwks_urls.clone())
            };
            let http = http_client(jwks_config.fetch_timeout)?;
            let keys = Arc::new(JwksCache::new(jwks_config, http));
            // Keys are fetched in the background so the readiness probe answers at once.
            background_tasks.push(keys.spawn_background_refresh());
            let config = TokenValidationConfig {
                tenant_id: validation.tenant_id,
                audiences: validation.audiences.clone(),
            };
            CallerCheck::Token(Arc::new(TokenValidator::new(config, keys)))
        }
        TokenValidation::Disabled => {
            log::warn!(
                "WARNING: EXTENSION_SKIP_TOKEN_VALIDATION is on: AttributeSubmit accepts calls from anyone. Local development only."
            );
            CallerCheck::SkippedForLocalDevelopment
        }
    };
    let attribute_submit = Arc::new(AttributeSubmit::new(caller_check, rules));

    // Step 3 wires the poller here; until it is configured the timer answers and says why.
    let poll = Arc::new(PollAuditLogs::NotConfigured("Graph access and the state store are not wired yet".to_string()));

    let functions = FunctionTable::new()
        .forwarded_http(
            &format!("/api/{}", attribute_submit::FUNCTION_NAME),
            &[Method::POST],
            move |request| {
                let attribute_submit = attribute_submit.clone();
                async move {
                    let authorization = request
                        .headers
                        .get(header::AUTHORIZATION)
                        .and_then(|value| value.to_str().ok());
                    let reply = attribute_submit.handle(authorization, &request.body).await;
                    let mut response = HttpResponse::json(reply.status, reply.body);
                    if reply.status == StatusCode::UNAUTHORIZED {
                        response
                            .headers
                            .push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                    }
                    response
                }
            },
        )
        .invocation(poll_audit_logs::FUNCTION_NAME, move |request, log| {
            let poll = poll.clone();
            async move { poll.invoke(request, log).await }
        });

    Ok(Handler {
        functions,
        background_tasks,
    })
}

/// Serves the handler on `listener` (or `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`) until `shutdown`.
pub async fn serve(
    settings: Settings,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handler = build(&settings).await?;
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
            .await
            .with_context(|| {
                format!(
                    "FUNCTIONS_CUSTOMHANDLER_PORT: cannot listen on 127.0.0.1:{}",
                    settings.port
                )
            })?,
    };
    log::info!("listening on {}", listener.local_addr()?);
    functions_host::serve(handler.functions.clone(), listener, shutdown).await;
    Ok(())
}
