//! The retry policy every outbound client uses: which failures are worth another attempt,
//! how long to wait before it, and when to give up.
//!
//! - Retried: HTTP 408, 429 and 5xx, connection errors and timeouts. Any other 4xx fails at once.
//! - `Retry-After` (delay-seconds or an HTTP date) is honoured when the server sends it
//!   (Graph sends it with 429, 503 and 504); otherwise the wait is exponential backoff with
//!   jitter (a random value between half and all of `initial_backoff * 2^n`).
//! - Each wait is capped by `max_delay`. A `Retry-After` longer than the cap is not shortened
//!   (retrying early only earns another 429): the operation stops and reports it, so the caller
//!   can come back later.
//! - `total_timeout` bounds the whole operation, attempts and waits included: each attempt gets
//!   at most the time that is left, and no wait is started that would end past the deadline.
//!
//! The loop is [`run`]; the HTTP classification helpers are [`classify_response`],
//! [`is_retryable_status`], [`retry_after`] and [`is_retryable_error`].

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How often and how long to retry one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// The longest single wait (backoff or `Retry-After`).
    pub max_delay: Duration,
    /// The longest single attempt.
    pub attempt_timeout: Duration,
    /// The whole operation: attempts and waits.
    pub total_timeout: Duration,
}

impl RetryPolicy {
    /// Microsoft Graph: throttled at 5 requests / 10 s for the audit log, so waits of a few
    /// seconds are normal; a timer run has minutes, not hours.
    pub const fn graph() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
        }
    }

    /// Token endpoints: fast when healthy; a short budget so a caller learns quickly.
    pub const fn token_endpoint() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(20),
            total_timeout: Duration::from_secs(45),
        }
    }

    /// The backoff before retry number `retry` (1 for the first retry), jittered and capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = base / 2;
        let jitter_nanos = fastrand::u64(0..=u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_nanos)
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::graph()
    }
}

/// What an attempt may use: its number (1 for the first) and its time limit.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub number: u32,
    /// `attempt_timeout`, or less when the operation's deadline is closer: pass it to the
    /// request (`RequestBuilder::timeout`).
    pub timeout: Duration,
}

/// A failed attempt, as the caller classifies it.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth another attempt; `retry_after` is the server's `Retry-After`, if any.
    Retryable { error: E, retry_after: Option<Duration> },
    /// Another attempt would fail the same way.
    Permanent(E),
}

impl<E> Failure<E> {
    pub fn retryable(error: E, retry_after: Option<Duration>) -> Failure<E> {
        Failure::Retryable { error, retry_after }
    }
}

/// Why [`run`] stopped without a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The last failure was not retryable.
    NotRetryable,
    /// `max_attempts` attempts failed.
    AttemptsExhausted,
    /// The server asked for a longer wait than `max_delay`.
    RetryAfterTooLong(Duration),
    /// The wait before the next attempt would end past `total_timeout`.
    OutOfTime,
}

/// The last failure and how the operation ended.
#[derive(Debug)]
pub struct RetryError<E> {
    pub error: E,
    pub attempts: u32,
    pub stop: Stop,
}

/// Runs `operation` until it succeeds or the policy says stop.
pub async fn run<T, E, F, Fut>(policy: &RetryPolicy, mut operation: F) -> Result<T, RetryError<E>>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let started = Instant::now();
    let mut number = 0;
    loop {
        number += 1;
        let remaining = policy.total_timeout.saturating_sub(started.elapsed());
        let attempt = Attempt {
            number,
            timeout: policy.attempt_timeout.min(remaining).max(Duration::from_millis(1)),
        };
        let (error, retry_after) = match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(Failure::Permanent(error)) => {
                return Err(RetryError {
                    error,
                    attempts: number,
                    stop: Stop::NotRetryable,
                });
            }
            Err(Failure::Retryable { error, retry_after }) => (error, retry_after),
        };
        let stop = |stop| RetryError {
            error,
            attempts: number,
            stop,
        };
        if number >= policy.max_attempts {
            return Err(stop(Stop::AttemptsExhausted));
        }
        let delay = match retry_after {
            Some(wait) if wait > policy.max_delay => return Err(stop(Stop::RetryAfterTooLong(wait))),
            Some(wait) => wait,
            None => policy.backoff(number),
        };
        if started.elapsed() + delay >= policy.total_timeout {
            return Err(stop(Stop::OutOfTime));
        }
        log::debug!("attempt {number} failed; retrying in {} ms", delay.as_millis());
        tokio::time::sleep(delay).await;
    }
}

/// 408, 429 and 5xx are worth another attempt; other statuses are not.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Some(retry_after)` when the response is worth another attempt.
pub fn classify_response(status: StatusCode, headers: &HeaderMap) -> Option<Option<Duration>> {
    is_retryable_status(status).then(|| retry_after(headers))
}

/// The `Retry-After` header: delay-seconds or an HTTP date (a date in the past is zero).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, SystemTime::now())
}

/// Parses a `Retry-After` value relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Connection failures, timeouts and bodies cut off mid-way are worth another attempt.
pub fn is_retryable_error(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::cell::Cell;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            attempt_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);

        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }

    #[test]
    fn only_408_429_and_5xx_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 409, 412] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            classify_response(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(classify_response(StatusCode::FORBIDDEN, &headers), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..quick()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_success() {
        let calls = Cell::new(0);
        let result: Result<u32, RetryError<&str>> = run(&quick(), |attempt| {
            calls.set(calls.get() + 1);
            async move {
                if attempt.number < 3 {
                    Err(Failure::retryable("busy", Some(Duration::ZERO)))
                } else {
                    Ok(attempt.number)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn permanent_failures_stop_at_once() {
        let calls = Cell::new(0);
        let error = run(&quick(), |_| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Failure::Permanent("forbidden")) }
        })
        .await
        .unwrap_err();
        assert_eq!(
            (error.error, error.attempts, error.stop),
            ("forbidden", 1, Stop::NotRetryable)
        );
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let error = run(&quick(), |_| async { Err::<(), _>(Failure::retryable("down", None)) })
            .await
            .unwrap_err();
        assert_eq!((error.attempts, error.stop), (4, Stop::AttemptsExhausted));
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_cap_stops_instead_of_retrying_early() {
        let error = run(&quick(), |_| async {
            Err::<(), _>(Failure::retryable("throttled", Some(Duration::from_secs(3600))))
        })
        .await
        .unwrap_err();
        assert_eq!(error.attempts, 1);
        assert_eq!(error.stop, Stop::RetryAfterTooLong(Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn no_wait_is_started_past_the_deadline() {
        let policy = RetryPolicy {
            max_attempts: 100,
            max_delay: Duration::from_secs(10),
            total_timeout: Duration::from_millis(50),
            ..quick()
        };
        let error = run(&policy, |_| async {
            Err::<(), _>(Failure::retryable("slow", Some(Duration::from_secs(1))))
        })
        .await
        .unwrap_err();
        assert_eq!((error.attempts, error.stop), (1, Stop::OutOfTime));
    }

    #[tokio::test]
    async fn each_attempt_gets_at_most_the_time_left() {
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(2),
            ..quick()
        };
        let timeout = run(&policy, |attempt| async move { Ok::<_, Failure<()>>(attempt.timeout) })
            .await
            .unwrap();
        assert!(timeout <= Duration::from_secs(2));
    }
}
