//! PollAuditLogs against a fake Graph (time-filtered audit log, paging, injected faults)
//! and both state stores: Azure Storage on real Azurite, and the embedded store.
//! Every new user is enqueued on `signup-provision`; the checkpoint moves only when safe.

mod support;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use signup_bridge::handover::{DetectionSource, ProvisionMessage};
use signup_bridge::poll_audit_logs::checkpoint::Checkpoint;
use signup_bridge::poll_audit_logs::poller::{CHECKPOINT, PollError, PollOptions, PollSettings, Poller, SourceKind};
use signup_bridge::store::{
    CheckpointName, ExpectedVersion, PROVISION_QUEUE, QueueName, ReceivedMessage, Store, StoreError, Version, Versioned,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::fake_graph::{audit_record, graph_error};
use support::graph_fakes::GraphFakes;
use uuid::Uuid;

fn user(n: u128) -> String {
    Uuid::from_u128(0x1f0e98f5_0000_4000_8000_000000000000 + n).to_string()
}

fn minutes_ago(minutes: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(minutes)
}

fn settings(source: SourceKind) -> PollSettings {
    PollSettings {
        overlap: chrono::Duration::minutes(30),
        // The first window starts 90 minutes ago (60 + the overlap).
        first_start: Some(minutes_ago(60)),
        source,
        run_budget: Duration::from_secs(600),
        page_size: 10,
    }
}

struct Fixture {
    fakes: GraphFakes,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn poller(&self, settings: PollSettings) -> Poller {
        self.poller_on(self.store.clone(), settings)
    }

    fn poller_on(&self, store: Arc<dyn Store>, settings: PollSettings) -> Poller {
        let graph = self.fakes.graph_client(self.fakes.credential());
        Poller::new(graph, store, settings)
    }

    /// Every message on the provision queue (received and deleted).
    async fn drain(&self) -> Vec<ProvisionMessage> {
        let mut messages = Vec::new();
        loop {
            let batch = self
                .store
                .receive(&PROVISION_QUEUE, 32, Duration::from_secs(60))
                .await
                .unwrap();
            if batch.is_empty() {
                return messages;
            }
            for message in batch {
                messages.push(serde_json::from_str(&message.text).unwrap());
                self.store.delete(&PROVISION_QUEUE, &message).await.unwrap();
            }
        }
    }

    async fn checkpoint(&self) -> Option<Checkpoint> {
        self.store
            .read_checkpoint(&CHECKPOINT)
            .await
            .unwrap()
            .map(|document| document.json().unwrap())
    }
}

fn users_of(messages: &[ProvisionMessage]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        *counts.entry(message.user_id.to_string()).or_default() += 1;
    }
    counts
}

/// Runs a scenario on the embedded store and on Azurite (when it runs).
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded_store() {
                let (store, dir) = super::support::stores::embedded().await;
                super::$scenario(super::Fixture {
                    fakes: super::GraphFakes::start(),
                    store,
                    _dir: Some(dir),
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn azure_storage_on_azurite() {
                if let Some(store) = super::support::stores::azure().await {
                    super::$scenario(super::Fixture {
                        fakes: super::GraphFakes::start(),
                        store,
                        _dir: None,
                    })
                    .await;
                }
            }
        }
    };
}

async fn pages_through_everything_once(fixture: Fixture) {
    let records: Vec<Value> = (0..35)
        .map(|n| audit_record(&user(n), minutes_ago(80 - n as i64), "success"))
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (summary.records_read, summary.new_users.len(), summary.pages),
        (35, 35, 4),
        "{}",
        summary.line()
    );
    assert!(summary.window_finished);

    let messages = fixture.drain().await;
    assert_eq!(users_of(&messages).len(), 35);
    assert!(users_of(&messages).values().all(|count| *count == 1));
    let message = &messages[0];
    assert_eq!(message.source, DetectionSource::AuditLog);
    assert!(
        message
            .audit_record_id
            .as_deref()
            .is_some_and(|id| id.starts_with("Directory_"))
    );
    // The filter asked Graph for `Add user` records from the window's start.
    let request = &fixture.fakes.graph.requests()[0];
    assert!(request.query["$filter"].starts_with("activityDisplayName eq 'Add user' and activityDateTime ge "));
    assert_eq!(request.query["$top"], "10");

    // A second run finds nothing new.
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.new_users.len(), 0, "{}", summary.line());
    assert!(fixture.drain().await.is_empty());
}
on_both_stores!(pages_through_everything_once);

