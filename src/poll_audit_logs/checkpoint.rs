//! The poll checkpoint: how far the audit log has been read, and which users inside the
//! overlap window were already handed over.
//!
//! Each run reads `[watermark - overlap, now)`: the overlap catches records the audit log
//! ingests late (Microsoft documents p99 5 minutes; 15 are observed). Users already handed
//! over inside that window are remembered here, so a late record is enqueued exactly once
//! and the overlap costs no duplicates. The watermark moves only when a window was read to
//! the end and everything found in it was enqueued.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::handover::DetectionSource;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Everything before `watermark - overlap` has been handed over.
    pub watermark: DateTime<Utc>,
    /// Users handed over whose record time is still inside the overlap, with that time.
    #[serde(default)]
    pub handed_over: BTreeMap<Uuid, DateTime<Utc>>,
    /// A window that a run had to leave unfinished (time budget): the next run carries on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    pub updated_at: DateTime<Utc>,
}

/// Where an unfinished window stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    pub source: DetectionSource,
    pub window: Window,
    /// Graph's `@odata.nextLink` for the next page (checked against the Graph origin when used).
    pub next_link: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Checkpoint {
    /// The first checkpoint: nothing handed over, reading starts at `start - overlap`.
    pub fn first(start: DateTime<Utc>, now: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            watermark: start,
            handed_over: BTreeMap::new(),
            resume: None,
            updated_at: now,
        }
    }

    /// The window of this run: from the watermark minus the overlap (or an explicit
    /// `since`, for a backfill) to `now`.
    pub fn window(&self, now: DateTime<Utc>, overlap: Duration, since: Option<DateTime<Utc>>) -> Window {
        let start = match since {
            Some(since) => since,
            None => self.watermark - overlap,
        };
        Window {
            start: start.min(now),
            end: now,
        }
    }

    pub fn was_handed_over(&self, user: &Uuid) -> bool {
        self.handed_over.contains_key(user)
    }

    /// Records a user as handed over (enqueued). Keeps the latest record time seen.
    pub fn record_handover(&mut self, user: Uuid, record_time: DateTime<Utc>) {
        let entry = self.handed_over.entry(user).or_insert(record_time);
        *entry = (*entry).max(record_time);
    }

    /// The window was read to the end: move the watermark to its end and forget users
    /// whose records can no longer appear in a later window.
    pub fn complete_window(&mut self, window: Window, overlap: Duration, now: DateTime<Utc>) {
        self.watermark = self.watermark.max(window.end);
        self.resume = None;
        self.prune(overlap);
        self.updated_at = now;
    }

    /// The window is unfinished: remember where to carry on. The watermark stays.
    pub fn leave_unfinished(&mut self, resume: Resume, now: DateTime<Utc>) {
        self.resume = Some(resume);
        self.updated_at = now;
    }

    /// Users whose record time is before the next window's start are never returned again.
    fn prune(&mut self, overlap: Duration) {
        let next_start = self.watermark - overlap;
        self.handed_over.retain(|_, record_time| *record_time >= next_start);
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a checkpoint always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Checkpoint, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn user(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_window_starts_an_overlap_before_the_watermark() {
        let checkpoint = Checkpoint::first(at("2026-11-20T10:00:00Z"), at("2026-11-20T10:00:00Z"));
        let window = checkpoint.window(at("2026-11-20T10:05:00Z"), Duration::minutes(30), None);
        assert_eq!(
            window,
            Window {
                start: at("2026-11-20T09:30:00Z"),
                end: at("2026-11-20T10:05:00Z")
            }
        );
        let backfill = checkpoint.window(
            at("2026-11-20T10:05:00Z"),
            Duration::minutes(30),
            Some(at("2026-11-14T00:00:00Z")),
        );
        assert_eq!(backfill.start, at("2026-11-14T00:00:00Z"));
    }

    #[test]
    fn a_late_record_inside_the_overlap_is_recognised_and_an_old_one_forgotten() {
        let overlap = Duration::minutes(30);
        let mut checkpoint = Checkpoint::first(at("2026-11-20T10:00:00Z"), at("2026-11-20T10:00:00Z"));
        checkpoint.record_handover(user(1), at("2026-11-20T10:02:00Z"));
        checkpoint.record_handover(user(2), at("2026-11-20T09:31:00Z"));
        let window = checkpoint.window(at("2026-11-20T10:05:00Z"), overlap, None);
        checkpoint.complete_window(window, overlap, at("2026-11-20T10:05:00Z"));
        assert_eq!(checkpoint.watermark, at("2026-11-20T10:05:00Z"));
        // Next window starts 09:35: user 2's record (09:31) can't come back; user 1's can.
        assert!(checkpoint.was_handed_over(&user(1)));
        assert!(!checkpoint.was_handed_over(&user(2)));
    }

    #[test]
    fn an_unfinished_window_keeps_the_watermark() {
        let overlap = Duration::minutes(30);
        let mut checkpoint = Checkpoint::first(at("2026-11-20T10:00:00Z"), at("2026-11-20T10:00:00Z"));
        let window = checkpoint.window(at("2026-11-20T10:05:00Z"), overlap, None);
        checkpoint.record_handover(user(1), at("2026-11-20T10:01:00Z"));
        checkpoint.leave_unfinished(
            Resume {
                source: DetectionSource::AuditLog,
                window,
                next_link: "https://graph.microsoft.com/v1.0/x".into(),
            },
            at("2026-11-20T10:05:00Z"),
        );
        assert_eq!(checkpoint.watermark, at("2026-11-20T10:00:00Z"));
        assert!(checkpoint.was_handed_over(&user(1)));
        let restored = Checkpoint::from_json(&checkpoint.to_json()).unwrap();
        assert_eq!(restored, checkpoint);
    }

    #[test]
    fn the_watermark_never_moves_back() {
        let overlap = Duration::minutes(30);
        let mut checkpoint = Checkpoint::first(at("2026-11-20T10:00:00Z"), at("2026-11-20T10:00:00Z"));
        let backfill = checkpoint.window(at("2026-11-20T09:00:00Z"), overlap, Some(at("2026-11-19T00:00:00Z")));
        checkpoint.complete_window(backfill, overlap, at("2026-11-20T10:00:00Z"));
        assert_eq!(checkpoint.watermark, at("2026-11-20T10:00:00Z"));
    }
}
