//! A fake of the Graph administration endpoints `signup-bridge setup` uses (TLS), with state:
//! custom authentication extensions (`/v1.0/identity/customAuthenticationExtensions`: list,
//! create, update) and user flows (`/v1.0/identity/authenticationEventsFlows`: list, update).
//!
//! Request bodies are checked against Microsoft's documented shapes (Graph v1.0:
//! identitycontainer-post-customauthenticationextensions, customauthenticationextension-update,
//! onattributecollectionsubmitcustomextension, httprequestendpoint, azureadtokenauthentication,
//! customextensionclientconfiguration, authenticationeventsflow-update,
//! onattributecollectionsubmitcustomextensionhandler). A body that deviates is answered with
//! Graph's 400 and recorded in [`FakeEntraAdmin::violations`]. Only the bearer token set with
//! [`FakeEntraAdmin::accept_token`] is accepted.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use url::Url;

use super::fake_server::{FakeServer, Request, Response};
use super::tls::TestCa;

const EXTENSIONS: &str = "/v1.0/identity/customAuthenticationExtensions";
const FLOWS: &str = "/v1.0/identity/authenticationEventsFlows";
const EXTENSION_TYPE: &str = "#microsoft.graph.onAttributeCollectionSubmitCustomExtension";
const FLOW_TYPE: &str = "#microsoft.graph.externalUsersSelfServiceSignUpEventsFlow";
const HANDLER_TYPE: &str = "#microsoft.graph.onAttributeCollectionSubmitCustomExtensionHandler";

#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub struct FakeEntraAdmin {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    extensions: Vec<Value>,
    flows: Vec<Value>,
    requests: Vec<AdminRequest>,
    violations: Vec<String>,
    next_id: u32,
}

impl FakeEntraAdmin {
    pub fn start(ca: &TestCa) -> FakeEntraAdmin {
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let server = FakeServer::start(
            Some(ca.server_config()),
            Arc::new(move |request| handle(&mut handler_state.lock().unwrap(), request)),
        );
        FakeEntraAdmin { server, state }
    }

    /// The Graph root for the client (`GRAPH_BASE_URL`).
    pub fn url(&self) -> Url {
        self.server.url()
    }

    pub fn scope(&self) -> String {
        format!("{}/.default", self.server.url().origin().ascii_serialization())
    }

    pub fn accept_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    /// A user flow as Graph lists it (the handler's extension is not expanded in listings).
    pub fn add_flow(&self, id: &str, display_name: &str, odata_type: &str) {
        self.state.lock().unwrap().flows.push(json!({
            "@odata.type": odata_type,
            "id": id,
            "displayName": display_name,
            "description": null,
            "priority": 500,
        }));
    }

    /// An extension already in the tenant.
    pub fn add_extension(&self, extension: Value) {
        self.state.lock().unwrap().extensions.push(extension);
    }

    pub fn extensions(&self) -> Vec<Value> {
        self.state.lock().unwrap().extensions.clone()
    }

    /// The extension id the flow's `onAttributeCollectionSubmit` handler points at.
    pub fn flow_submit_extension(&self, flow_id: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        let flow = state.flows.iter().find(|flow| flow["id"] == flow_id)?;
        flow["onAttributeCollectionSubmit"]["customExtension"]["id"]
            .as_str()
            .map(str::to_string)
    }

    pub fn requests(&self) -> Vec<AdminRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Every way a request body deviated from the documented shape.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

fn graph_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({"error": {"code": code, "message": message}}))
}

