//! Operator commands on provisioning: `status` (the ledger, readable), `status --failed`,
//! `replay` (re-enqueue one user or every failed one). They reach state only through the
//! store, so they work the same against Azure Storage and the embedded store.

use std::time::Duration;

use chrono::Utc;

use crate::handover::{DetectionSource, ProvisionMessage};
use crate::store::{PROVISION_QUEUE, Store, StoreError};

use super::destinations::ObjectId;
use super::ledger::{Ledger, LedgerError, Ledgers, State};

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("enqueueing user {object_id}: {source}")]
    Queue { object_id: ObjectId, source: StoreError },
}

/// Failed destinations become pending again with a fresh retry schedule (the earlier
/// attempts and error stay visible until the next attempt), then the user is enqueued
/// for an immediate run. Destinations already done are not repeated.
pub async fn replay(store: &dyn Store, ledgers: &Ledgers, object_id: ObjectId) -> Result<(), OperationError> {
    if ledgers.read(object_id).await?.is_some_and(|ledger| ledger.has_failed()) {
        ledgers
            .update(object_id, |ledger| {
                for entry in ledger.destinations.values_mut() {
                    if entry.state == State::Failed {
                        entry.state = State::Pending;
                        entry.attempts = 0;
                        entry.dead_lettered = false;
                        entry.next_attempt_at = None;
                        entry.note = Some("replayed by an operator".to_string());
                    }
                }
            })
            .await?;
    }
    let message = ProvisionMessage {
        user_id: object_id.as_uuid(),
        detected_at: Utc::now(),
        source: DetectionSource::Operator,
        audit_record_id: None,
    };
    store
        .send(&PROVISION_QUEUE, &message.to_json(), Duration::ZERO)
        .await
        .map_err(|source| OperationError::Queue { object_id, source })
}

/// Replays every user with a failed destination; returns their ids.
pub async fn replay_failed(store: &dyn Store, ledgers: &Ledgers) -> Result<Vec<ObjectId>, OperationError> {
    let mut replayed = Vec::new();
    for ledger in ledgers.failed().await? {
        replay(store, ledgers, ledger.object_id).await?;
        replayed.push(ledger.object_id);
    }
    Ok(replayed)
}

/// One line per user with a failed destination: id, destination, code.
pub fn failed_lines(ledgers: &[Ledger]) -> Vec<String> {
    let mut lines = Vec::new();
    for ledger in ledgers {
        for (destination, entry) in &ledger.destinations {
            if entry.state == State::Failed {
                let code = entry.last_error.as_ref().map_or("unknown", |error| error.code.as_str());
                lines.push(format!(
                    "{} {destination} {code} attempts {}",
                    ledger.object_id, entry.attempts
                ));
            }
        }
    }
    lines
}
