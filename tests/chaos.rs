//! Chaos: sign-ups arrive while every fake fails at random (429 with `Retry-After`, 500, 503,
//! stalls past the client's timeout, connections dropped before the request or after the
//! answer) and `signup-bridge run` is killed with SIGKILL at random points and restarted.
//! At the end every user is in every destination exactly once, the checkpoint covers the
//! last sign-up, and nothing sits in the failed or poison queue.
//!
//! The bounded run is part of the suite. The long one (2,000 users, 40 kills):
//!
//!     ./scripts/test --run-ignored only chaos
//!
//! `SIGNUP_CHAOS_SEED=<n>` replays a run's faults and kill points (printed at the start).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use signup_bridge::poll_audit_logs::checkpoint::Checkpoint;
use signup_bridge::poll_audit_logs::poller::CHECKPOINT;
use signup_bridge::provisioning::destinations::Destination;
use signup_bridge::provisioning::ledger::{Ledger, State};
use signup_bridge::provisioning::worker::POISON_QUEUE;
use signup_bridge::store::{FAILED_QUEUE, PROVISION_QUEUE, Store};
use support::chaos_proxy::Plan;
use support::handler::{BINARY, free_port, keep_log};
use support::world::World;
use uuid::Uuid;

struct Chaos {
    users: usize,
    kills: usize,
    /// Sign-ups arrive in this many waves, one before each of the first kills.
    waves: usize,
    /// Chance that a request to a fake meets a fault.
    fault_rate: f64,
    /// How long the final, undisturbed process may take to finish everything.
    settle: Duration,
}