fn handle(state: &mut State, request: &Request) -> Response {
    let body = request.json();
    state.requests.push(AdminRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        body: body.clone(),
    });
    if state.token.is_none() || request.bearer() != state.token.as_deref() {
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.");
    }
    if matches!(request.method.as_str(), "POST" | "PATCH")
        && !request
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json"))
    {
        state.violations.push(format!(
            "{} {}: Content-Type is not application/json",
            request.method, request.path
        ));
    }
    let path = request.path.as_str();
    match request.method.as_str() {
        "GET" if path == EXTENSIONS => Response::json(200, &json!({ "value": state.extensions })),
        "GET" if path == FLOWS => Response::json(200, &json!({ "value": state.flows })),
        "POST" if path == EXTENSIONS => {
            let problems = check_extension(&body, true);
            if !problems.is_empty() {
                return reject(state, "POST extension", problems);
            }
            state.next_id += 1;
            let mut created = body.clone();
            created["id"] = json!(format!("00000000-0000-0000-0000-{:012}", state.next_id));
            state.extensions.push(created.clone());
            Response::json(201, &created)
        }
        "PATCH" if path.starts_with(&format!("{EXTENSIONS}/")) => {
            let id = &path[EXTENSIONS.len() + 1..];
            let problems = check_extension(&body, false);
            if !problems.is_empty() {
                return reject(state, "PATCH extension", problems);
            }
            let Some(existing) = state.extensions.iter_mut().find(|extension| extension["id"] == id) else {
                return graph_error(404, "Request_ResourceNotFound", "Resource does not exist.");
            };
            if existing["@odata.type"] != body["@odata.type"] {
                let message = "the @odata.type differs from the extension's".to_string();
                return reject(state, "PATCH extension", vec![message]);
            }
            merge(existing, &body);
            Response::empty(204)
        }
        "PATCH" if path.starts_with(&format!("{FLOWS}/")) => {
            let id = path[FLOWS.len() + 1..].to_string();
            let mut problems = check_flow_patch(&body);
            let extension_id = body["onAttributeCollectionSubmit"]["customExtension"]["id"].as_str();
            if let Some(extension_id) = extension_id {
                match state
                    .extensions
                    .iter()
                    .find(|extension| extension["id"] == extension_id)
                {
                    Some(extension) if extension["@odata.type"] == EXTENSION_TYPE => {}
                    Some(_) => {
                        problems.push("customExtension is not an onAttributeCollectionSubmitCustomExtension".into())
                    }
                    None => problems.push(format!("customExtension {extension_id} does not exist")),
                }
            }
            if !problems.is_empty() {
                return reject(state, "PATCH flow", problems);
            }
            let Some(flow) = state.flows.iter_mut().find(|flow| flow["id"] == id.as_str()) else {
                return graph_error(404, "Request_ResourceNotFound", "Resource does not exist.");
            };
            if flow["@odata.type"] != FLOW_TYPE {
                return reject(
                    state,
                    "PATCH flow",
                    vec!["the flow is not an externalUsersSelfServiceSignUpEventsFlow".into()],
                );
            }
            flow["onAttributeCollectionSubmit"] = body["onAttributeCollectionSubmit"].clone();
            Response::empty(204)
        }
        _ => graph_error(400, "BadRequest", "Unsupported request in the fake."),
    }
}

fn reject(state: &mut State, what: &str, problems: Vec<String>) -> Response {
    for problem in &problems {
        state.violations.push(format!("{what}: {problem}"));
    }
    graph_error(400, "invalidRequest", &problems.join("; "))
}

fn merge(target: &mut Value, patch: &Value) {
    if let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) {
        for (key, value) in patch {
            target.insert(key.clone(), value.clone());
        }
    }
}

fn object<'a>(value: &'a Value, name: &str, problems: &mut Vec<String>) -> Option<&'a Map<String, Value>> {
    let object = value.as_object();
    if object.is_none() {
        problems.push(format!("{name} is not an object"));
    }
    object
}

fn only_keys(object: &Map<String, Value>, name: &str, allowed: &[&str], problems: &mut Vec<String>) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(format!("{name} has an undocumented property {key:?}"));
        }
    }
}

