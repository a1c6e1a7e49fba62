//! `signup-bridge setup`: wires Entra to AttributeSubmit through Microsoft Graph.
//!
//! 1. Reads the custom authentication extensions (`GET /v1.0/identity/customAuthenticationExtensions`)
//!    and the user flows (`GET /v1.0/identity/authenticationEventsFlows`). The user flow is
//!    found by display name before anything is written, so a typo changes nothing.
//! 2. Creates the `onAttributeCollectionSubmitCustomExtension` (`POST`), or updates the one
//!    it finds by `--extension-id` or by display name (`PATCH`, only when a field differs).
//! 3. Sets the flow's `onAttributeCollectionSubmit` handler to that extension (`PATCH` of the
//!    `externalUsersSelfServiceSignUpEventsFlow`; repeating it changes nothing).
//!
//! Running it twice creates nothing new. `--dry-run` does the reads and prints the writes it
//! would make. The function URL carries the function key (`?code=`): it is printed masked.
//!
//! Settings (flags, or these environment variables):
//!
//! | flag | variable | default | meaning |
//! |---|---|---|---|
//! | `--function-url` | `SETUP_FUNCTION_URL` | | AttributeSubmit's URL with its function key: `https://<app>.azurewebsites.net/api/AttributeSubmit?code=<key>` |
//! | `--user-flow` | `SETUP_USER_FLOW` | | Display name of the sign-up user flow to attach the extension to |
//! | `--resource-id` | `SETUP_RESOURCE_ID` | `api://<EXTENSION_APP_ID>` | The extension app's identifier URI or app id: the `aud` of Entra's tokens |
//! | `--extension-name` | `SETUP_EXTENSION_NAME` | `signup-bridge AttributeSubmit` | Display name of the custom extension (how it is found again) |
//! | `--extension-id` | `SETUP_EXTENSION_ID` | | Update this extension instead of finding one by name |
//! | `--timeout-ms` | `SETUP_TIMEOUT_MS` | `1000` | Entra's wait for an answer, 200-2000 ms |
//! | `--maximum-retries` | `SETUP_MAXIMUM_RETRIES` | `1` | Entra's retries after a timeout, 0 or 1 |
//!
//! Graph access uses the `GRAPH_*` settings of `check` and `poll`; that app registration needs
//! `CustomAuthenticationExtension.ReadWrite.All` and `EventListener.ReadWrite.All` (application
//! permissions, admin consent) for this command only.

use std::fmt;
use std::process::ExitCode;

use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use crate::graph::{GraphClient, GraphError};

pub const EXTENSION_TYPE: &str = "#microsoft.graph.onAttributeCollectionSubmitCustomExtension";
pub const ENDPOINT_TYPE: &str = "#microsoft.graph.httpRequestEndpoint";
pub const AUTHENTICATION_TYPE: &str = "#microsoft.graph.azureAdTokenAuthentication";
pub const FLOW_TYPE: &str = "#microsoft.graph.externalUsersSelfServiceSignUpEventsFlow";
pub const HANDLER_TYPE: &str = "#microsoft.graph.onAttributeCollectionSubmitCustomExtensionHandler";
pub const DEFAULT_EXTENSION_NAME: &str = "signup-bridge AttributeSubmit";

const EXTENSIONS_PATH: &str = "v1.0/identity/customAuthenticationExtensions";
const FLOWS_PATH: &str = "v1.0/identity/authenticationEventsFlows";
/// Stands for the id Graph assigns, in a dry run that would create the extension.
const NEW_EXTENSION_ID: &str = "<id of the new extension>";

/// Exit code when Graph refused or failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when the options or settings are invalid.
pub const EXIT_INVALID: u8 = 2;

