//! What the loop tells its supervisor (systemd): readiness, reloads, stops,
//! watchdog pings and the `STATUS=` line, and when each is due.
//!
//! Timers exist only when there is something to say: a watchdog interval if
//! systemd asked for one, a `STATUS=` refresh a second after activity, a
//! notification that waits for systemd to read its socket again. An idle
//! daemon without a watchdog has none. Sending never blocks
//! ([`Notifier`]).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::notify::Notifier;

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
    /// sd_notify, which never blocks: what systemd does not read yet waits.
    notifier: Notifier,
}

impl Supervisor {
    /// Reads what systemd asked for from the environment.
    pub(super) fn from_env() -> Supervisor {
        Supervisor {
            watchdog: sd_notify::watchdog_enabled().map(|usec| usec / 2),
            next_watchdog: Instant::now(),
            status_due: None,
            reload_error: None,
            notifier: Notifier::from_env(),
        }
    }

    /// When the loop must wake for the supervisor's sake.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        let watchdog = self.watchdog.map(|_| self.next_watchdog);
        (self.status_due.into_iter())
            .chain(watchdog)
            .chain(self.notifier.retry_at())
            .min()
    }

    /// End of a turn: pings the watchdog when due; true if the `STATUS=`
    /// line is due (a little after activity): send it with [`status`].
    ///
    /// [`status`]: Supervisor::status
    pub(super) fn tick(&mut self, now: Instant, active: bool) -> bool {
        if self.notifier.retry_at().is_some_and(|at| now >= at) {
            self.notifier.retry();
        }
        if let Some(interval) = self.watchdog {
            if now >= self.next_watchdog {
                self.notifier.send(&[NotifyState::Watchdog]);
                self.next_watchdog = now + interval;
            }
        }
        match self.status_due {
            Some(due) if now >= due => {
                self.status_due = None;
                return true;
            }
            None if active && self.notifier.enabled() => self.status_due = Some(now + STATUS_DELAY),
            _ => {}
        }
        false
    }

    /// Sends `STATUS=`.
    pub(super) fn status(&mut self, status: &str) {
        self.notifier.send(&[NotifyState::Status(status)]);
    }

    /// `READY=1` with the current status.
    pub(super) fn ready(&mut self, status: &str) {
        self.notifier
            .send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with the monotonic time systemd wants beside it.
    pub(super) fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.notifier.send(&states);
    }

    /// `STOPPING=1`.
    pub(super) fn stopping(&mut self) {
        self.notifier.send(&[NotifyState::Stopping]);
    }

    /// Records how the last reload went (shown in `STATUS=` until one
    /// succeeds).
    pub(super) fn set_reload_error(&mut self, error: Option<String>) {
        self.reload_error = error;
    }

    /// At the end: says how many notifications systemd did not take at once.
    pub(super) fn report(&self) {
        let (deferred, failed) = (self.notifier.deferred(), self.notifier.failed());
        if deferred + failed > 0 {
            log::info!("sd_notify: {deferred} notifications deferred, {failed} failed");
        }
    }

    /// Why the last reload failed, if it did.
    pub(super) fn reload_error(&self) -> Option<&str> {
        self.reload_error.as_deref()
    }
}
