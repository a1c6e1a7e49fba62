//! Settings of PollAuditLogs.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `POLL_SOURCE` | `auditLog` | `auditLog` (the `Add user` records; AuditLog.Read.All) or `users` (users by `createdDateTime`; User.Read.All, no reporting latency) |
//! | `POLL_OVERLAP_MINUTES` | `30` | How far before the watermark each window starts, to catch records the audit log ingests late |
//! | `POLL_START_AT` | now | RFC 3339 time the very first run starts from (minus the overlap); later runs follow the checkpoint |
//! | `POLL_PAGE_SIZE` | `500` | Audit records per Graph page (`$top`, 1-999): fewer pages means fewer of the 5 requests per 10 s the audit API allows |
//! | `POLL_RUN_BUDGET_SECONDS` | `240` | A run stops paging after this long and carries on at the next tick; keep it under `functionTimeout` |

use super::Reader;
use crate::poll_audit_logs::poller::{PollSettings, SourceKind};
use chrono::{DateTime, Utc};
use std::time::Duration;

pub(crate) fn from_reader(reader: &mut Reader) -> PollSettings {
    let source = match reader.raw("POLL_SOURCE").map(str::to_ascii_lowercase).as_deref() {
        None | Some("auditlog") | Some("audit_log") | Some("audit-log") => SourceKind::AuditLog,
        Some("users") => SourceKind::Users,
        Some(_) => {
            reader.problem("POLL_SOURCE", "is not a known source", "auditLog or users");
            SourceKind::AuditLog
        }
    };
    let overlap = reader
        .parsed::<u32>("POLL_OVERLAP_MINUTES", "a whole number of minutes, e.g. 30")
        .unwrap_or(30);
    let first_start = reader
        .raw("POLL_START_AT")
        .and_then(|text| match DateTime::parse_from_rfc3339(text) {
            Ok(time) => Some(time.with_timezone(&Utc)),
            Err(_) => {
                reader.problem(
                    "POLL_START_AT",
                    "is not a time",
                    "an RFC 3339 time such as 2026-11-20T10:00:00Z",
                );
                None
            }
        });
    let budget = reader
        .parsed::<u64>(
            "POLL_RUN_BUDGET_SECONDS",
            "a whole number of seconds below the function timeout, e.g. 240",
        )
        .unwrap_or(240);
    if budget == 0 {
        reader.problem(
            "POLL_RUN_BUDGET_SECONDS",
            "is 0",
            "a whole number of seconds below the function timeout, e.g. 240",
        );
    }
    let page_size = reader
        .parsed::<u32>("POLL_PAGE_SIZE", "a whole number from 1 to 999")
        .unwrap_or(500);
    if !(1..=999).contains(&page_size) {
        reader.problem("POLL_PAGE_SIZE", "is out of range", "a whole number from 1 to 999");
    }
    PollSettings {
        page_size: page_size.clamp(1, 999),
        overlap: chrono::Duration::minutes(i64::from(overlap)),
        first_start,
        source,
        run_budget: Duration::from_secs(budget.max(1)),
    }
}
