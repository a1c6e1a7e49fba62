//! ProvisionUser's pipeline against fakes that record every effect (Graph, Mailchimp, Stripe,
//! Salesforce), a real PostgreSQL (`SIGNUP_TEST_DATABASE_URL`), and both state stores
//! (Azure Storage on Azurite, and the embedded store). The store is wrapped to record what
//! the queues were sent, so retry delays are checked as the queue received them.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use signup_bridge::handover::{DetectionSource, ProvisionMessage};
use signup_bridge::provisioning::destinations::{Destination, ObjectId};
use signup_bridge::provisioning::ledger::{Ledger, State};
use signup_bridge::provisioning::{DeadLetter, Disposition, Pipeline, operations};
use signup_bridge::settings::{Scope, Settings};
use signup_bridge::store::{
    CheckpointName, ExpectedVersion, FAILED_QUEUE, PROVISION_QUEUE, QueueName, ReceivedMessage, Store, StoreError,
    Version, Versioned,
};
use support::fake_mailchimp::FakeMailchimp;
use support::fake_salesforce::FakeSalesforce;
use support::fake_stripe::FakeStripe;
use support::graph_fakes::GraphFakes;
use support::postgres::TestSchema;
use uuid::Uuid;

const USER: &str = "84360e8b-3321-4e37-b9ec-10fccd0263b8";
const OTHER_USER: &str = "5d2c6f3e-1111-4e37-b9ec-10fccd0263b8";
const EXTENSIONS_APP: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
const PREFIX: &str = "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_";
const STATIC_GROUP: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const FACULTY_GROUP: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const DOMAIN: &str = "contoso.onmicrosoft.com";
const MAILCHIMP_KEY: &str = "0123456789abcdef0123456789abcdef-us21";
const MAILCHIMP_LIST: &str = "a1b2c3d4e5";
const STRIPE_KEY: &str = "sk_test_51FakeKeyForTests";
const SF_CLIENT: &str = "3MVG9fakeConsumerKey";
const SF_SECRET: &str = "FAKE-consumer-secret-0123456789";
const SF_FIELD: &str = "Entra_Object_Id__c";

// ---------- a store that records what the queues were sent ----------

#[derive(Debug, Clone, PartialEq)]
struct Sent {
    queue: String,
    text: String,
    delay: Duration,
}

struct RecordingStore {
    inner: Arc<dyn Store>,
    sent: Mutex<Vec<Sent>>,
    ledger_reads: std::sync::atomic::AtomicUsize,
}

impl RecordingStore {
    fn sent_to(&self, queue: &QueueName) -> Vec<Sent> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|sent| sent.queue == queue.as_str())
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Store for RecordingStore {
    async fn read_checkpoint(&self, name: &CheckpointName) -> Result<Option<Versioned>, StoreError> {
        self.inner.read_checkpoint(name).await
    }
    async fn write_checkpoint(
        &self,
        name: &CheckpointName,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        self.inner.write_checkpoint(name, value, expected).await
    }
    async fn read_ledger(&self, object_id: Uuid) -> Result<Option<Versioned>, StoreError> {
        self.ledger_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_ledger(object_id).await
    }
    async fn write_ledger(
        &self,
        object_id: Uuid,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        self.inner.write_ledger(object_id, value, expected).await
    }
    async fn list_ledgers(&self) -> Result<Vec<Uuid>, StoreError> {
        self.inner.list_ledgers().await
    }
    async fn send(&self, queue: &QueueName, text: &str, delay: Duration) -> Result<(), StoreError> {
        self.inner.send(queue, text, delay).await?;
        self.sent.lock().unwrap().push(Sent {
            queue: queue.as_str().to_string(),
            text: text.to_string(),
            delay,
        });
        Ok(())
    }
    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        self.inner.receive(queue, max, visibility_timeout).await
    }
    async fn delete(&self, queue: &QueueName, message: &ReceivedMessage) -> Result<(), StoreError> {
        self.inner.delete(queue, message).await
    }
    async fn set_visibility(
        &self,
        queue: &QueueName,
        message: &ReceivedMessage,
        delay: Duration,
    ) -> Result<ReceivedMessage, StoreError> {
        self.inner.set_visibility(queue, message, delay).await
    }
    async fn approximate_count(&self, queue: &QueueName) -> Result<u64, StoreError> {
        self.inner.approximate_count(queue).await
    }
}