/// The command line of `signup-bridge setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// AttributeSubmit's URL with its function key: https://<app>.azurewebsites.net/api/AttributeSubmit?code=<key>
    #[arg(long, env = "SETUP_FUNCTION_URL", hide_env_values = true)]
    function_url: String,
    /// Display name of the sign-up user flow (externalUsersSelfServiceSignUpEventsFlow).
    #[arg(long, env = "SETUP_USER_FLOW")]
    user_flow: String,
    /// The extension app's identifier URI or app id (the audience of Entra's tokens); default api://<EXTENSION_APP_ID>.
    #[arg(long, env = "SETUP_RESOURCE_ID")]
    resource_id: Option<String>,
    /// The extension app's client id; gives the default resource id.
    #[arg(long, env = "EXTENSION_APP_ID")]
    extension_app_id: Option<Uuid>,
    /// Display name of the custom authentication extension: how it is found on the next run.
    #[arg(long, env = "SETUP_EXTENSION_NAME", default_value = DEFAULT_EXTENSION_NAME)]
    extension_name: String,
    /// Update this custom authentication extension instead of finding one by display name.
    #[arg(long, env = "SETUP_EXTENSION_ID")]
    extension_id: Option<String>,
    /// How long Entra waits for AttributeSubmit, 200-2000 ms.
    #[arg(long, env = "SETUP_TIMEOUT_MS", default_value_t = 1000)]
    timeout_ms: u32,
    /// Entra's retries after a timeout, 0 or 1.
    #[arg(long, env = "SETUP_MAXIMUM_RETRIES", default_value_t = 1)]
    maximum_retries: u32,
    /// Do the reads, print the writes it would make, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Validated options.
#[derive(Clone)]
pub struct SetupOptions {
    pub function_url: Url,
    pub resource_id: String,
    pub extension_name: String,
    pub extension_id: Option<String>,
    pub user_flow: String,
    pub timeout_ms: u32,
    pub maximum_retries: u32,
    pub dry_run: bool,
}

impl fmt::Debug for SetupOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupOptions")
            .field("function_url", &masked_url(self.function_url.as_str()))
            .field("resource_id", &self.resource_id)
            .field("extension_name", &self.extension_name)
            .field("extension_id", &self.extension_id)
            .field("user_flow", &self.user_flow)
            .field("timeout_ms", &self.timeout_ms)
            .field("maximum_retries", &self.maximum_retries)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{setting}: {problem}; expected {expected}")]
    Invalid {
        setting: &'static str,
        problem: &'static str,
        expected: &'static str,
    },
    /// Boxed: Graph errors are large and this enum travels through every step.
    #[error(transparent)]
    Graph(Box<GraphError>),
    #[error("no user flow named {0:?} (GET /v1.0/identity/authenticationEventsFlows lists {1}); check SETUP_USER_FLOW")]
    FlowNotFound(String, String),
    #[error("{1} user flows are named {0:?}; rename one")]
    AmbiguousFlow(String, usize),
    #[error("user flow {0:?} is a {1}, not an externalUsersSelfServiceSignUpEventsFlow")]
    WrongFlowType(String, String),
    #[error("no custom authentication extension with id {0} (SETUP_EXTENSION_ID)")]
    ExtensionNotFound(String),
    #[error("custom authentication extension {0} is a {1}, not an onAttributeCollectionSubmitCustomExtension")]
    WrongExtensionType(String, String),
    #[error("{1} custom authentication extensions are named {0:?}; pick one with SETUP_EXTENSION_ID (ids: {2})")]
    AmbiguousExtension(String, usize, String),
    #[error("Graph created the custom authentication extension but its answer carries no id")]
    NoIdInAnswer,
}

impl From<GraphError> for SetupError {
    fn from(error: GraphError) -> SetupError {
        SetupError::Graph(Box::new(error))
    }
}

impl SetupError {
    fn invalid(setting: &'static str, problem: &'static str, expected: &'static str) -> SetupError {
        SetupError::Invalid {
            setting,
            problem,
            expected,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Invalid { .. } => EXIT_INVALID,
            _ => EXIT_FAILED,
        }
    }
}

