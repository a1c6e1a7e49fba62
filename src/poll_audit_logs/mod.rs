//! PollAuditLogs: the timer function that finds new sign-ups in the directory audit log.
//!
//! Not implemented yet (step 3): until then the timer gets a valid, empty response and
//! a log line saying so, so a deployed app does not fail its timer runs.

pub mod checkpoint;

use crate::functions_host::{InvocationLog, InvocationRequest, InvocationResponse};

pub const FUNCTION_NAME: &str = "PollAuditLogs";

pub async fn invoke(_request: InvocationRequest, mut log: InvocationLog) -> InvocationResponse {
    log.warn("polling is not configured: audit-log polling is not implemented in this version");
    InvocationResponse::with_logs(log)
}