// ---------- PostgreSQL: a schema per test ----------

/// (row count, external_ids) of the user's rows.
async fn user_row(schema: &TestSchema, id: &str) -> (usize, Value) {
    let rows = schema
        .admin
        .query(
            &format!(
                "SELECT external_ids FROM {}.signup_users WHERE entra_object_id = $1",
                schema.name
            ),
            &[&Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap();
    let ids = rows.first().map(|row| row.get::<_, Value>(0)).unwrap_or(Value::Null);
    (rows.len(), ids)
}

// ---------- the fixture ----------

struct Fixture {
    fakes: GraphFakes,
    mailchimp: FakeMailchimp,
    stripe: FakeStripe,
    salesforce: FakeSalesforce,
    schema: Option<TestSchema>,
    store: Arc<RecordingStore>,
    pipeline: Pipeline,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Azure,
}

async fn store(backend: Backend) -> Option<(Arc<dyn Store>, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Embedded => {
            let (store, dir) = support::stores::embedded().await;
            Some((store, Some(dir)))
        }
        Backend::Azure => Some((support::stores::azure().await?, None)),
    }
}

fn graph_user(consent: bool) -> Value {
    json!({
        "id": USER,
        "displayName": "unknown",
        "givenName": "Jane",
        "surname": "Doe",
        "mail": null,
        "userPrincipalName": format!("{USER}@{DOMAIN}"),
        "createdDateTime": "2026-11-20T10:19:58Z",
        "identities": [
            {"signInType": "emailAddress", "issuer": DOMAIN, "issuerAssignedId": "Jane.Doe@Contoso.com"},
            {"signInType": "userPrincipalName", "issuer": DOMAIN, "issuerAssignedId": format!("{USER}@{DOMAIN}")}
        ],
        format!("{PREFIX}onMailingList"): consent,
        format!("{PREFIX}universityGroups"): "Faculty,Staff",
    })
}

impl Fixture {
    /// Every destination enabled; `None` when the store's service is not running (skipped).
    async fn start(backend: Backend, extra: &[(&str, &str)]) -> Option<Fixture> {
        let (inner, dir) = store(backend).await?;
        let fakes = GraphFakes::start();
        let mailchimp = FakeMailchimp::start(MAILCHIMP_KEY, MAILCHIMP_LIST).await;
        let stripe = FakeStripe::start(STRIPE_KEY).await;
        let salesforce = FakeSalesforce::start(SF_CLIENT, SF_SECRET, SF_FIELD).await;
        let schema = TestSchema::create("provision_user (its PostgreSQL destination)").await;
        let mut values: HashMap<String, String> = [
            ("PROVISION_EXTENSION_APP_ID", EXTENSIONS_APP.to_string()),
            ("DIRECTORY_DISPLAY_NAME_TEMPLATE", "{givenName} {surname}".to_string()),
            ("DIRECTORY_UPN_TEMPLATE", "{givenName}.{surname}".to_string()),
            ("DIRECTORY_UPN_DOMAIN", DOMAIN.to_string()),
            ("GROUPS_STATIC", STATIC_GROUP.to_string()),
            ("GROUPS_RULES", format!("universityGroups:Faculty={FACULTY_GROUP}")),
            ("STRIPE_CUSTOMER_ID_ATTRIBUTE", "stripeCustomerId".to_string()),
            ("MAILCHIMP_API_KEY", MAILCHIMP_KEY.to_string()),
            ("MAILCHIMP_LIST_ID", MAILCHIMP_LIST.to_string()),
            ("MAILCHIMP_BASE_URL", mailchimp.url().to_string()),
            ("STRIPE_API_KEY", STRIPE_KEY.to_string()),
            ("STRIPE_BASE_URL", stripe.url().to_string()),
            ("SALESFORCE_LOGIN_URL", salesforce.url().to_string()),
            ("SALESFORCE_CLIENT_ID", SF_CLIENT.to_string()),
            ("SALESFORCE_CLIENT_SECRET", SF_SECRET.to_string()),
            ("SALESFORCE_EXTERNAL_ID_FIELD", SF_FIELD.to_string()),
            ("DESTINATIONS_TIMEOUT_SECONDS", "10".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(schema) = &schema {
            values.insert("SIGNUP_DATABASE_URL".into(), schema.database_url());
            values.insert("SIGNUP_DATABASE_POOL_SIZE".into(), "2".into());
        }
        values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::from_map_for(&values, Scope::Tool).expect("valid settings");
        let store = Arc::new(RecordingStore {
            inner,
            sent: Mutex::new(Vec::new()),
            ledger_reads: Default::default(),
        });
        let graph = fakes.graph_client(fakes.credential());
        let pipeline = Pipeline::new(graph, store.clone(), &settings.provisioning, &settings.destinations).unwrap();
        pipeline.prepare().await.unwrap();
        fakes.graph.add_user(graph_user(true));
        Some(Fixture {
            fakes,
            mailchimp,
            stripe,
            salesforce,
            schema,
            store,
            pipeline,
            _dir: dir,
        })
    }

    fn message() -> ProvisionMessage {
        ProvisionMessage {
            user_id: USER.parse().unwrap(),
            detected_at: Utc::now(),
            source: DetectionSource::AuditLog,
            audit_record_id: Some("Directory_test".into()),
        }
    }

    async fn deliver(&self) -> Vec<(Destination, Disposition)> {
        self.pipeline.process(&Fixture::message()).await.expect("recorded").ran
    }

    async fn ledger(&self) -> Ledger {
        self.pipeline
            .ledgers()
            .read(ObjectId::parse(USER).unwrap())
            .await
            .unwrap()
            .expect("a ledger")
    }

    fn graph_writes(&self) -> (usize, usize) {
        let requests = self.fakes.graph.requests();
        let patches = requests.iter().filter(|r| r.method == "PATCH").count();
        let memberships = requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/members/$ref"))
            .count();
        (patches, memberships)
    }

    fn mailchimp_puts(&self) -> usize {
        self.mailchimp.calls().iter().filter(|c| c.method == "PUT").count()
    }

    fn stripe_creates(&self) -> usize {
        self.stripe
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path == "/v1/customers")
            .count()
    }

    fn salesforce_upserts(&self) -> usize {
        self.salesforce.calls().iter().filter(|c| c.method == "PATCH").count()
    }

    fn graph_user_now(&self) -> Value {
        // The user as the PATCHes sent left it.
        self.fakes
            .graph
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .fold(graph_user(true), |mut user, patch| {
                if let (Some(user), Some(patch)) = (user.as_object_mut(), patch.body.as_object()) {
                    user.extend(patch.clone());
                }
                user
            })
    }
}

macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(super::Backend::Embedded).await
            }
            #[tokio::test]
            async fn azure() {
                super::$name(super::Backend::Azure).await
            }
        }
    };
}

