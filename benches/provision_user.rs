//! ProvisionUser benchmark: users queued for `signup-bridge run` (the release binary, its
//! queue worker with the host's semantics) and provisioned into every destination (directory
//! fix-ups, a group, Mailchimp, Stripe with the id written back, Salesforce, PostgreSQL),
//! every fake answering after 50-200 ms; the users per minute at each
//! `RUN_PROVISION_CONCURRENCY`, and the seed design's loop (sequential, no ledger) beside
//! them. Prints figures; asserts that every user ended up in every destination exactly once
//! and that Mailchimp never saw more than 10 requests at once.
//!
//!     cargo bench --bench provision_user [-- --users 2000 --sequential-users 250 --concurrency 1,4,8,16,32,64]
//!
//! Sequential modes (concurrency 1, the seed) run `--sequential-users` users: their rate is
//! steady after the first few, and 2,000 users would take about 40 minutes each.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use signup_bridge::handover::{DetectionSource, ProvisionMessage};
use signup_bridge::store::PROVISION_QUEUE;
use support::bench::{argument, number};
use support::chaos_proxy::Plan;
use support::handler::{BINARY, free_port};
use support::world::{GROUP, MAILCHIMP_KEY, MAILCHIMP_LIST, SF_CLIENT, SF_FIELD, SF_SECRET, STRIPE_KEY, World};

const LATENCY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(200));

async fn world(seed: u64) -> World {
    let world = World::start(|seed| Plan::latency(LATENCY.0, LATENCY.1, seed), seed).await;
    // Mailchimp's latency is inside the fake, so its count of requests at once is real.
    world
        .proxies
        .mailchimp
        .set_plan(Plan::latency(Duration::ZERO, Duration::ZERO, seed));
    world.mailchimp.set_latency(LATENCY.0, LATENCY.1);
    world
}

/// Users finished: PostgreSQL is the last destination, else Salesforce.
async fn finished(world: &World) -> usize {
    match &world.schema {
        Some(schema) => schema.rows_per_user().await.len(),
        None => world.salesforce.contacts().len(),
    }
}

struct Measured {
    label: String,
    users: usize,
    seconds: f64,
    mailchimp_at_once: usize,
    mailchimp_connections: usize,
    complete: bool,
}

impl Measured {
    fn per_minute(&self) -> f64 {
        self.users as f64 * 60.0 / self.seconds
    }
}

