//! The state store: the one interface through which PollAuditLogs, ProvisionUser and the CLI
//! keep state, with an Azure Storage implementation ([`azure`]) and an embedded, local
//! directory implementation ([`embedded`]) for laptops and tests.
//!
//! | What | Azure Storage | Embedded (`SIGNUP_STATE_DIR`) |
//! |---|---|---|
//! | checkpoint `<name>` | container `signup-state`, blob `checkpoint/<name>.json` | `signup-state/checkpoint/<name>.json` |
//! | ledger of user `<id>` | container `signup-ledger`, blob `<id>.json` | `signup-ledger/<id>.json` |
//! | work queue `<queue>` | queue `<queue>` (base64 message text) | `queues/<queue>/` (one file per message) |
//!
//! Documents (checkpoints, ledgers) are opaque bytes written with optimistic concurrency:
//! every read returns a [`Version`], every write names the version it expects
//! ([`ExpectedVersion`]) and fails with [`StoreError::Conflict`] when someone else wrote first.
//!
//! Queues are at-least-once: a received message stays in the queue, invisible for the
//! visibility timeout, until it is deleted with its pop receipt; a consumer that dies before
//! deleting it sees it again (with `dequeue_count` one higher) when the timeout ends.

pub mod azure;
pub mod connection;
pub mod embedded;
pub mod sas;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::settings::storage::StorageSettings;

/// The container (Azure) or folder (embedded) that holds checkpoints.
pub const STATE_CONTAINER: &str = "signup-state";
/// The container (Azure) or folder (embedded) that holds the per-user ledgers.
pub const LEDGER_CONTAINER: &str = "signup-ledger";

/// New users to provision (ProvisionUser's queue trigger reads it).
pub const PROVISION_QUEUE: QueueName = QueueName::from_static("signup-provision");
/// Users whose provisioning failed for good (dead letters, kept until handled).
pub const FAILED_QUEUE: QueueName = QueueName::from_static("signup-provision-failed");

/// The longest visibility delay or timeout Azure Queue Storage accepts.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most messages one `receive` returns (Azure's limit per request).
pub const MAX_RECEIVE: u32 = 32;
/// The longest message text, in bytes of UTF-8. Azure allows 64 KiB of message text, and
/// base64 (see [`azure`]) makes 48 KiB of text 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 48 * 1024;

/// Opens the store the settings describe: Azure Storage, or the embedded directory.
///
/// `http` is the client the Azure implementation sends through (tests pass one that trusts
/// their CA); `None` builds one with the store's timeouts. Nothing is contacted here:
/// containers and queues are created at first use.
pub async fn open(settings: &StorageSettings, http: Option<reqwest::Client>) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        StorageSettings::Azure(azure) => Ok(Arc::new(azure::AzureStore::new(azure, http)?)),
        StorageSettings::Embedded(dir) => Ok(Arc::new(embedded::EmbeddedStore::open(dir).await?)),
    }
}

/// Checkpoints, per-user ledgers and work queues. See the module documentation.
#[async_trait]
pub trait Store: Send + Sync {
    /// The checkpoint document, or `None` when it was never written.
    async fn read_checkpoint(&self, name: &CheckpointName) -> Result<Option<Versioned>, StoreError>;