fn state(ledger: &Ledger, destination: Destination) -> (State, u32) {
    let entry = ledger
        .entry(destination)
        .unwrap_or_else(|| panic!("{destination} in the ledger"));
    (entry.state, entry.attempts)
}

// ---------- the tests ----------

on_both_stores!(the_same_message_three_times_has_each_effect_once);
async fn the_same_message_three_times_has_each_effect_once(backend: Backend) {
    let Some(fx) = Fixture::start(backend, &[]).await else {
        return;
    };

    let first = fx.deliver().await;
    assert!(first.iter().all(|(_, d)| *d == Disposition::Done), "{first:?}");
    let graph_requests_after_first = fx.fakes.graph.requests().len();
    for _ in 0..2 {
        let again = fx.deliver().await;
        assert!(again.is_empty(), "a redelivery runs nothing: {again:?}");
    }

    // Directory fix-up and Stripe write-back: one PATCH each; two groups; one call per vendor.
    assert_eq!(fx.graph_writes(), (2, 2));
    assert_eq!(
        fx.fakes.graph.requests().len(),
        graph_requests_after_first,
        "no Graph call at all on redelivery"
    );
    assert_eq!(fx.mailchimp_puts(), 1);
    assert_eq!(fx.stripe_creates(), 1);
    assert_eq!(fx.salesforce_upserts(), 1);
    assert_eq!(fx.stripe.customers().len(), 1);
    assert_eq!(fx.salesforce.contacts().len(), 1);
    assert_eq!(fx.mailchimp.members().len(), 1);
    for group in [STATIC_GROUP, FACULTY_GROUP] {
        assert!(fx.fakes.graph.members(group).contains(USER), "member of {group}");
    }

    let user = fx.graph_user_now();
    assert_eq!(user["displayName"], "Jane Doe");
    assert_eq!(user["userPrincipalName"], format!("jane.doe@{DOMAIN}"));
    let customer = fx.stripe.customers()[0].id.clone();
    assert_eq!(user[format!("{PREFIX}stripeCustomerId")], customer.as_str());

    let ledger = fx.ledger().await;
    for destination in [
        Destination::Directory,
        Destination::Groups,
        Destination::Mailchimp,
        Destination::Stripe,
        Destination::Salesforce,
    ] {
        assert_eq!(state(&ledger, destination), (State::Done, 1), "{destination}");
    }
    assert_eq!(
        ledger.entry(Destination::Stripe).unwrap().external_id.as_deref(),
        Some(customer.as_str())
    );
    if let Some(schema) = &fx.schema {
        assert_eq!(state(&ledger, Destination::Postgres), (State::Done, 1));
        let (rows, ids) = user_row(schema, USER).await;
        assert_eq!(rows, 1);
        assert_eq!(ids["stripe"], customer.as_str());
        assert!(ids["salesforce"].is_string(), "{ids}");
    }
    assert!(fx.store.sent_to(&PROVISION_QUEUE).is_empty(), "no retry was needed");
    assert!(fx.store.sent_to(&FAILED_QUEUE).is_empty());
    // No personal data in the ledger.
    let text = serde_json::to_string(&ledger).unwrap().to_lowercase();
    assert!(!text.contains("jane") && !text.contains("doe"), "{text}");
}

