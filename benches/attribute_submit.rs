//! AttributeSubmit benchmark: the release binary as the Functions host runs it, token
//! validation on, the example rules, concurrent load on loopback. Prints figures; asserts
//! only that every answer was a 200 with one action.
//!
//!     cargo bench --bench attribute_submit [-- --requests 20000 --concurrency 32]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::bench::{memory_mib, number};
use support::handler::RunningHandler;
use support::jwks_server::JwksServer;
use support::tokens::{CLIENT_ID, TENANT, TestSigningKey, bearer, valid_claims};

const SAMPLES: [&str; 2] = [
    include_str!("../tests/fixtures/samples/attribute-collection-submit-request.json"),
    include_str!("../tests/fixtures/samples/attribute-collection-submit-request-no-identities.json"),
];
const EXAMPLE_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/signup-rules.example.toml");
const ENTRA_DEFAULT_BUDGET_MS: f64 = 1000.0;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let requests = number("--requests", 20_000);
    let concurrency = number("--concurrency", 32);
    let starts = number("--starts", 10);

    let key = TestSigningKey::generate("bench-key");
    let jwks = JwksServer::start(vec![key.jwk_json()]);
    let jwks_url = jwks.url().to_string();
    let settings = [
        ("ENTRA_TENANT_ID", TENANT),
        ("EXTENSION_APP_ID", CLIENT_ID),
        ("EXTENSION_JWKS_URLS", jwks_url.as_str()),
        ("SIGNUP_RULES_PATH", EXAMPLE_RULES),
        ("RUST_LOG", "info"),
    ];

    // Process start to the first successful readiness probe, probing every 1 ms (the host
    // probes every 25 ms, so it sees the handler ready at its first or second probe).
    let mut start_times = Vec::new();
    for _ in 0..starts {
        let handler = RunningHandler::start_probing_every(&settings, Duration::from_millis(1)).await;
        start_times.push(handler.started_in);
    }
    start_times.sort();

    let handler = RunningHandler::start(&settings).await;
    let url = handler.url("/api/AttributeSubmit");
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    // Entra sends a fresh token on every call; mint a pool so signatures are verified anew.
    let tokens: Vec<String> = (0..64)
        .map(|_| bearer(&key.sign(&valid_claims(TENANT, CLIENT_ID))))
        .collect();

    // Warm-up: connections open, keys fetched.
    for index in 0..200 {
        let response = client
            .post(&url)
            .header("Authorization", &tokens[index % tokens.len()])
            .body(SAMPLES[0])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let started = Instant::now();
    let per_worker = requests / concurrency;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let tokens = tokens.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for index in 0..per_worker {
                let sample = SAMPLES[(worker + index) % SAMPLES.len()];
                let token = &tokens[(worker * 7 + index) % tokens.len()];
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("Authorization", token)
                    .body(sample)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                assert!(body.windows(11).any(|w| w == b"\"actions\":["), "one action");
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let (rss, peak) = memory_mib(handler.pid());

    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = *latencies.last().unwrap();
    println!("AttributeSubmit benchmark (release build, token validation on, signup-rules.example.toml)");
    println!(
        "machine: {} cores; load generator on the same machine",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!("| requests / concurrency | {} / {concurrency} |", latencies.len());
    println!(
        "| throughput | {:.0} requests/s |",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!("| latency p50 | {:.2} ms |", millis(p50));
    println!("| latency p99 | {:.2} ms |", millis(p99));
    println!("| latency max | {:.2} ms |", millis(max));
    println!(
        "| margin to Entra's default 1000 ms budget at p99 | {:.0}x ({:.2}% of the budget used) |",
        ENTRA_DEFAULT_BUDGET_MS / millis(p99),
        100.0 * millis(p99) / ENTRA_DEFAULT_BUDGET_MS
    );
    println!(
        "| process start to first GET / 200 (median of {starts}, probe every 1 ms) | {:.1} ms (min {:.1}, max {:.1}) |",
        millis(percentile(&start_times, 0.5)),
        millis(start_times[0]),
        millis(*start_times.last().unwrap())
    );
    println!("| resident memory after load (peak) | {rss:.1} MiB ({peak:.1} MiB) |");
}
