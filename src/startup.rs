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
use crate::provisioning::{self, Pipeline, ProvisionUser};
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

/// ProvisionUser's pipeline and the store it records in: Graph must be configured.
pub async fn provisioning(
    settings: &Settings,
    graph: GraphClient,
    store: Arc<dyn Store>,
) -> anyhow::Result<Arc<Pipeline>> {
    let pipeline = Pipeline::new(graph, store, &settings.provisioning, &settings.destinations)
        .map_err(|error| anyhow::anyhow!("setting up the provisioning destinations: {error}"))?;
    let enabled: Vec<&str> = pipeline
        .enabled()
        .iter()
        .map(|destination| destination.as_str())
        .collect();
    log::info!(
        "{}: destinations {}; retry schedule {}",
        provisioning::FUNCTION_NAME,
        if enabled.is_empty() {
            "none".to_string()
        } else {
            enabled.join(", ")
        },
        settings.provisioning.retry_schedule
    );
    Ok(Arc::new(pipeline))
}

/// The pipeline for operator commands (`provision`): Graph must be configured.
pub async fn pipeline(settings: &Settings) -> anyhow::Result<(Arc<Pipeline>, Arc<dyn Store>)> {
    settings.graph.require()?;
    let graph = shared_graph(settings)?.context("Graph access is not configured")?;
    let store = open_store(settings).await?;
    let pipeline = provisioning(settings, graph, store.clone()).await?;
    pipeline
        .prepare()
        .await
        .map_err(|error| anyhow::anyhow!("PostgreSQL migrations: {error}"))?;
    Ok((pipeline, store))
}

/// The running handler's parts that outlive the function table (background tasks), and
/// what `run` drives besides the routes.
pub struct Handler {
    pub functions: FunctionTable,
    pub provision: Arc<ProvisionUser>,
    /// Set when Graph access is configured.
    pub poller: Option<Arc<Poller>>,
    /// Set when Graph access is configured.
    pub store: Option<Arc<dyn Store>>,
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

    let not_configured = || {
        format!(
            "Graph access is not configured ({})",
            settings
                .graph
                .require()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default()
                .replace('\n', " ")
        )
    };
    let (poll, provision, poller, store) = match shared_graph(settings)? {
        Some(graph) => {
            let store = open_store(settings).await?;
            let poller = Arc::new(Poller::new(graph.clone(), store.clone(), settings.poll.clone()));
            let pipeline = provisioning(settings, graph, store.clone()).await?;
            // Migrations in the background: the readiness probe must answer at once, and
            // the pipeline waits for them before its first upsert anyway.
            let migrating = pipeline.clone();
            background_tasks.push(tokio::spawn(async move {
                if let Err(error) = migrating.prepare().await {
                    log::warn!("PostgreSQL migrations failed at start ({error}); retried before the first upsert");
                }
            }));
            (
                PollAuditLogs::Ready(poller.clone()),
                ProvisionUser::Ready(pipeline, store.clone()),
                Some(poller),
                Some(store),
            )
        }
        None => (
            PollAuditLogs::NotConfigured(not_configured()),
            ProvisionUser::NotConfigured(not_configured()),
            None,
            None,
        ),
    };
    let poll = Arc::new(poll);
    let provision = Arc::new(provision);
    let provision_route = provision.clone();

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
        })
        .invocation(provisioning::FUNCTION_NAME, move |request, log| {
            let provision = provision_route.clone();
            async move { provision.invoke(request, log).await }
        });

    Ok(Handler {
        functions,
        provision,
        poller,
        store,
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
    let listener = bind(&settings, listener).await?;
    log::info!("listening on {}", listener.local_addr()?);
    functions_host::serve(handler.functions.clone(), listener, shutdown).await;
    Ok(())
}

/// `signup-bridge run`: the whole product in one process, for a container or a laptop: the
/// same routes as `serve`, PollAuditLogs every `RUN_POLL_INTERVAL_SECONDS`, and a queue
/// worker for ProvisionUser with the host's queue-trigger semantics.
pub async fn run(
    settings: Settings,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handler = build(&settings).await?;
    let listener = bind(&settings, listener).await?;
    log::info!("listening on {}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let mut tasks = Vec::new();
    match (&handler.poller, &handler.store) {
        (Some(poller), Some(store)) => {
            let poller = poller.clone();
            let interval = settings.provisioning.run_poll_interval;
            let stop_poll = until_stopped(stopped.clone());
            tasks.push(tokio::spawn(async move {
                tokio::pin!(stop_poll);
                loop {
                    // Same code as the timer; a failed poll leaves the checkpoint for the next.
                    match poller.poll_once(&Default::default()).await {
                        Ok(summary) => log::info!("{}: {}", poll_audit_logs::FUNCTION_NAME, summary.line()),
                        Err(error) => log::error!(
                            "{}: poll failed, checkpoint unchanged: {error}",
                            poll_audit_logs::FUNCTION_NAME
                        ),
                    }
                    tokio::select! {
                        _ = &mut stop_poll => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                }
            }));
            tasks.push(tokio::spawn(provisioning::worker::run(
                handler.provision.clone(),
                store.clone(),
                provisioning::worker::WorkerSettings {
                    concurrency: settings.provisioning.run_concurrency,
                    ..Default::default()
                },
                until_stopped(stopped.clone()),
            )));
        }
        _ => log::warn!("Graph access is not configured: `run` serves the routes only (no polling, no provisioning)"),
    }

    functions_host::serve(handler.functions.clone(), listener, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    for task in tasks {
        // A run in progress finishes its current user; the ledger covers a cut-off one.
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    Ok(())
}

async fn bind(
    settings: &Settings,
    listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<tokio::net::TcpListener> {
    match listener {
        Some(listener) => Ok(listener),
        None => tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
            .await
            .with_context(|| {
                format!(
                    "FUNCTIONS_CUSTOMHANDLER_PORT: cannot listen on 127.0.0.1:{}",
                    settings.port
                )
            }),
    }
}
