//! One poll run: read the window, enqueue every new user once, then move the checkpoint.
//!
//! The order is what makes it safe: messages are enqueued before the checkpoint that
//! records them is written, so a crash in between yields duplicates (ProvisionUser is
//! idempotent), never a lost user. The checkpoint write is conditional on the version
//! read at the start, so of two concurrent runs only one moves it.

use super::checkpoint::{Checkpoint, Resume, Window};
use crate::graph::throttle::RequestPacer;
use crate::graph::{AuditQuery, GraphClient, GraphError, Pager};
use crate::handover::{DetectionSource, ProvisionMessage};
use crate::store::{CheckpointName, ExpectedVersion, PROVISION_QUEUE, Store, StoreError};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const CHECKPOINT: CheckpointName = CheckpointName::from_static("poll-audit-logs");
/// Messages enqueued at once: the queue is the bottleneck of a large backlog.
const ENQUEUE_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct PollSettings {
    /// How far before the watermark each window starts (late audit records).
    pub overlap: chrono::Duration,
    /// Where the first run starts; default `now` (so the first window is `now - overlap`).
    pub first_start: Option<DateTime<Utc>>,
    pub source: SourceKind,
    /// Stop paging after this long and carry on at the next tick (below the function timeout).
    pub run_budget: Duration,
    /// Records per Graph page (`$top`).
    pub page_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `Add user` records of the directory audit log (AuditLog.Read.All).
    AuditLog,
    /// Users by `createdDateTime` (User.Read.All; no reporting latency).
    Users,
}

