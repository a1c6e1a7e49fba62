//! PostgreSQL: one row per user in `signup_users`, upserted by object id. External ids from
//! the other destinations are merged into the row's `external_ids` (jsonb `||`), never
//! replaced, so a replay with fewer ids loses nothing.
//!
//! Driver and pool: `tokio-postgres` through `deadpool-postgres`. The pool is small
//! (`SIGNUP_DATABASE_POOL_SIZE`, default 4) because every scaled-out instance holds its own and
//! small Azure servers allow few connections; it replaces broken connections by itself,
//! which a single shared connection would need hand-written reconnect logic for, and lets
//! the queue trigger's concurrent invocations run side by side. Statements go through
//! `query_typed` (unnamed statements, one round trip), which also works behind PgBouncer in
//! transaction mode.
//!
//! TLS: rustls with the platform's verifier (system roots, `SSL_CERT_FILE`), so
//! `sslmode=require` also verifies the certificate and host name. Azure Database for
//! PostgreSQL requires TLS; a local server without TLS is used in plain text under the
//! default `sslmode=prefer`, which settings only allow on loopback.
//!
//! Migrations (`migrations/*.sql`, compiled in) are applied by [`PostgresDestination::migrate`]
//! at start-up, in one transaction holding a transaction-scoped advisory lock, so instances
//! starting together apply each migration once and a crash leaves nothing half done. The
//! versions applied are recorded in `signup_bridge_migrations`. Tables are created unqualified,
//! in the first schema of the connection's `search_path` (`options=-c search_path=...` in
//! `SIGNUP_DATABASE_URL` picks another).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType};
use rustls_platform_verifier::BuilderVerifierExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::types::{Json, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DestinationError, NewUser, Outcome, redact};
use crate::settings::destinations::PostgresSettings;

/// A schema migration shipped with the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "signup_users",
    sql: include_str!("../../../migrations/0001_signup_users.sql"),
}];

/// Serialises migrations across instances (any value works if it is the same everywhere;
/// this one is "signupbr" in ASCII).
const MIGRATION_LOCK: i64 = 0x7369_676e_7570_6272;

const MIGRATE: &str = "PostgreSQL migration";
const UPSERT: &str = "PostgreSQL upsert signup_users";

const UPSERT_SQL: &str = "\
INSERT INTO signup_users (entra_object_id, email, display_name, created_at, external_ids, last_provisioned_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (entra_object_id) DO UPDATE SET
    email = COALESCE(EXCLUDED.email, signup_users.email),
    display_name = COALESCE(EXCLUDED.display_name, signup_users.display_name),
    created_at = COALESCE(EXCLUDED.created_at, signup_users.created_at),
    external_ids = signup_users.external_ids || EXCLUDED.external_ids,
    last_provisioned_at = now()";

/// What [`PostgresDestination::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<i32>,
    pub already_applied: Vec<i32>,
}

/// The PostgreSQL destination: a connection pool and the upsert.
#[derive(Clone)]
pub struct PostgresDestination {
    pool: Pool,
    timeout: Duration,
}

impl fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresDestination")
            .field("pool_size", &status.max_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresDestination {
    /// Builds the pool; connections are opened on first use.
    pub fn new(settings: &PostgresSettings) -> Result<PostgresDestination, DestinationError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_platform_verifier())
            .map(|builder| builder.with_no_client_auth())
            .map_err(|_| DestinationError::permanent("tls", "PostgreSQL: the TLS configuration could not be built"))?;
        let manager = Manager::from_config(
            settings.config.clone(),
            MakeRustlsConnect::new(tls),
            ManagerConfig {
                // Fast: a broken connection shows up as an error on use and is then dropped;
                // a test query on every checkout would double the round trips.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(|_| DestinationError::permanent("pool", "PostgreSQL: the connection pool could not be built"))?;
        Ok(PostgresDestination {
            pool,
            timeout: settings.timeout,
        })
    }

    /// Applies the migrations not applied yet; safe to run from several instances at once.
    pub async fn migrate(&self) -> Result<MigrationReport, DestinationError> {
        // Migrations may wait for another instance's lock: allow them more than one call.
        let limit = self.timeout * 4;
        within(limit, MIGRATE, async {
            let mut client = self.pool.get().await.map_err(|error| pool_error(MIGRATE, error))?;
            let transaction = client.transaction().await.map_err(|error| pg_error(MIGRATE, &error, &[]))?;
            // Before anything else, so two instances never race to create the same table.
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|error| pg_error(MIGRATE, &error, &[]))?;
            transaction
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS signup_bridge_migrations (
                         version    integer     PRIMARY KEY,
                         name       text        NOT NULL,
                         checksum   text        NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     )",
                )
                .await
                .map_err(|error| pg_error(MIGRATE, &error, &[]))?;
            let rows = transaction
                .query("SELECT version, checksum FROM signup_bridge_migrations", &[])
                .await
                .map_err(|error| pg_error(MIGRATE, &error, &[]))?;
            let applied: BTreeMap<i32, String> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();

            let mut report = MigrationReport::default();
            for migration in MIGRATIONS {
                let checksum = hex::encode(Sha256::digest(migration.sql.as_bytes()));
                if let Some(recorded) = applied.get(&migration.version) {
                    if *recorded != checksum {
                        log::warn!(
                            "PostgreSQL migration {} ({}) differs from the one applied; shipped migrations must not change",
                            migration.version,
                            migration.name
                        );
                    }
                    report.already_applied.push(migration.version);
                    continue;
                }
                transaction
                    .batch_execute(migration.sql)
                    .await
                    .map_err(|error| pg_error(&format!("{MIGRATE} {}", migration.version), &error, &[]))?;
                transaction
                    .execute(
                        "INSERT INTO signup_bridge_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        &[&migration.version, &migration.name, &checksum],
                    )
                    .await
                    .map_err(|error| pg_error(MIGRATE, &error, &[]))?;
                report.applied.push(migration.version);
            }
            transaction.commit().await.map_err(|error| pg_error(MIGRATE, &error, &[]))?;
            if !report.applied.is_empty() {
                log::info!("PostgreSQL migrations applied: {:?}", report.applied);
            }
            Ok(report)
        })
        .await
    }

    /// Inserts or updates the user's row. `external_ids` are the ids obtained from the other
    /// destinations so far, by destination name (`stripe`, `salesforce`, ...); they are
    /// merged into the row's, a later value winning for the same name.
    pub async fn upsert_user(
        &self,
        user: &NewUser,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Outcome, DestinationError> {
        let personal = user.personal_values();
        within(self.timeout, UPSERT, async {
            let client = self.pool.get().await.map_err(|error| pool_error(UPSERT, error))?;
            let object_id = user.object_id.as_uuid();
            let email = user.email.as_ref().map(|email| email.as_str().to_string());
            let display_name = user.full_name();
            let ids = Json(Value::Object(
                external_ids
                    .iter()
                    .map(|(name, id)| (name.clone(), Value::String(id.clone())))
                    .collect(),
            ));
            client
                .query_typed(
                    UPSERT_SQL,
                    &[
                        (&object_id, Type::UUID),
                        (&email, Type::TEXT),
                        (&display_name, Type::TEXT),
                        (&user.created, Type::TIMESTAMPTZ),
                        (&ids, Type::JSONB),
                    ],
                )
                .await
                .map_err(|error| pg_error(UPSERT, &error, &personal))?;
            Ok(Outcome::Done { external_id: None })
        })
        .await
    }
}

