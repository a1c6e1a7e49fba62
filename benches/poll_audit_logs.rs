//! PollAuditLogs benchmark: a backlog of sign-ups in a fake Graph that enforces the audit
//! API's 5 requests per 10 s, read by the release binary as the Functions host drives it
//! (`POST /PollAuditLogs`), and by the seed design's loop in the same run. Prints figures;
//! asserts only that every user was handed over exactly once.
//!
//!     cargo bench --bench poll_audit_logs [-- --records 10000 --idle-ticks 10]
//!
//! State is in Azure Storage on Azurite when `SIGNUP_TEST_STORAGE_CONNECTION_STRING` is set
//! (`scripts/bench` starts it), else in the embedded store.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use signup_bridge::store::{PROVISION_QUEUE, Store};
use support::bench::{memory_mib, number};
use support::fake_graph::audit_record;
use support::graph_fakes::GraphFakes;
use support::handler::{RunningHandler, loopback_client};
use support::stores::SharedStore;

const AUDIT_LIMIT: usize = 5;
const AUDIT_WINDOW: Duration = Duration::from_secs(10);
const TIMER_SAMPLES: &str = include_str!("../tests/fixtures/samples/functions-host-invocations.json");

/// Every queued message, read off the queue: (messages, distinct users).
async fn drain(store: &dyn Store) -> (usize, usize) {
    let mut messages = 0;
    let mut users = HashSet::new();
    loop {
        let batch = store
            .receive(&PROVISION_QUEUE, 32, Duration::from_secs(600))
            .await
            .unwrap();
        if batch.is_empty() {
            return (messages, users.len());
        }
        for message in batch {
            messages += 1;
            let body: Value = serde_json::from_str(&message.text).unwrap();
            users.insert(body["userId"].as_str().unwrap_or_default().to_string());
        }
    }
}

/// A Graph fake holding `records` successful sign-ups from between 3 hours and 40 minutes ago
/// (older than the 30-minute overlap, so the ticks after the backlog are idle), throttled.
fn fakes_with_backlog(records: usize, now: DateTime<Utc>) -> (GraphFakes, Vec<String>) {
    let fakes = GraphFakes::start();
    let users: Vec<String> = (0..records).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let step_ms = (140 * 60 * 1000 / records.max(1)) as i64;
    fakes.graph.set_audit_log(
        users
            .iter()
            .enumerate()
            .map(|(index, user)| {
                audit_record(
                    user,
                    now - chrono::Duration::minutes(40) - chrono::Duration::milliseconds(step_ms * index as i64),
                    "success",
                )
            })
            .collect(),
    );
    fakes.graph.throttle_audits(AUDIT_LIMIT, AUDIT_WINDOW);
    (fakes, users)
}

struct Run {
    seconds: f64,
    messages: usize,
    distinct_users: usize,
    graph_requests: usize,
    throttled: usize,
    peak_mib: f64,
}

fn timer_invocation(last: DateTime<Utc>) -> Value {
    let samples: Value = serde_json::from_str(TIMER_SAMPLES).unwrap();
    let mut body = samples["timer"]["body"].clone();
    body["Data"]["myTimer"]["ScheduleStatus"]["Last"] = json!(last.to_rfc3339());
    body
}

async fn invoke_timer(handler: &RunningHandler, body: &Value) -> Value {
    let response = loopback_client()
        .post(handler.url("/PollAuditLogs"))
        .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the poll succeeded");
    response.json().await.unwrap()
}

struct IdleTicks {
    ticks: usize,
    graph_requests: usize,
    key_vault_reads: usize,
    token_requests: usize,
    median_ms: f64,
}

