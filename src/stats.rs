//! Counters kept per input and per output, and the rate limiter that keeps
//! repeated warnings from flooding the log.
//!
//! Counters only ever go up (except `lines_out`, which gives back lines that
//! were accepted into a queue and then discarded; what is reported is
//! `lines_out` less the lines still queued, the lines delivered, which never
//! goes down: `Output::stats`); they are read by SIGUSR1, at shutdown, for
//! `STATUS=` and by `status`.

use std::fmt;
use std::time::{Duration, Instant};

/// What happened on one input.
#[derive(Debug, Default, Clone)]
pub struct InputStats {
    /// Complete lines framed (an unterminated tail counts as one).
    pub lines_in: u64,
    /// Bytes read from the FIFO.
    pub bytes_in: u64,
    /// Lines cut to `max_line_bytes`.
    pub truncated: u64,
    /// Read or reopen errors.
    pub errors: u64,
}

impl fmt::Display for InputStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lines_in={} bytes_in={} truncated={} errors={}",
            self.lines_in, self.bytes_in, self.truncated, self.errors
        )
    }
}

/// What happened on one output.
#[derive(Debug, Default, Clone)]
pub struct OutputStats {
    /// Lines accepted for delivery (written or still queued).
    pub lines_out: u64,
    /// Bytes the kernel took.
    pub bytes_out: u64,
    /// Lines lost because no reader was attached, or the reader left.
    pub discarded: u64,
    /// Lines dropped by `when_full`.
    pub dropped: u64,
    /// Lines its `match`/`exclude` filters kept out.
    pub filtered: u64,
    /// Write, open and rotation errors.
    pub errors: u64,
}

impl fmt::Display for OutputStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lines_out={} bytes_out={} discarded={} dropped={} filtered={} errors={}",
            self.lines_out,
            self.bytes_out,
            self.discarded,
            self.dropped,
            self.filtered,
            self.errors
        )
    }
}

/// Lets one message through per interval and counts the ones held back.
#[derive(Debug, Default)]
pub struct RateLimit {
    /// When the next message may go out.
    next: Option<Instant>,
    /// Messages held back since the last one that went out.
    suppressed: u64,
}

/// How often a repeated warning about the same thing may be logged.
const INTERVAL: Duration = Duration::from_secs(10);

impl RateLimit {
    /// `Some(held back so far)` if a message may go out now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Suffix for a rate-limited message: how many like it were held back.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar messages suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_and_counts_the_rest() {
        let mut limit = RateLimit::default();
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit.next = Some(Instant::now());
        assert_eq!(limit.allow(), Some(2));
    }
}