on_both_stores!(a_destination_down_three_times_is_done_on_the_fourth_attempt);
async fn a_destination_down_three_times_is_done_on_the_fourth_attempt(backend: Backend) {
    let Some(fx) = Fixture::start(backend, &[]).await else {
        return;
    };
    for _ in 0..3 {
        fx.salesforce.fail_next(
            503,
            json!([{"errorCode": "SERVER_UNAVAILABLE", "message": "maintenance"}]),
            &[],
        );
    }

    let expected_delays = [60, 300, 1800].map(Duration::from_secs);
    for (attempt, delay) in expected_delays.iter().enumerate() {
        let ran = fx.deliver().await;
        let salesforce = ran
            .iter()
            .find(|(d, _)| *d == Destination::Salesforce)
            .expect("salesforce ran");
        assert!(
            matches!(&salesforce.1, Disposition::Retry { delay: d, .. } if d == delay),
            "attempt {}: {ran:?}",
            attempt + 1
        );
        let ledger = fx.ledger().await;
        assert_eq!(
            state(&ledger, Destination::Salesforce),
            (State::Pending, attempt as u32 + 1)
        );
        assert_eq!(
            ledger
                .entry(Destination::Salesforce)
                .unwrap()
                .last_error
                .as_ref()
                .unwrap()
                .code,
            "http_503:SERVER_UNAVAILABLE"
        );
        // The others went ahead on the first delivery and are not repeated.
        assert_eq!(state(&ledger, Destination::Stripe), (State::Done, 1));
    }
    // The queue received one copy per failed attempt, delayed as the schedule says.
    let requeued = fx.store.sent_to(&PROVISION_QUEUE);
    assert_eq!(
        requeued.iter().map(|s| s.delay).collect::<Vec<_>>(),
        expected_delays.to_vec()
    );
    let copy: ProvisionMessage = serde_json::from_str(&requeued[0].text).unwrap();
    assert_eq!(copy.user_id.to_string(), USER);

    let fourth = fx.deliver().await;
    assert!(
        fourth.contains(&(Destination::Salesforce, Disposition::Done)),
        "{fourth:?}"
    );
    let ledger = fx.ledger().await;
    assert_eq!(state(&ledger, Destination::Salesforce), (State::Done, 4));
    assert_eq!(fx.store.sent_to(&PROVISION_QUEUE).len(), 3, "no retry after success");
    assert!(fx.store.sent_to(&FAILED_QUEUE).is_empty());
    assert_eq!(fx.salesforce_upserts(), 4);
    assert_eq!((fx.mailchimp_puts(), fx.stripe_creates()), (1, 1));
    if let Some(schema) = &fx.schema {
        // PostgreSQL went ahead without the Contact id, and got it once it arrived.
        let (rows, ids) = user_row(schema, USER).await;
        assert_eq!(rows, 1);
        assert!(ids["salesforce"].is_string(), "{ids}");
    }
}