    /// Writes the checkpoint if its current version is `expected`; returns the new version.
    /// Fails with [`StoreError::Conflict`] when another writer got there first.
    async fn write_checkpoint(
        &self,
        name: &CheckpointName,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError>;

    /// The user's ledger, or `None` when there is none yet.
    async fn read_ledger(&self, object_id: Uuid) -> Result<Option<Versioned>, StoreError>;

    /// Writes the user's ledger with the same optimistic concurrency as checkpoints.
    async fn write_ledger(
        &self,
        object_id: Uuid,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError>;

    /// The object ids of every user that has a ledger, in no particular order.
    async fn list_ledgers(&self) -> Result<Vec<Uuid>, StoreError>;

    /// Adds a message, invisible for `delay` (0 to [`MAX_VISIBILITY`], rounded up to whole
    /// seconds). Messages do not expire.
    async fn send(&self, queue: &QueueName, text: &str, delay: Duration) -> Result<(), StoreError>;

    /// Takes up to `max` visible messages (at most [`MAX_RECEIVE`]), hiding each for
    /// `visibility_timeout` (1 s to [`MAX_VISIBILITY`]) and counting the dequeue. An empty
    /// list means nothing is visible now.
    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError>;

    /// Removes a received message. [`StoreError::NotFound`] when the claim is gone: the
    /// message was deleted already, or its timeout ended and someone else received it.
    async fn delete(&self, queue: &QueueName, message: &ReceivedMessage) -> Result<(), StoreError>;

    /// Hides a received message for `delay` from now (0 makes it visible at once) without
    /// counting a dequeue; returns the message with its new pop receipt.
    async fn set_visibility(
        &self,
        queue: &QueueName,
        message: &ReceivedMessage,
        delay: Duration,
    ) -> Result<ReceivedMessage, StoreError>;

    /// How many messages the queue holds, visible or not (Azure's figure is approximate).
    async fn approximate_count(&self, queue: &QueueName) -> Result<u64, StoreError>;
}

/// A document and the version it was read at.
#[derive(Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: Version,
    pub value: Vec<u8>,
}

impl Versioned {
    /// The document as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }
}

impl fmt::Debug for Versioned {
    // Ledgers hold external ids and error texts: logs get the size, not the content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versioned")
            .field("version", &self.version)
            .field("bytes", &self.value.len())
            .finish()
    }
}

/// An opaque document version: the blob's ETag, or the embedded store's content hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    pub fn new(version: impl Into<String>) -> Version {
        Version(version.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a write expects to find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No document yet: create it (a concurrent creator makes this a conflict).
    Absent,
    /// The document at exactly this version.
    Matches(Version),
}

impl ExpectedVersion {
    /// The precondition for replacing what was read (`None`: nothing was there).
    pub fn from_read(read: Option<&Versioned>) -> ExpectedVersion {
        match read {
            Some(document) => ExpectedVersion::Matches(document.version.clone()),
            None => ExpectedVersion::Absent,
        }
    }
}

/// A message taken from a queue, to be deleted (or delayed) with its pop receipt.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: String,
    /// Proof of this receive; a later receive of the same message invalidates it.
    pub pop_receipt: String,
    /// Receives so far, this one included (1 on first delivery).
    pub dequeue_count: u32,
    pub text: String,
    pub inserted_at: DateTime<Utc>,
    /// When the message becomes visible again unless deleted.
    pub next_visible_at: DateTime<Utc>,
}