async fn within<T>(
    limit: Duration,
    operation: &str,
    work: impl Future<Output = Result<T, DestinationError>>,
) -> Result<T, DestinationError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(DestinationError::transient(
            "timeout",
            format!("{operation}: no answer within {} s", limit.as_secs()),
        ))
    })
}

fn pool_error(operation: &str, error: PoolError) -> DestinationError {
    match error {
        PoolError::Backend(error) => pg_error(operation, &error, &[]),
        PoolError::Timeout(TimeoutType::Wait) => DestinationError::transient(
            "pool_timeout",
            format!("{operation}: every pooled connection stayed busy"),
        ),
        PoolError::Timeout(TimeoutType::Create) => {
            DestinationError::transient("connect_timeout", format!("{operation}: connecting took too long"))
        }
        PoolError::Timeout(TimeoutType::Recycle) => DestinationError::transient(
            "pool_timeout",
            format!("{operation}: checking a pooled connection took too long"),
        ),
        PoolError::PostCreateHook(_) => {
            DestinationError::transient("connect", format!("{operation}: could not connect"))
        }
        PoolError::Closed => DestinationError::permanent("pool_closed", format!("{operation}: the pool is closed")),
        PoolError::NoRuntimeSpecified => {
            DestinationError::permanent("pool", format!("{operation}: the pool has no runtime"))
        }
    }
}

/// Server errors by SQLSTATE class: connection problems (08), resource shortages (53),
/// shutdowns (57P01-57P03), serialisation failures and deadlocks (40), lock waits (55P03)
/// pass; anything else (syntax, permissions, data, a missing table) needs a person.
/// Errors without a SQLSTATE are network or TLS failures, and transient.
fn pg_error(operation: &str, error: &tokio_postgres::Error, personal: &[String]) -> DestinationError {
    let Some(db) = error.as_db_error() else {
        // No server message: the library's text is the only cause there is (no values in it).
        log::warn!("{operation}: {error}");
        if is_tls_failure(error) {
            // Still transient: the fix (a certificate, a root store) is made elsewhere and
            // the retry schedule gives it time; the code makes the cause plain.
            return DestinationError::transient(
                "tls",
                format!("{operation}: the TLS handshake failed (server certificate not trusted, or not for this host)"),
            );
        }
        let code = if error.is_closed() {
            "connection_closed"
        } else {
            "connection"
        };
        return DestinationError::transient(code, format!("{operation}: the database connection failed"));
    };
    let state = db.code().code();
    let transient = state.starts_with("08")
        || state.starts_with("53")
        || state.starts_with("40")
        || matches!(state, "57P01" | "57P02" | "57P03" | "55P03");
    // The message can quote values (never the DETAIL, which always does): redact them.
    let message = format!("{operation}: SQLSTATE {state}: {}", redact(db.message(), personal));
    let code = format!("sqlstate_{state}");
    if transient {
        DestinationError::transient(code, message)
    } else {
        DestinationError::permanent(code, message)
    }
}

/// A rustls error anywhere in the cause chain (tokio-rustls wraps it in an `io::Error`,
/// whose `source()` skips the wrapped error itself, hence `get_ref`).
fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = current.source();
    }
    false
}