async fn a_backlog_of_many_pages_keeps_to_five_requests_per_ten_seconds(fixture: Fixture) {
    // 7 pages: the 6th and 7th must wait for the first requests to leave the 10 s window.
    let records: Vec<Value> = (0..65)
        .map(|n| audit_record(&user(n), minutes_ago(70), "success"))
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!((summary.pages, summary.new_users.len()), (7, 65), "{}", summary.line());
    let starts: Vec<_> = fixture
        .fakes
        .graph
        .requests()
        .iter()
        .map(|request| request.at)
        .collect();
    assert_eq!(starts.len(), 7);
    for (index, start) in starts.iter().enumerate() {
        let in_window = starts[index..]
            .iter()
            .filter(|later| later.duration_since(*start) < Duration::from_secs(10))
            .count();
        assert!(in_window <= 5, "{in_window} audit requests within 10 s");
    }
    assert_eq!(users_of(&fixture.drain().await).len(), 65);
}

mod paced {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_of_many_pages_keeps_to_five_requests_per_ten_seconds() {
        let (store, dir) = super::support::stores::embedded().await;
        let fixture = super::Fixture {
            fakes: super::GraphFakes::start(),
            store,
            _dir: Some(dir),
        };
        super::a_backlog_of_many_pages_keeps_to_five_requests_per_ten_seconds(fixture).await;
    }
}

async fn a_late_record_inside_the_overlap_is_found_exactly_once(fixture: Fixture) {
    fixture
        .fakes
        .graph
        .set_audit_log(vec![audit_record(&user(1), minutes_ago(20), "success")]);
    let poller = fixture.poller(settings(SourceKind::AuditLog));
    poller.poll_once(&PollOptions::default()).await.unwrap();
    let watermark = fixture.checkpoint().await.unwrap().watermark;

    // A sign-up from 10 minutes before the watermark reaches the audit log only now.
    fixture.fakes.graph.ingest_audit_record(audit_record(
        &user(2),
        watermark - chrono::Duration::minutes(10),
        "success",
    ));
    let summary = poller.poll_once(&PollOptions::default()).await.unwrap();
    assert_eq!(
        summary.new_users,
        vec![Uuid::parse_str(&user(2)).unwrap()],
        "{}",
        summary.line()
    );
    poller.poll_once(&PollOptions::default()).await.unwrap();

    let counts = users_of(&fixture.drain().await);
    assert_eq!(counts, BTreeMap::from([(user(1), 1), (user(2), 1)]));
}
on_both_stores!(a_late_record_inside_the_overlap_is_found_exactly_once);

async fn failures_and_other_targets_are_ignored(fixture: Fixture) {
    let mut group_target = audit_record(&user(3), minutes_ago(30), "success");
    group_target["targetResources"][0]["type"] = Value::from("Group");
    let mut capital_type = audit_record(&user(4), minutes_ago(30), "success");
    let target = capital_type["targetResources"][0].as_object_mut().unwrap();
    target.remove("type");
    target.insert("Type".into(), Value::from("User"));
    fixture.fakes.graph.set_audit_log(vec![
        audit_record(&user(1), minutes_ago(40), "success"),
        audit_record(&user(2), minutes_ago(40), "failure"),
        group_target,
        capital_type,
    ]);
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.records_read, 4);
    assert_eq!(
        users_of(&fixture.drain().await),
        BTreeMap::from([(user(1), 1), (user(4), 1)])
    );
}
on_both_stores!(failures_and_other_targets_are_ignored);

