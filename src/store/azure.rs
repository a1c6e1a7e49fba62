//! The store on Azure Storage (or Azurite), through the official azure_storage_blob and
//! azure_storage_queue 1.x crates.
//!
//! - Authentication: an Entra token (managed identity, or the developer's CLI login), a SAS
//!   from the connection string, or an account SAS minted from the account key ([`super::sas`];
//!   the crates have no shared-key support). A minted SAS is renewed after an hour, so a
//!   long-running `run` never holds an expired one.
//! - Containers and queues are created at first use (once per process; again after a
//!   "not found", so deleting one by hand heals at the next attempt).
//! - Documents are block blobs; versions are ETags; writes carry `If-Match: <etag>` or
//!   `If-None-Match: *`, and a 409/412 answer is [`StoreError::Conflict`].
//! - Message text is **base64-encoded** on send and decoded on receive, because the Functions
//!   host's queue trigger expects base64 by default (host.json `extensions.queues.messageEncoding`
//!   = `base64`): ProvisionUser's trigger reads what PollAuditLogs enqueues here, and `run`'s
//!   worker reads what the host would. Text that is not base64 (written by another tool) is
//!   returned as it is. Messages are sent with a time-to-live of -1 (never expire): the
//!   default of 7 days would silently drop dead letters, and a visibility delay must be
//!   shorter than the time-to-live.
//! - Every call is bounded: connect and request timeouts on the HTTP client, a short SDK
//!   retry budget, and [`OPERATION_TIMEOUT`] around each operation.
//! - Errors carry the operation, the object and the HTTP status and error code; a SAS
//!   signature that a transport error quotes (in a URL) is redacted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{
    ClientOptions, Etag, ExponentialRetryOptions, RequestContent, RetryOptions, Transport, Url, XmlFormat,
};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use azure_storage_blob::models::{BlobClientUploadOptions, BlobContainerClientListBlobsOptions};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders as _, QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions,
    QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use regex::Regex;
use uuid::Uuid;

use super::connection::resource_url;
use super::sas::{self, SAS_LIFETIME, SAS_RENEW_AFTER};
use super::{
    CheckpointName, ExpectedVersion, LEDGER_CONTAINER, MAX_RECEIVE, QueueName, ReceivedMessage, STATE_CONTAINER, Store,
    StoreError, Version, Versioned, check_delay, check_message, check_visibility_timeout, checkpoint_blob_name,
    is_storage_name, ledger_blob_name,
};
use crate::settings::storage::{AzureStorageSettings, StorageAuth};

/// The longest any one store operation may take, SDK retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

pub struct AzureStore {
    settings: AzureStorageSettings,
    options: ClientOptions,
    credential: Option<Arc<dyn TokenCredential>>,
    clients: Mutex<Clients>,
    /// Containers and queues known to exist (physical names).
    ensured: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore")
            .field("store", &self.settings.describe())
            .finish_non_exhaustive()
    }
}

/// Clients by physical name, built with the current SAS (if any).
#[derive(Default)]
struct Clients {
    /// The minted SAS and when to mint the next one.
    minted: Option<(Instant, String)>,
    containers: HashMap<String, Arc<BlobContainerClient>>,
    queues: HashMap<String, Arc<QueueClient>>,
}