impl SetupOptions {
    pub fn from_args(args: SetupArgs) -> Result<SetupOptions, SetupError> {
        let function_url = Url::parse(args.function_url.trim())
            .map_err(|_| SetupError::invalid("SETUP_FUNCTION_URL", "is not a URL", FUNCTION_URL))?;
        if function_url.scheme() != "https" {
            // Entra calls only https endpoints.
            return Err(SetupError::invalid(
                "SETUP_FUNCTION_URL",
                "is not https://",
                FUNCTION_URL,
            ));
        }
        let resource_id = match (args.resource_id.as_deref().map(str::trim), args.extension_app_id) {
            (Some(resource_id), _) if !resource_id.is_empty() => resource_id.to_string(),
            (_, Some(app_id)) => format!("api://{app_id}"),
            _ => {
                return Err(SetupError::invalid(
                    "SETUP_RESOURCE_ID",
                    "is not set (nor EXTENSION_APP_ID)",
                    "the extension app's identifier URI, e.g. api://<app id>",
                ));
            }
        };
        if !(200..=2000).contains(&args.timeout_ms) {
            return Err(SetupError::invalid(
                "SETUP_TIMEOUT_MS",
                "is out of range",
                "200 to 2000 milliseconds (Entra's limits)",
            ));
        }
        if args.maximum_retries > 1 {
            return Err(SetupError::invalid(
                "SETUP_MAXIMUM_RETRIES",
                "is out of range",
                "0 or 1",
            ));
        }
        let user_flow = args.user_flow.trim().to_string();
        if user_flow.is_empty() {
            return Err(SetupError::invalid(
                "SETUP_USER_FLOW",
                "is blank",
                "the display name of a sign-up user flow",
            ));
        }
        let extension_name = args.extension_name.trim().to_string();
        if extension_name.is_empty() {
            return Err(SetupError::invalid(
                "SETUP_EXTENSION_NAME",
                "is blank",
                "a display name for the custom extension",
            ));
        }
        Ok(SetupOptions {
            function_url,
            resource_id,
            extension_name,
            extension_id: args
                .extension_id
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty()),
            user_flow,
            timeout_ms: args.timeout_ms,
            maximum_retries: args.maximum_retries,
            dry_run: args.dry_run,
        })
    }

    /// The extension as Graph documents it for create and update.
    pub fn extension_body(&self) -> Value {
        json!({
            "@odata.type": EXTENSION_TYPE,
            "displayName": self.extension_name,
            "endpointConfiguration": {
                "@odata.type": ENDPOINT_TYPE,
                "targetUrl": self.function_url.as_str(),
            },
            "authenticationConfiguration": {
                "@odata.type": AUTHENTICATION_TYPE,
                "resourceId": self.resource_id,
            },
            "clientConfiguration": {
                "timeoutInMilliseconds": self.timeout_ms,
                "maximumRetries": self.maximum_retries,
            },
        })
    }

    /// Whether an existing extension already has every field this run would set.
    fn matches(&self, existing: &Value) -> bool {
        existing["displayName"] == self.extension_name.as_str()
            && existing["endpointConfiguration"]["targetUrl"] == self.function_url.as_str()
            && existing["authenticationConfiguration"]["resourceId"] == self.resource_id.as_str()
            && existing["clientConfiguration"]["timeoutInMilliseconds"].as_u64() == Some(u64::from(self.timeout_ms))
            && existing["clientConfiguration"]["maximumRetries"].as_u64() == Some(u64::from(self.maximum_retries))
    }
}

const FUNCTION_URL: &str = "https://<app>.azurewebsites.net/api/AttributeSubmit?code=<function key>";

/// The flow update that points `onAttributeCollectionSubmit` at the extension.
pub fn flow_patch_body(extension_id: &str) -> Value {
    json!({
        "@odata.type": FLOW_TYPE,
        "onAttributeCollectionSubmit": {
            "@odata.type": HANDLER_TYPE,
            "customExtension": { "id": extension_id },
        },
    })
}

/// A Graph request made (or, in a dry run, to be made).
#[derive(Clone, PartialEq)]
pub struct GraphRequest {
    pub method: &'static str,
    /// Relative to the Graph root, e.g. `v1.0/identity/customAuthenticationExtensions`.
    pub path: String,
    pub body: Option<Value>,
    /// Reads are made even in a dry run; writes are not.
    pub performed: bool,
}

impl fmt::Display for GraphRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /{}", self.method, self.path)?;
        if let Some(body) = &self.body {
            let pretty = serde_json::to_string_pretty(&masked_body(body)).map_err(|_| fmt::Error)?;
            write!(f, "\n{pretty}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GraphRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What happened to the custom extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionOutcome {
    Created(String),
    Updated(String),
    Unchanged(String),
}

#[derive(Debug)]
pub struct SetupReport {
    pub extension: ExtensionOutcome,
    pub flow_id: String,
    pub requests: Vec<GraphRequest>,
    pub dry_run: bool,
}

impl SetupReport {
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would be" } else { "was" };
        let extension = match &self.extension {
            ExtensionOutcome::Created(id) => format!("custom extension {id} {verb} created"),
            ExtensionOutcome::Updated(id) => format!("custom extension {id} {verb} updated"),
            ExtensionOutcome::Unchanged(id) => format!("custom extension {id} is up to date"),
        };
        format!(
            "{extension}; user flow {} {verb} set to call it on attribute collection submit",
            self.flow_id
        )
    }
}

