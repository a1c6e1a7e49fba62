//! ProvisionUser black-box: the real binary, driven exactly as the Functions host drives a
//! queue trigger (`POST /ProvisionUser`, the message twice-encoded under `Data.message`,
//! `Metadata.DequeueCount`), with its state in Azure Storage on the real Azurite and Graph
//! and Stripe faked. Also `signup-bridge run`'s own queue worker on the embedded store.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use signup_bridge::provisioning::destinations::Destination;
use signup_bridge::provisioning::ledger::{Ledger, State};
use signup_bridge::settings::storage::StorageSettings;
use signup_bridge::store::{self, FAILED_QUEUE, PROVISION_QUEUE, Store};
use support::fake_stripe::FakeStripe;
use support::graph_fakes::GraphFakes;
use support::handler::{RunningHandler, keep_log, loopback_client};
use uuid::Uuid;

const EXTENSIONS_APP: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
const PREFIX: &str = "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_";
const GROUP: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const STRIPE_KEY: &str = "sk_test_51FakeKeyForTests";
const SAMPLES: &str = include_str!("fixtures/samples/functions-host-invocations.json");

fn user(id: &str) -> Value {
    json!({
        "id": id, "displayName": "Jane Doe", "givenName": "Jane", "surname": "Doe",
        "mail": "jane.doe@contoso.com", "userPrincipalName": format!("{id}@contoso.onmicrosoft.com"),
        "identities": [], format!("{PREFIX}onMailingList"): true,
    })
}

/// The host's queue invocation from the samples, for another user and dequeue count.
fn invocation(user_id: &str, dequeue_count: u32) -> Value {
    let samples: Value = serde_json::from_str(SAMPLES).unwrap();
    let mut body = samples["queue"]["body"].clone();
    let sample_id = "84360e8b-3321-4e37-b9ec-10fccd0263b8";
    let message = body["Data"]["message"].as_str().unwrap().replace(sample_id, user_id);
    // Still a JSON string literal holding the message: the host's second encoding.
    assert!(message.starts_with("\"{"), "{message}");
    body["Data"]["message"] = json!(message);
    body["Metadata"]["DequeueCount"] = json!(dequeue_count);
    body
}

