//! The per-user ledger (`signup-ledger/<object id>.json`): what each destination did for
//! the user, so a redelivered or replayed message skips what is done, and an operator can
//! see what happened (`signup-bridge status`).
//!
//! ```json
//! {
//!   "objectId": "84360e8b-...",
//!   "createdAt": "2026-11-20T10:20:05Z",
//!   "updatedAt": "2026-11-20T10:26:07Z",
//!   "destinations": {
//!     "stripe": { "state": "done", "attempts": 2, "externalId": "cus_P9...",
//!                 "firstAttemptAt": "...", "lastAttemptAt": "...", "completedAt": "...",
//!                 "lastError": { "code": "http_503", "message": "...", "at": "..." } },
//!     "salesforce": { "state": "pending", "attempts": 1, "nextAttemptAt": "...", ... },
//!     "mailchimp": { "state": "skipped", "attempts": 0, "note": "the user did not consent ..." },
//!     "groups": { "state": "failed", "attempts": 1, "deadLettered": true, ... }
//!   }
//! }
//! ```
//!
//! Error messages are the destinations' own, already free of personal data and secrets.
//! Writes are read-modify-write with the store's optimistic concurrency: each change is
//! applied to the ledger at its current version, so two deliveries of the same user at once
//! merge per destination instead of overwriting each other. The version this process read
//! or wrote last is remembered, so a run's successive updates are one write each; a write
//! against a version someone else moved on conflicts, and only then is the ledger re-read.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::destinations::{Destination, ObjectId};
use crate::store::{ExpectedVersion, Store, StoreError, Versioned};

/// How often a conflicting write is re-read and re-applied before giving up.
const WRITE_ATTEMPTS: u32 = 5;
/// Ledgers remembered at their last known version; beyond this the memory starts afresh.
const KNOWN_VERSIONS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not done yet: never tried, or failed transiently and scheduled again.
    Pending,
    Done,
    /// Nothing to do for this user (no consent, no group applies).
    Skipped,
    /// Failed permanently or out of retries; a dead letter says so.
    Failed,
}

