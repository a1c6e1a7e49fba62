//! A fresh schema on the real PostgreSQL that `./scripts/test` starts
//! (`SIGNUP_TEST_DATABASE_URL`), so tests that share the server run in parallel: the product
//! reaches it through `options=-c search_path=...` in `SIGNUP_DATABASE_URL`.

use std::collections::HashMap;

use tokio_postgres::NoTls;
use uuid::Uuid;

pub struct TestSchema {
    url: String,
    pub name: String,
    /// A connection for the test's own queries (name tables as `{name}.table`).
    pub admin: tokio_postgres::Client,
}

impl TestSchema {
    /// A new schema, or `None` (said loudly, naming `test`) without a test database; a
    /// failure instead when `SIGNUP_TEST_REQUIRE_SERVICES=1`, as under `./scripts/test`.
    pub async fn create(test: &str) -> Option<TestSchema> {
        let url = match std::env::var("SIGNUP_TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ if std::env::var("SIGNUP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("{test}: SIGNUP_TEST_DATABASE_URL is not set but SIGNUP_TEST_REQUIRE_SERVICES=1")
            }
            _ => {
                eprintln!(
                    "\n*** {test}: PostgreSQL is not running (SIGNUP_TEST_DATABASE_URL is unset; run ./scripts/test, \
                     or ./scripts/test --services-only and source .test-state/services.env): left out ***\n"
                );
                return None;
            }
        };
        let (admin, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        let name = format!("signup_test_{}", Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        Some(TestSchema { url, name, admin })
    }

    /// `SIGNUP_DATABASE_URL` with this schema first on the search path.
    pub fn database_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Rows of `signup_users` per object id (empty before the migration ran).
    pub async fn rows_per_user(&self) -> HashMap<Uuid, usize> {
        let rows = self
            .admin
            .query(
                &format!(
                    "SELECT entra_object_id, count(*) FROM {}.signup_users GROUP BY entra_object_id",
                    self.name
                ),
                &[],
            )
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|row| (row.get::<_, Uuid>(0), row.get::<_, i64>(1) as usize))
            .collect()
    }

    pub async fn drop(self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}