async fn a_failed_run_leaves_the_checkpoint_and_the_next_run_finds_everything(fixture: Fixture) {
    let poller = fixture.poller(settings(SourceKind::AuditLog));
    fixture
        .fakes
        .graph
        .set_audit_log(vec![audit_record(&user(0), minutes_ago(85), "success")]);
    poller.poll_once(&PollOptions::default()).await.unwrap();
    let before = fixture.store.read_checkpoint(&CHECKPOINT).await.unwrap().unwrap();

    // Inside the next window (the watermark minus the 30-minute overlap).
    let records: Vec<Value> = (1..=25)
        .map(|n| {
            audit_record(
                &user(n),
                minutes_ago(27) + chrono::Duration::seconds(n as i64 * 30),
                "success",
            )
        })
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    // Page 1 answers, then Graph fails longer than the retries last.
    fixture.fakes.graph.inject_after(
        1,
        (0..6)
            .map(|_| graph_error(500, "UnknownError", "boom", "r-1"))
            .collect(),
    );
    let error = poller.poll_once(&PollOptions::default()).await.unwrap_err();
    assert!(matches!(error, PollError::Graph(_)), "{error}");
    assert_eq!(
        fixture.store.read_checkpoint(&CHECKPOINT).await.unwrap().unwrap(),
        before,
        "checkpoint unchanged"
    );

    let summary = poller.poll_once(&PollOptions::default()).await.unwrap();
    assert!(summary.window_finished);
    let counts = users_of(&fixture.drain().await);
    // Nobody lost; the users of the page read before the failure may come twice.
    for n in 0..=25 {
        assert!(counts.contains_key(&user(n)), "user {n} lost: {counts:?}");
    }
    assert!(counts.values().all(|count| *count <= 2), "{counts:?}");
}
on_both_stores!(a_failed_run_leaves_the_checkpoint_and_the_next_run_finds_everything);

async fn throttling_is_waited_out(fixture: Fixture) {
    let records: Vec<Value> = (0..15)
        .map(|n| audit_record(&user(n), minutes_ago(60), "success"))
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    fixture
        .fakes
        .graph
        .inject(graph_error(429, "TooManyRequests", "Too many requests", "r-429").with_header("Retry-After", "1"));
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.new_users.len(), 15);
    // The 429, its retry, and the second page.
    assert_eq!(fixture.fakes.graph.requests().len(), 3);
    assert_eq!(users_of(&fixture.drain().await).len(), 15);
}
on_both_stores!(throttling_is_waited_out);

async fn an_unfinished_window_carries_on_at_the_next_tick(fixture: Fixture) {
    let records: Vec<Value> = (0..25)
        .map(|n| audit_record(&user(n), minutes_ago(70), "success"))
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    let mut hurried = settings(SourceKind::AuditLog);
    hurried.run_budget = Duration::ZERO;
    let first_start = hurried.first_start.unwrap();
    let poller = fixture.poller(hurried);
    let first = poller.poll_once(&PollOptions::default()).await.unwrap();
    assert!(!first.window_finished);
    assert_eq!((first.pages, first.new_users.len()), (1, 10), "{}", first.line());
    let checkpoint = fixture.checkpoint().await.unwrap();
    assert!(checkpoint.resume.is_some());
    assert_eq!(checkpoint.watermark, first_start, "watermark kept");

    let second = poller.poll_once(&PollOptions::default()).await.unwrap();
    let third = poller.poll_once(&PollOptions::default()).await.unwrap();
    assert!(
        !second.window_finished && third.window_finished,
        "{} / {}",
        second.line(),
        third.line()
    );
    assert!(fixture.checkpoint().await.unwrap().resume.is_none());
    let counts = users_of(&fixture.drain().await);
    assert_eq!(counts.len(), 25);
    assert!(counts.values().all(|count| *count == 1), "{counts:?}");
    // The later runs continued from the stored link, not from the start.
    let skiptokens: Vec<_> = fixture
        .fakes
        .graph
        .requests()
        .iter()
        .map(|r| r.query.get("$skiptoken").cloned())
        .collect();
    assert_eq!(skiptokens, vec![None, Some("10".to_string()), Some("20".to_string())]);
}
on_both_stores!(an_unfinished_window_carries_on_at_the_next_tick);

