//! `signup-bridge setup` against a fake Graph that checks request bodies against Microsoft's
//! documented shapes and keeps state: the first run creates the custom extension and attaches
//! it to the user flow; later runs find it (by name or id) and create nothing new.

mod support;

use std::process::Command;

use serde_json::Value;
use signup_bridge::graph::GraphClient;
use signup_bridge::setup::{self, DEFAULT_EXTENSION_NAME, ExtensionOutcome, FLOW_TYPE, SetupError, SetupOptions};
use support::fake_entra_admin::FakeEntraAdmin;
use support::graph_fakes::{GraphFakes, quick_retries};
use url::Url;

const FLOW_ID: &str = "0313cc37-d421-421d-857b-87804d61e33e";
const FLOW_NAME: &str = "Sign up and sign in";
const FUNCTION_KEY: &str = "Zm9vYmFyLWZ1bmN0aW9uLWtleQ==";

struct Harness {
    _fakes: GraphFakes,
    admin: FakeEntraAdmin,
    graph: GraphClient,
}

async fn harness() -> Harness {
    let fakes = GraphFakes::start();
    // The admin fake is its own origin, so its own token scope.
    fakes.entra.accept_any_scope();
    let admin = FakeEntraAdmin::start(&fakes.ca);
    let credential = fakes.credential();
    let token = credential
        .token(&admin.scope())
        .await
        .expect("a token from the Entra fake");
    admin.accept_token(token.token.secret());
    let graph = GraphClient::new(fakes.http(), admin.url(), credential).with_retry_policy(quick_retries());
    admin.add_flow("5b5c0a5e-0000-4000-8000-000000000001", "Another flow", FLOW_TYPE);
    admin.add_flow(FLOW_ID, FLOW_NAME, FLOW_TYPE);
    Harness {
        _fakes: fakes,
        admin,
        graph,
    }
}

fn options() -> SetupOptions {
    SetupOptions {
        function_url: Url::parse(&format!(
            "https://contoso-signup.azurewebsites.net/api/AttributeSubmit?code={FUNCTION_KEY}"
        ))
        .unwrap(),
        resource_id: "api://contoso-signup.azurewebsites.net/11112222-bbbb-3333-cccc-4444dddd5555".into(),
        extension_name: DEFAULT_EXTENSION_NAME.into(),
        extension_id: None,
        user_flow: FLOW_NAME.into(),
        timeout_ms: 1000,
        maximum_retries: 1,
        dry_run: false,
    }
}