impl AzureStore {
    /// Builds the store; nothing is contacted until the first operation.
    pub fn new(settings: &AzureStorageSettings, http: Option<reqwest::Client>) -> Result<AzureStore, StoreError> {
        let http = match http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("signup-bridge/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|error| StoreError::Config(format!("the HTTP client could not be built: {error}")))?,
        };
        let options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            // Short: callers (the poll, the queue worker) have their own retries.
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(500),
                max_retries: 3,
                max_total_elapsed: azure_core::time::Duration::seconds(30),
                max_delay: azure_core::time::Duration::seconds(5),
            }),
            ..Default::default()
        };
        let credential: Option<Arc<dyn TokenCredential>> = match &settings.auth {
            StorageAuth::SharedKey { .. } | StorageAuth::Sas(_) => None,
            StorageAuth::ManagedIdentity { client_id } => Some(
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_string())),
                    client_options: options.clone(),
                }))
                .map_err(|error| StoreError::Config(format!("managed identity: {}", redact(&error.to_string()))))?,
            ),
            StorageAuth::DeveloperTools => Some(DeveloperToolsCredential::new(None).map_err(|error| {
                StoreError::Config(format!("developer tools credential: {}", redact(&error.to_string())))
            })?),
        };
        // The longest names: a prefix that breaks them fails here, at start-up, not at first use.
        for (name, logical) in [
            ("container", STATE_CONTAINER),
            ("container", LEDGER_CONTAINER),
            ("queue", super::FAILED_QUEUE.as_str()),
        ] {
            let physical = settings.physical_name(logical);
            if !is_storage_name(&physical) {
                return Err(StoreError::Config(format!("\"{physical}\" is not a valid {name} name")));
            }
        }
        Ok(AzureStore {
            settings: settings.clone(),
            options,
            credential,
            clients: Mutex::new(Clients::default()),
            ensured: Mutex::new(HashSet::new()),
        })
    }

    /// The SAS query to append to URLs: minted (and renewed) from the key, or the configured one.
    fn sas_query(&self, clients: &mut Clients) -> Option<String> {
        match &self.settings.auth {
            StorageAuth::SharedKey { account_name, key } => {
                let fresh = matches!(&clients.minted, Some((renew_at, _)) if Instant::now() < *renew_at);
                if !fresh {
                    let expires_at = Utc::now() + chrono::Duration::from_std(SAS_LIFETIME).expect("hours fit");
                    let allow_http = [&self.settings.blob_endpoint, &self.settings.queue_endpoint]
                        .iter()
                        .any(|url| url.scheme() == "http");
                    let minted = sas::mint(account_name, key, expires_at, allow_http);
                    log::debug!("minted a storage account SAS valid until {}", minted.expires_at);
                    clients.minted = Some((Instant::now() + SAS_RENEW_AFTER, minted.query().to_string()));
                    clients.containers.clear();
                    clients.queues.clear();
                }
                clients.minted.as_ref().map(|(_, query)| query.clone())
            }
            StorageAuth::Sas(sas) => Some(sas.query().to_string()),
            StorageAuth::ManagedIdentity { .. } | StorageAuth::DeveloperTools => None,
        }
    }

    fn url(&self, endpoint: &Url, physical: &str, sas: Option<&str>) -> Url {
        let mut url = resource_url(endpoint, physical);
        url.set_query(sas);
        url
    }

    fn container(&self, logical: &str) -> Result<(String, Arc<BlobContainerClient>), StoreError> {
        let physical = self.settings.physical_name(logical);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let sas = self.sas_query(&mut clients);
        if let Some(client) = clients.containers.get(&physical) {
            return Ok((physical, Arc::clone(client)));
        }
        let url = self.url(&self.settings.blob_endpoint, &physical, sas.as_deref());
        let options = BlobContainerClientOptions {
            client_options: self.options.clone(),
            ..Default::default()
        };
        let client = BlobContainerClient::new(url, self.credential.clone(), Some(options))
            .map(Arc::new)
            .map_err(|error| map_error(&format!("container {physical}"), error))?;
        clients.containers.insert(physical.clone(), Arc::clone(&client));
        Ok((physical, client))
    }

    fn queue(&self, queue: &QueueName) -> Result<(String, Arc<QueueClient>), StoreError> {
        let physical = self.settings.physical_name(queue.as_str());
        if !is_storage_name(&physical) {
            return Err(StoreError::Invalid(format!("\"{physical}\" is not a valid queue name")));
        }
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let sas = self.sas_query(&mut clients);
        if let Some(client) = clients.queues.get(&physical) {
            return Ok((physical, Arc::clone(client)));
        }
        let url = self.url(&self.settings.queue_endpoint, &physical, sas.as_deref());
        let options = QueueClientOptions {
            client_options: self.options.clone(),
            ..Default::default()
        };
        let client = QueueClient::new(url, self.credential.clone(), Some(options))
            .map(Arc::new)
            .map_err(|error| map_error(&format!("queue {physical}"), error))?;
        clients.queues.insert(physical.clone(), Arc::clone(&client));
        Ok((physical, client))
    }

    fn is_ensured(&self, physical: &str) -> bool {
        self.ensured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(physical)
    }

    fn set_ensured(&self, physical: &str, exists: bool) {
        let mut ensured = self.ensured.lock().unwrap_or_else(PoisonError::into_inner);
        if exists {
            ensured.insert(physical.to_string());
        } else {
            ensured.remove(physical);
        }
    }

    async fn ensure_container(&self, physical: &str, client: &BlobContainerClient) -> Result<(), StoreError> {
        if self.is_ensured(physical) {
            return Ok(());
        }
        let what = format!("container {physical}");
        match bounded(&what, client.create(None)).await? {
            Ok(_) => {}
            Err(error) if error_code(&error) == Some("ContainerAlreadyExists") => {}
            Err(error) => return Err(map_error(&what, error)),
        }
        self.set_ensured(physical, true);
        Ok(())
    }

    async fn ensure_queue(&self, physical: &str, client: &QueueClient) -> Result<(), StoreError> {
        if self.is_ensured(physical) {
            return Ok(());
        }
        let what = format!("queue {physical}");
        match bounded(&what, client.create(None)).await? {
            // 201 created, 204 already there.
            Ok(_) => {}
            Err(error) if error_code(&error) == Some("QueueAlreadyExists") => {}
            Err(error) => return Err(map_error(&what, error)),
        }
        self.set_ensured(physical, true);
        Ok(())
    }

    /// A "not found" for the container or queue itself: forget that it exists, so the next
    /// attempt creates it again, and report a transient failure.
    fn missing(&self, physical: &str, what: &str, error: azure_core::Error) -> StoreError {
        if matches!(error_code(&error), Some("ContainerNotFound" | "QueueNotFound")) {
            self.set_ensured(physical, false);
            return StoreError::Transient(format!(
                "{what}: {physical} did not exist; it is created at the next attempt"
            ));
        }
        map_error(what, error)
    }

    async fn read_document(&self, container: &str, blob: String) -> Result<Option<Versioned>, StoreError> {
        let (physical, client) = self.container(container)?;
        let what = format!("{physical}/{blob}");
        let blob_client = client.blob_client(&blob);
        let work = async {
            let result = match blob_client.download(None).await {
                Ok(result) => result,
                Err(error) if status(&error) == Some(404) => return Ok(None),
                Err(error) => return Err(error),
            };
            let version = result.properties.etag.map(|etag| Version::new(etag.to_string()));
            let value = result.body.collect().await?.to_vec();
            Ok(Some((version, value)))
        };
        match bounded(&what, work).await? {
            Ok(Some((Some(version), value))) => Ok(Some(Versioned { version, value })),
            Ok(Some((None, _))) => Err(StoreError::Permanent(format!("{what}: the answer had no ETag"))),
            Ok(None) => Ok(None),
            Err(error) => Err(map_error(&what, error)),
        }
    }

    async fn write_document(
        &self,
        container: &str,
        blob: String,
        value: &[u8],
        expected: &ExpectedVersion,
    ) -> Result<Version, StoreError> {
        let (physical, client) = self.container(container)?;
        self.ensure_container(&physical, &client).await?;
        let what = format!("{physical}/{blob}");
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".to_string()),
            ..Default::default()
        };
        match expected {
            ExpectedVersion::Absent => options.if_none_match = Some(Etag::from("*")),
            ExpectedVersion::Matches(version) => options.if_match = Some(Etag::from(version.as_str())),
        }
        let content = RequestContent::from(value.to_vec());
        let blob_client = client.blob_client(&blob);
        match bounded(&what, blob_client.upload(content, Some(options))).await? {
            Ok(result) => result
                .etag
                .map(|etag| Version::new(etag.to_string()))
                .ok_or_else(|| StoreError::Permanent(format!("{what}: the answer had no ETag"))),
            // 409 BlobAlreadyExists (If-None-Match: *), 412 ConditionNotMet (If-Match).
            Err(error) if matches!(status(&error), Some(409 | 412)) => Err(StoreError::Conflict(what)),
            Err(error) if status(&error) == Some(404) && error_code(&error) != Some("ContainerNotFound") => {
                Err(StoreError::Conflict(what)) // the blob was deleted since it was read
            }
            Err(error) => Err(self.missing(&physical, &what, error)),
        }
    }

    async fn ready_queue(&self, queue: &QueueName) -> Result<(String, Arc<QueueClient>), StoreError> {
        let (physical, client) = self.queue(queue)?;
        self.ensure_queue(&physical, &client).await?;
        Ok((physical, client))
    }
}