async fn the_users_source_gives_the_same_messages(fixture: Fixture) {
    for n in 0..12 {
        fixture.fakes.graph.add_user(serde_json::json!({
            "id": user(n),
            "createdDateTime": minutes_ago(45 - n as i64).to_rfc3339(),
        }));
    }
    fixture
        .fakes
        .graph
        .add_user(serde_json::json!({ "id": user(99), "createdDateTime": minutes_ago(60 * 24).to_rfc3339() }));
    let summary = fixture
        .poller(settings(SourceKind::Users))
        .poll_once(&PollOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.new_users.len(), 12, "{}", summary.line());
    let messages = fixture.drain().await;
    assert_eq!(users_of(&messages).len(), 12);
    assert!(
        !users_of(&messages).contains_key(&user(99)),
        "a user older than the window is not handed over"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.source == DetectionSource::Users && m.audit_record_id.is_none())
    );
    let request = &fixture.fakes.graph.requests()[0];
    assert!(
        request.query["$filter"].starts_with("createdDateTime ge "),
        "{:?}",
        request.query
    );
    assert!(!request.query.contains_key("$orderby"));
}
on_both_stores!(the_users_source_gives_the_same_messages);

async fn a_dry_run_writes_nothing(fixture: Fixture) {
    fixture
        .fakes
        .graph
        .set_audit_log(vec![audit_record(&user(1), minutes_ago(40), "success")]);
    let summary = fixture
        .poller(settings(SourceKind::AuditLog))
        .poll_once(&PollOptions {
            since: None,
            dry_run: true,
        })
        .await
        .unwrap();
    assert_eq!(summary.new_users.len(), 1);
    assert!(fixture.checkpoint().await.is_none());
    assert!(fixture.drain().await.is_empty());
}
on_both_stores!(a_dry_run_writes_nothing);

async fn a_backfill_reads_from_the_given_time(fixture: Fixture) {
    fixture.fakes.graph.set_audit_log(vec![
        audit_record(&user(1), minutes_ago(60 * 24 * 3), "success"),
        // Inside the overlap of the next window: remembered by the checkpoint.
        audit_record(&user(2), minutes_ago(10), "success"),
    ]);
    let poller = fixture.poller(settings(SourceKind::AuditLog));
    poller.poll_once(&PollOptions::default()).await.unwrap();
    assert_eq!(users_of(&fixture.drain().await), BTreeMap::from([(user(2), 1)]));
    let since = Some(minutes_ago(60 * 24 * 6));
    poller.poll_once(&PollOptions { since, dry_run: false }).await.unwrap();
    // The old sign-up is found; the recent one is still remembered and not sent again.
    assert_eq!(users_of(&fixture.drain().await), BTreeMap::from([(user(1), 1)]));
}
on_both_stores!(a_backfill_reads_from_the_given_time);

/// A store that fails the checkpoint write once: the process "crashes" after enqueueing.
struct CrashBeforeCheckpoint {
    inner: Arc<dyn Store>,
    crashed: AtomicBool,
}

/// A store whose checkpoint reads wait until two runs have both read: forces the race.
struct BothReadFirst {
    inner: Arc<dyn Store>,
    barrier: tokio::sync::Barrier,
}