on_both_stores!(a_permanent_error_fails_at_once_with_a_dead_letter_and_replay_retries_it);
async fn a_permanent_error_fails_at_once_with_a_dead_letter_and_replay_retries_it(backend: Backend) {
    let Some(fx) = Fixture::start(backend, &[]).await else {
        return;
    };
    fx.mailchimp.fail_next(
        400,
        "Invalid Resource",
        "The resource submitted could not be validated.",
        None,
    );

    let ran = fx.deliver().await;
    assert!(
        matches!(
            ran.iter().find(|(d, _)| *d == Destination::Mailchimp),
            Some((_, Disposition::Failed { .. }))
        ),
        "{ran:?}"
    );
    let ledger = fx.ledger().await;
    assert_eq!(state(&ledger, Destination::Mailchimp), (State::Failed, 1));
    for destination in [
        Destination::Directory,
        Destination::Groups,
        Destination::Stripe,
        Destination::Salesforce,
    ] {
        assert_eq!(state(&ledger, destination).0, State::Done, "{destination}");
    }
    let letters = fx.store.sent_to(&FAILED_QUEUE);
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = serde_json::from_str(&letters[0].text).unwrap();
    assert_eq!(letter.object_id.to_string(), USER);
    assert_eq!(letter.destination, Destination::Mailchimp);
    assert!(letter.code.starts_with("http_400"), "{}", letter.code);
    assert!(
        !letters[0].text.to_lowercase().contains("jane"),
        "no personal data: {}",
        letters[0].text
    );
    assert!(
        fx.store.sent_to(&PROVISION_QUEUE).is_empty(),
        "a permanent error is not retried"
    );

    // A redelivery neither calls Mailchimp again nor repeats the dead letter.
    assert!(fx.deliver().await.is_empty());
    assert_eq!(fx.store.sent_to(&FAILED_QUEUE).len(), 1);
    assert_eq!(fx.mailchimp_puts(), 1);
    let failed = fx.pipeline.ledgers().failed().await.unwrap();
    assert_eq!(operations::failed_lines(&failed).len(), 1);
    assert!(operations::failed_lines(&failed)[0].starts_with(&format!("{USER} mailchimp http_400")));

    // An operator fixes the cause and replays: only Mailchimp runs again.
    operations::replay(fx.store.as_ref(), fx.pipeline.ledgers(), ObjectId::parse(USER).unwrap())
        .await
        .unwrap();
    let replayed = fx.store.sent_to(&PROVISION_QUEUE);
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].delay, Duration::ZERO);
    let message: ProvisionMessage = serde_json::from_str(&replayed[0].text).unwrap();
    assert_eq!(message.source, DetectionSource::Operator);
    let ran = fx.pipeline.process(&message).await.unwrap().ran;
    let mut expected = vec![(Destination::Mailchimp, Disposition::Done)];
    if fx.schema.is_some() {
        // Mailchimp's member id is new: the PostgreSQL row is brought up to date.
        expected.push((Destination::Postgres, Disposition::Done));
    }
    assert_eq!(ran, expected);
    assert_eq!(state(&fx.ledger().await, Destination::Mailchimp), (State::Done, 1));
    assert_eq!(fx.mailchimp_puts(), 2);
    assert_eq!(fx.stripe_creates(), 1);
}

