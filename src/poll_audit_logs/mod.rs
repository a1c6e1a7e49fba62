//! PollAuditLogs: the timer function that finds new sign-ups and hands each to
//! provisioning (`signup-provision` queue), exactly once in effect.
//!
//! The timer's own `ScheduleStatus` is never used as a watermark (it advances after failed
//! runs and is `0001-01-01` on the first): the checkpoint in the state store is.

pub mod checkpoint;
pub mod poller;

use crate::functions_host::{InvocationLog, InvocationRequest, InvocationResponse};
use poller::{PollOptions, Poller};
use std::sync::Arc;

pub const FUNCTION_NAME: &str = "PollAuditLogs";

/// The timer function: a poller, or the reason polling is not configured.
pub enum PollAuditLogs {
    Ready(Arc<Poller>),
    NotConfigured(String),
}

impl PollAuditLogs {
    pub async fn invoke(&self, request: InvocationRequest, mut log: InvocationLog) -> InvocationResponse {
        let poller = match self {
            PollAuditLogs::Ready(poller) => poller,
            PollAuditLogs::NotConfigured(why) => {
                log.warn(format!("polling is not configured: {why}"));
                return InvocationResponse::with_logs(log);
            }
        };
        if request
            .binding_json::<serde_json::Value>("myTimer")
            .is_ok_and(|timer| timer["IsPastDue"] == true)
        {
            log.info("the timer is past due: this run catches up from the checkpoint");
        }
        match poller.poll_once(&PollOptions::default()).await {
            Ok(summary) => {
                log.info(summary.line());
                InvocationResponse::with_logs(log)
            }
            Err(error) => {
                // The checkpoint stayed where it was: the next tick reads the same window again.
                log.error(format!("poll failed, checkpoint unchanged: {error}"));
                InvocationResponse::failed(log)
            }
        }
    }
}
