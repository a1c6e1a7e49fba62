//! The queue worker of `signup-bridge run`: ProvisionUser outside Functions, with the host's
//! queue-trigger semantics (see host.json `extensions.queues`): up to
//! [`WorkerSettings::concurrency`] messages side by side, each received with a visibility
//! lease that is renewed while it is handled, deleted when handled, left to reappear after
//! [`WorkerSettings::retry_after_failure`] when it failed, and moved to
//! `signup-provision-poison` after failing [`WorkerSettings::max_dequeue_count`] times.
//!
//! Slots are refilled as they free up (not batch by batch), so one slow user does not hold
//! up the others. A worker that dies holding messages loses nothing: its lease runs out
//! and the messages reappear, at most [`WorkerSettings::lease`] later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::functions_host::InvocationLog;
use crate::handover::ProvisionMessage;
use crate::store::{MAX_RECEIVE, PROVISION_QUEUE, QueueName, ReceivedMessage, Store, StoreError};

use super::function::{FUNCTION_NAME, Handled, ProvisionUser};

/// Where the host (and this worker) moves messages that kept failing.
pub const POISON_QUEUE: QueueName = QueueName::from_static("signup-provision-poison");

/// The same values as host.json `extensions.queues`, plus the lease the host manages itself.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Messages handled at once (host.json `batchSize`); `RUN_PROVISION_CONCURRENCY`.
    pub concurrency: usize,
    pub max_dequeue_count: u32,
    /// How long a received message stays hidden; renewed every third of it while the
    /// message is handled, so it is also how soon a dead worker's messages reappear.
    pub lease: Duration,
    /// host.json `visibilityTimeout`: a failed message reappears after this.
    pub retry_after_failure: Duration,
    /// Longest wait between polls of an empty queue (the host's `maxPollingInterval`).
    pub max_idle_wait: Duration,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            concurrency: 8,
            max_dequeue_count: 5,
            lease: Duration::from_secs(30),
            retry_after_failure: Duration::from_secs(30),
            max_idle_wait: Duration::from_secs(5),
        }
    }
}

/// Runs until `shutdown` resolves, then lets the messages in hand finish; an unreachable
/// store is retried, never fatal.
pub async fn run(
    function: Arc<ProvisionUser>,
    store: Arc<dyn Store>,
    settings: WorkerSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    // Receive when a quarter of the slots are free: fewer, fuller receives.
    let refill_at = u32::try_from((settings.concurrency / 4).max(1)).unwrap_or(1);
    let mut running = JoinSet::new();
    let mut idle = Duration::from_millis(200);
    loop {
        let mut free = tokio::select! {
            _ = &mut shutdown => break,
            free = slots.clone().acquire_many_owned(refill_at) => free.expect("the semaphore is never closed"),
        };
        if let Ok(more) = slots.clone().try_acquire_many_owned(slots.available_permits() as u32) {
            free.merge(more);
        }
        while running.try_join_next().is_some() {}
        let wanted = u32::try_from(free.num_permits())
            .unwrap_or(MAX_RECEIVE)
            .min(MAX_RECEIVE);
        let batch = match store.receive(&PROVISION_QUEUE, wanted, settings.lease).await {
            Ok(batch) => batch,
            Err(error) => {
                log::warn!("{FUNCTION_NAME} worker: receiving from {PROVISION_QUEUE} failed ({error}); retrying");
                Vec::new()
            }
        };
        if batch.is_empty() {
            drop(free);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(idle) => {}
            }
            idle = (idle * 2).min(settings.max_idle_wait);
            continue;
        }
        idle = Duration::from_millis(200);
        for message in batch {
            let slot = free.split(1).expect("one slot per received message");
            let (function, store, settings) = (function.clone(), store.clone(), settings.clone());
            running.spawn(async move {
                process_one(&function, store.as_ref(), &settings, message).await;
                drop(slot);
            });
        }
    }
    // A user in progress finishes; the ledger covers one cut off by a kill.
    while running.join_next().await.is_some() {}
}

/// One message, as the host would handle it.
pub async fn process_one(
    function: &ProvisionUser,
    store: &dyn Store,
    settings: &WorkerSettings,
    message: ReceivedMessage,
) -> Handled {
    if message.dequeue_count > settings.max_dequeue_count {
        // A worker died holding it too often: the host would have poisoned it already.
        poison(store, &message).await;
        return Handled::Failed;
    }
    let decoded = serde_json::from_str::<ProvisionMessage>(&message.text).map_err(|error| {
        format!(
            "not the expected JSON (line {} column {})",
            error.line(),
            error.column()
        )
    });
    let mut log = InvocationLog::new(FUNCTION_NAME);
    let dequeue_count = u64::from(message.dequeue_count);
    let current = Mutex::new(message);
    let handled = tokio::select! {
        handled = function.handle(decoded, dequeue_count, &mut log) => handled,
        never = keep_leased(store, &current, settings.lease) => match never {},
    };
    let message = current.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    match handled {
        Handled::Finished => {
            if let Err(error) = store.delete(&PROVISION_QUEUE, &message).await {
                // The lease ran out and someone else has it: the ledger makes that harmless.
                log::warn!(
                    "{FUNCTION_NAME} worker: deleting message {} failed ({error})",
                    message.id
                );
            }
        }
        Handled::Failed if message.dequeue_count >= settings.max_dequeue_count => poison(store, &message).await,
        Handled::Failed => {
            if let Err(error) = store
                .set_visibility(&PROVISION_QUEUE, &message, settings.retry_after_failure)
                .await
            {
                log::warn!(
                    "{FUNCTION_NAME} worker: delaying message {} failed ({error})",
                    message.id
                );
            }
        }
    }
    handled
}

/// Renews the message's lease every third of it, keeping its newest pop receipt in
/// `current`; stops renewing (but never returns) once the claim is lost.
async fn keep_leased(store: &dyn Store, current: &Mutex<ReceivedMessage>, lease: Duration) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(lease / 3).await;
        let message = current.lock().expect("never held across an await").clone();
        match store.set_visibility(&PROVISION_QUEUE, &message, lease).await {
            Ok(renewed) => *current.lock().expect("never held across an await") = renewed,
            Err(StoreError::NotFound(_)) => {
                log::warn!(
                    "{FUNCTION_NAME} worker: the lease on message {} was lost; another delivery may run it too (the ledger keeps that harmless)",
                    message.id
                );
                return std::future::pending().await;
            }
            Err(error) => log::warn!(
                "{FUNCTION_NAME} worker: renewing the lease on message {} failed ({error}); trying again",
                message.id
            ),
        }
    }
}

async fn poison(store: &dyn Store, message: &ReceivedMessage) {
    match store.send(&POISON_QUEUE, &message.text, Duration::ZERO).await {
        Ok(()) => {
            log::error!(
                "{FUNCTION_NAME} worker: message {} failed {} times; moved to {POISON_QUEUE}",
                message.id,
                message.dequeue_count
            );
            if let Err(error) = store.delete(&PROVISION_QUEUE, message).await {
                log::warn!(
                    "{FUNCTION_NAME} worker: deleting poisoned message {} failed ({error})",
                    message.id
                );
            }
        }
        Err(error) => log::error!(
            "{FUNCTION_NAME} worker: message {} could not be moved to {POISON_QUEUE} ({error}); it stays queued",
            message.id
        ),
    }
}