impl SourceKind {
    fn detection(self) -> DetectionSource {
        match self {
            SourceKind::AuditLog => DetectionSource::AuditLog,
            SourceKind::Users => DetectionSource::Users,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PollOptions {
    /// Backfill: read from this time instead of the watermark minus the overlap.
    pub since: Option<DateTime<Utc>>,
    /// Read and report, enqueue nothing and write no checkpoint.
    pub dry_run: bool,
}

/// What a run did (object ids only: no personal data).
#[derive(Debug, Clone, PartialEq)]
pub struct PollSummary {
    pub records_read: usize,
    pub new_users: Vec<Uuid>,
    pub pages: u32,
    pub duration: Duration,
    pub window: Window,
    pub watermark: DateTime<Utc>,
    /// False when the run stopped at its time budget and left the rest for the next tick.
    pub window_finished: bool,
    pub dry_run: bool,
}

impl PollSummary {
    /// The one line the timer returns in `Logs`.
    pub fn line(&self) -> String {
        format!(
            "{}read {} records in {} pages, {} new users, {} ms, watermark {}{}",
            if self.dry_run { "dry run: " } else { "" },
            self.records_read,
            self.pages,
            self.new_users.len(),
            self.duration.as_millis(),
            self.watermark.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if self.window_finished {
                ""
            } else {
                " (window unfinished: carrying on at the next tick)"
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("reading Graph failed: {0}")]
    Graph(#[from] GraphError),
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
    #[error("another poll run moved the checkpoint first; this run's messages are at worst duplicates")]
    Conflict,
    #[error("the checkpoint is not readable JSON ({0}); fix or delete it in the store")]
    CorruptCheckpoint(String),
}

pub struct Poller {
    graph: GraphClient,
    store: Arc<dyn Store>,
    settings: PollSettings,
    /// One per process: the audit API's limit is per app and tenant.
    pacer: RequestPacer,
}

/// One record found in the window: a user and the time its record carries.
struct Found {
    user: Uuid,
    record_time: DateTime<Utc>,
    record_id: Option<String>,
}

enum Source {
    Audits(Pager<crate::graph::models::DirectoryAudit>),
    Users(Pager<crate::graph::models::User>),
}

impl Source {
    async fn next_page(&mut self) -> Result<Option<(usize, Vec<Found>)>, GraphError> {
        match self {
            Source::Audits(pager) => Ok(pager.next_page().await?.map(|records| {
                let read = records.len();
                let found = records
                    .iter()
                    .filter(|record| record.is_success())
                    .flat_map(|record| {
                        record
                            .target_users()
                            .filter_map(|target| target.object_id())
                            .map(|user| Found {
                                user,
                                record_time: record.activity_date_time,
                                record_id: Some(record.id.clone()),
                            })
                    })
                    .collect();
                (read, found)
            })),
            Source::Users(pager) => Ok(pager.next_page().await?.map(|users| {
                let read = users.len();
                let found = users
                    .iter()
                    .map(|user| Found {
                        user: user.id,
                        record_time: user.created_date_time.unwrap_or_else(Utc::now),
                        record_id: None,
                    })
                    .collect();
                (read, found)
            })),
        }
    }

    fn next_link(&self) -> Option<String> {
        match self {
            Source::Audits(pager) => pager.next_link().map(|url| url.to_string()),
            Source::Users(pager) => pager.next_link().map(|url| url.to_string()),
        }
    }

    fn has_next(&self) -> bool {
        self.next_link().is_some() || self.pages() == 0
    }

    fn pages(&self) -> u32 {
        match self {
            Source::Audits(pager) => pager.pages(),
            Source::Users(pager) => pager.pages(),
        }
    }
}

impl Poller {
    pub fn new(graph: GraphClient, store: Arc<dyn Store>, settings: PollSettings) -> Poller {
        let pacer = match settings.source {
            SourceKind::AuditLog => RequestPacer::directory_audits(),
            // The users API has no such tight limit; Graph's general throttling still answers 429s.
            SourceKind::Users => RequestPacer::new(20, Duration::from_secs(1)),
        };
        Poller {
            graph,
            store,
            settings,
            pacer,
        }
    }

    fn open_source(&self, window: Window, resume_link: Option<&str>) -> Result<Source, GraphError> {
        Ok(match (self.settings.source, resume_link) {
            (SourceKind::AuditLog, Some(link)) => Source::Audits(self.graph.resume_pager("directory audits", link)?),
            (SourceKind::Users, Some(link)) => Source::Users(self.graph.resume_pager("users", link)?),
            (SourceKind::AuditLog, None) => Source::Audits(self.graph.directory_audits(&AuditQuery {
                top: Some(self.settings.page_size),
                ..AuditQuery::added_users_since(window.start)
            })),
            (SourceKind::Users, None) => {
                Source::Users(self.graph.users_created_since(window.start, &["id", "createdDateTime"]))
            }
        })
    }

    pub async fn poll_once(&self, options: &PollOptions) -> Result<PollSummary, PollError> {
        let started = Instant::now();
        let now = Utc::now();
        let stored = self.store.read_checkpoint(&CHECKPOINT).await?;
        let expected = ExpectedVersion::from_read(stored.as_ref());
        let mut checkpoint = match &stored {
            Some(document) => document
                .json::<Checkpoint>()
                .map_err(|error| PollError::CorruptCheckpoint(error.to_string()))?,
            None => Checkpoint::first(self.settings.first_start.unwrap_or(now), now),
        };

        // Carry on with an unfinished window of the same source, unless this is a backfill.
        let resume = checkpoint
            .resume
            .clone()
            .filter(|resume| resume.source == self.settings.source.detection() && options.since.is_none());
        let window = match &resume {
            Some(resume) => resume.window,
            None => checkpoint.window(now, self.settings.overlap, options.since),
        };
        let mut source = self.open_source(window, resume.as_ref().map(|resume| resume.next_link.as_str()))?;

        let mut records_read = 0;
        let mut new_users = Vec::new();
        let mut window_finished = true;
        loop {
            // Counted against the audit API's limit from when the page has arrived.
            let paced = if source.has_next() {
                Some(self.pacer.acquire().await)
            } else {
                None
            };
            let page = source.next_page().await;
            drop(paced);
            let Some((read, found)) = page? else {
                break;
            };
            records_read += read;
            let mut fresh = Vec::new();
            for found in found {
                if !checkpoint.was_handed_over(&found.user) {
                    checkpoint.record_handover(found.user, found.record_time);
                    new_users.push(found.user);
                    fresh.push(found);
                }
            }
            if !options.dry_run {
                self.enqueue(fresh, now).await?;
            }
            if started.elapsed() >= self.settings.run_budget
                && let Some(next_link) = source.next_link()
            {
                let resume = Resume {
                    source: self.settings.source.detection(),
                    window,
                    next_link,
                };
                checkpoint.leave_unfinished(resume, Utc::now());
                window_finished = false;
                break;
            }
        }
        if window_finished {
            checkpoint.complete_window(window, self.settings.overlap, Utc::now());
        }

        if !options.dry_run {
            match self
                .store
                .write_checkpoint(&CHECKPOINT, &checkpoint.to_json(), &expected)
                .await
            {
                Ok(_) => {}
                Err(error) if error.is_conflict() => return Err(PollError::Conflict),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(PollSummary {
            records_read,
            new_users,
            pages: source.pages(),
            duration: started.elapsed(),
            window,
            watermark: checkpoint.watermark,
            window_finished,
            dry_run: options.dry_run,
        })
    }

    async fn enqueue(&self, found: Vec<Found>, detected_at: DateTime<Utc>) -> Result<(), StoreError> {
        let source = self.settings.source.detection();
        futures_util::stream::iter(found)
            .map(|found| {
                let message = ProvisionMessage {
                    user_id: found.user,
                    detected_at,
                    source,
                    audit_record_id: found.record_id,
                };
                async move {
                    self.store
                        .send(&PROVISION_QUEUE, &message.to_json(), Duration::ZERO)
                        .await
                }
            })
            .buffer_unordered(ENQUEUE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