#[async_trait]
impl Store for AzureStore {
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
        let (physical, client) = self.container(LEDGER_CONTAINER)?;
        let what = format!("container {physical}");
        let options = BlobContainerClientListBlobsOptions {
            maxresults: Some(5000),
            ..Default::default()
        };
        let work = async {
            let mut pages = client.list_blobs(Some(options))?.into_pages();
            let mut ids = Vec::new();
            while let Some(page) = pages.try_next().await? {
                for item in page.into_model()?.blob_items {
                    let id = item
                        .name
                        .as_deref()
                        .and_then(|n| n.strip_suffix(".json"))
                        .and_then(|n| n.parse::<Uuid>().ok());
                    ids.extend(id);
                }
            }
            Ok::<_, azure_core::Error>(ids)
        };
        match bounded(&what, work).await? {
            Ok(ids) => Ok(ids),
            Err(error) if error_code(&error) == Some("ContainerNotFound") => Ok(Vec::new()),
            Err(error) => Err(map_error(&what, error)),
        }
    }

    async fn send(&self, queue: &QueueName, text: &str, delay: Duration) -> Result<(), StoreError> {
        check_message(text)?;
        let delay = check_delay(delay)?;
        let (physical, client) = self.ready_queue(queue).await?;
        let what = format!("queue {physical}");
        let message = QueueMessage {
            message_text: Some(STANDARD.encode(text)),
        };
        let content: RequestContent<QueueMessage, XmlFormat> =
            message.try_into().map_err(|error| map_error(&what, error))?;
        let options = QueueClientSendMessageOptions {
            visibility_timeout: (delay > 0).then(|| i32::try_from(delay).unwrap_or(i32::MAX)),
            message_time_to_live: Some(-1),
            ..Default::default()
        };
        match bounded(&what, client.send_message(content, Some(options))).await? {
            Ok(_) => Ok(()),
            Err(error) => Err(self.missing(&physical, &what, error)),
        }
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        let timeout = check_visibility_timeout(visibility_timeout)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let (physical, client) = self.ready_queue(queue).await?;
        let what = format!("queue {physical}");
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(max.min(MAX_RECEIVE) as i32),
            visibility_timeout: Some(i32::try_from(timeout).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let work = async { client.receive_messages(Some(options)).await?.into_model() };
        let messages = match bounded(&what, work).await? {
            Ok(messages) => messages.items.unwrap_or_default(),
            Err(error) => return Err(self.missing(&physical, &what, error)),
        };
        messages
            .into_iter()
            .map(|message| {
                let incomplete =
                    || StoreError::Permanent(format!("{what}: a received message lacked its id or receipt"));
                Ok(ReceivedMessage {
                    id: message.message_id.ok_or_else(incomplete)?,
                    pop_receipt: message.pop_receipt.ok_or_else(incomplete)?,
                    dequeue_count: message
                        .dequeue_count
                        .and_then(|count| u32::try_from(count).ok())
                        .unwrap_or(1),
                    text: decode_text(message.message_text.as_deref().unwrap_or_default()),
                    inserted_at: message.insertion_time.map(to_chrono).unwrap_or_else(Utc::now),
                    next_visible_at: message.time_next_visible.map(to_chrono).unwrap_or_else(Utc::now),
                })
            })
            .collect()
    }

    async fn delete(&self, queue: &QueueName, message: &ReceivedMessage) -> Result<(), StoreError> {
        let (physical, client) = self.queue(queue)?;
        let what = format!("message {} in queue {physical}", message.id);
        match bounded(&what, client.delete_message(&message.id, &message.pop_receipt, None)).await? {
            Ok(_) => Ok(()),
            Err(error) if is_lost_claim(&error) => Err(StoreError::NotFound(what)),
            Err(error) => Err(self.missing(&physical, &what, error)),
        }
    }

    async fn set_visibility(
        &self,
        queue: &QueueName,
        message: &ReceivedMessage,
        delay: Duration,
    ) -> Result<ReceivedMessage, StoreError> {
        let delay = i32::try_from(check_delay(delay)?).unwrap_or(i32::MAX);
        let (physical, client) = self.queue(queue)?;
        let what = format!("message {} in queue {physical}", message.id);
        let response = match bounded(
            &what,
            client.update_message(&message.id, &message.pop_receipt, delay, None),
        )
        .await?
        {
            Ok(response) => response,
            Err(error) if is_lost_claim(&error) => return Err(StoreError::NotFound(what)),
            Err(error) => return Err(self.missing(&physical, &what, error)),
        };
        let headers = response.headers();
        let receipt = headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static("x-ms-popreceipt"))
            .ok_or_else(|| StoreError::Permanent(format!("{what}: the answer had no new pop receipt")))?;
        let next_visible = headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "x-ms-time-next-visible",
            ))
            .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
            .map(|time| time.with_timezone(&Utc));
        let mut updated = message.clone();
        updated.pop_receipt = receipt.to_string();
        updated.next_visible_at =
            next_visible.unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(i64::from(delay)));
        Ok(updated)
    }

    async fn approximate_count(&self, queue: &QueueName) -> Result<u64, StoreError> {
        let (physical, client) = self.ready_queue(queue).await?;
        let what = format!("queue {physical}");
        let response = match bounded(&what, client.get_properties(None)).await? {
            Ok(response) => response,
            Err(error) => return Err(self.missing(&physical, &what, error)),
        };
        let count = response
            .approximate_messages_count()
            .map_err(|error| map_error(&what, error))?
            .unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Runs one operation under [`OPERATION_TIMEOUT`].
async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(OPERATION_TIMEOUT, work)
        .await
        .map_err(|_| StoreError::Transient(format!("{what}: no answer within {} s", OPERATION_TIMEOUT.as_secs())))
}