impl fmt::Debug for ReceivedMessage {
    // The text may carry personal data (it is the producer's business): not logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("id", &self.id)
            .field("dequeue_count", &self.dequeue_count)
            .field("inserted_at", &self.inserted_at)
            .field("next_visible_at", &self.next_visible_at)
            .field("text_bytes", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// A queue name, valid for Azure Queue Storage: 3-63 lowercase letters, digits and single
/// hyphens, starting and ending with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueueName(Cow<'static, str>);

impl QueueName {
    /// For constants; an invalid name fails to compile (or panics, outside const context).
    pub const fn from_static(name: &'static str) -> QueueName {
        assert!(is_storage_name(name), "not a valid queue name");
        QueueName(Cow::Borrowed(name))
    }

    pub fn parse(name: &str) -> Result<QueueName, StoreError> {
        if is_storage_name(name) {
            Ok(QueueName(Cow::Owned(name.to_string())))
        } else {
            Err(StoreError::Invalid(format!(
                "\"{name}\" is not a queue name (3-63 lowercase letters, digits and single hyphens)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checkpoint name: 1-63 lowercase letters, digits and hyphens (it becomes part of a
/// blob name and a file name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckpointName(Cow<'static, str>);

impl CheckpointName {
    pub const fn from_static(name: &'static str) -> CheckpointName {
        assert!(is_checkpoint_name(name), "not a valid checkpoint name");
        CheckpointName(Cow::Borrowed(name))
    }

    pub fn parse(name: &str) -> Result<CheckpointName, StoreError> {
        if is_checkpoint_name(name) {
            Ok(CheckpointName(Cow::Owned(name.to_string())))
        } else {
            Err(StoreError::Invalid(format!(
                "\"{name}\" is not a checkpoint name (1-63 lowercase letters, digits and hyphens)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const fn is_checkpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'a'..=b'z' | b'0'..=b'9' | b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Azure's rule for container and queue names.
pub(crate) const fn is_storage_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.len() < 3 || bytes.len() > 63 || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'a'..=b'z' | b'0'..=b'9' => {}
            b'-' if bytes[i - 1] != b'-' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// What went wrong in the store. Messages name the operation and the object, never a key,
/// SAS token or document content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The document changed (or appeared) since it was read: re-read and try again, or give up.
    #[error("{0} was changed by another writer (version conflict)")]
    Conflict(String),
    /// The thing is not there (for messages: the receive's claim is gone).
    #[error("{0} not found")]
    NotFound(String),
    /// Worth retrying later: timeouts, throttling, 5xx, connection failures.
    #[error("storage unavailable: {0}")]
    Transient(String),
    /// The service refused the request and would refuse it again.
    #[error("storage refused the request: {0}")]
    Permanent(String),
    /// The store cannot work as configured (credentials, permissions, endpoints, directory).
    #[error("storage is misconfigured: {0}")]
    Config(String),
    /// The caller asked for something out of range (a delay over 7 days, an oversized message).
    #[error("invalid storage request: {0}")]
    Invalid(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Whole seconds, rounded up: both implementations work in seconds, like Azure.
pub(crate) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

pub(crate) fn check_delay(delay: Duration) -> Result<u64, StoreError> {
    let seconds = whole_seconds(delay);
    if seconds > MAX_VISIBILITY.as_secs() {
        return Err(StoreError::Invalid(format!(
            "a delay of {seconds} s is longer than 7 days"
        )));
    }
    Ok(seconds)
}

pub(crate) fn check_visibility_timeout(timeout: Duration) -> Result<u64, StoreError> {
    let seconds = check_delay(timeout)?.max(1);
    Ok(seconds)
}

pub(crate) fn check_message(text: &str) -> Result<(), StoreError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(StoreError::Invalid(format!(
            "a message of {} bytes is larger than {MAX_MESSAGE_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// The blob/file name of a ledger: the lowercase hyphenated object id.
pub(crate) fn ledger_blob_name(object_id: Uuid) -> String {
    format!("{}.json", object_id.hyphenated())
}

pub(crate) fn checkpoint_blob_name(name: &CheckpointName) -> String {
    format!("checkpoint/{name}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_azure_rules() {
        assert!(QueueName::parse("signup-provision").is_ok());
        assert!(QueueName::parse("a1b").is_ok());
        for bad in ["ab", "-abc", "abc-", "a--b", "Abc", "a_b", &"a".repeat(64)] {
            assert!(QueueName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PROVISION_QUEUE.as_str(), "signup-provision");
        assert_eq!(FAILED_QUEUE.as_str(), "signup-provision-failed");
    }

    #[test]
    fn checkpoint_names_are_safe_path_segments() {
        assert!(CheckpointName::parse("audit-log").is_ok());
        for bad in ["", "../x", "a/b", "A", "a.json", &"a".repeat(64)] {
            assert!(CheckpointName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delays_round_up_to_seconds_and_stop_at_seven_days() {
        assert_eq!(check_delay(Duration::ZERO).unwrap(), 0);
        assert_eq!(check_delay(Duration::from_millis(1500)).unwrap(), 2);
        assert_eq!(check_delay(MAX_VISIBILITY).unwrap(), 604_800);
        assert!(check_delay(MAX_VISIBILITY + Duration::from_secs(1)).is_err());
        assert_eq!(check_visibility_timeout(Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn debug_output_hides_document_and_message_content() {
        let document = Versioned {
            version: Version::new("v1"),
            value: b"{\"email\":\"someone@contoso.com\"}".to_vec(),
        };
        assert!(!format!("{document:?}").contains("contoso"));
        let message = ReceivedMessage {
            id: "id".into(),
            pop_receipt: "r".into(),
            dequeue_count: 1,
            text: "someone@contoso.com".into(),
            inserted_at: Utc::now(),
            next_visible_at: Utc::now(),
        };
        assert!(!format!("{message:?}").contains("contoso"));
    }
}
