//! The PollAuditLogs timer driven exactly as the Functions host drives it: the real binary,
//! `POST /PollAuditLogs` with the host's timer payload, Graph behind its certificate from
//! Key Vault (fakes), state in Azure Storage on real Azurite.

mod support;

use serde_json::{Value, json};
use signup_bridge::handover::ProvisionMessage;
use signup_bridge::settings::storage::StorageSettings;
use signup_bridge::store::{PROVISION_QUEUE, open};
use std::collections::HashMap;
use std::time::Duration;
use support::fake_graph::audit_record;
use support::graph_fakes::GraphFakes;
use support::handler::{RunningHandler, loopback_client};

const HOST_SAMPLES: &str = include_str!("fixtures/samples/functions-host-invocations.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_enqueues_new_sign_ups_and_reports_one_line() {
    let Some(storage) = support::stores::azurite_settings() else {
        return;
    };
    let fakes = GraphFakes::start();
    let now = chrono::Utc::now();
    fakes.graph.set_audit_log(
        (0..3)
            .map(|n| {
                audit_record(
                    &format!("84360e8b-3321-4e37-b9ec-10fccd0263b{n}"),
                    now - chrono::Duration::minutes(5),
                    "success",
                )
            })
            .collect(),
    );
    let mut settings: Vec<(String, String)> = fakes.process_settings();
    settings.extend(storage.clone());
    settings.push(("EXTENSION_SKIP_TOKEN_VALIDATION".into(), "true".into()));
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let handler = RunningHandler::start(&env).await;

    let samples: Value = serde_json::from_str(HOST_SAMPLES).unwrap();
    let client = loopback_client();
    // The regular tick, the first run (`0001-01-01`) and an unmonitored, past-due one.
    let payloads = [
        samples["timer"]["body"].clone(),
        samples["timer_first_run"].clone(),
        samples["timer_unmonitored"].clone(),
    ];
    let mut lines = Vec::new();
    for payload in payloads {
        let response = client
            .post(handler.url("/PollAuditLogs"))
            .header("X-Azure-Functions-InvocationId", "5b3f8a1e-0c1d-4e2f-9a3b-4c5d6e7f8a9b")
            .json(&payload)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["Outputs"], json!({}));
        lines.push(
            body["Logs"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(lines[0].contains("read 3 records in 1 pages, 3 new users"), "{lines:?}");
    assert!(lines[1].contains("3 records in 1 pages, 0 new users"), "{lines:?}");
    assert!(
        lines[2].contains("0 new users") && lines[2].contains("watermark"),
        "{lines:?}"
    );

    // The three users are on the queue, once each, as ProvisionUser will read them.
    let store = open(
        &StorageSettings::from_map(&storage.into_iter().collect::<HashMap<_, _>>()).unwrap(),
        None,
    )
    .await
    .unwrap();
    let messages = store
        .receive(&PROVISION_QUEUE, 32, Duration::from_secs(30))
        .await
        .unwrap();
    let mut users: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<ProvisionMessage>(&m.text)
                .unwrap()
                .user_id
                .to_string()
        })
        .collect();
    users.sort();
    assert_eq!(users.len(), 3, "{users:?}");
    users.dedup();
    assert_eq!(users.len(), 3);
    // One certificate read and one token for all three ticks.
    assert_eq!(fakes.vault.secret_reads(), 1);
    assert_eq!(fakes.entra.token_requests(), 1);
}

#[tokio::test]
async fn without_graph_settings_the_timer_answers_and_says_why() {
    let handler = RunningHandler::start(&[("EXTENSION_SKIP_TOKEN_VALIDATION", "true")]).await;
    let samples: Value = serde_json::from_str(HOST_SAMPLES).unwrap();
    let response = loopback_client()
        .post(handler.url("/PollAuditLogs"))
        .json(&samples["timer"]["body"])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let logs = body["Logs"].to_string();
    assert!(
        logs.contains("polling is not configured") && logs.contains("GRAPH_CLIENT_ID"),
        "{logs}"
    );
}