async fn signup_bridge(concurrency: usize, users: usize, seed: u64) -> Measured {
    let world = world(seed).await;
    let ids = world.add_users(users);
    for id in &ids {
        let message = ProvisionMessage {
            user_id: *id,
            detected_at: chrono::Utc::now(),
            source: DetectionSource::AuditLog,
            audit_record_id: None,
        };
        world
            .store
            .send(&PROVISION_QUEUE, &message.to_json(), Duration::ZERO)
            .await
            .unwrap();
    }
    let logs = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(logs.path().join("run.log")).unwrap();
    let started = Instant::now();
    let mut run = tokio::process::Command::new(BINARY)
        .arg("run")
        .env_clear()
        .envs(world.settings())
        .env("POLL_START_AT", chrono::Utc::now().to_rfc3339())
        .env("RUN_PROVISION_CONCURRENCY", concurrency.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut last_progress = (0, Instant::now());
    loop {
        let done = finished(&world).await;
        if done >= users {
            break;
        }
        if done > last_progress.0 {
            last_progress = (done, Instant::now());
        }
        assert!(
            last_progress.1.elapsed() < Duration::from_secs(120),
            "no progress for 2 minutes at {done}/{users}; log in {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    run.start_kill().unwrap();
    let _ = run.wait().await;
    let tally = world.tally(&ids).await;
    Measured {
        label: format!("signup-bridge, RUN_PROVISION_CONCURRENCY={concurrency}"),
        users,
        seconds,
        mailchimp_at_once: world.mailchimp.max_in_flight(),
        mailchimp_connections: world.proxies.mailchimp.max_open_connections(),
        complete: tally.complete(world.schema.is_some()),
    }
}

/// The seed design: for each user, one call after another, no ledger, no search before
/// create, no retries; fewer calls than signup-bridge makes (no directory fix-ups, no
/// write-back), which favours the seed.
async fn seed_loop(users: usize, seed: u64) -> Measured {
    let world = world(seed).await;
    let ids = world.add_users(users);
    let http = world.fakes.http();
    let settings: std::collections::HashMap<String, String> = world.settings().into_iter().collect();
    let graph = settings["GRAPH_BASE_URL"].trim_end_matches('/').to_string();
    let graph_scope = format!(
        "{}/.default",
        url::Url::parse(&graph).unwrap().origin().ascii_serialization()
    );
    let mailchimp = settings["MAILCHIMP_BASE_URL"].trim_end_matches('/').to_string();
    let stripe = settings["STRIPE_BASE_URL"].trim_end_matches('/').to_string();
    let salesforce = settings["SALESFORCE_LOGIN_URL"].trim_end_matches('/').to_string();
    let database = match &world.schema {
        Some(schema) => {
            let (client, connection) = tokio_postgres::connect(&schema.database_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(include_str!("../migrations/0001_signup_users.sql"))
                .await
                .unwrap();
            Some(client)
        }
        None => None,
    };
    let credential = world.fakes.credential();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("seed:{MAILCHIMP_KEY}"));

    let started = Instant::now();
    let token: Value = http
        .post(format!("{salesforce}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", SF_CLIENT),
            ("client_secret", SF_SECRET),
        ])
        .call("salesforce token")
        .await;
    let (sf_token, instance) = (
        token["access_token"].as_str().unwrap().to_string(),
        token["instance_url"].as_str().unwrap().to_string(),
    );
    for id in &ids {
        let graph_token = credential.token(&graph_scope).await.unwrap();
        let user: Value = http
            .get(format!("{graph}/v1.0/users/{id}"))
            .bearer_auth(graph_token.token.secret())
            .call("graph user")
            .await;
        let email = user["mail"].as_str().unwrap().to_string();
        let (given, surname) = (user["givenName"].as_str().unwrap(), user["surname"].as_str().unwrap());
        http.post(format!("{graph}/v1.0/groups/{GROUP}/members/$ref"))
            .bearer_auth(graph_token.token.secret())
            .json(&json!({"@odata.id": format!("{graph}/v1.0/directoryObjects/{id}")}))
            .call("group")
            .await;
        let hash = support::fake_mailchimp::subscriber_hash(&email);
        http.put(format!("{mailchimp}/3.0/lists/{MAILCHIMP_LIST}/members/{hash}"))
            .header("Authorization", format!("Basic {basic}"))
            .json(&json!({"email_address": email, "status_if_new": "subscribed"}))
            .call("mailchimp")
            .await;
        let customer: Value = http
            .post(format!("{stripe}/v1/customers"))
            .bearer_auth(STRIPE_KEY)
            .form(&[
                ("email", email.as_str()),
                ("name", &format!("{given} {surname}")),
                ("metadata[entra_object_id]", &id.to_string()),
            ])
            .call("stripe")
            .await;
        assert!(customer["id"].is_string(), "stripe: {customer}");
        http.patch(format!(
            "{instance}/services/data/v61.0/sobjects/Contact/{SF_FIELD}/{id}"
        ))
        .bearer_auth(&sf_token)
        .json(&json!({"FirstName": given, "LastName": surname, "Email": email}))
        .call("salesforce")
        .await;
        if let Some(database) = &database {
            database
                .execute(
                    "INSERT INTO signup_users (entra_object_id, email, display_name, external_ids, last_provisioned_at) \
                     VALUES ($1, $2, $3, '{}'::jsonb, now()) ON CONFLICT DO NOTHING",
                    &[id, &email, &format!("{given} {surname}")],
                )
                .await
                .unwrap();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Measured {
        label: "seed: one user after another, one call at a time, no ledger".into(),
        users,
        seconds,
        mailchimp_at_once: world.mailchimp.max_in_flight(),
        mailchimp_connections: world.proxies.mailchimp.max_open_connections(),
        complete: true,
    }
}

/// One call of the seed's loop: it has no retries, so a failure stops the benchmark.
trait SeedCall {
    async fn call(self, what: &str) -> Value;
}

impl SeedCall for reqwest::RequestBuilder {
    async fn call(self, what: &str) -> Value {
        let response = self.send().await.unwrap_or_else(|error| panic!("{what}: {error}"));
        let status = response.status();
        assert!(status.is_success(), "{what}: {status}");
        response.json().await.unwrap_or(Value::Null)
    }
}

#[tokio::main]
async fn main() {
    let users = number("--users", 2000);
    let sequential_users = number("--sequential-users", 250);
    let concurrencies: Vec<usize> = argument("--concurrency", "1,4,8,16,32,64")
        .split(',')
        .map(|c| c.trim().parse().expect("--concurrency 1,4,..."))
        .collect();
    let seed = fastrand::u64(..);

    let mut results = Vec::new();
    let baseline = seed_loop(sequential_users.min(users), seed).await;
    eprintln!("{}: {:.0} users/min", baseline.label, baseline.per_minute());
    for concurrency in &concurrencies {
        let count = if *concurrency == 1 {
            sequential_users.min(users)
        } else {
            users
        };
        let measured = signup_bridge(*concurrency, count, seed + *concurrency as u64).await;
        eprintln!("{}: {:.0} users/min", measured.label, measured.per_minute());
        assert!(
            measured.complete,
            "{}: not every user in every destination once",
            measured.label
        );
        assert!(
            measured.mailchimp_at_once <= 10,
            "{}: Mailchimp's limit",
            measured.label
        );
        results.push(measured);
    }

    let store_kind = if std::env::var("SIGNUP_BENCH_STORE").as_deref() != Ok("embedded")
        && support::stores::azurite_connection_string().is_some()
    {
        "state in Azure Storage on Azurite"
    } else {
        "state in the embedded store"
    };
    println!(
        "ProvisionUser benchmark: every destination (directory fix-ups, group, Mailchimp, Stripe + write-back, Salesforce, PostgreSQL), each fake answering in {}-{} ms, {store_kind}",
        LATENCY.0.as_millis(),
        LATENCY.1.as_millis()
    );
    println!(
        "machine: {} cores; fakes, store and database on the same machine",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!();
    println!(
        "| mode | users | time | users per minute | vs seed | Mailchimp requests at once (connections) | every destination exactly once |"
    );
    println!("|---|---|---|---|---|---|---|");
    for measured in std::iter::once(&baseline).chain(&results) {
        println!(
            "| {} | {} | {:.1} s | {:.0} | {:.1}x | {} ({}) | {} |",
            measured.label,
            measured.users,
            measured.seconds,
            measured.per_minute(),
            measured.per_minute() / baseline.per_minute(),
            measured.mailchimp_at_once,
            measured.mailchimp_connections,
            if measured.complete { "yes" } else { "NO" }
        );
    }
}