#[tokio::test]
async fn without_consent_mailchimp_is_skipped_without_a_call() {
    let Some(fx) = Fixture::start(Backend::Embedded, &[]).await else {
        return;
    };
    fx.fakes.graph.add_user(graph_user(false));
    fx.deliver().await;
    let ledger = fx.ledger().await;
    assert_eq!(state(&ledger, Destination::Mailchimp).0, State::Skipped);
    assert!(fx.mailchimp.calls().is_empty(), "{:?}", fx.mailchimp.calls());
    assert_eq!(state(&ledger, Destination::Stripe).0, State::Done);
}

#[tokio::test]
async fn an_exhausted_schedule_fails_the_destination_with_a_dead_letter() {
    let Some(fx) = Fixture::start(Backend::Embedded, &[("PROVISION_RETRY_SCHEDULE", "2s,90s")]).await else {
        return;
    };
    for _ in 0..3 {
        fx.salesforce
            .fail_next(500, json!([{"errorCode": "UNKNOWN_EXCEPTION", "message": "x"}]), &[]);
    }
    for _ in 0..3 {
        fx.deliver().await;
    }
    let delays: Vec<Duration> = fx.store.sent_to(&PROVISION_QUEUE).iter().map(|s| s.delay).collect();
    assert_eq!(delays, vec![Duration::from_secs(2), Duration::from_secs(90)]);
    assert_eq!(state(&fx.ledger().await, Destination::Salesforce), (State::Failed, 3));
    let letters = fx.store.sent_to(&FAILED_QUEUE);
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = serde_json::from_str(&letters[0].text).unwrap();
    assert_eq!((letter.destination, letter.attempts), (Destination::Salesforce, 3));
    assert_eq!(letter.code, "http_500:UNKNOWN_EXCEPTION");
}

#[tokio::test]
async fn a_user_already_right_gets_no_directory_patch_and_a_member_is_success() {
    let Some(fx) = Fixture::start(Backend::Embedded, &[]).await else {
        return;
    };
    let mut user = graph_user(true);
    user["displayName"] = json!("Jane Doe");
    user["userPrincipalName"] = json!(format!("jane.doe3@{DOMAIN}"));
    fx.fakes.graph.add_user(user);
    // Already a member of the static group (added by hand earlier).
    let graph = fx.fakes.graph_client(fx.fakes.credential());
    graph
        .add_group_member(STATIC_GROUP.parse().unwrap(), USER.parse().unwrap())
        .await
        .unwrap();

    let ran = fx.deliver().await;
    assert!(ran.contains(&(Destination::Directory, Disposition::Done)), "{ran:?}");
    assert!(ran.contains(&(Destination::Groups, Disposition::Done)), "{ran:?}");
    let patches: Vec<Value> = fx
        .fakes
        .graph
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body)
        .collect();
    // Only the Stripe write-back: the display name and the numbered UPN were already right.
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0].get("displayName").is_none() && patches[0].get("userPrincipalName").is_none());
    assert!(fx.fakes.graph.members(FACULTY_GROUP).contains(USER));
}

#[tokio::test]
async fn the_upn_is_made_unique_on_the_tenant_domain() {
    let Some(fx) = Fixture::start(Backend::Embedded, &[]).await else {
        return;
    };
    fx.fakes.graph.add_user(json!({
        "id": OTHER_USER, "displayName": "Jane Doe", "givenName": "Jane", "surname": "Doe",
        "userPrincipalName": format!("jane.doe@{DOMAIN}"),
    }));
    fx.deliver().await;
    let upns: Vec<Value> = fx
        .fakes
        .graph
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(USER))
        .filter_map(|r| r.body.get("userPrincipalName").cloned())
        .collect();
    assert_eq!(upns, vec![json!(format!("jane.doe2@{DOMAIN}"))]);
    assert_eq!(state(&fx.ledger().await, Destination::Directory), (State::Done, 1));
}

