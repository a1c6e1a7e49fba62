//! The Functions project layout and the handler agree: forwarding stays on for HTTP
//! functions, and every function folder has a route in the handler.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::handler::RunningHandler;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `<folder>/function.json` at the project root: (function name, bindings).
fn function_folders() -> Vec<(String, Vec<Value>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let definition = path.join("function.json");
        if definition.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let bindings = read_json(&definition)["bindings"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            functions.push((name, bindings));
        }
    }
    functions.sort_by(|a, b| a.0.cmp(&b.0));
    functions
}

fn is_http_function(bindings: &[Value]) -> bool {
    bindings.iter().any(|binding| binding["type"] == "httpTrigger")
}

#[test]
fn host_json_starts_the_handler_with_forwarding() {
    let host = read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("host.json"));
    assert_eq!(host["version"], "2.0");
    let handler = &host["customHandler"];
    assert_eq!(handler["description"]["defaultExecutablePath"], "signup-bridge");
    assert_eq!(handler["description"]["arguments"], json!(["serve"]));
    assert_eq!(handler["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert!(
        host["functionTimeout"].is_string(),
        "functionTimeout is set deliberately"
    );
}

#[test]
fn http_functions_meet_the_forwarding_condition() {
    // The host forwards the raw request only for exactly one httpTrigger in and one http
    // out; any extra binding silently switches to the JSON payload shape.
    let functions = function_folders();
    assert!(functions.iter().any(|(name, _)| name == "AttributeSubmit"));
    for (name, bindings) in functions.iter().filter(|(_, bindings)| is_http_function(bindings)) {
        assert_eq!(bindings.len(), 2, "{name}: exactly two bindings");
        let trigger = bindings.iter().find(|b| b["type"] == "httpTrigger").unwrap();
        assert_eq!(trigger["direction"], "in", "{name}");
        let output = bindings.iter().find(|b| b["type"] == "http").expect("an http output");
        assert_eq!(output["direction"], "out", "{name}");
    }
}

#[test]
fn the_timer_schedule_is_an_app_setting() {
    let functions = function_folders();
    let (_, bindings) = functions
        .iter()
        .find(|(name, _)| name == "PollAuditLogs")
        .expect("PollAuditLogs folder");
    assert_eq!(bindings[0]["type"], "timerTrigger");
    assert_eq!(bindings[0]["schedule"], "%POLL_SCHEDULE%");
}

#[test]
fn the_package_ignore_list_keeps_what_the_host_needs() {
    let ignore = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".funcignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["host.json", "signup-bridge", "signup-rules.toml"] {
        assert!(!ignored.contains(&needed), ".funcignore must not exclude {needed}");
    }
    for (name, _) in function_folders() {
        assert!(!ignored.contains(&name.as_str()), ".funcignore must not exclude {name}");
    }
}

#[tokio::test]
async fn every_function_folder_has_a_route_in_the_handler() {
    let handler = RunningHandler::start(&[("EXTENSION_SKIP_TOKEN_VALIDATION", "true")]).await;
    let client = support::handler::loopback_client();
    for (name, bindings) in function_folders() {
        if is_http_function(&bindings) {
            let trigger = bindings.iter().find(|b| b["type"] == "httpTrigger").unwrap();
            let route = trigger["route"].as_str().unwrap_or(&name).to_string();
            let method = trigger["methods"][0].as_str().unwrap_or("post").to_uppercase();
            let response = client
                .request(method.parse().unwrap(), handler.url(&format!("/api/{route}")))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_ne!(response.status(), 404, "{name}: no forwarded route /api/{route}");
            assert_eq!(response.headers()["content-type"], "application/json", "{name}");
        } else {
            let payload = json!({ "Data": { bindings[0]["name"].as_str().unwrap(): {} }, "Metadata": {} });
            let response = client
                .post(handler.url(&format!("/{name}")))
                .json(&payload)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name}: invocation route");
            assert_eq!(response.headers()["content-type"], "application/json", "{name}");
            let body: Value = response.json().await.unwrap();
            assert!(body["Outputs"].is_object() && body["Logs"].is_array(), "{name}: {body}");
            assert!(body.as_object().unwrap().contains_key("ReturnValue"), "{name}: {body}");
        }
    }
}

#[test]
fn local_settings_example_is_a_valid_configuration() {
    let example = read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("local.settings.json.example"));
    let values = example["Values"].as_object().expect("a Values object");
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    let mut settings: std::collections::HashMap<String, String> = values
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
        .collect();
    // The example names the user's rules file; the repository ships the example rules.
    settings.insert(
        "SIGNUP_RULES_PATH".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/signup-rules.example.toml").into(),
    );
    if let Err(error) = signup_bridge::settings::Settings::from_map(&settings) {
        panic!("local.settings.json.example does not start: {error}");
    }
}