fn settings(fakes: &GraphFakes, stripe: &FakeStripe, storage: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut env = fakes.process_settings();
    env.extend(storage.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(
        [
            ("EXTENSION_SKIP_TOKEN_VALIDATION", "true".to_string()),
            ("PROVISION_EXTENSION_APP_ID", EXTENSIONS_APP.to_string()),
            ("GROUPS_STATIC", GROUP.to_string()),
            ("STRIPE_API_KEY", STRIPE_KEY.to_string()),
            ("STRIPE_BASE_URL", stripe.url().to_string()),
            ("STRIPE_CUSTOMER_ID_ATTRIBUTE", "stripeCustomerId".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

async fn ledger(store: &dyn Store, id: &str) -> Option<Ledger> {
    store
        .read_ledger(id.parse().unwrap())
        .await
        .unwrap()
        .map(|document| document.json().unwrap())
}

async fn invoke(handler: &RunningHandler, body: &Value) -> Value {
    let response = loopback_client()
        .post(handler.url("/ProvisionUser"))
        .header("X-Azure-Functions-InvocationId", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the invocation succeeds");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["Outputs"].is_object() && body.as_object().unwrap().contains_key("ReturnValue"),
        "{body}"
    );
    body
}

fn logs(body: &Value) -> String {
    body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_host_queue_invocation_provisions_once_retries_by_requeueing_and_dead_letters() {
    let Some(storage) = support::stores::azurite_settings() else {
        return;
    };
    let store = store::open(&StorageSettings::from_map(&storage).unwrap(), None)
        .await
        .unwrap();
    let fakes = GraphFakes::start();
    let stripe = FakeStripe::start(STRIPE_KEY).await;
    let first = Uuid::new_v4().to_string();
    let second = Uuid::new_v4().to_string();
    fakes.graph.add_user(user(&first));
    fakes.graph.add_user(user(&second));
    let env = settings(&fakes, &stripe, &storage);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let handler = RunningHandler::start(&env).await;

    // Delivered three times (the host redelivers after a crash, PollAuditLogs may repeat).
    for count in 1..=3 {
        let body = invoke(&handler, &invocation(&first, count)).await;
        if count == 1 {
            assert!(logs(&body).contains("stripe done"), "{body}");
        } else {
            assert!(logs(&body).contains("nothing to do"), "{body}");
        }
    }
    let creates = stripe
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/v1/customers")
        .count();
    assert_eq!(creates, 1);
    assert_eq!(stripe.customers().len(), 1);
    let graph = fakes.graph.requests();
    assert_eq!(
        graph
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/members/$ref"))
            .count(),
        1
    );
    assert_eq!(
        graph.iter().filter(|r| r.method == "PATCH").count(),
        1,
        "the Stripe write-back, once"
    );
    let recorded = ledger(store.as_ref(), &first)
        .await
        .expect("the ledger is in Azure Storage");
    assert_eq!(recorded.entry(Destination::Stripe).unwrap().state, State::Done);
    assert_eq!(recorded.entry(Destination::Groups).unwrap().state, State::Done);
    assert_eq!(
        store.approximate_count(&PROVISION_QUEUE).await.unwrap(),
        0,
        "nothing to retry"
    );

    // Stripe is down: the invocation still succeeds; the retry is a delayed copy on the queue.
    stripe.fail_next(503, json!({"type": "api_error", "message": "down"}), &[]);
    let body = invoke(&handler, &invocation(&second, 1)).await;
    assert!(logs(&body).contains("retry in 1m"), "{body}");
    assert_eq!(store.approximate_count(&PROVISION_QUEUE).await.unwrap(), 1);
    let visible = store
        .receive(&PROVISION_QUEUE, 32, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(visible.is_empty(), "the retry is invisible until its delay has passed");
    let recorded = ledger(store.as_ref(), &second).await.unwrap();
    assert_eq!(recorded.entry(Destination::Stripe).unwrap().state, State::Pending);
    assert_eq!(recorded.entry(Destination::Stripe).unwrap().attempts, 1);

    // A message nothing can process: answered 200 (a redelivery would not help), dead-lettered.
    let body = invoke(
        &handler,
        &json!({"Data": {"message": "\"{\\\"hello\\\":1}\""}, "Metadata": {"DequeueCount": 1}}),
    )
    .await;
    assert!(logs(&body).contains("not a provision message"), "{body}");
    let letters = store.receive(&FAILED_QUEUE, 32, Duration::from_secs(30)).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(&letters[0].text).unwrap();
    assert_eq!(letter["code"], "malformed_message");
    assert!(
        handler.stderr().contains("not a provision message"),
        "logged at Error (stderr)"
    );
    assert!(
        !handler.stderr().contains("jane") && !handler.stdout().contains("jane"),
        "no email in logs"
    );
}

/// `signup-bridge run` on the embedded store: its worker takes the user from the queue,
/// provisions, deletes the message; `status` prints the ledger.
#[tokio::test]
async fn run_provisions_from_the_queue_and_status_shows_the_ledger() {
    let fakes = GraphFakes::start();
    let stripe = FakeStripe::start(STRIPE_KEY).await;
    let id = Uuid::new_v4().to_string();
    fakes.graph.add_user(user(&id));
    let dir = tempfile::tempdir().unwrap();
    let storage = HashMap::from([("SIGNUP_STATE_DIR".to_string(), dir.path().display().to_string())]);
    let mut env = settings(&fakes, &stripe, &storage);
    // No audit records: the poll finds nobody; the user arrives by replay.
    env.push(("POLL_START_AT".into(), chrono::Utc::now().to_rfc3339()));
    let mut command = tokio::process::Command::new(support::handler::BINARY);
    command
        .arg("replay")
        .arg(&id)
        .envs(env.iter().cloned())
        .env_remove("AzureWebJobsStorage")
        .env("NO_PROXY", "127.0.0.1,localhost");
    let replay = command.output().await.unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    keep_log("replay-stderr", &String::from_utf8_lossy(&replay.stderr));

    let port = support::handler::free_port();
    let mut run = tokio::process::Command::new(support::handler::BINARY)
        .arg("run")
        .envs(env.iter().cloned())
        .env_remove("AzureWebJobsStorage")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(dir.path().join("run-stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("run-stderr.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let store = store::open(&StorageSettings::Embedded(dir.path().to_path_buf()), None)
        .await
        .unwrap();
    let mut done = false;
    for _ in 0..300 {
        if let Some(ledger) = ledger(store.as_ref(), &id).await
            && ledger
                .entry(Destination::Stripe)
                .is_some_and(|entry| entry.state == State::Done)
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "run's worker provisioned the user");
    // The routes are served too.
    let probe = loopback_client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert!(probe.status().is_success());
    run.kill().await.unwrap();
    let run_logs = ["run-stdout.log", "run-stderr.log"]
        .map(|name| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default())
        .join("\n");
    keep_log("run", &run_logs);
    assert!(
        run_logs.contains("ProvisionUser: user"),
        "the worker logged its run:\n{run_logs}"
    );
    assert!(!run_logs.contains("jane"), "no email or name in the logs:\n{run_logs}");

    let status = tokio::process::Command::new(support::handler::BINARY)
        .arg("status")
        .arg(&id)
        .envs(env.iter().cloned())
        .env_remove("AzureWebJobsStorage")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    keep_log("status-stderr", &String::from_utf8_lossy(&status.stderr));
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(
        text.contains(&format!("user {id}")) && text.contains("stripe      done"),
        "{text}"
    );
    assert_eq!(stripe.customers().len(), 1);
    // The worker deleted the message it handled.
    for _ in 0..50 {
        if store.approximate_count(&PROVISION_QUEUE).await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the handled message is still queued");
}

/// The operator commands as a support engineer uses them: `provision` inline, a permanent
/// Stripe error listed by `status --failed`, then `replay --failed` re-enqueues the user.
#[tokio::test]
async fn provision_status_failed_and_replay_failed_from_the_command_line() {
    let fakes = GraphFakes::start();
    let stripe = FakeStripe::start(STRIPE_KEY).await;
    let id = Uuid::new_v4().to_string();
    fakes.graph.add_user(user(&id));
    let dir = tempfile::tempdir().unwrap();
    let storage = HashMap::from([("SIGNUP_STATE_DIR".to_string(), dir.path().display().to_string())]);
    let mut env = settings(&fakes, &stripe, &storage);
    env.push(("STRIPE_SEARCH_BEFORE_CREATE".into(), "false".into()));
    let command = |args: &[&str]| {
        let mut command = tokio::process::Command::new(support::handler::BINARY);
        command
            .args(args)
            .envs(env.iter().cloned())
            .env_remove("AzureWebJobsStorage")
            .env("NO_PROXY", "127.0.0.1,localhost");
        command
    };
    stripe.fail_next(
        400,
        json!({"type": "invalid_request_error", "code": "parameter_invalid_empty", "message": "bad"}),
        &[],
    );

    let provision = command(&["provision", &id]).output().await.unwrap();
    let out = String::from_utf8_lossy(&provision.stdout);
    let err = String::from_utf8_lossy(&provision.stderr);
    keep_log("provision-stderr", &err);
    assert!(provision.status.success(), "{err}");
    assert!(
        out.contains("groups done") && out.contains("stripe FAILED (http_400"),
        "{out}"
    );
    assert!(
        out.contains(&format!("user {id}")) && out.contains("last error http_400"),
        "{out}"
    );
    assert!(
        err.contains("dead letter on signup-provision-failed"),
        "logged at Error: {err}"
    );

    let status = command(&["status", "--failed"]).output().await.unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    assert!(
        out.contains(&format!("{id} stripe http_400")) && out.contains("1 user(s)"),
        "{out}"
    );

    let replay = command(&["replay", "--failed"]).output().await.unwrap();
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success());
    assert!(
        out.contains(&format!("user {id}: enqueued")) && out.contains("1 user(s) replayed"),
        "{out}"
    );
    let store = store::open(&StorageSettings::Embedded(dir.path().to_path_buf()), None)
        .await
        .unwrap();
    let queued = store
        .receive(&PROVISION_QUEUE, 32, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    let recorded = ledger(store.as_ref(), &id).await.unwrap();
    assert_eq!(
        recorded.entry(Destination::Stripe).unwrap().state,
        State::Pending,
        "replayed"
    );
    assert_eq!(recorded.entry(Destination::Groups).unwrap().state, State::Done);

    let missing = command(&["status", &Uuid::new_v4().to_string()])
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(3), "no ledger");
}
