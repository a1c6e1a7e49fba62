//! The message PollAuditLogs hands to ProvisionUser through the `signup-provision` queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a new user was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DetectionSource {
    /// An `Add user` record of the directory audit log.
    AuditLog,
    /// `createdDateTime` of the user (the users source).
    Users,
    /// `signup-bridge replay` / `provision` by an operator.
    Operator,
}

/// One new user to provision. Object ids only: no personal data travels on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionMessage {
    pub user_id: Uuid,
    pub detected_at: DateTime<Utc>,
    /// Absent in messages from older senders; treated as the audit log.
    #[serde(default = "default_source")]
    pub source: DetectionSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_record_id: Option<String>,
}

fn default_source() -> DetectionSource {
    DetectionSource::AuditLog
}

impl ProvisionMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a provision message always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_sample_message_parses() {
        // The queue sample in functions-host-invocations.json (after the host's decoding).
        let message: ProvisionMessage = serde_json::from_str(
            r#"{"userId":"84360e8b-3321-4e37-b9ec-10fccd0263b8","detectedAt":"2026-11-20T10:20:01Z"}"#,
        )
        .unwrap();
        assert_eq!(message.user_id.to_string(), "84360e8b-3321-4e37-b9ec-10fccd0263b8");
        assert_eq!(message.source, DetectionSource::AuditLog);
        let round_trip: ProvisionMessage = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(round_trip, message);
    }
}
