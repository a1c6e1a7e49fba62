//! State stores for tests: the embedded store in a temporary directory, and Azure Storage
//! on the real Azurite that `./scripts/test` starts (its own name prefix per test, so tests
//! share one Azurite). Without Azurite the Azure half is skipped loudly, or fails when
//! `SIGNUP_TEST_REQUIRE_SERVICES=1` (as under `./scripts/test`).

use signup_bridge::settings::storage::{AZURE_WEB_JOBS_STORAGE, NAME_PREFIX, StorageSettings};
use signup_bridge::store::{Store, open};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub fn azurite_connection_string() -> Option<String> {
    match std::env::var("SIGNUP_TEST_STORAGE_CONNECTION_STRING") {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var("SIGNUP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!(
                "SIGNUP_TEST_REQUIRE_SERVICES=1 but SIGNUP_TEST_STORAGE_CONNECTION_STRING is unset: Azurite is required"
            )
        }
        _ => {
            eprintln!(
                "\n*** skipped: Azurite not running (SIGNUP_TEST_STORAGE_CONNECTION_STRING is unset; \
                 ./scripts/test starts it) ***\n"
            );
            None
        }
    }
}

pub fn unique_prefix() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// App settings for the Azure store on Azurite with a fresh name prefix, or `None` (skipped).
pub fn azurite_settings() -> Option<HashMap<String, String>> {
    let connection = azurite_connection_string()?;
    Some(HashMap::from([
        (AZURE_WEB_JOBS_STORAGE.to_string(), connection),
        (NAME_PREFIX.to_string(), unique_prefix()),
    ]))
}

/// The Azure store on Azurite with its own name prefix, or `None` (skipped).
pub async fn azure() -> Option<Arc<dyn Store>> {
    let settings = StorageSettings::from_map(&azurite_settings()?).expect("the test connection string is valid");
    assert!(matches!(settings, StorageSettings::Azure(_)));
    Some(open(&settings, None).await.unwrap())
}

/// The embedded store in a fresh directory (kept alive by the returned guard).
pub async fn embedded() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&StorageSettings::Embedded(dir.path().to_path_buf()), None)
        .await
        .unwrap();
    (store, dir)
}

/// The state store a spawned `signup-bridge` shares with the test: Azure Storage on Azurite
/// (its own name prefix) when it runs, else the embedded store in a fresh directory;
/// `SIGNUP_BENCH_STORE=embedded` picks the embedded store even with Azurite running.
pub struct SharedStore {
    /// The settings that point the process at it.
    pub settings: Vec<(String, String)>,
    pub store: Arc<dyn Store>,
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl SharedStore {
    pub async fn open() -> SharedStore {
        let azurite = match std::env::var("SIGNUP_BENCH_STORE").as_deref() {
            Ok("embedded") => None,
            _ => azurite_settings(),
        };
        let (settings, dir, kind) = match azurite {
            Some(azure) => (azure.into_iter().collect::<Vec<_>>(), None, "Azure Storage on Azurite"),
            None => {
                let dir = tempfile::tempdir().unwrap();
                let settings = vec![("SIGNUP_STATE_DIR".to_string(), dir.path().display().to_string())];
                (settings, Some(dir), "the embedded store")
            }
        };
        let map = settings.iter().cloned().collect();
        let store = open(&StorageSettings::from_map(&map).unwrap(), None).await.unwrap();
        SharedStore {
            settings,
            store,
            kind,
            _dir: dir,
        }
    }
}