fn methods(admin: &FakeEntraAdmin) -> Vec<String> {
    admin
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

#[tokio::test]
async fn the_first_run_creates_and_attaches_and_the_second_creates_nothing() {
    let h = harness().await;

    let first = setup::run(&h.graph, &options()).await.expect("first run");
    let ExtensionOutcome::Created(id) = &first.extension else {
        panic!("expected a new extension, got {:?}", first.extension)
    };
    assert_eq!(first.flow_id, FLOW_ID);
    assert_eq!(
        methods(&h.admin),
        vec![
            "GET /v1.0/identity/authenticationEventsFlows".to_string(),
            "GET /v1.0/identity/customAuthenticationExtensions".to_string(),
            "POST /v1.0/identity/customAuthenticationExtensions".to_string(),
            format!("PATCH /v1.0/identity/authenticationEventsFlows/{FLOW_ID}"),
        ]
    );
    assert_eq!(h.admin.violations(), Vec::<String>::new());
    let extensions = h.admin.extensions();
    assert_eq!(extensions.len(), 1);
    let extension = &extensions[0];
    assert_eq!(extension["displayName"], DEFAULT_EXTENSION_NAME);
    assert_eq!(
        extension["endpointConfiguration"]["targetUrl"],
        options().function_url.as_str()
    );
    assert_eq!(
        extension["authenticationConfiguration"]["resourceId"],
        options().resource_id
    );
    assert_eq!(extension["clientConfiguration"]["timeoutInMilliseconds"], 1000);
    assert_eq!(extension["clientConfiguration"]["maximumRetries"], 1);
    assert_eq!(h.admin.flow_submit_extension(FLOW_ID).as_deref(), Some(id.as_str()));
    assert_eq!(
        h.admin.flow_submit_extension("5b5c0a5e-0000-4000-8000-000000000001"),
        None
    );

    h.admin.clear_requests();
    let second = setup::run(&h.graph, &options()).await.expect("second run");
    assert_eq!(second.extension, ExtensionOutcome::Unchanged(id.clone()));
    let second_requests = methods(&h.admin);
    assert!(
        !second_requests
            .iter()
            .any(|r| r.starts_with("POST") || r.contains("customAuthenticationExtensions/")),
        "the second run must not create or change the extension: {second_requests:?}"
    );
    assert_eq!(h.admin.extensions().len(), 1);
    assert_eq!(h.admin.flow_submit_extension(FLOW_ID).as_deref(), Some(id.as_str()));
    assert_eq!(h.admin.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_changed_url_or_budget_updates_the_same_extension() {
    let h = harness().await;
    let created = setup::run(&h.graph, &options()).await.expect("first run");
    let ExtensionOutcome::Created(id) = created.extension else {
        panic!("expected a new extension")
    };

    let mut changed = options();
    changed.function_url =
        Url::parse("https://contoso-signup-2.azurewebsites.net/api/AttributeSubmit?code=other").unwrap();
    changed.timeout_ms = 2000;
    changed.maximum_retries = 0;
    h.admin.clear_requests();
    let report = setup::run(&h.graph, &changed).await.expect("second run");
    assert_eq!(report.extension, ExtensionOutcome::Updated(id.clone()));
    assert!(methods(&h.admin).contains(&format!("PATCH /v1.0/identity/customAuthenticationExtensions/{id}")));
    let extensions = h.admin.extensions();
    assert_eq!(extensions.len(), 1, "updated in place, not duplicated");
    assert_eq!(
        extensions[0]["endpointConfiguration"]["targetUrl"],
        "https://contoso-signup-2.azurewebsites.net/api/AttributeSubmit?code=other"
    );
    assert_eq!(extensions[0]["clientConfiguration"]["timeoutInMilliseconds"], 2000);
    assert_eq!(extensions[0]["clientConfiguration"]["maximumRetries"], 0);
    assert_eq!(h.admin.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_configured_extension_id_is_updated_whatever_its_name() {
    let h = harness().await;
    let existing_id = "6fc5012e-7665-43d6-9708-4370863f4e6e";
    h.admin.add_extension(serde_json::json!({
        "@odata.type": setup::EXTENSION_TYPE,
        "id": existing_id,
        "displayName": "Validate sign-up (made in the portal)",
        "endpointConfiguration": {"@odata.type": setup::ENDPOINT_TYPE, "targetUrl": "https://old.example/api"},
        "authenticationConfiguration": {"@odata.type": setup::AUTHENTICATION_TYPE, "resourceId": "api://old"},
        "clientConfiguration": {"timeoutInMilliseconds": 1000, "maximumRetries": 1},
    }));
    let mut by_id = options();
    by_id.extension_id = Some(existing_id.into());
    let report = setup::run(&h.graph, &by_id).await.expect("run");
    assert_eq!(report.extension, ExtensionOutcome::Updated(existing_id.into()));
    assert_eq!(h.admin.extensions().len(), 1);
    assert_eq!(h.admin.extensions()[0]["displayName"], DEFAULT_EXTENSION_NAME);
    assert_eq!(h.admin.flow_submit_extension(FLOW_ID).as_deref(), Some(existing_id));
    assert_eq!(h.admin.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_dry_run_reads_and_prints_the_writes_without_the_function_key() {
    let h = harness().await;
    let mut dry = options();
    dry.dry_run = true;
    let report = setup::run(&h.graph, &dry).await.expect("dry run");
    assert!(
        h.admin.requests().iter().all(|request| request.method == "GET"),
        "a dry run only reads: {:?}",
        methods(&h.admin)
    );
    assert!(h.admin.extensions().is_empty());
    assert_eq!(h.admin.flow_submit_extension(FLOW_ID), None);

    let writes: Vec<_> = report.requests.iter().filter(|request| !request.performed).collect();
    assert_eq!(writes.len(), 2, "{:?}", report.requests);
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].body.as_ref().unwrap()["@odata.type"], setup::EXTENSION_TYPE);
    assert_eq!(writes[1].method, "PATCH");
    assert_eq!(
        writes[1].path,
        format!("v1.0/identity/authenticationEventsFlows/{FLOW_ID}")
    );
    let printed: String = report.requests.iter().map(|request| format!("{request}\n")).collect();
    assert!(!printed.contains(FUNCTION_KEY), "{printed}");
    assert!(printed.contains("/api/AttributeSubmit?code=***"), "{printed}");
    assert!(report.summary().contains("would be created"), "{}", report.summary());
}

#[tokio::test]
async fn an_unknown_user_flow_writes_nothing() {
    let h = harness().await;
    let mut wrong = options();
    wrong.user_flow = "Sign-up (typo)".into();
    let error = setup::run(&h.graph, &wrong).await.unwrap_err();
    assert!(matches!(error, SetupError::FlowNotFound(..)), "{error}");
    assert!(
        error.to_string().contains(FLOW_NAME),
        "lists the flows there are: {error}"
    );
    assert!(h.admin.requests().iter().all(|request| request.method == "GET"));
    assert!(h.admin.extensions().is_empty());
}

#[tokio::test]
async fn two_extensions_with_the_same_name_are_not_guessed_between() {
    let h = harness().await;
    for id in [
        "a0000000-0000-0000-0000-000000000001",
        "a0000000-0000-0000-0000-000000000002",
    ] {
        h.admin.add_extension(serde_json::json!({
            "@odata.type": setup::EXTENSION_TYPE,
            "id": id,
            "displayName": DEFAULT_EXTENSION_NAME,
        }));
    }
    let error = setup::run(&h.graph, &options()).await.unwrap_err();
    assert!(matches!(error, SetupError::AmbiguousExtension(..)), "{error}");
    assert!(error.to_string().contains("a0000000-0000-0000-0000-000000000002"));
    assert!(h.admin.requests().iter().all(|request| request.method == "GET"));
}

#[test]
fn the_command_rejects_an_out_of_range_timeout_without_echoing_the_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_signup-bridge"))
        .args(["setup", "--user-flow", FLOW_NAME, "--timeout-ms", "5000"])
        .env_clear()
        .env(
            "SETUP_FUNCTION_URL",
            format!("https://contoso.azurewebsites.net/api/AttributeSubmit?code={FUNCTION_KEY}"),
        )
        .env("EXTENSION_APP_ID", "11112222-bbbb-3333-cccc-4444dddd5555")
        .output()
        .expect("run signup-bridge setup");
    assert_eq!(output.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("SETUP_TIMEOUT_MS"), "{text}");
    assert!(!text.contains(FUNCTION_KEY), "{text}");
}

#[test]
fn documented_bodies_are_what_setup_sends() {
    // The shapes from Microsoft's pages, spelled out once more so a refactor of setup.rs
    // cannot change both the sender and this expectation.
    let body = options().extension_body();
    let expected: Value = serde_json::json!({
        "@odata.type": "#microsoft.graph.onAttributeCollectionSubmitCustomExtension",
        "displayName": DEFAULT_EXTENSION_NAME,
        "endpointConfiguration": {
            "@odata.type": "#microsoft.graph.httpRequestEndpoint",
            "targetUrl": options().function_url.as_str(),
        },
        "authenticationConfiguration": {
            "@odata.type": "#microsoft.graph.azureAdTokenAuthentication",
            "resourceId": options().resource_id,
        },
        "clientConfiguration": { "timeoutInMilliseconds": 1000, "maximumRetries": 1 },
    });
    assert_eq!(body, expected);
    assert_eq!(
        setup::flow_patch_body("x"),
        serde_json::json!({
            "@odata.type": "#microsoft.graph.externalUsersSelfServiceSignUpEventsFlow",
            "onAttributeCollectionSubmit": {
                "@odata.type": "#microsoft.graph.onAttributeCollectionSubmitCustomExtensionHandler",
                "customExtension": { "id": "x" },
            },
        })
    );
}
