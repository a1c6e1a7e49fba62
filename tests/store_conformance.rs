//! The state store's behaviour, one suite run against both implementations: the embedded
//! store (a temporary directory) and Azure Storage on a real Azurite.
//!
//! Azurite comes from `./scripts/test`, which exports `SIGNUP_TEST_STORAGE_CONNECTION_STRING`.
//! Without it the Azure half prints "skipped: Azurite not running" and passes, unless
//! `SIGNUP_TEST_REQUIRE_SERVICES=1` (as under `./scripts/test`), where it fails. Every Azure
//! test gets its own container and queue name prefix, so the tests share one Azurite.
//!
//! Timing: delays and visibility timeouts are checked as "not visible now, visible later"
//! by polling with a generous deadline, never as exact durations.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use signup_bridge::settings::storage::{AZURE_WEB_JOBS_STORAGE, NAME_PREFIX, StorageSettings};
use signup_bridge::store::embedded::EmbeddedStore;
use signup_bridge::store::{
    CheckpointName, ExpectedVersion, FAILED_QUEUE, MAX_VISIBILITY, PROVISION_QUEUE, QueueName, ReceivedMessage, Store,
    StoreError, open,
};
use uuid::Uuid;

/// How long a test waits for a delayed or timed-out message to become visible.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The suite: one function per behaviour, each taking any store.

