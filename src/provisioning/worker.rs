//! The queue worker of `signup-bridge run`: ProvisionUser outside Functions, with the host's
//! queue-trigger semantics (see host.json `extensions.queues`): receive a batch with a
//! visibility lease, run the messages side by side, delete each one handled, leave a failed
//! one to reappear after [`WorkerSettings::retry_after_failure`], and move a message that
//! failed [`WorkerSettings::max_dequeue_count`] times to `signup-provision-poison`.

use std::sync::Arc;
use std::time::Duration;

use crate::functions_host::InvocationLog;
use crate::handover::ProvisionMessage;
use crate::store::{PROVISION_QUEUE, QueueName, ReceivedMessage, Store};

use super::function::{FUNCTION_NAME, Handled, ProvisionUser};

/// Where the host (and this worker) moves messages that kept failing.
pub const POISON_QUEUE: QueueName = QueueName::from_static("signup-provision-poison");

/// The same values as host.json `extensions.queues`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub batch_size: u32,
    pub max_dequeue_count: u32,
    /// How long a received message stays hidden while it is processed (the host uses the
    /// function timeout); longer than any run, so no one else takes it meanwhile.
    pub lease: Duration,
    /// host.json `visibilityTimeout`: a failed message reappears after this.
    pub retry_after_failure: Duration,
    /// Longest wait between polls of an empty queue (the host's `maxPollingInterval`).
    pub max_idle_wait: Duration,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            batch_size: 8,
            max_dequeue_count: 5,
            lease: Duration::from_secs(6 * 60),
            retry_after_failure: Duration::from_secs(30),
            max_idle_wait: Duration::from_secs(5),
        }
    }
}

/// Runs until `shutdown` resolves; an unreachable store is retried, never fatal.
pub async fn run(
    function: Arc<ProvisionUser>,
    store: Arc<dyn Store>,
    settings: WorkerSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let queue = PROVISION_QUEUE;
    let mut idle = Duration::from_millis(200);
    loop {
        let received = tokio::select! {
            _ = &mut shutdown => return,
            received = store.receive(&queue, settings.batch_size, settings.lease) => received,
        };
        let batch = match received {
            Ok(batch) => batch,
            Err(error) => {
                log::warn!("{FUNCTION_NAME} worker: receiving from {PROVISION_QUEUE} failed ({error}); retrying");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(idle) => {}
            }
            idle = (idle * 2).min(settings.max_idle_wait);
            continue;
        }
        idle = Duration::from_millis(200);
        let work = batch
            .into_iter()
            .map(|message| process_one(&function, store.as_ref(), &settings, message));
        futures_util::future::join_all(work).await;
    }
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
    let handled = function
        .handle(decoded, u64::from(message.dequeue_count), &mut log)
        .await;
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
