//! ProvisionUser: associates each new user with every configured destination, idempotently,
//! with a per-user ledger, retries on a schedule and dead letters.
//!
//! - [`pipeline`]: one user through every destination (the business logic; knows nothing of
//!   the Functions host, so `provision`, `run` and the queue trigger share it).
//! - [`ledger`]: the per-user record of what each destination did.
//! - [`directory`], [`groups`]: the Graph-based destinations; [`destinations`]: the external ones.
//! - [`retry_schedule`]: when a transient failure is tried again.
//! - [`function`]: the queue-triggered invocation; [`worker`]: the same outside Functions.
//! - [`operations`]: `status`, `replay`.

pub mod destinations;
pub mod directory;
pub mod function;
pub mod groups;
pub mod ledger;
pub mod operations;
pub mod pipeline;
pub mod retry_schedule;
pub mod worker;

pub use function::{FUNCTION_NAME, ProvisionUser};
pub use ledger::{Ledger, Ledgers, State};
pub use pipeline::{DeadLetter, Disposition, Pipeline, PipelineError, Report};
pub use retry_schedule::RetrySchedule;

use crate::graph::GraphError;
use destinations::DestinationError;

/// A Graph failure as a destination error: `graph_<status>[:<code>]`, transient when Graph's
/// client says so, and also when no token could be had: an Entra outage must not dead-letter
/// every user (a broken certificate fails too, after the schedule, and `check` names it).
/// Graph's error texts hold operation, status, code and request ids only.
pub(crate) fn graph_failure(operation: &str, error: &GraphError) -> DestinationError {
    let code = match (error.status(), error.code()) {
        (Some(status), Some(code)) => format!("graph_{status}:{code}"),
        (Some(status), None) => format!("graph_{status}"),
        (None, _) => match error {
            GraphError::Token { .. } => "graph_token".to_string(),
            GraphError::Transport { reason, .. } => format!("graph_{}", reason.replace(' ', "_")),
            _ => "graph_response".to_string(),
        },
    };
    let message: String = format!("{operation}: {error}").chars().take(300).collect();
    if error.is_transient() || matches!(error, GraphError::Token { .. }) {
        DestinationError::Transient {
            code,
            message,
            retry_after: error.retry_after(),
        }
    } else {
        DestinationError::permanent(code, message)
    }
}
