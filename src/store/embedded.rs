//! The embedded store: a local directory, for `serve`, `run` and the CLI without Azure.
//!
//! ```text
//! <dir>/.lock                                   one lock for the whole store
//! <dir>/signup-state/checkpoint/<name>.json     checkpoints
//! <dir>/signup-ledger/<object id>.json          ledgers
//! <dir>/queues/<queue>/<visible at ms>-<dequeue count>-<id>.msg
//! ```
//!
//! - Documents are plain files, replaced atomically (temp file, fsync, rename, fsync of the
//!   folder). Their version is a hash of their content: a write that compares equal content
//!   loses no update, so that is all optimistic concurrency needs here.
//! - A message's visibility and dequeue count live in its file name, so receiving is one
//!   atomic rename (new visible-at, count + 1) and the content is written once. A process
//!   that dies between receive and delete leaves the renamed file behind: the message shows
//!   up again when its visible-at passes. The pop receipt is `<visible at>-<count>`: a stale
//!   receipt names a file that no longer exists.
//! - Every operation holds an in-process mutex and an exclusive lock on `.lock` (the CLI and
//!   `run` may use one directory at the same time). Operations are short file system calls,
//!   run on the blocking thread pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{
    CheckpointName, ExpectedVersion, LEDGER_CONTAINER, MAX_RECEIVE, QueueName, ReceivedMessage, STATE_CONTAINER, Store,
    StoreError, Version, Versioned, check_delay, check_message, check_visibility_timeout, checkpoint_blob_name,
    ledger_blob_name,
};

/// How long an operation waits for another process's lock before reporting it as transient.
const LOCK_WAIT: Duration = Duration::from_secs(30);
const QUEUES_DIR: &str = "queues";
const MESSAGE_SUFFIX: &str = ".msg";
const TEMP_PREFIX: &str = ".tmp-";

pub struct EmbeddedStore {
    root: PathBuf,
    lock: Arc<Mutex<File>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What a message file holds; its state is in its name.
#[derive(Serialize, Deserialize)]
struct MessageFile {
    text: String,
    inserted_at: DateTime<Utc>,
}

/// A message file's name, parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MessageName {
    visible_at_ms: i64,
    dequeue_count: u32,
    id: String,
}

impl MessageName {
    fn parse(file_name: &str) -> Option<MessageName> {
        let stem = file_name.strip_suffix(MESSAGE_SUFFIX)?;
        let mut parts = stem.splitn(3, '-');
        let visible_at_ms = parts.next()?.parse().ok()?;
        let dequeue_count = parts.next()?.parse().ok()?;
        let id = parts.next()?;
        is_message_id(id).then(|| MessageName {
            visible_at_ms,
            dequeue_count,
            id: id.to_string(),
        })
    }

    fn from_receipt(id: &str, receipt: &str) -> Option<MessageName> {
        let (visible, count) = receipt.split_once('-')?;
        MessageName::parse(&format!("{visible}-{count}-{id}{MESSAGE_SUFFIX}"))
    }

    /// Zero-padded so that names sort by visibility.
    fn file_name(&self) -> String {
        format!(
            "{:016}-{:010}-{}{MESSAGE_SUFFIX}",
            self.visible_at_ms, self.dequeue_count, self.id
        )
    }

    fn receipt(&self) -> String {
        format!("{:016}-{:010}", self.visible_at_ms, self.dequeue_count)
    }
}

