//! `signup-bridge poll --once`: the poll outside the host, as an operator runs it.

mod support;

use std::process::Command;
use support::fake_graph::audit_record;
use support::graph_fakes::GraphFakes;
use support::handler::{BINARY, keep_log};

fn poll(arguments: &[&str], settings: &[(String, String)]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .arg("poll")
        .args(arguments)
        .env_clear()
        .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    );
    keep_log("poll-cli", &format!("{stdout}{stderr}"));
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn a_dry_run_prints_object_ids_and_writes_nothing_then_a_run_enqueues() {
    let fakes = GraphFakes::start();
    let now = chrono::Utc::now();
    let users = [
        "84360e8b-3321-4e37-b9ec-10fccd0263b8",
        "1f0e98f5-3161-4c6b-9b50-d488572f2bb7",
    ];
    fakes.graph.set_audit_log(
        users
            .iter()
            .map(|user| audit_record(user, now - chrono::Duration::minutes(3), "success"))
            .collect(),
    );
    let state = tempfile::tempdir().unwrap();
    let mut settings = fakes.process_settings();
    settings.push(("SIGNUP_STATE_DIR".into(), state.path().display().to_string()));
    settings.push(("RUST_LOG".into(), "warn".into()));

    let (code, stdout, stderr) = poll(&["--once", "--dry-run"], &settings);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two object ids and the summary: {stdout}");
    for user in users {
        assert!(lines.contains(&user), "{stdout}");
    }
    assert!(
        lines[2].starts_with("dry run: read 2 records in 1 pages, 2 new users"),
        "{stdout}"
    );
    assert!(!stdout.contains("@"), "object ids only: {stdout}");

    // Nothing was written: the real run finds the same two users.
    let (code, stdout, stderr) = poll(&["--once"], &settings);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("read 2 records in 1 pages, 2 new users"), "{stdout}");
    let (_, stdout, _) = poll(&["--once"], &settings);
    assert!(stdout.contains("0 new users"), "{stdout}");
}

#[test]
fn without_graph_settings_poll_stops_naming_them() {
    let (code, _, stderr) = poll(&["--once"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GRAPH_CLIENT_ID") && stderr.contains("GRAPH_CERTIFICATE_PATH"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_since_is_refused() {
    let (code, _, stderr) = poll(&["--once", "--since", "yesterday"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}