fn status(error: &azure_core::Error) -> Option<u16> {
    error.http_status().map(u16::from)
}

fn error_code(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// The receipt no longer holds: the message is gone, or was received again elsewhere.
fn is_lost_claim(error: &azure_core::Error) -> bool {
    matches!(error_code(error), Some("MessageNotFound" | "PopReceiptMismatch"))
        || (status(error) == Some(404) && !matches!(error_code(error), Some("QueueNotFound")))
}

/// Maps an SDK error to the store's error, keeping status and error code, never a secret.
fn map_error(what: &str, error: azure_core::Error) -> StoreError {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => {
            let status = u16::from(*status);
            let code = error_code.as_deref().unwrap_or("no error code");
            let message = format!("{what}: HTTP {status} ({code})");
            match status {
                404 => StoreError::NotFound(what.to_string()),
                409 | 412 => StoreError::Conflict(what.to_string()),
                401 | 403 => StoreError::Config(format!(
                    "{message}: check the connection string, or the identity's Storage Blob/Queue Data \
                     Contributor roles"
                )),
                408 | 429 | 500..=599 => StoreError::Transient(message),
                _ => StoreError::Permanent(message),
            }
        }
        ErrorKind::Connection | ErrorKind::Io => StoreError::Transient(format!("{what}: {}", describe(&error))),
        ErrorKind::Credential => StoreError::Config(format!("{what}: no token: {}", describe(&error))),
        ErrorKind::DataConversion | ErrorKind::Other => StoreError::Permanent(format!("{what}: {}", describe(&error))),
    }
}

