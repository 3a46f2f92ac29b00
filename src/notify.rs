//! sd_notify(3): tells systemd when the daemon is ready and stopping.
//!
//! Silent when `$NOTIFY_SOCKET` is unset; a failure to notify is logged once
//! and never stops the daemon.

use sd_notify::NotifyState;

/// True if systemd (or a test) listens for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `states` to systemd, if it is listening.
pub fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        log::warn!("cannot notify systemd: {err}");
    }
}