impl State {
    /// Done, skipped or failed: a delivery does not run it again (a replay resets failed).
    pub fn is_final(self) -> bool {
        !matches!(self, State::Pending)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Skipped => "skipped",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub state: State,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// For failed entries: the dead letter was sent (until then every delivery tries again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
}

impl Entry {
    pub fn pending() -> Entry {
        Entry {
            state: State::Pending,
            attempts: 0,
            external_id: None,
            last_error: None,
            note: None,
            first_attempt_at: None,
            last_attempt_at: None,
            next_attempt_at: None,
            completed_at: None,
            dead_lettered: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub object_id: ObjectId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub destinations: BTreeMap<Destination, Entry>,
}

impl Ledger {
    pub fn new(object_id: ObjectId, now: DateTime<Utc>) -> Ledger {
        Ledger {
            object_id,
            created_at: now,
            updated_at: now,
            destinations: BTreeMap::new(),
        }
    }

    pub fn entry(&self, destination: Destination) -> Option<&Entry> {
        self.destinations.get(&destination)
    }

    /// The state of a destination; one without an entry is pending.
    pub fn state(&self, destination: Destination) -> State {
        self.entry(destination).map_or(State::Pending, |entry| entry.state)
    }

    pub fn has_failed(&self) -> bool {
        self.destinations.values().any(|entry| entry.state == State::Failed)
    }

    /// External ids obtained so far, keyed by [`Destination::as_str`].
    pub fn external_ids(&self) -> BTreeMap<String, String> {
        self.destinations
            .iter()
            .filter_map(|(destination, entry)| {
                entry
                    .external_id
                    .as_ref()
                    .map(|id| (destination.as_str().to_string(), id.clone()))
            })
            .collect()
    }

    /// For `status`: one line per destination.
    pub fn render(&self) -> String {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut out = String::new();
        let _ = writeln!(out, "user {}", self.object_id);
        let _ = writeln!(
            out,
            "  ledger created {}, updated {}",
            time(&self.created_at),
            time(&self.updated_at)
        );
        if self.destinations.is_empty() {
            let _ = writeln!(out, "  no destination attempted yet");
        }
        for (destination, entry) in &self.destinations {
            let _ = write!(
                out,
                "  {:<11} {:<8} attempts {}",
                destination.as_str(),
                entry.state.as_str(),
                entry.attempts
            );
            if let Some(id) = &entry.external_id {
                let _ = write!(out, ", id {id}");
            }
            if let Some(at) = &entry.completed_at {
                let _ = write!(out, ", completed {}", time(at));
            }
            if let Some(at) = &entry.next_attempt_at
                && entry.state == State::Pending
            {
                let _ = write!(out, ", next attempt after {}", time(at));
            }
            if let Some(note) = &entry.note {
                let _ = write!(out, ", {note}");
            }
            if let Some(error) = &entry.last_error {
                let _ = write!(
                    out,
                    "\n              last error {} at {}: {}",
                    error.code,
                    time(&error.at),
                    error.message
                );
            }
            out.push('\n');
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger of user {object_id}: {source}")]
    Store { object_id: ObjectId, source: StoreError },
    #[error("ledger of user {object_id} is not valid JSON ({detail}); fix or delete the blob")]
    Corrupt { object_id: ObjectId, detail: String },
    #[error("ledger of user {object_id}: still conflicting after {WRITE_ATTEMPTS} attempts")]
    Contention { object_id: ObjectId },
    #[error("listing the ledgers: {0}")]
    List(StoreError),
}

impl LedgerError {
    pub fn is_transient(&self) -> bool {
        match self {
            LedgerError::Store { source, .. } | LedgerError::List(source) => source.is_transient(),
            LedgerError::Contention { .. } => true,
            LedgerError::Corrupt { .. } => false,
        }
    }
}

/// Reads and updates ledgers through the store.
#[derive(Clone)]
pub struct Ledgers {
    store: Arc<dyn Store>,
    /// The document each ledger had when this process last read or wrote it.
    known: Arc<Mutex<HashMap<ObjectId, Versioned>>>,
}

impl Ledgers {
    pub fn new(store: Arc<dyn Store>) -> Ledgers {
        Ledgers {
            store,
            known: Arc::default(),
        }
    }

    /// The ledger as the store has it now.
    pub async fn read(&self, object_id: ObjectId) -> Result<Option<Ledger>, LedgerError> {
        let read = self.read_document(object_id).await?;
        read.map(|document| decode(object_id, &document.value)).transpose()
    }

    async fn read_document(&self, object_id: ObjectId) -> Result<Option<Versioned>, LedgerError> {
        let read = self
            .store
            .read_ledger(object_id.as_uuid())
            .await
            .map_err(|source| LedgerError::Store { object_id, source })?;
        match &read {
            Some(document) => self.remember(object_id, document.clone()),
            None => self.forget(object_id),
        }
        Ok(read)
    }

    fn remember(&self, object_id: ObjectId, document: Versioned) {
        let mut known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= KNOWN_VERSIONS && !known.contains_key(&object_id) {
            known.clear();
        }
        known.insert(object_id, document);
    }

    fn forget(&self, object_id: ObjectId) {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&object_id);
    }

    fn last_known(&self, object_id: ObjectId) -> Option<Versioned> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&object_id)
            .cloned()
    }

    /// Applies `change` to the current ledger (a new one when there is none) and writes it,
    /// re-reading and re-applying on a version conflict. Returns the ledger as written.
    pub async fn update(
        &self,
        object_id: ObjectId,
        mut change: impl FnMut(&mut Ledger),
    ) -> Result<Ledger, LedgerError> {
        let store_error = |source| LedgerError::Store { object_id, source };
        // First against the version last seen here (no read); after a conflict, re-read.
        let mut current = self.last_known(object_id);
        for attempt in 0..WRITE_ATTEMPTS {
            let read = match current.take() {
                Some(known) if attempt == 0 => Some(known),
                _ => self.read_document(object_id).await?,
            };
            let now = Utc::now();
            let mut ledger = match &read {
                Some(document) => decode(object_id, &document.value)?,
                None => Ledger::new(object_id, now),
            };
            change(&mut ledger);
            ledger.updated_at = now;
            let bytes = serde_json::to_vec_pretty(&ledger).expect("a ledger always serialises");
            match self
                .store
                .write_ledger(object_id.as_uuid(), &bytes, &ExpectedVersion::from_read(read.as_ref()))
                .await
            {
                Ok(version) => {
                    self.remember(object_id, Versioned { version, value: bytes });
                    return Ok(ledger);
                }
                Err(error) if error.is_conflict() => continue,
                Err(error) => {
                    self.forget(object_id);
                    return Err(store_error(error));
                }
            }
        }
        Err(LedgerError::Contention { object_id })
    }

    /// Object ids of users with a failed destination.
    pub async fn failed(&self) -> Result<Vec<Ledger>, LedgerError> {
        let ids = self.store.list_ledgers().await.map_err(LedgerError::List)?;
        let mut failed = Vec::new();
        for id in ids {
            let Ok(object_id) = ObjectId::try_from(id) else {
                continue;
            };
            if let Some(ledger) = self.read(object_id).await?
                && ledger.has_failed()
            {
                failed.push(ledger);
            }
        }
        failed.sort_by_key(|ledger| ledger.object_id);
        Ok(failed)
    }
}

fn decode(object_id: ObjectId, bytes: &[u8]) -> Result<Ledger, LedgerError> {
    serde_json::from_slice(bytes).map_err(|error| LedgerError::Corrupt {
        object_id,
        detail: format!("line {} column {}", error.line(), error.column()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_round_trips_and_renders_without_surprises() {
        let id = ObjectId::parse("84360e8b-3321-4e37-b9ec-10fccd0263b8").unwrap();
        let now = Utc::now();
        let mut ledger = Ledger::new(id, now);
        ledger.destinations.insert(
            Destination::Stripe,
            Entry {
                state: State::Done,
                attempts: 2,
                external_id: Some("cus_123".into()),
                ..Entry::pending()
            },
        );
        ledger.destinations.insert(
            Destination::Groups,
            Entry {
                state: State::Failed,
                ..Entry::pending()
            },
        );
        let json = serde_json::to_value(&ledger).unwrap();
        assert_eq!(json["destinations"]["stripe"]["state"], "done");
        assert_eq!(json["destinations"]["stripe"]["externalId"], "cus_123");
        assert!(json["destinations"]["stripe"].get("deadLettered").is_none());
        let back: Ledger = serde_json::from_value(json).unwrap();
        assert_eq!(back, ledger);
        assert_eq!(ledger.state(Destination::Postgres), State::Pending);
        assert!(ledger.has_failed());
        assert_eq!(ledger.external_ids().get("stripe").map(String::as_str), Some("cus_123"));
        let text = ledger.render();
        assert!(text.contains("stripe      done     attempts 2, id cus_123"), "{text}");
    }
}