/// `run`'s worker: a message whose invocation keeps failing (here: provisioning not
/// configured) is redelivered, then moved to `signup-provision-poison` after
/// `max_dequeue_count` deliveries, as the host does.
#[tokio::test]
async fn the_run_worker_moves_a_failing_message_to_the_poison_queue() {
    use signup_bridge::provisioning::function::{Handled, ProvisionUser};
    use signup_bridge::provisioning::worker::{self, POISON_QUEUE, WorkerSettings};

    let (store, _dir) = support::stores::embedded().await;
    let function = ProvisionUser::NotConfigured("not configured in this test".into());
    let settings = WorkerSettings {
        max_dequeue_count: 3,
        retry_after_failure: Duration::ZERO,
        ..WorkerSettings::default()
    };
    let text = Fixture::message().to_json();
    store.send(&PROVISION_QUEUE, &text, Duration::ZERO).await.unwrap();
    for delivery in 1..=3 {
        let mut batch = store
            .receive(&PROVISION_QUEUE, 1, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            batch.len(),
            1,
            "delivery {delivery}: the failed message is visible again"
        );
        let message = batch.remove(0);
        assert_eq!(message.dequeue_count, delivery);
        let handled = worker::process_one(&function, store.as_ref(), &settings, message).await;
        assert_eq!(handled, Handled::Failed);
    }
    let left = store
        .receive(&PROVISION_QUEUE, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(left.is_empty(), "moved out of the work queue");
    let poisoned = store.receive(&POISON_QUEUE, 32, Duration::from_secs(60)).await.unwrap();
    assert_eq!(poisoned.len(), 1);
    assert_eq!(poisoned[0].text, text, "kept as it was, for an operator");
}

/// Two processes updating one ledger: each writes against the version it last saw (no read
/// before every write); a stale version conflicts, is re-read, and no change is lost.
#[tokio::test]
async fn ledger_updates_from_two_processes_merge_and_a_stale_version_is_reread() {
    use signup_bridge::provisioning::ledger::{Entry, Ledgers};

    for backend in [Backend::Embedded, Backend::Azure] {
        let Some((inner, _dir)) = store(backend).await else {
            continue;
        };
        let store = Arc::new(RecordingStore {
            inner,
            sent: Mutex::new(Vec::new()),
            ledger_reads: Default::default(),
        });
        let reads = || store.ledger_reads.load(std::sync::atomic::Ordering::SeqCst);
        let id = ObjectId::parse(&Uuid::new_v4().to_string()).unwrap();
        let (first, second) = (Ledgers::new(store.clone()), Ledgers::new(store.clone()));
        let mark = |destination: Destination, state: State| {
            move |ledger: &mut Ledger| {
                ledger.destinations.insert(
                    destination,
                    Entry {
                        state,
                        ..Entry::pending()
                    },
                );
            }
        };
        first.update(id, mark(Destination::Groups, State::Done)).await.unwrap();
        // The other process moves the ledger on; the first one's known version is now stale.
        second.update(id, mark(Destination::Stripe, State::Done)).await.unwrap();
        let written = first
            .update(id, mark(Destination::Mailchimp, State::Skipped))
            .await
            .unwrap();
        for (destination, state) in [
            (Destination::Groups, State::Done),
            (Destination::Stripe, State::Done),
            (Destination::Mailchimp, State::Skipped),
        ] {
            assert_eq!(written.state(destination), state, "{backend:?}: {destination:?}");
        }
        let stored = first.read(id).await.unwrap().unwrap();
        assert_eq!(stored, written, "{backend:?}: what was returned is what is stored");
        // The first process's next write, against the version it just saw, needs no read.
        let before = reads();
        let again = first
            .update(id, mark(Destination::Salesforce, State::Done))
            .await
            .unwrap();
        assert_eq!(reads(), before, "{backend:?}: one write, no read");
        assert_eq!(again.state(Destination::Stripe), State::Done);
        assert_eq!(again.state(Destination::Salesforce), State::Done);
    }
}
