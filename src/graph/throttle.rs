//! Client-side pacing for Graph APIs with tight documented limits.
//!
//! The audit log API allows 5 requests per 10 s per app and tenant. Pacing requests
//! ourselves keeps a backlog of many pages from running into 429s at all (each 429 costs a
//! `Retry-After` wait and counts against the app).
//!
//! A request is counted from when it *finished*: Graph counts arrivals, and a request
//! arrives somewhere between its start and its end, so spacing the next start a full period
//! after an earlier request's end keeps any window of arrivals within the limit, whatever the
//! latency (the first request, for one, also waits for a token).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// At most `limit` requests in any `period`.
#[derive(Debug)]
pub struct RequestPacer {
    limit: usize,
    period: Duration,
    finished: Mutex<VecDeque<Instant>>,
}

/// A paced request in flight: counted when dropped (the request finished).
#[derive(Debug)]
pub struct PacedRequest<'a> {
    pacer: &'a RequestPacer,
}

impl Drop for PacedRequest<'_> {
    fn drop(&mut self) {
        let mut finished = self
            .pacer
            .finished
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        finished.push_back(Instant::now());
        while finished.len() > self.pacer.limit {
            finished.pop_front();
        }
    }
}

impl RequestPacer {
    pub fn new(limit: usize, period: Duration) -> RequestPacer {
        RequestPacer {
            limit: limit.max(1),
            period,
            finished: Mutex::new(VecDeque::new()),
        }
    }

    /// Graph's directory audit limit: 5 requests per 10 s per app per tenant.
    pub fn directory_audits() -> RequestPacer {
        RequestPacer::new(5, Duration::from_secs(10))
    }

    /// Waits until one more request fits the limit; hold the result while the request runs.
    /// Meant for one request at a time (a poll's pages are sequential).
    pub async fn acquire(&self) -> PacedRequest<'_> {
        let ready_at = {
            let finished = self.finished.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (finished.len() >= self.limit).then(|| finished[finished.len() - self.limit] + self.period)
        };
        if let Some(ready_at) = ready_at {
            tokio::time::sleep_until(ready_at).await;
        }
        PacedRequest { pacer: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_limit_in_any_period_whatever_the_latency() {
        let pacer = RequestPacer::directory_audits();
        let origin = Instant::now();
        let latency = Duration::from_millis(700);
        let mut spans = Vec::new();
        for _ in 0..12 {
            let request = pacer.acquire().await;
            let started = Instant::now() - origin;
            tokio::time::sleep(latency).await;
            drop(request);
            spans.push((started, Instant::now() - origin));
        }
        // Whenever within its span a request arrives, no 10 s window holds more than 5.
        for (index, (_, first_end)) in spans.iter().enumerate() {
            if let Some((sixth_start, _)) = spans.get(index + 5) {
                assert!(*sixth_start >= *first_end + Duration::from_secs(10), "{spans:?}");
            }
        }
        // And no slower than needed: the 6th starts one period after the 1st ended.
        assert_eq!(spans[5].0, spans[0].1 + Duration::from_secs(10), "{spans:?}");
    }
}