fn seed() -> u64 {
    std::env::var("SIGNUP_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Every destination of every user finished, by the ledgers.
async fn unfinished(store: &dyn Store, users: &[Uuid]) -> usize {
    let mut unfinished = 0;
    for user in users {
        let ledger: Option<Ledger> = store
            .read_ledger(*user)
            .await
            .ok()
            .flatten()
            .and_then(|document| document.json().ok());
        let done = ledger.is_some_and(|ledger| {
            Destination::ALL
                .iter()
                .all(|destination| ledger.state(*destination) == State::Done)
        });
        unfinished += usize::from(!done);
    }
    unfinished
}

fn spawn_run(settings: &[(String, String)], logs: &std::path::Path, life: usize) -> tokio::process::Child {
    let log = std::fs::File::create(logs.join(format!("run-{life:03}.log"))).unwrap();
    tokio::process::Command::new(BINARY)
        .arg("run")
        .env_clear()
        .envs(settings.iter().cloned())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("signup-bridge run starts")
}

async fn chaos(config: Chaos) {
    let seed = seed();
    println!("chaos: seed {seed} (SIGNUP_CHAOS_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let stall = Duration::from_secs(3);
    let world = World::start(|seed| Plan::faults(config.fault_rate, true, stall, seed), seed).await;
    // Graph is TLS: the proxy drops and stalls; the fake itself answers 429/500/503.
    world
        .proxies
        .graph
        .set_plan(Plan::faults(config.fault_rate / 2.0, false, stall, seed));
    world.fakes.graph.fail_at_random(config.fault_rate / 2.0, seed ^ 0x5eed);
    let users = world.add_users(config.users);
    let mut settings = world.settings();
    settings.extend(
        [
            (
                "POLL_START_AT",
                (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
            ),
            ("RUN_POLL_INTERVAL_SECONDS", "10".into()),
            ("RUN_PROVISION_CONCURRENCY", "8".into()),
            // Short waits, and enough attempts that random faults never exhaust them.
            (
                "PROVISION_RETRY_SCHEDULE",
                "1s,1s,1s,2s,2s,2s,3s,3s,3s,5s,5s,5s,5s,5s,5s".into(),
            ),
            ("DESTINATIONS_TIMEOUT_SECONDS", "2".into()),
            ("RUST_LOG", "info".into()),
        ]
        .map(|(name, value)| (name.to_string(), value)),
    );
    let logs = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // Kill at random points: during start-up, a poll, or provisioning.
    let waves: Vec<&[Uuid]> = users.chunks(config.users.div_ceil(config.waves)).collect();
    for life in 0..config.kills {
        if let Some(wave) = waves.get(life) {
            world.sign_up(wave);
        }
        let mut run = spawn_run(&settings, logs.path(), life);
        tokio::time::sleep(Duration::from_millis(rng.u64(200..3000))).await;
        run.start_kill().expect("SIGKILL");
        run.wait().await.unwrap();
    }
    for wave in waves.iter().skip(config.kills) {
        world.sign_up(wave);
    }
    let chaos_phase = started.elapsed();

    // The last life runs undisturbed (the faults go on) until everything is finished.
    let mut run = spawn_run(&settings, logs.path(), config.kills);
    let deadline = Instant::now() + config.settle;
    let store = world.store.as_ref();
    // Reading every ledger loads the store under test: only once the queue is empty.
    let mut left = None;
    while Instant::now() < deadline {
        if store.approximate_count(&PROVISION_QUEUE).await.unwrap_or(1) == 0 {
            let unfinished = unfinished(store, &users).await;
            left = Some(unfinished);
            if unfinished == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = started.elapsed();
    let left = match left {
        Some(0) => 0,
        _ => unfinished(store, &users).await,
    };
    // One more tick of the poll: it may still be in a window when the last user finished.
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.start_kill().unwrap();
    run.wait().await.unwrap();

    let mut all_logs = String::new();
    for entry in std::fs::read_dir(logs.path()).unwrap() {
        all_logs.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    keep_log("chaos-run", &all_logs);

    let tally = world.tally(&users).await;
    let checkpoint: Checkpoint = store
        .read_checkpoint(&CHECKPOINT)
        .await
        .unwrap()
        .expect("a checkpoint")
        .json()
        .unwrap();
    let failed = store.approximate_count(&FAILED_QUEUE).await.unwrap_or(u64::MAX);
    let poisoned = store.approximate_count(&POISON_QUEUE).await.unwrap_or(u64::MAX);
    let queued = store.approximate_count(&PROVISION_QUEUE).await.unwrap_or(u64::MAX);
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    for (name, proxy) in world.proxies.all() {
        for (fault, count) in proxy.faults() {
            *faults.entry(format!("{fault:?}")).or_default() += count;
        }
        println!(
            "chaos: {name}: {} requests through the proxy, {} faults",
            proxy.requests(),
            proxy.fault_count()
        );
    }
    *faults
        .entry("Graph 429/500/503 answered by the fake".into())
        .or_default() += world.fakes.graph.random_failures();
    let stripe_creates = world
        .stripe
        .calls()
        .iter()
        .filter(|call| call.method == "POST" && call.path == "/v1/customers")
        .count();

    println!(
        "chaos: {} users, {} SIGKILLs ({:.1} s), settled after {:.1} s in all, {} store ({})",
        config.users,
        config.kills,
        chaos_phase.as_secs_f64(),
        settled.as_secs_f64(),
        world.store_kind,
        if world.schema.is_some() {
            "PostgreSQL on"
        } else {
            "PostgreSQL off"
        }
    );
    println!("chaos: faults {faults:?}");
    println!(
        "chaos: stripe {} users with one customer, {} duplicates ({stripe_creates} create calls); mailchimp {}; salesforce {} ({} duplicate creations); postgres {} ({} duplicate rows); group {}; customer id written back {}",
        tally.stripe_once,
        tally.stripe_duplicates,
        tally.mailchimp_once,
        tally.salesforce_once,
        tally.salesforce_duplicates,
        tally.postgres_once,
        tally.postgres_duplicates,
        tally.in_group,
        tally.written_back
    );
    println!(
        "chaos: unfinished ledgers {left}; queued {queued}, failed {failed}, poison {poisoned}; checkpoint watermark {}, mailchimp at most {} requests at once",
        checkpoint.watermark,
        world.mailchimp.max_in_flight()
    );

    assert!(
        world
            .proxies
            .all()
            .iter()
            .map(|(_, proxy)| proxy.fault_count())
            .sum::<usize>()
            >= 10,
        "the run met faults: {faults:?}"
    );
    assert_eq!(left, 0, "every ledger finished within {:?}", config.settle);
    assert!(
        tally.complete(world.schema.is_some()),
        "every user in every destination exactly once: {tally:?}"
    );
    assert_eq!((failed, poisoned, queued), (0, 0, 0), "nothing left in any queue");
    let last_sign_up = world.fakes.graph.newest_audit_time().expect("sign-ups were recorded");
    assert!(
        checkpoint.watermark >= last_sign_up,
        "the checkpoint ({}) covers the last sign-up ({last_sign_up})",
        checkpoint.watermark
    );
    assert!(world.mailchimp.max_in_flight() <= 10, "Mailchimp's 10 connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_bounded_200_users_20_kills() {
    chaos(Chaos {
        users: 200,
        kills: 20,
        waves: 10,
        fault_rate: 0.05,
        settle: Duration::from_secs(240),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 2,000 users and 40 kills (./scripts/test --run-ignored only chaos)"]
async fn chaos_long_2000_users_40_kills() {
    chaos(Chaos {
        users: 2000,
        kills: 40,
        waves: 20,
        fault_rate: 0.05,
        settle: Duration::from_secs(900),
    })
    .await;
}