/// signup-bridge as the host runs it: one timer invocation for the backlog, then idle ticks.
async fn signup_bridge(records: usize, idle_ticks: usize) -> (Run, IdleTicks, &'static str) {
    let now = Utc::now();
    let (fakes, _users) = fakes_with_backlog(records, now);
    let store = SharedStore::open().await;
    let mut env = fakes.process_settings();
    env.extend(store.settings.iter().cloned());
    env.push(("POLL_START_AT".into(), (now - chrono::Duration::hours(4)).to_rfc3339()));
    env.push(("RUST_LOG".into(), "warn".into()));
    // AttributeSubmit is not exercised here.
    env.push(("EXTENSION_SKIP_TOKEN_VALIDATION".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let handler = RunningHandler::start(&env).await;

    let timer = timer_invocation(now - chrono::Duration::minutes(5));
    let started = Instant::now();
    let answer = invoke_timer(&handler, &timer).await;
    let seconds = started.elapsed().as_secs_f64();
    let (_, peak) = memory_mib(handler.pid());
    assert!(
        answer["Logs"].to_string().contains(&format!("{records} new users")),
        "{answer}"
    );
    let graph_requests = fakes.graph.requests().len();
    let throttled = fakes.graph.audits_throttled();
    let (messages, distinct_users) = drain(store.store.as_ref()).await;

    // Steady state: the token and the certificate are cached; each tick is one audit query.
    let before = (
        fakes.graph.requests().len(),
        fakes.vault.secret_reads(),
        fakes.entra.token_requests(),
    );
    let mut tick_times = Vec::new();
    for _ in 0..idle_ticks {
        // Ticks further apart than the throttle's window, as the timer's are.
        tokio::time::sleep(AUDIT_WINDOW / AUDIT_LIMIT as u32).await;
        let started = Instant::now();
        let answer = invoke_timer(&handler, &timer).await;
        tick_times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(answer["Logs"].to_string().contains(" 0 new users"), "{answer}");
    }
    tick_times.sort_by(f64::total_cmp);
    let idle = IdleTicks {
        ticks: idle_ticks,
        graph_requests: fakes.graph.requests().len() - before.0,
        key_vault_reads: fakes.vault.secret_reads() - before.1,
        token_requests: fakes.entra.token_requests() - before.2,
        median_ms: tick_times.get(tick_times.len() / 2).copied().unwrap_or(f64::NAN),
    };
    let run = Run {
        seconds,
        messages,
        distinct_users,
        graph_requests,
        throttled,
        peak_mib: peak,
    };
    (run, idle, store.kind)
}

/// The seed design's loop: the window from the timer's `ScheduleStatus.Last`, Graph's default
/// page size, pages read one after another with no pacing, one message sent at a time. On a
/// 429 the literal seed gives up (the run fails, yet the next window starts at the next
/// `Last`): `honour_retry_after` waits as told instead, the best case for the seed.
async fn seed_loop(records: usize, honour_retry_after: bool) -> Run {
    let now = Utc::now();
    let (fakes, _users) = fakes_with_backlog(records, now);
    let store = SharedStore::open().await;
    let credential = fakes.credential();
    let http = fakes.http();
    let last = now - chrono::Duration::hours(4);
    let filter = format!(
        "activityDisplayName eq 'Add user' and activityDateTime ge {}",
        last.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let mut url = fakes.graph.url().join("v1.0/auditLogs/directoryAudits").unwrap();
    url.query_pairs_mut().append_pair("$filter", &filter);
    let mut next = Some(url.to_string());

    let started = Instant::now();
    while let Some(link) = next.take() {
        let token = credential.token(&fakes.graph.scope()).await.unwrap();
        let response = http.get(&link).bearer_auth(token.token.secret()).send().await.unwrap();
        if response.status() == 429 {
            if !honour_retry_after {
                break;
            }
            let wait: u64 = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            next = Some(link);
            continue;
        }
        let page: Value = response.json().await.unwrap();
        for record in page["value"].as_array().into_iter().flatten() {
            let user = record["targetResources"][0]["id"].as_str().unwrap_or_default();
            let message = json!({"userId": user, "detectedAt": now, "source": "auditLog"});
            store
                .store
                .send(&PROVISION_QUEUE, &message.to_string(), Duration::ZERO)
                .await
                .unwrap();
        }
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (messages, distinct_users) = drain(store.store.as_ref()).await;
    Run {
        seconds,
        messages,
        distinct_users,
        graph_requests: fakes.graph.requests().len(),
        throttled: fakes.graph.audits_throttled(),
        peak_mib: f64::NAN,
    }
}

fn row(name: &str, run: &Run, records: usize) -> String {
    let peak = if run.peak_mib.is_nan() {
        "–".to_string()
    } else {
        format!("{:.1} MiB", run.peak_mib)
    };
    format!(
        "| {name} | {:.1} s | {} / {} | {} | {} | {} | {peak} |",
        run.seconds, run.distinct_users, records, run.messages, run.graph_requests, run.throttled
    )
}

#[tokio::main]
async fn main() {
    let records = number("--records", 10_000);
    let idle_ticks = number("--idle-ticks", 10);

    let (ours, idle, store_kind) = signup_bridge(records, idle_ticks).await;
    assert_eq!(ours.distinct_users, records, "every user handed over");
    assert_eq!(ours.messages, records, "each exactly once");
    let seed_literal = seed_loop(records, false).await;
    let seed_patient = seed_loop(records, true).await;

    println!(
        "PollAuditLogs benchmark: {records} sign-ups in the window, fake Graph enforcing {AUDIT_LIMIT} requests per {} s (429 + Retry-After), {store_kind}",
        AUDIT_WINDOW.as_secs()
    );
    println!(
        "machine: {} cores; fakes and store on the same machine",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!();
    println!("| mode | time to enqueue | users enqueued | messages | Graph requests | 429s | peak memory |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", row("signup-bridge (POLL_PAGE_SIZE 500, paced)", &ours, records));
    println!(
        "{}",
        row("seed: default pages, no pacing, stops at a 429", &seed_literal, records)
    );
    println!(
        "{}",
        row(
            "seed, best case: same, waits Retry-After on a 429",
            &seed_patient,
            records
        )
    );
    println!();
    println!(
        "- signup-bridge is {:.1}x faster than the seed's best case, with {:.1}x fewer Graph requests; the literal seed misses {} of {records} users ({:.0} %).",
        seed_patient.seconds / ours.seconds,
        seed_patient.graph_requests as f64 / ours.graph_requests.max(1) as f64,
        records - seed_literal.distinct_users,
        100.0 * (records - seed_literal.distinct_users) as f64 / records as f64
    );
    println!(
        "- idle tick (steady state, {} ticks): {:.1} Graph requests, {:.1} Key Vault reads, {:.1} token requests per tick; median {:.1} ms",
        idle.ticks,
        idle.graph_requests as f64 / idle.ticks as f64,
        idle.key_vault_reads as f64 / idle.ticks as f64,
        idle.token_requests as f64 / idle.ticks as f64,
        idle.median_ms
    );
}
