//! `signup-bridge check` against the fakes: all green exits 0; a missing configuration
//! exits 2 naming the settings; a broken connection exits 1 saying what to fix. One test runs
//! the check in a separate process with the real `ManagedIdentityCredential`
//! (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) and the test CA trusted through `SSL_CERT_FILE`,
//! as in Azure.

mod support;

use std::collections::HashMap;
use std::process::{Command, ExitCode};

use signup_bridge::check::{self, CheckOptions, EXIT_CONNECTION_FAILED, EXIT_SETTINGS_INVALID};
use support::fake_graph::graph_error;
use support::graph_fakes::{CLIENT_ID, GraphFakes, TENANT};

const EXTENSION_APP: &str = "99998888-aaaa-7777-bbbb-666655554444";

/// App settings a deployed app would have: the extension's and Graph's (the Graph tenant
/// defaulting to the extension's).
fn app_settings(fakes: &GraphFakes) -> HashMap<String, String> {
    let mut values = fakes.settings_map();
    values.remove("GRAPH_TENANT_ID");
    values.insert("ENTRA_TENANT_ID".into(), TENANT.into());
    values.insert("EXTENSION_APP_ID".into(), EXTENSION_APP.into());
    values
}

async fn run_check(fakes: &GraphFakes, values: &HashMap<String, String>) -> (ExitCode, String) {
    let mut out = Vec::new();
    let options = CheckOptions {
        http: fakes.http(),
        key_vault_credential: Some(fakes.key_vault_credential()),
    };
    let code = check::run_with(values, options, &mut out).await;
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn check_passes_against_working_fakes() {
    let fakes = GraphFakes::start();
    let (code, report) = run_check(&fakes, &app_settings(&fakes)).await;
    assert_eq!(code, ExitCode::SUCCESS, "{report}");
    for expected in [
        "[ ok ] application settings are valid",
        &format!("app (client) id    {CLIENT_ID}"),
        "[ ok ] certificate loaded from Key Vault",
        "[ ok ] token for",
        "[ ok ] Graph call GET /v1.0/auditLogs/directoryAudits?$top=1",
        "Result: all 4 checks passed",
    ] {
        assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
    }
    assert!(!report.contains("[FAIL]"), "{report}");
    let probe = &fakes.graph.requests()[0];
    assert_eq!(probe.query["$top"], "1");
    assert_eq!(fakes.vault.secret_reads(), 1);
    assert_eq!(fakes.entra.token_requests(), 1);
}

#[tokio::test]
async fn check_without_graph_settings_exits_2_and_names_them() {
    let fakes = GraphFakes::start();
    let values: HashMap<String, String> = [("ENTRA_TENANT_ID", TENANT), ("EXTENSION_APP_ID", EXTENSION_APP)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (code, report) = run_check(&fakes, &values).await;
    assert_eq!(code, ExitCode::from(EXIT_SETTINGS_INVALID), "{report}");
    assert!(report.contains("[FAIL] GRAPH_CLIENT_ID is not set"), "{report}");
    assert!(
        report.contains("GRAPH_KEY_VAULT_URL + GRAPH_CERTIFICATE_NAME, or GRAPH_CERTIFICATE_PATH is not set"),
        "{report}"
    );
    assert!(report.contains("[skip] connections"), "{report}");
    assert_eq!(fakes.vault.secret_reads() + fakes.entra.token_requests(), 0);
}

#[tokio::test]
async fn check_with_a_malformed_setting_exits_2() {
    let fakes = GraphFakes::start();
    let mut values = app_settings(&fakes);
    values.insert("GRAPH_BASE_URL".into(), "http://graph.example".into());
    let (code, report) = run_check(&fakes, &values).await;
    assert_eq!(code, ExitCode::from(EXIT_SETTINGS_INVALID), "{report}");
    assert!(report.contains("[FAIL] GRAPH_BASE_URL"), "{report}");
}

#[tokio::test]
async fn check_reports_other_app_settings_once_and_exits_2() {
    let fakes = GraphFakes::start();
    let mut values = app_settings(&fakes);
    values.insert("GRAPH_TENANT_ID".into(), TENANT.into());
    values.insert("ENTRA_TENANT_ID".into(), "contoso".into());
    values.insert("GRAPH_CLIENT_ID".into(), "not-a-guid".into());
    let (code, report) = run_check(&fakes, &values).await;
    assert_eq!(code, ExitCode::from(EXIT_SETTINGS_INVALID), "{report}");
    assert_eq!(report.matches("[FAIL] ENTRA_TENANT_ID").count(), 1, "{report}");
    assert_eq!(report.matches("[FAIL] GRAPH_CLIENT_ID").count(), 1, "{report}");
}

#[tokio::test]
async fn check_with_an_unregistered_certificate_exits_1_and_says_how_to_fix_it() {
    let fakes = GraphFakes::start();
    fakes.entra.set_registered(&[]);
    let (code, report) = run_check(&fakes, &app_settings(&fakes)).await;
    assert_eq!(code, ExitCode::from(EXIT_CONNECTION_FAILED), "{report}");
    assert!(report.contains("[ ok ] certificate loaded"), "{report}");
    assert!(
        report.contains("[FAIL] token for") && report.contains("AADSTS700027"),
        "{report}"
    );
    assert!(report.contains("upload its public part (.cer)"), "{report}");
    assert!(report.contains("[skip] Graph call"), "{report}");
    assert!(fakes.graph.requests().is_empty());
}

#[tokio::test]
async fn check_with_no_access_to_key_vault_exits_1() {
    let fakes = GraphFakes::start();
    fakes.vault.set_forbidden(true);
    let (code, report) = run_check(&fakes, &app_settings(&fakes)).await;
    assert_eq!(code, ExitCode::from(EXIT_CONNECTION_FAILED), "{report}");
    assert!(
        report.contains("HTTP 403") && report.contains("Key Vault Secrets User"),
        "{report}"
    );
    assert_eq!(fakes.entra.token_requests(), 0);
}

#[tokio::test]
async fn check_without_the_audit_permission_exits_1() {
    let fakes = GraphFakes::start();
    fakes.graph.inject(graph_error(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        "0f0f0f0f-0000-4000-8000-000000000000",
    ));
    let (code, report) = run_check(&fakes, &app_settings(&fakes)).await;
    assert_eq!(code, ExitCode::from(EXIT_CONNECTION_FAILED), "{report}");
    assert!(
        report.contains("Authorization_RequestDenied") && report.contains("AuditLog.Read.All"),
        "{report}"
    );
    assert!(
        report.contains("0f0f0f0f-0000-4000-8000-000000000000"),
        "request id kept:\n{report}"
    );
}

const USER_ASSIGNED: &str = "8e5c1a2b-3d4e-4f60-9a7b-8c9d0e1f2a3b";

/// Runs `signup-bridge check` in its own process with exactly `environment`.
fn check_in_a_process(environment: &HashMap<String, String>) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_signup-bridge"))
        .arg("check")
        .env_clear()
        .envs(environment)
        .output()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    support::handler::keep_log("check", &report);
    (output.status.code(), report)
}

/// The check as the deployed app runs it: settings and `IDENTITY_ENDPOINT` from the process
/// environment, the real `ManagedIdentityCredential` (a user-assigned identity selected by
/// client id), OS trust with the test CA added through `SSL_CERT_FILE`.
#[test]
fn check_in_its_own_process_uses_the_managed_identity_and_os_trust() {
    let fakes = GraphFakes::start();
    let ca_file = fakes.ca.write_ca_file(fakes.dir.path());
    let mut environment = app_settings(&fakes);
    // No DNS override in the child: the vault is reached by its loopback address.
    environment.insert("GRAPH_KEY_VAULT_URL".into(), fakes.vault.loopback_url().to_string());
    environment.insert("IDENTITY_ENDPOINT".into(), fakes.identity.endpoint().to_string());
    environment.insert("IDENTITY_HEADER".into(), fakes.identity.header_secret().to_string());
    environment.insert("MANAGED_IDENTITY_CLIENT_ID".into(), USER_ASSIGNED.into());
    environment.insert("SSL_CERT_FILE".into(), ca_file.display().to_string());

    let (code, report) = check_in_a_process(&environment);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("user-assigned managed identity 8e5c1a2b"), "{report}");
    assert!(report.contains("Result: all 4 checks passed"), "{report}");

    let identity_requests = fakes.identity.requests();
    assert_eq!(identity_requests.len(), 1, "one managed-identity token for Key Vault");
    assert_eq!(identity_requests[0].resource, "https://vault.azure.net");
    assert_eq!(identity_requests[0].client_id.as_deref(), Some(USER_ASSIGNED));
    assert_eq!(fakes.identity.refused(), 0);
    assert_eq!(fakes.vault.secret_reads(), 1);
    assert_eq!(fakes.entra.token_requests(), 1);
    assert_eq!(fakes.graph.requests().len(), 1);
}

/// A developer machine without `az` (no PATH at all): the Key Vault step fails, says to sign
/// in, and nothing else is attempted.
#[test]
fn check_on_a_developer_machine_without_a_login_says_to_sign_in() {
    let fakes = GraphFakes::start();
    let ca_file = fakes.ca.write_ca_file(fakes.dir.path());
    let mut environment = app_settings(&fakes);
    environment.insert("GRAPH_KEY_VAULT_URL".into(), fakes.vault.loopback_url().to_string());
    environment.insert("SSL_CERT_FILE".into(), ca_file.display().to_string());

    let (code, report) = check_in_a_process(&environment);
    assert_eq!(code, Some(i32::from(EXIT_CONNECTION_FAILED)), "{report}");
    assert!(report.contains("Azure CLI / Azure Developer CLI login"), "{report}");
    assert!(report.contains("az login"), "{report}");
    assert_eq!(fakes.vault.secret_reads(), 0);
    assert_eq!(fakes.entra.token_requests(), 0);
}
