//! When a destination that failed transiently is tried again: attempt `n` failed → wait the
//! `n`th delay of the schedule; past the last delay the destination is failed for good.
//! Long delays are the point: a vendor outage lasts hours, and the queue's visibility delay
//! (at most 7 days) keeps the user waiting in the queue, not in memory.

use std::fmt;
use std::time::Duration;

use crate::store::MAX_VISIBILITY;

/// The delays before the 2nd, 3rd, ... attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected comma-separated delays such as 1m,5m,30m,2h (units s, m, h, d; each at most 7 days)")]
pub struct InvalidSchedule;

impl Default for RetrySchedule {
    fn default() -> RetrySchedule {
        RetrySchedule::parse(crate::settings::provisioning::DEFAULT_RETRY_SCHEDULE)
            .expect("the default schedule parses")
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Result<RetrySchedule, InvalidSchedule> {
        if delays.is_empty() || delays.iter().any(|delay| *delay > MAX_VISIBILITY) {
            return Err(InvalidSchedule);
        }
        Ok(RetrySchedule(delays))
    }

    /// `1m,5m,30m,2h,6h,12h,24h`.
    pub fn parse(text: &str) -> Result<RetrySchedule, InvalidSchedule> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(parse_delay)
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The wait after `failed_attempts` failures (1-based): `None` when the schedule is exhausted.
    pub fn delay_after(&self, failed_attempts: u32) -> Option<Duration> {
        let index = usize::try_from(failed_attempts).ok()?.checked_sub(1)?;
        self.0.get(index).copied()
    }
}

impl fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetrySchedule({self})")
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|delay| format_delay(*delay)).collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_delay(text: &str) -> Result<Duration, InvalidSchedule> {
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(InvalidSchedule)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| InvalidSchedule)?;
    let unit_seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(InvalidSchedule),
    };
    let seconds = number.checked_mul(unit_seconds).ok_or(InvalidSchedule)?;
    if seconds == 0 {
        return Err(InvalidSchedule);
    }
    Ok(Duration::from_secs(seconds))
}

/// `90s`, `5m`, `2h`, `1d`: the largest unit that divides the delay.
pub fn format_delay(delay: Duration) -> String {
    let seconds = delay.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_one_minute_to_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.to_string(), "1m,5m,30m,2h,6h,12h,1d");
        assert_eq!(schedule.delay_after(1), Some(Duration::from_secs(60)));
        assert_eq!(schedule.delay_after(3), Some(Duration::from_secs(1800)));
        assert_eq!(schedule.delay_after(7), Some(Duration::from_secs(86_400)));
        assert_eq!(schedule.delay_after(8), None);
        assert_eq!(schedule.delay_after(0), None);
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in ["", "5", "5x", "0s", "8d", "1m,,soon", "m"] {
            assert_eq!(RetrySchedule::parse(bad), Err(InvalidSchedule), "{bad:?}");
        }
        assert_eq!(RetrySchedule::parse(" 2s, 90s ,7d").unwrap().to_string(), "2s,90s,7d");
    }
}
