//! Client-side pacing for Graph APIs with tight documented limits.
//!
//! The audit log API allows 5 requests per 10 s per app and tenant. Pacing requests
//! ourselves keeps a backlog of many pages from running into 429s at all (each 429 costs a
//! `Retry-After` wait and counts against the app).

use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `limit` requests in any `period` (a sliding log of the last `limit` starts).
#[derive(Debug)]
pub struct RequestPacer {
    limit: usize,
    period: Duration,
    recent: Mutex<VecDeque<Instant>>,
}

impl RequestPacer {
    pub fn new(limit: usize, period: Duration) -> RequestPacer {
        RequestPacer {
            limit: limit.max(1),
            period,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Graph's directory audit limit: 5 requests per 10 s per app per tenant.
    pub fn directory_audits() -> RequestPacer {
        RequestPacer::new(5, Duration::from_secs(10))
    }

    /// Waits until one more request fits the limit, and counts it.
    pub async fn acquire(&self) {
        let mut recent = self.recent.lock().await;
        if recent.len() >= self.limit {
            let oldest = recent[recent.len() - self.limit];
            tokio::time::sleep_until(oldest + self.period).await;
        }
        recent.push_back(Instant::now());
        while recent.len() > self.limit {
            recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_limit_starts_in_any_period() {
        let pacer = RequestPacer::directory_audits();
        let origin = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            pacer.acquire().await;
            starts.push(Instant::now() - origin);
        }
        // In any window of 10 s, at most 5 starts.
        for (index, start) in starts.iter().enumerate() {
            let in_window = starts[index..]
                .iter()
                .filter(|later| **later < *start + Duration::from_secs(10))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} starts within 10 s of {start:?}: {starts:?}"
            );
        }
        // And no slower than needed: 12 requests take two full periods.
        assert_eq!(*starts.last().unwrap(), Duration::from_secs(20));
    }
}