macro_rules! delegate_store {
    ($type:ty, $self:ident, read_checkpoint => $read:block, write_checkpoint($name:ident, $value:ident, $expected:ident) => $write:block) => {
        #[async_trait]
        impl Store for $type {
            async fn read_checkpoint(&$self, name: &CheckpointName) -> Result<Option<Versioned>, StoreError> {
                let result = $self.inner.read_checkpoint(name).await;
                $read;
                result
            }
            async fn write_checkpoint(&$self, $name: &CheckpointName, $value: &[u8], $expected: &ExpectedVersion) -> Result<Version, StoreError> $write
            async fn read_ledger(&$self, id: Uuid) -> Result<Option<Versioned>, StoreError> { $self.inner.read_ledger(id).await }
            async fn write_ledger(&$self, id: Uuid, value: &[u8], expected: &ExpectedVersion) -> Result<Version, StoreError> {
                $self.inner.write_ledger(id, value, expected).await
            }
            async fn list_ledgers(&$self) -> Result<Vec<Uuid>, StoreError> { $self.inner.list_ledgers().await }
            async fn send(&$self, queue: &QueueName, text: &str, delay: Duration) -> Result<(), StoreError> {
                $self.inner.send(queue, text, delay).await
            }
            async fn receive(&$self, queue: &QueueName, max: u32, timeout: Duration) -> Result<Vec<ReceivedMessage>, StoreError> {
                $self.inner.receive(queue, max, timeout).await
            }
            async fn delete(&$self, queue: &QueueName, message: &ReceivedMessage) -> Result<(), StoreError> {
                $self.inner.delete(queue, message).await
            }
            async fn set_visibility(&$self, queue: &QueueName, message: &ReceivedMessage, delay: Duration) -> Result<ReceivedMessage, StoreError> {
                $self.inner.set_visibility(queue, message, delay).await
            }
            async fn approximate_count(&$self, queue: &QueueName) -> Result<u64, StoreError> { $self.inner.approximate_count(queue).await }
        }
    };
}

delegate_store!(CrashBeforeCheckpoint, self, read_checkpoint => {}, write_checkpoint(name, value, expected) => {
    if !self.crashed.swap(true, Ordering::SeqCst) {
        return Err(StoreError::Transient("the process died here".into()));
    }
    self.inner.write_checkpoint(name, value, expected).await
});

delegate_store!(BothReadFirst, self, read_checkpoint => { self.barrier.wait().await; }, write_checkpoint(name, value, expected) => {
    self.inner.write_checkpoint(name, value, expected).await
});

async fn a_crash_between_enqueue_and_checkpoint_duplicates_never_loses(fixture: Fixture) {
    let records: Vec<Value> = (0..5)
        .map(|n| audit_record(&user(n), minutes_ago(40), "success"))
        .collect();
    fixture.fakes.graph.set_audit_log(records);
    let crashing = Arc::new(CrashBeforeCheckpoint {
        inner: fixture.store.clone(),
        crashed: AtomicBool::new(false),
    });
    let poller = fixture.poller_on(crashing, settings(SourceKind::AuditLog));
    assert!(poller.poll_once(&PollOptions::default()).await.is_err());
    assert!(fixture.checkpoint().await.is_none(), "no checkpoint was written");
    poller.poll_once(&PollOptions::default()).await.unwrap();
    let counts = users_of(&fixture.drain().await);
    assert_eq!(counts.len(), 5, "nobody lost");
    assert!(
        counts.values().all(|count| *count == 2),
        "each handed over again after the crash: {counts:?}"
    );
}
on_both_stores!(a_crash_between_enqueue_and_checkpoint_duplicates_never_loses);

async fn two_concurrent_runs_do_not_both_move_the_checkpoint(fixture: Fixture) {
    fixture
        .fakes
        .graph
        .set_audit_log(vec![audit_record(&user(1), minutes_ago(40), "success")]);
    let racing: Arc<dyn Store> = Arc::new(BothReadFirst {
        inner: fixture.store.clone(),
        barrier: tokio::sync::Barrier::new(2),
    });
    let first = fixture.poller_on(racing.clone(), settings(SourceKind::AuditLog));
    let second = fixture.poller_on(racing, settings(SourceKind::AuditLog));
    let options = PollOptions::default();
    let (a, b) = tokio::join!(first.poll_once(&options), second.poll_once(&options));
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one run wins: {a:?} / {b:?}"
    );
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(PollError::Conflict)), "{loser:?}");
    assert!(fixture.checkpoint().await.is_some());
}
on_both_stores!(two_concurrent_runs_do_not_both_move_the_checkpoint);