/// `onAttributeCollectionSubmitCustomExtension` as created (every property) or updated
/// (`@odata.type` plus the properties that change).
fn check_extension(body: &Value, create: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(top) = object(body, "the body", &mut problems) else {
        return problems;
    };
    only_keys(
        top,
        "the extension",
        &[
            "@odata.type",
            "displayName",
            "description",
            "endpointConfiguration",
            "authenticationConfiguration",
            "clientConfiguration",
            "behaviorOnError",
        ],
        &mut problems,
    );
    if body["@odata.type"] != EXTENSION_TYPE {
        problems.push(format!(
            "@odata.type is {}, expected {EXTENSION_TYPE}",
            body["@odata.type"]
        ));
    }
    let required = ["displayName", "endpointConfiguration", "authenticationConfiguration"];
    for key in required {
        if create && !top.contains_key(key) {
            problems.push(format!("{key} is missing"));
        }
    }
    if let Some(name) = top.get("displayName")
        && name.as_str().is_none_or(|name| name.trim().is_empty())
    {
        problems.push("displayName is not a non-empty string".into());
    }
    if let Some(endpoint) = top.get("endpointConfiguration")
        && let Some(endpoint) = object(endpoint, "endpointConfiguration", &mut problems)
    {
        only_keys(
            endpoint,
            "endpointConfiguration",
            &["@odata.type", "targetUrl"],
            &mut problems,
        );
        if endpoint.get("@odata.type") != Some(&json!("#microsoft.graph.httpRequestEndpoint")) {
            problems.push("endpointConfiguration.@odata.type is not #microsoft.graph.httpRequestEndpoint".into());
        }
        let https = endpoint
            .get("targetUrl")
            .and_then(Value::as_str)
            .and_then(|url| Url::parse(url).ok())
            .is_some_and(|url| url.scheme() == "https");
        if !https {
            problems.push("endpointConfiguration.targetUrl is not an https URL".into());
        }
    }
    if let Some(authentication) = top.get("authenticationConfiguration")
        && let Some(authentication) = object(authentication, "authenticationConfiguration", &mut problems)
    {
        only_keys(
            authentication,
            "authenticationConfiguration",
            &["@odata.type", "resourceId"],
            &mut problems,
        );
        if authentication.get("@odata.type") != Some(&json!("#microsoft.graph.azureAdTokenAuthentication")) {
            problems.push(
                "authenticationConfiguration.@odata.type is not #microsoft.graph.azureAdTokenAuthentication".into(),
            );
        }
        if authentication
            .get("resourceId")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push("authenticationConfiguration.resourceId is missing".into());
        }
    }
    if let Some(client) = top.get("clientConfiguration")
        && let Some(client) = object(client, "clientConfiguration", &mut problems)
    {
        only_keys(
            client,
            "clientConfiguration",
            &["timeoutInMilliseconds", "maximumRetries"],
            &mut problems,
        );
        if !client
            .get("timeoutInMilliseconds")
            .and_then(Value::as_u64)
            .is_some_and(|ms| (200..=2000).contains(&ms))
        {
            problems.push("clientConfiguration.timeoutInMilliseconds is not 200-2000".into());
        }
        if client
            .get("maximumRetries")
            .and_then(Value::as_u64)
            .is_none_or(|retries| retries > 1)
        {
            problems.push("clientConfiguration.maximumRetries is not 0 or 1".into());
        }
    }
    problems
}

/// `PATCH authenticationEventsFlows/{id}`: the flow type, and the submit handler pointing at
/// an extension by id.
fn check_flow_patch(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(top) = object(body, "the body", &mut problems) else {
        return problems;
    };
    only_keys(
        top,
        "the flow update",
        &["@odata.type", "onAttributeCollectionSubmit"],
        &mut problems,
    );
    if body["@odata.type"] != FLOW_TYPE {
        problems.push(format!("@odata.type is {}, expected {FLOW_TYPE}", body["@odata.type"]));
    }
    let handler = &body["onAttributeCollectionSubmit"];
    if let Some(handler) = object(handler, "onAttributeCollectionSubmit", &mut problems) {
        only_keys(
            handler,
            "onAttributeCollectionSubmit",
            &["@odata.type", "customExtension", "configuration"],
            &mut problems,
        );
        if handler.get("@odata.type") != Some(&json!(HANDLER_TYPE)) {
            problems.push(format!("onAttributeCollectionSubmit.@odata.type is not {HANDLER_TYPE}"));
        }
        match handler.get("customExtension").and_then(Value::as_object) {
            Some(extension) if extension.len() == 1 && extension.get("id").is_some_and(Value::is_string) => {}
            _ => problems.push("onAttributeCollectionSubmit.customExtension is not { \"id\": <string> }".into()),
        }
    }
    problems
}