async fn checkpoint_create_read_update(store: &dyn Store) {
    let name = CheckpointName::parse("audit-log").unwrap();
    assert!(
        store.read_checkpoint(&name).await.unwrap().is_none(),
        "no checkpoint yet"
    );

    let v1 = store
        .write_checkpoint(
            &name,
            br#"{"watermark":"2025-01-01T00:00:00Z"}"#,
            &ExpectedVersion::Absent,
        )
        .await
        .unwrap();
    let read = store.read_checkpoint(&name).await.unwrap().expect("written");
    assert_eq!(read.version, v1);
    assert_eq!(read.value, br#"{"watermark":"2025-01-01T00:00:00Z"}"#);
    let json: serde_json::Value = read.json().unwrap();
    assert_eq!(json["watermark"], "2025-01-01T00:00:00Z");

    let v2 = store
        .write_checkpoint(
            &name,
            br#"{"watermark":"2025-01-01T00:05:00Z"}"#,
            &ExpectedVersion::from_read(Some(&read)),
        )
        .await
        .unwrap();
    assert_ne!(v1, v2, "a write makes a new version");
    let read = store.read_checkpoint(&name).await.unwrap().unwrap();
    assert_eq!(
        (read.version.clone(), read.value.as_slice()),
        (v2, &br#"{"watermark":"2025-01-01T00:05:00Z"}"#[..])
    );

    // Stale and "create" preconditions fail once the document moved on.
    let stale = store
        .write_checkpoint(&name, b"{}", &ExpectedVersion::Matches(v1))
        .await
        .unwrap_err();
    assert!(stale.is_conflict(), "{stale}");
    let exists = store
        .write_checkpoint(&name, b"{}", &ExpectedVersion::Absent)
        .await
        .unwrap_err();
    assert!(exists.is_conflict(), "{exists}");
    assert_eq!(
        store.read_checkpoint(&name).await.unwrap().unwrap(),
        read,
        "failed writes change nothing"
    );

    // Checkpoints are separate documents.
    let other = CheckpointName::parse("users-source").unwrap();
    assert!(store.read_checkpoint(&other).await.unwrap().is_none());
}

async fn documents_are_bytes_and_may_be_empty(store: &dyn Store) {
    let name = CheckpointName::parse("bytes").unwrap();
    let v1 = store
        .write_checkpoint(&name, b"", &ExpectedVersion::Absent)
        .await
        .unwrap();
    let read = store.read_checkpoint(&name).await.unwrap().unwrap();
    assert_eq!((read.version, read.value.len()), (v1.clone(), 0));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .write_checkpoint(&name, &binary, &ExpectedVersion::Matches(v1))
        .await
        .unwrap();
    assert_eq!(store.read_checkpoint(&name).await.unwrap().unwrap().value, binary);
}

async fn conflicting_writers_exactly_one_wins(store: &dyn Store) {
    let name = CheckpointName::parse("contended").unwrap();

    // Two creators.
    let (a, b) = tokio::join!(
        store.write_checkpoint(&name, b"\"a\"", &ExpectedVersion::Absent),
        store.write_checkpoint(&name, b"\"b\"", &ExpectedVersion::Absent),
    );
    let winner = exactly_one_winner([(a, "\"a\""), (b, "\"b\"")]);
    let read = store.read_checkpoint(&name).await.unwrap().unwrap();
    assert_eq!(read.value, winner.as_bytes());

    // Two updaters from the same read.
    let expected = ExpectedVersion::from_read(Some(&read));
    let (c, d) = tokio::join!(
        store.write_checkpoint(&name, b"\"c\"", &expected),
        store.write_checkpoint(&name, b"\"d\"", &expected),
    );
    let winner = exactly_one_winner([(c, "\"c\""), (d, "\"d\"")]);
    assert_eq!(
        store.read_checkpoint(&name).await.unwrap().unwrap().value,
        winner.as_bytes()
    );
}

fn exactly_one_winner<T: std::fmt::Debug>(results: [(Result<T, StoreError>, &'static str); 2]) -> &'static str {
    let mut winners = Vec::new();
    for (result, value) in results {
        match result {
            Ok(_) => winners.push(value),
            Err(error) => assert!(error.is_conflict(), "the loser gets a conflict, not {error}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    winners[0]
}

async fn ledger_read_write_list(store: &dyn Store) {
    assert!(store.list_ledgers().await.unwrap().is_empty());
    let alice = Uuid::new_v4();
    let bob = Uuid::new_v4();
    assert!(store.read_ledger(alice).await.unwrap().is_none());

    let v1 = store
        .write_ledger(alice, br#"{"stripe":{"state":"pending"}}"#, &ExpectedVersion::Absent)
        .await
        .unwrap();
    store
        .write_ledger(bob, br#"{"stripe":{"state":"done"}}"#, &ExpectedVersion::Absent)
        .await
        .unwrap();
    let v2 = store
        .write_ledger(
            alice,
            br#"{"stripe":{"state":"done"}}"#,
            &ExpectedVersion::Matches(v1.clone()),
        )
        .await
        .unwrap();
    let conflict = store
        .write_ledger(alice, b"{}", &ExpectedVersion::Matches(v1))
        .await
        .unwrap_err();
    assert!(conflict.is_conflict(), "{conflict}");

    let read = store.read_ledger(alice).await.unwrap().unwrap();
    assert_eq!(
        (read.version, read.value),
        (v2, br#"{"stripe":{"state":"done"}}"#.to_vec())
    );

    let listed: HashSet<Uuid> = store.list_ledgers().await.unwrap().into_iter().collect();
    assert_eq!(listed, HashSet::from([alice, bob]));
}

async fn queue_send_receive_delete(store: &dyn Store) {
    assert_eq!(store.approximate_count(&PROVISION_QUEUE).await.unwrap(), 0);
    store.send(&PROVISION_QUEUE, "first", Duration::ZERO).await.unwrap();
    store.send(&PROVISION_QUEUE, "second", Duration::ZERO).await.unwrap();
    assert_eq!(store.approximate_count(&PROVISION_QUEUE).await.unwrap(), 2);
    assert!(
        store
            .receive(&FAILED_QUEUE, 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "queues are separate"
    );

    let received = store
        .receive(&PROVISION_QUEUE, 10, Duration::from_secs(60))
        .await
        .unwrap();
    let texts: HashSet<&str> = received.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, HashSet::from(["first", "second"]));
    for message in &received {
        assert_eq!(message.dequeue_count, 1);
        assert!(message.next_visible_at > message.inserted_at);
    }
    assert!(
        store
            .receive(&PROVISION_QUEUE, 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "received messages are invisible"
    );
    assert_eq!(
        store.approximate_count(&PROVISION_QUEUE).await.unwrap(),
        2,
        "until deleted"
    );

    for message in &received {
        store.delete(&PROVISION_QUEUE, message).await.unwrap();
    }
    assert_eq!(store.approximate_count(&PROVISION_QUEUE).await.unwrap(), 0);
    let again = store.delete(&PROVISION_QUEUE, &received[0]).await.unwrap_err();
    assert!(matches!(again, StoreError::NotFound(_)), "{again}");

    // `max` limits a receive.
    for n in 0..3 {
        store
            .send(&FAILED_QUEUE, &format!("dead {n}"), Duration::ZERO)
            .await
            .unwrap();
    }
    let one = store.receive(&FAILED_QUEUE, 1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(one.len(), 1);
    let rest = store.receive(&FAILED_QUEUE, 32, Duration::from_secs(60)).await.unwrap();
    assert_eq!(rest.len(), 2);
}

async fn a_delayed_message_is_invisible_until_due(store: &dyn Store) {
    store
        .send(&PROVISION_QUEUE, "later", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "not visible right after sending"
    );
    assert_eq!(
        store.approximate_count(&PROVISION_QUEUE).await.unwrap(),
        1,
        "but counted"
    );
    let message = receive_eventually(store, &PROVISION_QUEUE)
        .await
        .expect("visible once due");
    assert_eq!((message.text.as_str(), message.dequeue_count), ("later", 1));
}

async fn an_undeleted_message_reappears_after_its_visibility_timeout(store: &dyn Store) {
    store.send(&PROVISION_QUEUE, "work", Duration::ZERO).await.unwrap();
    let first = store
        .receive(&PROVISION_QUEUE, 1, Duration::from_secs(1))
        .await
        .unwrap();
    let [first] = <[ReceivedMessage; 1]>::try_from(first).expect("one message");
    assert_eq!(first.dequeue_count, 1);
    // The consumer "dies" here: no delete.

    let second = receive_eventually(store, &PROVISION_QUEUE).await.expect("redelivered");
    assert_eq!(second.id, first.id);
    assert_eq!(second.text, "work");
    assert_eq!(second.dequeue_count, 2);
    assert_ne!(second.pop_receipt, first.pop_receipt);

    let stale = store.delete(&PROVISION_QUEUE, &first).await.unwrap_err();
    assert!(
        matches!(stale, StoreError::NotFound(_)),
        "the first receipt is void: {stale}"
    );
    store.delete(&PROVISION_QUEUE, &second).await.unwrap();
    assert_eq!(store.approximate_count(&PROVISION_QUEUE).await.unwrap(), 0);
}

async fn set_visibility_releases_or_delays_a_message(store: &dyn Store) {
    store.send(&PROVISION_QUEUE, "retry me", Duration::ZERO).await.unwrap();
    let [message] = <[ReceivedMessage; 1]>::try_from(
        store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(300))
            .await
            .unwrap(),
    )
    .expect("one message");

    // Released at once: visible again, the dequeue counted on the next receive.
    let released = store
        .set_visibility(&PROVISION_QUEUE, &message, Duration::ZERO)
        .await
        .unwrap();
    assert_ne!(released.pop_receipt, message.pop_receipt);
    let [again] = <[ReceivedMessage; 1]>::try_from(
        store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(300))
            .await
            .unwrap(),
    )
    .expect("visible after release");
    assert_eq!((again.id.as_str(), again.dequeue_count), (message.id.as_str(), 2));

    // Delayed: invisible now, visible later.
    let delayed = store
        .set_visibility(&PROVISION_QUEUE, &again, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let late = receive_eventually(store, &PROVISION_QUEUE)
        .await
        .expect("visible after the delay");
    assert_eq!((late.id.as_str(), late.dequeue_count), (message.id.as_str(), 3));
    let void = store
        .set_visibility(&PROVISION_QUEUE, &delayed, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(void, StoreError::NotFound(_)), "{void}");
}

async fn message_text_round_trips(store: &dyn Store) {
    let texts = [
        r#"{"objectId":"6b3f…","source":"audit","name":"Zoë Ñandú 山田 🚀"}"#.to_string(),
        "<xml attr=\"1\">&amp; ' \" </xml>\n\ttabs and newlines\r\n".to_string(),
        "plain".to_string(),
        "é".repeat(20_000), // 40 000 bytes: near the limit
    ];
    for text in &texts {
        store.send(&PROVISION_QUEUE, text, Duration::ZERO).await.unwrap();
    }
    let mut received = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while received.len() < texts.len() && Instant::now() < deadline {
        let batch = store
            .receive(&PROVISION_QUEUE, 32, Duration::from_secs(60))
            .await
            .unwrap();
        received.extend(batch.into_iter().map(|m| m.text));
    }
    received.sort();
    let mut expected = texts.to_vec();
    expected.sort();
    assert_eq!(received, expected);
}

async fn out_of_range_requests_are_refused(store: &dyn Store) {
    let too_long = MAX_VISIBILITY + Duration::from_secs(1);
    assert!(matches!(
        store.send(&PROVISION_QUEUE, "x", too_long).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.send(&PROVISION_QUEUE, &"x".repeat(50_000), Duration::ZERO).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.receive(&PROVISION_QUEUE, 1, too_long).await,
        Err(StoreError::Invalid(_))
    ));
    // The longest delay is accepted (messages never expire, so it is below the time-to-live).
    store.send(&FAILED_QUEUE, "in a week", MAX_VISIBILITY).await.unwrap();
    assert!(
        store
            .receive(&FAILED_QUEUE, 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.approximate_count(&FAILED_QUEUE).await.unwrap(), 1);
}

async fn receive_eventually(store: &dyn Store, queue: &QueueName) -> Option<ReceivedMessage> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(message) = store.receive(queue, 1, Duration::from_secs(60)).await.unwrap().pop() {
            return Some(message);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------
// The two implementations.

struct Embedded {
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

async fn embedded() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    Embedded { store, _dir: dir }
}

use support::stores::{azure, azurite_connection_string, unique_prefix};

macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let store = super::embedded().await;
                    super::$behaviour(&store.store).await;
                }
            )*
        }

        mod azure_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    if let Some(store) = super::azure().await {
                        super::$behaviour(store.as_ref()).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    checkpoint_create_read_update,
    documents_are_bytes_and_may_be_empty,
    conflicting_writers_exactly_one_wins,
    ledger_read_write_list,
    queue_send_receive_delete,
    a_delayed_message_is_invisible_until_due,
    an_undeleted_message_reappears_after_its_visibility_timeout,
    set_visibility_releases_or_delays_a_message,
    message_text_round_trips,
    out_of_range_requests_are_refused,
);

// ---------------------------------------------------------------------------------------
// Implementation-specific behaviour.

/// Two processes on one directory: separate handles on the lock file, as the CLI and `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_stores_sharing_a_directory_see_each_other_and_conflict_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let one = EmbeddedStore::open(dir.path()).await.unwrap();
    let two = EmbeddedStore::open(dir.path()).await.unwrap();
    let name = CheckpointName::parse("shared").unwrap();

    let mut wins = 0;
    for round in 0..20 {
        let read = one.read_checkpoint(&name).await.unwrap();
        let expected = ExpectedVersion::from_read(read.as_ref());
        let (value_a, value_b) = (format!("{round}a"), format!("{round}b"));
        let (a, b) = tokio::join!(
            one.write_checkpoint(&name, value_a.as_bytes(), &expected),
            two.write_checkpoint(&name, value_b.as_bytes(), &expected),
        );
        assert_eq!(
            a.is_ok() as u32 + b.is_ok() as u32,
            1,
            "round {round}: exactly one wins"
        );
        wins += a.is_ok() as u32;
    }
    assert!(wins <= 20);

    two.send(&PROVISION_QUEUE, "from two", Duration::ZERO).await.unwrap();
    let [message] =
        <[ReceivedMessage; 1]>::try_from(one.receive(&PROVISION_QUEUE, 5, Duration::from_secs(60)).await.unwrap())
            .unwrap();
    assert!(
        two.receive(&PROVISION_QUEUE, 5, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    two.delete(&PROVISION_QUEUE, &message).await.unwrap();
}

/// A receiver that dies (its store dropped) loses nothing: a new process sees the message
/// again after the timeout.
#[tokio::test]
async fn embedded_messages_survive_a_crash_between_receive_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        store.send(&PROVISION_QUEUE, "survivor", Duration::ZERO).await.unwrap();
        let received = store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(received.len(), 1);
    }
    let restarted = EmbeddedStore::open(dir.path()).await.unwrap();
    let message = receive_eventually(&restarted, &PROVISION_QUEUE)
        .await
        .expect("redelivered after restart");
    assert_eq!((message.text.as_str(), message.dequeue_count), ("survivor", 2));
}

/// The Functions host's queue trigger decodes base64 by default: what this store sends
/// must be base64 on the wire.
#[tokio::test]
async fn azure_messages_are_base64_on_the_wire_for_the_functions_host() {
    use base64::Engine as _;
    let Some(connection) = azurite_connection_string() else {
        return;
    };
    let prefix = unique_prefix();
    let settings = StorageSettings::from_map(&HashMap::from([
        (AZURE_WEB_JOBS_STORAGE.to_string(), connection),
        (NAME_PREFIX.to_string(), prefix.clone()),
    ]))
    .unwrap();
    let StorageSettings::Azure(azure) = &settings else {
        panic!()
    };
    let store = open(&settings, None).await.unwrap();
    let text = r#"{"objectId":"x","name":"Zoë"}"#;
    store.send(&PROVISION_QUEUE, text, Duration::ZERO).await.unwrap();

    // Peek with a raw SDK client and an independently minted SAS.
    let signup_bridge::settings::storage::StorageAuth::SharedKey { account_name, key } = &azure.auth else {
        panic!("the test connection string has a key")
    };
    let sas = signup_bridge::store::sas::mint(account_name, key, chrono::Utc::now() + chrono::Duration::hours(1), true);
    let mut url = signup_bridge::store::connection::resource_url(
        &azure.queue_endpoint,
        &format!("{prefix}-{}", PROVISION_QUEUE.as_str()),
    );
    url.set_query(Some(sas.query()));
    let raw = azure_storage_queue::QueueClient::new(url, None, None).unwrap();
    let peeked = raw.peek_messages(None).await.unwrap().into_model().unwrap();
    let wire = peeked.items.unwrap().pop().unwrap().message_text.unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(&wire).unwrap(),
        text.as_bytes()
    );
}

/// A SAS connection string is used as it is.
#[tokio::test]
async fn azure_store_works_with_a_sas_connection_string() {
    let Some(connection) = azurite_connection_string() else {
        return;
    };
    let keyed = StorageSettings::from_map(&HashMap::from([(AZURE_WEB_JOBS_STORAGE.to_string(), connection)])).unwrap();
    let StorageSettings::Azure(azure) = &keyed else {
        panic!()
    };
    let signup_bridge::settings::storage::StorageAuth::SharedKey { account_name, key } = &azure.auth else {
        panic!("the test connection string has a key")
    };
    let sas = signup_bridge::store::sas::mint(account_name, key, chrono::Utc::now() + chrono::Duration::hours(1), true);
    let connection = format!(
        "BlobEndpoint={};QueueEndpoint={};SharedAccessSignature={}",
        azure.blob_endpoint,
        azure.queue_endpoint,
        sas.query()
    );
    let settings = StorageSettings::from_map(&HashMap::from([
        (AZURE_WEB_JOBS_STORAGE.to_string(), connection),
        (NAME_PREFIX.to_string(), unique_prefix()),
    ]))
    .unwrap();
    let store = open(&settings, None).await.unwrap();
    checkpoint_create_read_update(store.as_ref()).await;
    store.send(&PROVISION_QUEUE, "via sas", Duration::ZERO).await.unwrap();
    let received = store
        .receive(&PROVISION_QUEUE, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(received[0].text, "via sas");
}

/// A wrong key is a configuration error, and no error text carries a signature.
#[tokio::test]
async fn azure_errors_name_the_problem_without_the_signature() {
    let Some(connection) = azurite_connection_string() else {
        return;
    };
    let keyed = StorageSettings::from_map(&HashMap::from([(AZURE_WEB_JOBS_STORAGE.to_string(), connection)])).unwrap();
    let StorageSettings::Azure(azure) = &keyed else {
        panic!()
    };
    let wrong_key = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=d3Jvbmcta2V5LXdyb25nLWtleQ==;\
         BlobEndpoint={};QueueEndpoint={}",
        azure.blob_endpoint, azure.queue_endpoint
    );
    let settings = StorageSettings::from_map(&HashMap::from([
        (AZURE_WEB_JOBS_STORAGE.to_string(), wrong_key),
        (NAME_PREFIX.to_string(), unique_prefix()),
    ]))
    .unwrap();
    let store = open(&settings, None).await.unwrap();
    let error = store.send(&PROVISION_QUEUE, "x", Duration::ZERO).await.unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error}");
    let text = format!("{error} {error:?}");
    assert!(text.contains("403"), "{text}");
    assert_no_signature(&text);

    // Nothing listens on port 9 of loopback: a connection error, transient, no signature.
    let closed = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=d3Jvbmcta2V5;\
                  BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1";
    let settings = StorageSettings::from_map(&HashMap::from([(
        AZURE_WEB_JOBS_STORAGE.to_string(),
        closed.to_string(),
    )]))
    .unwrap();
    let store = open(&settings, None).await.unwrap();
    let error = store
        .read_checkpoint(&CheckpointName::parse("x").unwrap())
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_no_signature(&format!("{error} {error:?}"));
}

fn assert_no_signature(text: &str) {
    let lower = text.to_ascii_lowercase();
    for (at, _) in lower.match_indices("sig=") {
        assert!(lower[at + 4..].starts_with("redacted"), "a signature leaked: {text}");
    }
}
