//! Builds the handler from settings and serves it: the one place that wires business
//! functions into the Functions host protocol.

use crate::attribute_submit::jwks::{JwksCache, JwksConfig};
use crate::attribute_submit::rules::RuleSet;
use crate::attribute_submit::token::{TokenValidationConfig, TokenValidator};
use crate::attribute_submit::{self, AttributeSubmit, CallerCheck};
use crate::functions_host::{self, FunctionTable, HttpResponse};
use crate::graph::GraphClient;
use crate::poll_audit_logs::poller::Poller;
use crate::poll_audit_logs::{self, PollAuditLogs};
use crate::settings::storage::StorageSettings;
use crate::settings::{Settings, TokenValidation};
use crate::store::{self, Store};
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

/// The Graph client every Graph-facing function shares (one certificate load, one token
/// cache), or `None` when Graph access is not configured.
pub fn shared_graph(settings: &Settings) -> anyhow::Result<Option<GraphClient>> {
    let Some(graph_settings) = settings.graph.settings() else {
        return Ok(None);
    };
    let http = crate::credentials::http_client().context("building the Graph HTTP client")?;
    let graph = GraphClient::for_settings(graph_settings, http).context("setting up Graph access")?;
    Ok(Some(graph))
}

/// The state store the settings name: Azure Storage, or the embedded store.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    match &settings.storage {
        StorageSettings::Azure(azure) => log::info!("state store: {}", azure.describe()),
        StorageSettings::Embedded(directory) => log::info!("state store: embedded, in {}", directory.display()),
    }
    store::open(&settings.storage, None)
        .await
        .context("opening the state store")
}

/// The poller for `signup-bridge poll`: Graph must be configured.
pub async fn poller(settings: &Settings) -> anyhow::Result<Poller> {
    settings.graph.require()?;
    let graph = shared_graph(settings)?.context("Graph access is not configured")?;
    Ok(Poller::new(graph, open_store(settings).await?, settings.poll.clone()))
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

    let poll = Arc::new(match shared_graph(settings)? {
        Some(graph) => {
            let store = open_store(settings).await?;
            PollAuditLogs::Ready(Arc::new(Poller::new(graph, store, settings.poll.clone())))
        }
        None => PollAuditLogs::NotConfigured(format!(
            "Graph access is not configured ({})",
            settings
                .graph
                .require()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default()
                .replace('\n', " ")
        )),
    });

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