/// Runs the set-up against Graph.
pub async fn run(graph: &GraphClient, options: &SetupOptions) -> Result<SetupReport, SetupError> {
    let mut requests = Vec::new();
    let mut read = |path: &str| {
        requests.push(GraphRequest {
            method: "GET",
            path: path.to_string(),
            body: None,
            performed: true,
        })
    };

    read(FLOWS_PATH);
    let flows = graph.list_json("list user flows", FLOWS_PATH).await?;
    let flow_id = find_flow(&flows, &options.user_flow)?;

    read(EXTENSIONS_PATH);
    let extensions = graph
        .list_json("list custom authentication extensions", EXTENSIONS_PATH)
        .await?;
    let existing = find_extension(&extensions, options)?;

    let body = options.extension_body();
    let extension = match existing {
        None => {
            let id = if options.dry_run {
                NEW_EXTENSION_ID.to_string()
            } else {
                let created = graph
                    .post_json("create custom authentication extension", EXTENSIONS_PATH, &body)
                    .await?;
                created["id"].as_str().ok_or(SetupError::NoIdInAnswer)?.to_string()
            };
            requests.push(write("POST", EXTENSIONS_PATH.to_string(), body, options.dry_run));
            ExtensionOutcome::Created(id)
        }
        Some(existing) if options.matches(existing) => ExtensionOutcome::Unchanged(id_of(existing)),
        Some(existing) => {
            let id = id_of(existing);
            let path = format!("{EXTENSIONS_PATH}/{id}");
            if !options.dry_run {
                graph
                    .patch_json("update custom authentication extension", &path, &body)
                    .await?;
            }
            requests.push(write("PATCH", path, body, options.dry_run));
            ExtensionOutcome::Updated(id)
        }
    };

    let extension_id = match &extension {
        ExtensionOutcome::Created(id) | ExtensionOutcome::Updated(id) | ExtensionOutcome::Unchanged(id) => id,
    };
    // PATCH sets the handler whatever it was; repeating it is harmless, and Graph's flow
    // listing does not show the handler's extension without an $expand.
    let path = format!("{FLOWS_PATH}/{flow_id}");
    let body = flow_patch_body(extension_id);
    if !options.dry_run {
        graph.patch_json("update user flow", &path, &body).await?;
    }
    requests.push(write("PATCH", path, body, options.dry_run));

    Ok(SetupReport {
        extension,
        flow_id,
        requests,
        dry_run: options.dry_run,
    })
}

fn write(method: &'static str, path: String, body: Value, dry_run: bool) -> GraphRequest {
    GraphRequest {
        method,
        path,
        body: Some(body),
        performed: !dry_run,
    }
}

fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap_or_default().to_string()
}

fn odata_type(object: &Value) -> &str {
    object["@odata.type"].as_str().unwrap_or("(no @odata.type)")
}

fn find_flow(flows: &[Value], name: &str) -> Result<String, SetupError> {
    let named: Vec<&Value> = flows.iter().filter(|flow| flow["displayName"] == name).collect();
    match named.as_slice() {
        [flow] if odata_type(flow).eq_ignore_ascii_case(FLOW_TYPE) => Ok(id_of(flow)),
        [flow] => Err(SetupError::WrongFlowType(
            name.to_string(),
            odata_type(flow).to_string(),
        )),
        [] => {
            let names: Vec<String> = flows
                .iter()
                .filter_map(|flow| flow["displayName"].as_str())
                .map(|name| format!("{name:?}"))
                .collect();
            let listed = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            Err(SetupError::FlowNotFound(name.to_string(), listed))
        }
        several => Err(SetupError::AmbiguousFlow(name.to_string(), several.len())),
    }
}

