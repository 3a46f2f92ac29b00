//! `[broker] metrics_file`: the Prometheus text of `status --prometheus`
//! kept in a file for node_exporter's textfile collector.
//!
//! Written whole to `PATH.tmp` and renamed over `PATH`, so a scrape never
//! reads half a file; at startup, then at most once a second after
//! activity (an idle daemon has no timer for it), and removed at a clean
//! stop so that a stopped daemon's counters are not scraped as current.
//! Writing is a few kilobytes to a local regular file, as sinks do; a
//! failure is counted and logged (rate-limited) and never stops the loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stats::{suppressed_note, RateLimit};

/// How long after activity the file is rewritten, at most.
const DELAY: Duration = Duration::from_secs(1);

/// The metrics file, if configured, and when it is due.
#[derive(Default)]
pub(super) struct MetricsFile {
    /// Where to write; `None` when not configured.
    path: Option<PathBuf>,
    /// When to rewrite it (set after activity).
    due: Option<Instant>,
    /// Failed writes.
    errors: u64,
    /// Limits messages about failures.
    warning: RateLimit,
}

impl MetricsFile {
    /// Takes the configured path (startup and reload); a file left at a
    /// previous path is removed.
    pub(super) fn set_path(&mut self, path: Option<PathBuf>) {
        if self.path != path {
            self.remove();
            self.path = path;
            self.due = self.path.as_ref().map(|_| Instant::now());
        }
    }

    /// When the loop must wake to rewrite it.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.due
    }

    /// End of a turn: true if the file is due now (then [`write`] it).
    ///
    /// [`write`]: MetricsFile::write
    pub(super) fn tick(&mut self, now: Instant, active: bool) -> bool {
        match self.due {
            Some(due) if now >= due => {
                self.due = None;
                true
            }
            None if active && self.path.is_some() => {
                self.due = Some(now + DELAY);
                false
            }
            _ => false,
        }
    }

    /// Replaces the file with `text`.
    pub(super) fn write(&mut self, text: &str) {
        let Some(path) = &self.path else {
            return;
        };
        if let Err(e) = replace(path, text.as_bytes()) {
            self.errors += 1;
            if let Some(held) = self.warning.allow() {
                log::warn!(
                    "metrics_file {}: {e} ({} failed writes){}",
                    path.display(),
                    self.errors,
                    suppressed_note(held)
                );
            }
        }
    }

    /// Removes the file (at a clean stop, or when the path changes).
    pub(super) fn remove(&mut self) {
        if let Some(path) = &self.path {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    log::warn!("metrics_file {}: cannot remove it: {e}", path.display());
                }
                _ => {}
            }
        }
    }
}

/// Writes `data` to `path.tmp` (mode 0644: node_exporter runs as another
/// user) and renames it over `path`.
fn replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    file.write_all(data)?;
    drop(file);
    std::fs::rename(&tmp, path)
}
