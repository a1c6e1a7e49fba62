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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;
use uuid::Uuid;

const ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const EMAIL: &str = "jane.doe@contoso.com";

/// The test database's URL, or `None` (after saying so loudly) when there is none.
fn database_url(test: &str) -> Option<String> {
    match std::env::var("SIGNUP_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("SIGNUP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{test}: SIGNUP_TEST_DATABASE_URL is not set but SIGNUP_TEST_REQUIRE_SERVICES=1")
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: SIGNUP_TEST_DATABASE_URL is not set; run ./scripts/test \
                 (or ./scripts/test --services-only and source .test-state/services.env) ***\n"
            );
            None
        }
    }
}

/// A fresh schema on the test database.
struct Schema {
    url: String,
    name: String,
    admin: tokio_postgres::Client,
}

impl Schema {
    async fn create(url: &str) -> Schema {
        let (admin, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        let name = format!("signup_test_{}", Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        Schema {
            url: url.to_string(),
            name,
            admin,
        }
    }

    /// `SIGNUP_DATABASE_URL` with this schema first on the search path.
    fn database_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}", self.url, self.name)
    }

    fn destination(&self) -> PostgresDestination {
        let values = HashMap::from([
            ("SIGNUP_DATABASE_URL".to_string(), self.database_url()),
            ("SIGNUP_DATABASE_POOL_SIZE".to_string(), "2".to_string()),
        ]);
        let settings = DestinationSettings::from_map(&values).unwrap().postgres.unwrap();
        PostgresDestination::new(&settings).unwrap()
    }

    async fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let sql = sql.replace("{schema}", &self.name);
        self.admin.query(&sql, &[]).await.unwrap()
    }

    async fn drop(self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
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
    let Some(url) = database_url("migrating_twice_applies_each_migration_once") else {
        return;
    };
    let schema = Schema::create(&url).await;
    let destination = schema.destination();

    let first = destination.migrate().await.unwrap();
    let second = destination.migrate().await.unwrap();

    let all: Vec<i32> = MIGRATIONS.iter().map(|migration| migration.version).collect();
    assert_eq!(first.applied, all);
    assert!(first.already_applied.is_empty());
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, all);
    let recorded = schema
        .rows("SELECT version FROM {schema}.signup_bridge_migrations")
        .await;
    assert_eq!(recorded.len(), MIGRATIONS.len());
    let columns = schema
        .rows(
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
    let Some(url) = database_url("instances_migrating_at_the_same_time_do_not_collide") else {
        return;
    };
    let schema = Schema::create(&url).await;
    // Separate pools, as separate instances would have.
    let instances: Vec<PostgresDestination> = (0..4).map(|_| schema.destination()).collect();

    let reports = futures_util::future::join_all(instances.iter().map(PostgresDestination::migrate)).await;

    let reports: Vec<_> = reports.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        reports.iter().filter(|report| !report.applied.is_empty()).count(),
        1,
        "{reports:?}"
    );
    assert_eq!(reports.iter().filter(|report| report.applied.is_empty()).count(), 3);
    let recorded = schema
        .rows("SELECT version FROM {schema}.signup_bridge_migrations")
        .await;
    assert_eq!(recorded.len(), MIGRATIONS.len());
    schema.drop().await;
}

#[tokio::test]
async fn three_deliveries_make_one_row_and_external_ids_are_merged() {
    let Some(url) = database_url("three_deliveries_make_one_row_and_external_ids_are_merged") else {
        return;
    };
    let schema = Schema::create(&url).await;
    let destination = schema.destination();
    destination.migrate().await.unwrap();

    for _ in 0..3 {
        let outcome = destination
            .upsert_user(&user(), &ids(&[("stripe", "cus_1")]))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done { external_id: None });
    }
    let first = schema
        .rows("SELECT first_provisioned_at, last_provisioned_at FROM {schema}.signup_users")
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

    let rows = schema
        .rows(
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
    let Some(url) = database_url("users_are_kept_apart") else {
        return;
    };
    let schema = Schema::create(&url).await;
    let destination = schema.destination();
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
    assert_eq!(schema.rows("SELECT 1 FROM {schema}.signup_users").await.len(), 2);
    schema.drop().await;
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_without_personal_data() {
    let Some(url) = database_url("a_missing_table_is_a_permanent_error_without_personal_data") else {
        return;
    };
    let schema = Schema::create(&url).await;
    let destination = schema.destination(); // not migrated

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
