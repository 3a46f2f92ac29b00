//! What the loop tells its supervisor (systemd): readiness, reloads, stops,
//! watchdog pings and the `STATUS=` line, and when each is due.
//!
//! Timers exist only when there is something to say: a watchdog interval if
//! systemd asked for one, a `STATUS=` refresh a second after activity. An
//! idle daemon without a watchdog has none.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::notify;

/// How long after activity the `STATUS=` line is refreshed.
const STATUS_DELAY: Duration = Duration::from_secs(1);

/// The supervisor's side of the loop.
pub(super) struct Supervisor {
    /// Half of systemd's `WATCHDOG_USEC`, if it asked for pings.
    watchdog: Option<Duration>,
    /// When the next `WATCHDOG=1` is due.
    next_watchdog: Instant,
    /// When to send an updated `STATUS=` (set after activity, so an idle
    /// daemon has no timer).
    status_due: Option<Instant>,
    /// Why the last reload failed, until one succeeds.
    reload_error: Option<String>,
}

impl Supervisor {
    /// Reads what systemd asked for from the environment.
    pub(super) fn from_env() -> Supervisor {
        Supervisor {
            watchdog: sd_notify::watchdog_enabled().map(|usec| usec / 2),
            next_watchdog: Instant::now(),
            status_due: None,
            reload_error: None,
        }
    }

    /// When the loop must wake for the supervisor's sake.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        let watchdog = self.watchdog.map(|_| self.next_watchdog);
        self.status_due.into_iter().chain(watchdog).min()
    }

    /// End of a turn: pings the watchdog when due; true if the `STATUS=`
    /// line is due (a little after activity): send it with [`status`].
    ///
    /// [`status`]: Supervisor::status
    pub(super) fn tick(&mut self, now: Instant, active: bool) -> bool {
        if let Some(interval) = self.watchdog {
            if now >= self.next_watchdog {
                notify::send(&[NotifyState::Watchdog]);
                self.next_watchdog = now + interval;
            }
        }
        match self.status_due {
            Some(due) if now >= due => {
                self.status_due = None;
                return true;
            }
            None if active && notify::enabled() => self.status_due = Some(now + STATUS_DELAY),
            _ => {}
        }
        false
    }

    /// Sends `STATUS=`.
    pub(super) fn status(&mut self, status: &str) {
        notify::send(&[NotifyState::Status(status)]);
    }

    /// `READY=1` with the current status.
    pub(super) fn ready(&mut self, status: &str) {
        notify::send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with the monotonic time systemd wants beside it.
    pub(super) fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        notify::send(&states);
    }

    /// `STOPPING=1`.
    pub(super) fn stopping(&mut self) {
        notify::send(&[NotifyState::Stopping]);
    }

    /// Records how the last reload went (shown in `STATUS=` until one
    /// succeeds).
    pub(super) fn set_reload_error(&mut self, error: Option<String>) {
        self.reload_error = error;
    }

    /// Why the last reload failed, if it did.
    pub(super) fn reload_error(&self) -> Option<&str> {
        self.reload_error.as_deref()
    }
}
