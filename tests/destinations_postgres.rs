//! The PostgreSQL destination against a real server: `./scripts/test` starts one and exports
//! `SIGNUP_TEST_DATABASE_URL`. Without it these tests skip loudly, unless
//! `SIGNUP_TEST_REQUIRE_SERVICES=1`, when they fail. Each test works in its own schema (set
//! through `options=-c search_path=...` in `SIGNUP_DATABASE_URL`), so they run in parallel.

mod support;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use signup_bridge::provisioning::destinations::postgres::{MIGRATIONS, PostgresDestination};
use signup_bridge::provisioning::destinations::{Email, NewUser, ObjectId, Outcome};
use signup_bridge::settings::destinations::DestinationSettings;
use support::postgres::TestSchema;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const EMAIL: &str = "jane.doe@contoso.com";

/// The destination this test checks, on the schema.
fn destination(schema: &TestSchema) -> PostgresDestination {
    let values = HashMap::from([
        ("SIGNUP_DATABASE_URL".to_string(), schema.database_url()),
        ("SIGNUP_DATABASE_POOL_SIZE".to_string(), "2".to_string()),
    ]);
    let settings = DestinationSettings::from_map(&values).unwrap().postgres.unwrap();
    PostgresDestination::new(&settings).unwrap()
}

/// `sql` with `{schema}` standing for the schema's name.
async fn rows(schema: &TestSchema, sql: &str) -> Vec<tokio_postgres::Row> {
    let sql = sql.replace("{schema}", &schema.name);
    schema.admin.query(&sql, &[]).await.unwrap()
}

fn user() -> NewUser {
    NewUser {
        email: Some(Email::parse(EMAIL).unwrap()),
        given_name: Some("Jane".into()),
        surname: Some("Doe".into()),
        display_name: Some("Jane Doe".into()),
        created: Some(Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()),
        ..NewUser::new(ObjectId::parse(ID).unwrap())
    }
}

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn migrating_twice_applies_each_migration_once() {
    let Some(schema) = TestSchema::create("migrating_twice_applies_each_migration_once").await else {
        return;
    };
    let destination = destination(&schema);

    let first = destination.migrate().await.unwrap();
    let second = destination.migrate().await.unwrap();

    let all: Vec<i32> = MIGRATIONS.iter().map(|migration| migration.version).collect();
    assert_eq!(first.applied, all);
    assert!(first.already_applied.is_empty());
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, all);
    let recorded = rows(&schema, "SELECT version FROM {schema}.signup_bridge_migrations").await;
    assert_eq!(recorded.len(), MIGRATIONS.len());
    let columns = rows(
        &schema,
        "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = 'signup_users' ORDER BY ordinal_position",
    )
    .await;
    let columns: Vec<String> = columns.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        columns,
        [
            "entra_object_id",
            "email",
            "display_name",
            "created_at",
            "external_ids",
            "first_provisioned_at",
            "last_provisioned_at"
        ]
    );
    schema.drop().await;
}

#[tokio::test]
async fn instances_migrating_at_the_same_time_do_not_collide() {
    let Some(schema) = TestSchema::create("instances_migrating_at_the_same_time_do_not_collide").await else {
        return;
    };
    // Separate pools, as separate instances would have.
    let instances: Vec<PostgresDestination> = (0..4).map(|_| destination(&schema)).collect();

    let reports = futures_util::future::join_all(instances.iter().map(PostgresDestination::migrate)).await;

    let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        reports.iter().filter(|report| !report.applied.is_empty()).count(),
        1,
        "{reports:?}"
    );
    assert_eq!(reports.iter().filter(|report| report.applied.is_empty()).count(), 3);
    let recorded = rows(&schema, "SELECT version FROM {schema}.signup_bridge_migrations").await;
    assert_eq!(recorded.len(), MIGRATIONS.len());
    schema.drop().await;
}