fn find_extension<'a>(extensions: &'a [Value], options: &SetupOptions) -> Result<Option<&'a Value>, SetupError> {
    let found = match &options.extension_id {
        Some(id) => Some(
            extensions
                .iter()
                .find(|extension| extension["id"] == id.as_str())
                .ok_or_else(|| SetupError::ExtensionNotFound(id.clone()))?,
        ),
        None => {
            let named: Vec<&Value> = extensions
                .iter()
                .filter(|extension| extension["displayName"] == options.extension_name.as_str())
                .collect();
            if named.len() > 1 {
                let ids: Vec<String> = named.iter().map(|extension| id_of(extension)).collect();
                return Err(SetupError::AmbiguousExtension(
                    options.extension_name.clone(),
                    named.len(),
                    ids.join(", "),
                ));
            }
            named.first().copied()
        }
    };
    match found {
        Some(extension) if !odata_type(extension).eq_ignore_ascii_case(EXTENSION_TYPE) => Err(
            SetupError::WrongExtensionType(id_of(extension), odata_type(extension).to_string()),
        ),
        other => Ok(other),
    }
}

/// The URL with the values of its query parameters (the function key) replaced by `***`.
pub fn masked_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.query().is_some() => {
            let names: Vec<String> = parsed.query_pairs().map(|(name, _)| name.into_owned()).collect();
            parsed.set_query(None);
            let query = names
                .iter()
                .map(|name| format!("{name}=***"))
                .collect::<Vec<_>>()
                .join("&");
            format!("{parsed}?{query}")
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".to_string(),
    }
}

fn masked_body(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(target) = body.pointer_mut("/endpointConfiguration/targetUrl")
        && let Some(url) = target.as_str()
    {
        *target = Value::String(masked_url(url));
    }
    body
}

/// `signup-bridge setup`: loads the Graph settings, runs, prints the requests and a summary.
pub async fn main(args: SetupArgs) -> ExitCode {
    let options = match SetupOptions::from_args(args) {
        Ok(options) => options,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let settings = match crate::settings::Settings::from_env_for_tools() {
        Ok(settings) => settings,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if let Err(error) = settings.graph.require() {
        log::error!("setup needs Graph access: {error}");
        return ExitCode::from(EXIT_INVALID);
    }
    let graph = match crate::startup::shared_graph(&settings) {
        Ok(Some(graph)) => graph,
        Ok(None) => return ExitCode::from(EXIT_INVALID),
        Err(error) => {
            log::error!("{error:#}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match run(&graph, &options).await {
        Ok(report) => {
            for request in &report.requests {
                let note = if request.performed { "" } else { "  (dry run: not sent)" };
                println!("{request}{note}");
            }
            println!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            log::error!("setup failed: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SetupArgs {
        SetupArgs {
            function_url: "https://contoso.azurewebsites.net/api/AttributeSubmit?code=secret-key".into(),
            user_flow: "Sign up".into(),
            resource_id: None,
            extension_app_id: Some(Uuid::nil()),
            extension_name: DEFAULT_EXTENSION_NAME.into(),
            extension_id: None,
            timeout_ms: 1000,
            maximum_retries: 1,
            dry_run: false,
        }
    }

    #[test]
    fn the_resource_id_defaults_to_the_extension_app_id_uri() {
        let options = SetupOptions::from_args(args()).unwrap();
        assert_eq!(options.resource_id, format!("api://{}", Uuid::nil()));
    }

    #[test]
    fn entra_limits_and_https_are_enforced() {
        let mut bad = args();
        bad.timeout_ms = 2001;
        assert!(matches!(
            SetupOptions::from_args(bad),
            Err(SetupError::Invalid {
                setting: "SETUP_TIMEOUT_MS",
                ..
            })
        ));
        let mut bad = args();
        bad.maximum_retries = 2;
        assert!(SetupOptions::from_args(bad).is_err());
        let mut bad = args();
        bad.function_url = "http://contoso.azurewebsites.net/api/AttributeSubmit".into();
        assert!(SetupOptions::from_args(bad).is_err());
        let mut bad = args();
        bad.extension_app_id = None;
        assert!(SetupOptions::from_args(bad).is_err());
    }

    #[test]
    fn the_function_key_never_shows() {
        let options = SetupOptions::from_args(args()).unwrap();
        assert!(!format!("{options:?}").contains("secret-key"));
        let request = GraphRequest {
            method: "POST",
            path: EXTENSIONS_PATH.into(),
            body: Some(options.extension_body()),
            performed: false,
        };
        let printed = request.to_string();
        assert!(!printed.contains("secret-key"), "{printed}");
        assert!(printed.contains("https://contoso.azurewebsites.net/api/AttributeSubmit?code=***"));
    }
}