fn is_message_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`.
    pub async fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let root = dir.to_path_buf();
        let lock = tokio::task::spawn_blocking(move || -> io::Result<(PathBuf, File)> {
            fs::create_dir_all(&root)?;
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(root.join(".lock"))?;
            Ok((root, lock))
        })
        .await
        .map_err(|_| StoreError::Config("the state directory could not be opened".to_string()))?;
        let (root, lock) = lock.map_err(|error| {
            StoreError::Config(format!("the state directory {} is not usable: {error}", dir.display()))
        })?;
        Ok(EmbeddedStore {
            root,
            lock: Arc::new(Mutex::new(lock)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `op` on the blocking pool with the store locked.
    async fn locked<T, F>(&self, what: String, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    {
        let root = self.root.clone();
        let lock = Arc::clone(&self.lock);
        let failed = what.clone();
        tokio::task::spawn_blocking(move || {
            let file = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let _held = FileLock::acquire(&file, &what)?;
            op(&root)
        })
        .await
        .map_err(|_| StoreError::Permanent(format!("{failed}: the operation panicked")))?
    }

    fn document_path(root: &Path, container: &str, blob: &str) -> PathBuf {
        root.join(container).join(blob)
    }

    async fn read_document(&self, container: &'static str, blob: String) -> Result<Option<Versioned>, StoreError> {
        let what = format!("{container}/{blob}");
        self.locked(what.clone(), move |root| {
            match fs::read(Self::document_path(root, container, &blob)) {
                Ok(value) => Ok(Some(Versioned {
                    version: content_version(&value),
                    value,
                })),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(io_error(&what, "read", error)),
            }
        })
        .await
    }

    async fn write_document(
        &self,
        container: &'static str,
        blob: String,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        let what = format!("{container}/{blob}");
        let value = value.to_vec();
        let expected = expected.clone();
        self.locked(what.clone(), move |root| {
            let path = Self::document_path(root, container, &blob);
            let current = match fs::read(&path) {
                Ok(bytes) => Some(content_version(&bytes)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(io_error(&what, "read", error)),
            };
            let matches = match (&expected, &current) {
                (ExpectedVersion::Absent, None) => true,
                (ExpectedVersion::Matches(expected), Some(current)) => expected == current,
                _ => false,
            };
            if !matches {
                return Err(StoreError::Conflict(what));
            }
            write_atomic(&path, &value).map_err(|error| io_error(&what, "write", error))?;
            Ok(content_version(&value))
        })
        .await
    }

    fn queue_dir(root: &Path, queue: &QueueName) -> PathBuf {
        root.join(QUEUES_DIR).join(queue.as_str())
    }
}

/// An exclusive lock on the store's lock file, released on drop (also on panic).
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn acquire(file: &'a File, what: &str) -> Result<FileLock<'a>, StoreError> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock(file)),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Transient(format!(
                        "{what}: another process held the state directory's lock for {} s",
                        LOCK_WAIT.as_secs()
                    )));
                }
                Err(fs::TryLockError::Error(error)) => return Err(io_error(what, "lock", error)),
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Closing would release it too, but the handle lives on for the next operation.
        let _ = self.0.unlock();
    }
}

fn content_version(bytes: &[u8]) -> Version {
    let digest = Sha256::digest(bytes);
    Version::new(format!("sha256:{}", hex::encode(&digest[..16])))
}

fn io_error(what: &str, action: &str, error: io::Error) -> StoreError {
    let message = format!("{what}: could not {action}: {error}");
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => StoreError::Config(message),
        io::ErrorKind::StorageFull | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => {
            StoreError::Transient(message)
        }
        _ => StoreError::Permanent(message),
    }
}

/// Writes `bytes` to `path` so that readers (and a crash) see the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{TEMP_PREFIX}{}", Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable. Only Unix can open a directory to sync it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn time_of(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now)
}

/// The queue's messages, in order of visibility.
fn list_messages(dir: &Path) -> io::Result<Vec<MessageName>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str().and_then(MessageName::parse) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read_message(path: &Path) -> io::Result<MessageFile> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn read_checkpoint(&self, name: &CheckpointName) -> Result<Option<Versioned>, StoreError> {
        self.read_document(STATE_CONTAINER, checkpoint_blob_name(name)).await
    }

    async fn write_checkpoint(
        &self,
        name: &CheckpointName,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        self.write_document(STATE_CONTAINER, checkpoint_blob_name(name), value, expected)
            .await
    }

    async fn read_ledger(&self, object_id: Uuid) -> Result<Option<Versioned>, StoreError> {
        self.read_document(LEDGER_CONTAINER, ledger_blob_name(object_id)).await
    }

    async fn write_ledger(
        &self,
        object_id: Uuid,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        self.write_document(LEDGER_CONTAINER, ledger_blob_name(object_id), value, expected)
            .await
    }

    async fn list_ledgers(&self) -> Result<Vec<Uuid>, StoreError> {
        self.locked(LEDGER_CONTAINER.to_string(), |root| {
            let entries = match fs::read_dir(root.join(LEDGER_CONTAINER)) {
                Ok(entries) => entries,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(error) => return Err(io_error(LEDGER_CONTAINER, "list", error)),
            };
            let mut ids = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|error| io_error(LEDGER_CONTAINER, "list", error))?;
                let name = entry.file_name();
                if let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse().ok())
                {
                    ids.push(id);
                }
            }
            Ok(ids)
        })
        .await
    }

    async fn send(&self, queue: &QueueName, text: &str, delay: Duration) -> Result<(), StoreError> {
        check_message(text)?;
        let delay_ms = i64::try_from(check_delay(delay)? * 1000).unwrap_or(i64::MAX);
        let what = format!("queue {queue}");
        let dir = Self::queue_dir(&self.root, queue);
        let content = serde_json::to_vec(&MessageFile {
            text: text.to_string(),
            inserted_at: Utc::now(),
        })
        .map_err(|error| StoreError::Permanent(format!("{what}: {error}")))?;
        self.locked(what.clone(), move |_| {
            let name = MessageName {
                visible_at_ms: now_ms().saturating_add(delay_ms),
                dequeue_count: 0,
                id: Uuid::new_v4().simple().to_string(),
            };
            write_atomic(&dir.join(name.file_name()), &content).map_err(|error| io_error(&what, "send to", error))
        })
        .await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        let timeout_ms = i64::try_from(check_visibility_timeout(visibility_timeout)? * 1000).unwrap_or(i64::MAX);
        let max = max.min(MAX_RECEIVE) as usize;
        let what = format!("queue {queue}");
        let dir = Self::queue_dir(&self.root, queue);
        self.locked(what.clone(), move |_| {
            let now = now_ms();
            let visible: Vec<MessageName> = list_messages(&dir)
                .map_err(|error| io_error(&what, "list", error))?
                .into_iter()
                .filter(|name| name.visible_at_ms <= now)
                .take(max)
                .collect();
            let mut received = Vec::with_capacity(visible.len());
            for old in visible {
                let new = MessageName {
                    visible_at_ms: now.saturating_add(timeout_ms),
                    dequeue_count: old.dequeue_count.saturating_add(1),
                    id: old.id.clone(),
                };
                let path = dir.join(new.file_name());
                fs::rename(dir.join(old.file_name()), &path).map_err(|error| io_error(&what, "receive from", error))?;
                let content = match read_message(&path) {
                    Ok(content) => content,
                    // A damaged file cannot be delivered; skipping it keeps the queue moving
                    // and leaves the file for inspection.
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        log::error!("{what}: message {} is unreadable and was skipped: {error}", new.id);
                        continue;
                    }
                    Err(error) => return Err(io_error(&what, "read", error)),
                };
                received.push(ReceivedMessage {
                    id: new.id.clone(),
                    pop_receipt: new.receipt(),
                    dequeue_count: new.dequeue_count,
                    text: content.text,
                    inserted_at: content.inserted_at,
                    next_visible_at: time_of(new.visible_at_ms),
                });
            }
            if !received.is_empty() {
                sync_dir(&dir).map_err(|error| io_error(&what, "sync", error))?;
            }
            Ok(received)
        })
        .await
    }

    async fn delete(&self, queue: &QueueName, message: &ReceivedMessage) -> Result<(), StoreError> {
        let what = format!("message {} in queue {queue}", message.id);
        let name = MessageName::from_receipt(&message.id, &message.pop_receipt)
            .ok_or_else(|| StoreError::Invalid(format!("{what}: not a receipt from this store")))?;
        let dir = Self::queue_dir(&self.root, queue);
        self.locked(what.clone(), move |_| {
            match fs::remove_file(dir.join(name.file_name())) {
                Ok(()) => sync_dir(&dir).map_err(|error| io_error(&what, "sync", error)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(what)),
                Err(error) => Err(io_error(&what, "delete", error)),
            }
        })
        .await
    }

    async fn set_visibility(
        &self,
        queue: &QueueName,
        message: &ReceivedMessage,
        delay: Duration,
    ) -> Result<ReceivedMessage, StoreError> {
        let delay_ms = i64::try_from(check_delay(delay)? * 1000).unwrap_or(i64::MAX);
        let what = format!("message {} in queue {queue}", message.id);
        let old = MessageName::from_receipt(&message.id, &message.pop_receipt)
            .ok_or_else(|| StoreError::Invalid(format!("{what}: not a receipt from this store")))?;
        let dir = Self::queue_dir(&self.root, queue);
        let mut updated = message.clone();
        self.locked(what.clone(), move |_| {
            let new = MessageName {
                visible_at_ms: now_ms().saturating_add(delay_ms),
                ..old.clone()
            };
            match fs::rename(dir.join(old.file_name()), dir.join(new.file_name())) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(what)),
                Err(error) => return Err(io_error(&what, "update", error)),
            }
            sync_dir(&dir).map_err(|error| io_error(&what, "sync", error))?;
            updated.pop_receipt = new.receipt();
            updated.next_visible_at = time_of(new.visible_at_ms);
            Ok(updated)
        })
        .await
    }

    async fn approximate_count(&self, queue: &QueueName) -> Result<u64, StoreError> {
        let what = format!("queue {queue}");
        let dir = Self::queue_dir(&self.root, queue);
        self.locked(what.clone(), move |_| {
            let count = list_messages(&dir)
                .map_err(|error| io_error(&what, "list", error))?
                .len();
            Ok(count as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_round_trip_and_sort_by_visibility() {
        let name = MessageName {
            visible_at_ms: 1_700_000_000_123,
            dequeue_count: 2,
            id: "0123456789abcdef0123456789abcdef".to_string(),
        };
        assert_eq!(MessageName::parse(&name.file_name()), Some(name.clone()));
        assert_eq!(MessageName::from_receipt(&name.id, &name.receipt()), Some(name.clone()));
        let later = MessageName {
            visible_at_ms: 1_700_000_000_124,
            ..name.clone()
        };
        assert!(name.file_name() < later.file_name());
        for bad in [
            "x.msg",
            "1-2-../../etc.msg",
            "1-2-abc.msg",
            ".tmp-abc",
            "1-2-0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(MessageName::parse(bad), None, "{bad}");
        }
        assert_eq!(MessageName::from_receipt("../x", "1-2"), None);
    }

    #[test]
    fn versions_are_content_hashes() {
        assert_eq!(content_version(b"a"), content_version(b"a"));
        assert_ne!(content_version(b"a"), content_version(b"b"));
        assert!(content_version(b"a").as_str().starts_with("sha256:"));
    }

    #[tokio::test]
    async fn a_stale_or_foreign_receipt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let queue = QueueName::parse("q-test").unwrap();
        let mut message = ReceivedMessage {
            id: "0123456789abcdef0123456789abcdef".to_string(),
            pop_receipt: "0000000000000001-0000000001".to_string(),
            dequeue_count: 1,
            text: String::new(),
            inserted_at: Utc::now(),
            next_visible_at: Utc::now(),
        };
        assert!(matches!(
            store.delete(&queue, &message).await,
            Err(StoreError::NotFound(_))
        ));
        message.pop_receipt = "../../x".to_string();
        assert!(matches!(
            store.delete(&queue, &message).await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn documents_are_plain_files_and_temp_files_do_not_linger() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let name = CheckpointName::parse("audit").unwrap();
        store
            .write_checkpoint(&name, b"{\"a\":1}", &ExpectedVersion::Absent)
            .await
            .unwrap();
        let folder = dir.path().join("signup-state/checkpoint");
        assert_eq!(fs::read(folder.join("audit.json")).unwrap(), b"{\"a\":1}");
        let names: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