#[tokio::test]
async fn three_deliveries_make_one_row_and_external_ids_are_merged() {
    let Some(schema) = TestSchema::create("three_deliveries_make_one_row_and_external_ids_are_merged").await else {
        return;
    };
    let destination = destination(&schema);
    destination.migrate().await.unwrap();

    for _ in 0..3 {
        let outcome = destination
            .upsert_user(&user(), &ids(&[("stripe", "cus_1")]))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done { external_id: None });
    }
    let first = rows(
        &schema,
        "SELECT first_provisioned_at, last_provisioned_at FROM {schema}.signup_users",
    )
    .await;
    let first_provisioned: DateTime<Utc> = first[0].get(0);

    // A later delivery knows more ids, a replay with fewer must not lose any, and a user
    // read without an email keeps the one recorded.
    destination
        .upsert_user(&user(), &ids(&[("salesforce", "003fake"), ("stripe", "cus_1")]))
        .await
        .unwrap();
    let no_email = NewUser { email: None, ..user() };
    destination.upsert_user(&no_email, &ids(&[])).await.unwrap();

    let rows = rows(
        &schema,
        "SELECT entra_object_id, email, display_name, created_at, external_ids, first_provisioned_at, \
             last_provisioned_at FROM {schema}.signup_users",
    )
    .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, Uuid>(0).to_string(), ID);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(EMAIL));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("Jane Doe"));
    assert_eq!(row.get::<_, Option<DateTime<Utc>>>(3), user().created);
    assert_eq!(
        row.get::<_, Value>(4),
        json!({"stripe": "cus_1", "salesforce": "003fake"})
    );
    assert_eq!(row.get::<_, DateTime<Utc>>(5), first_provisioned);
    assert!(row.get::<_, DateTime<Utc>>(6) >= first_provisioned);
    schema.drop().await;
}

#[tokio::test]
async fn users_are_kept_apart() {
    let Some(schema) = TestSchema::create("users_are_kept_apart").await else {
        return;
    };
    let destination = destination(&schema);
    destination.migrate().await.unwrap();

    let other = NewUser {
        object_id: ObjectId::parse("11112222-bbbb-3333-cccc-4444dddd5555").unwrap(),
        email: Some(Email::parse("other@contoso.com").unwrap()),
        ..user()
    };
    let users = [user(), other];
    let none = BTreeMap::new();
    let results = futures_util::future::join_all(users.iter().map(|user| destination.upsert_user(user, &none))).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(rows(&schema, "SELECT 1 FROM {schema}.signup_users").await.len(), 2);
    schema.drop().await;
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_without_personal_data() {
    let Some(schema) = TestSchema::create("a_missing_table_is_a_permanent_error_without_personal_data").await else {
        return;
    };
    let destination = destination(&schema); // not migrated

    let error = destination.upsert_user(&user(), &BTreeMap::new()).await.unwrap_err();

    assert!(!error.is_transient(), "{error}");
    assert_eq!(error.code(), "sqlstate_42P01");
    assert!(error.message().contains("signup_users"), "{error}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(EMAIL) && !text.contains("Jane"), "{text}");
    schema.drop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // No database needed: nothing listens on this port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let values = HashMap::from([
        (
            "SIGNUP_DATABASE_URL".to_string(),
            format!("postgres://app:hunter2@127.0.0.1:{port}/app"),
        ),
        ("DESTINATIONS_TIMEOUT_SECONDS".to_string(), "5".to_string()),
    ]);
    let settings = DestinationSettings::from_map(&values).unwrap().postgres.unwrap();
    let destination = PostgresDestination::new(&settings).unwrap();

    let error = destination.upsert_user(&user(), &BTreeMap::new()).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    let text = format!("{error} {error:?} {destination:?}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn sslmode_require_verifies_the_servers_certificate() {
    // No database needed: a server that answers PostgreSQL's SSLRequest with 'S' and then
    // presents a certificate from a CA the platform does not trust.
    let ca = support::tls::TestCa::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        stream.read_exact(&mut request).await.unwrap();
        stream.write_all(b"S").await.unwrap();
        let handshake = acceptor.accept(stream).await;
        (request, handshake.is_ok())
    });
    let values = HashMap::from([(
        "SIGNUP_DATABASE_URL".to_string(),
        format!("postgres://app:hunter2@127.0.0.1:{port}/app?sslmode=require"),
    )]);
    let settings = DestinationSettings::from_map(&values).unwrap().postgres.unwrap();
    let destination = PostgresDestination::new(&settings).unwrap();

    let error = destination.upsert_user(&user(), &BTreeMap::new()).await.unwrap_err();

    let (request, handshake_ok) = server.await.unwrap();
    // SSLRequest: length 8, code 80877103.
    assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert!(!handshake_ok, "the client accepted an untrusted certificate");
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "tls", "{error}");
}