/// The error and its causes on one line, with any SAS signature removed.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    redact(&text)
}

/// Removes SAS signatures (`sig=...`) from text that may quote a URL.
pub(crate) fn redact(text: &str) -> String {
    static SIGNATURE: OnceLock<Regex> = OnceLock::new();
    let pattern = SIGNATURE.get_or_init(|| Regex::new(r"(?i)\bsig=[^&\s'\x22)>]*").expect("a valid pattern"));
    pattern.replace_all(text, "sig=REDACTED").into_owned()
}

/// Message text as sent by [`Store::send`] (base64), or as it is when it is not base64 text.
fn decode_text(text: &str) -> String {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| text.to_string())
}

fn to_chrono(time: azure_core::time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(time.unix_timestamp(), time.nanosecond()).unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn development_store() -> AzureStore {
        let values = HashMap::from([(
            "AzureWebJobsStorage".to_string(),
            "UseDevelopmentStorage=true".to_string(),
        )]);
        let crate::settings::storage::StorageSettings::Azure(settings) =
            crate::settings::storage::StorageSettings::from_map(&values).unwrap()
        else {
            panic!("a connection string means Azure Storage")
        };
        AzureStore::new(&settings, None).unwrap()
    }

    #[test]
    fn a_minted_sas_is_appended_reused_and_renewed_before_it_expires() {
        let store = development_store();
        let (physical, first) = store.container(STATE_CONTAINER).unwrap();
        assert_eq!(physical, "signup-state");
        assert_eq!(first.url().path(), "/devstoreaccount1/signup-state");
        let query = first.url().query().unwrap().to_string();
        assert!(
            query.starts_with("sv=2021-08-06&ss=bq&srt=sco&sp=rwdlacup&se="),
            "{query}"
        );
        assert!(
            query.contains("&spr=https%2Chttp&sig="),
            "http is allowed for loopback Azurite"
        );
        let (_, queue) = store.queue(&super::super::PROVISION_QUEUE).unwrap();
        assert_eq!(
            queue.url().query(),
            Some(query.as_str()),
            "one SAS for blobs and queues"
        );

        let (_, again) = store.container(STATE_CONTAINER).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "clients are reused while the SAS is fresh");

        // Reach the renewal time: a new SAS, new clients.
        store.clients.lock().unwrap().minted.as_mut().unwrap().0 = Instant::now();
        let (_, renewed) = store.container(STATE_CONTAINER).unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert!(renewed.url().query().unwrap().contains("&sig="));
        let renew_at = store.clients.lock().unwrap().minted.as_ref().unwrap().0;
        assert!(renew_at > Instant::now() + SAS_RENEW_AFTER - Duration::from_secs(60));
    }

    #[test]
    fn debug_shows_where_not_how() {
        let text = format!("{:?}", development_store());
        assert!(text.contains("127.0.0.1:10000"), "{text}");
        assert!(!text.contains("Eby8vdM02"), "{text}");
    }

    #[test]
    fn signatures_are_redacted_from_error_text() {
        let text =
            "error sending request for url (http://127.0.0.1:1/devstoreaccount1/q?sv=2021-08-06&sig=abc%2Bdef%3D&se=x)";
        let redacted = redact(text);
        assert!(!redacted.contains("abc%2Bdef"), "{redacted}");
        assert!(redacted.contains("sig=REDACTED&se=x"), "{redacted}");
        assert_eq!(redact("SIG=x y"), "sig=REDACTED y");
    }

    #[test]
    fn message_text_is_base64_on_the_wire_and_plain_text_passes_through() {
        let text = "{\"user\":\"ünïcødé ✓\"}";
        assert_eq!(decode_text(&STANDARD.encode(text)), text);
        assert_eq!(decode_text("not base64!"), "not base64!");
    }

    #[test]
    fn http_errors_map_to_store_errors() {
        let http = |status: u16, code: &str| {
            azure_core::Error::new(
                ErrorKind::HttpResponse {
                    status: status.into(),
                    error_code: Some(code.to_string()),
                    raw_response: None,
                },
                "failed",
            )
        };
        assert!(matches!(
            map_error("x", http(412, "ConditionNotMet")),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            map_error("x", http(503, "ServerBusy")),
            StoreError::Transient(_)
        ));
        assert!(matches!(
            map_error("x", http(403, "AuthorizationFailure")),
            StoreError::Config(_)
        ));
        assert!(matches!(
            map_error("x", http(400, "InvalidInput")),
            StoreError::Permanent(_)
        ));
        assert!(is_lost_claim(&http(400, "PopReceiptMismatch")));
        assert!(is_lost_claim(&http(404, "MessageNotFound")));
        assert!(!is_lost_claim(&http(404, "QueueNotFound")));
    }
}
