//! The queue-triggered ProvisionUser invocation: `POST /ProvisionUser` with the message under
//! `Data.message` (a JSON string the host encodes a second time, or an object) and
//! `Metadata.DequeueCount`.
//!
//! Answers: success once the pipeline has recorded every outcome and, for transient
//! failures, durably re-enqueued the user (that copy is the retry). Failure (HTTP 500) only
//! when the ledger or the queue cannot be reached, or provisioning is not configured: then
//! the host redelivers, and after `maxDequeueCount` moves the message to
//! `signup-provision-poison`, where it stays for an operator. A message that can never be
//! processed (not a provision message) is answered with success after an error log and a
//! dead letter: redelivering it would change nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::functions_host::{InvocationLog, InvocationRequest, InvocationResponse};
use crate::handover::ProvisionMessage;
use crate::store::{FAILED_QUEUE, Store};

use super::pipeline::{Pipeline, PipelineError};

pub const FUNCTION_NAME: &str = "ProvisionUser";
/// The trigger's binding name in `ProvisionUser/function.json`.
pub const BINDING: &str = "message";

pub enum ProvisionUser {
    Ready(Arc<Pipeline>, Arc<dyn Store>),
    NotConfigured(String),
}

/// What became of one message, for the host and for `run`'s worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Recorded (done, retried through a new message, or dead-lettered): delete it.
    Finished,
    /// Could not be recorded: leave it for redelivery.
    Failed,
}

impl ProvisionUser {
    pub async fn invoke(&self, request: InvocationRequest, mut log: InvocationLog) -> InvocationResponse {
        let dequeue_count = request
            .metadata_value("DequeueCount")
            .and_then(|count| count.as_u64())
            .unwrap_or(1);
        let message = request
            .binding_json::<ProvisionMessage>(BINDING)
            .map_err(|error| error.to_string());
        match self.handle(message, dequeue_count, &mut log).await {
            Handled::Finished => InvocationResponse::with_logs(log),
            Handled::Failed => InvocationResponse::failed(log),
        }
    }

    /// One message, already decoded (or the reason it could not be).
    pub async fn handle(
        &self,
        message: Result<ProvisionMessage, String>,
        dequeue_count: u64,
        log: &mut InvocationLog,
    ) -> Handled {
        let (pipeline, store) = match self {
            ProvisionUser::Ready(pipeline, store) => (pipeline, store),
            ProvisionUser::NotConfigured(why) => {
                if let Err(problem) = &message {
                    log.error(format!("not a provision message ({problem}); nothing can process it"));
                    return Handled::Finished;
                }
                // Kept by the host (retries, then the poison queue) until configured.
                log.error(format!("provisioning is not configured: {why}"));
                return Handled::Failed;
            }
        };
        let message = match message {
            Ok(message) => message,
            Err(problem) => return malformed(store.as_ref(), &problem, log).await,
        };
        if dequeue_count > 1 {
            // Only crashes and unreachable storage make the host redeliver: worth a note.
            log.warn(format!(
                "user {}: delivery {dequeue_count} of this message",
                message.user_id
            ));
        }
        match pipeline.process(&message).await {
            Ok(report) => {
                for line in report.lines() {
                    log.info(line);
                }
                Handled::Finished
            }
            Err(PipelineError::InvalidUser) => malformed(store.as_ref(), "the user id is the nil GUID", log).await,
            Err(error) => {
                log.error(format!(
                    "user {}: could not record provisioning ({error}); the host will redeliver",
                    message.user_id
                ));
                Handled::Failed
            }
        }
    }
}

/// A message nothing can process: a dead letter says so (without its content), then it is done.
async fn malformed(store: &dyn Store, problem: &str, log: &mut InvocationLog) -> Handled {
    let letter = json!({ "code": "malformed_message", "message": problem, "failedAt": chrono::Utc::now() });
    match store.send(&FAILED_QUEUE, &letter.to_string(), Duration::ZERO).await {
        Ok(()) => {
            log.error(format!(
                "not a provision message ({problem}); dead letter on {FAILED_QUEUE}"
            ));
            Handled::Finished
        }
        Err(error) => {
            log.error(format!(
                "not a provision message ({problem}) and no dead letter could be sent ({error})"
            ));
            Handled::Failed
        }
    }
}
