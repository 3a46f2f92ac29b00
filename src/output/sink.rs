//! Sink outputs: lines appended to a log file.
//!
//! A sink writes straight to its file. Errors (disk full, EIO) keep the data
//! in the outbox (per `when_full`) and retry with exponential backoff; they
//! are counted and logged, never fatal. A file gives no readiness events, so
//! a short write is finished at once and a stalled one retried on a timer.

use std::io;
use std::time::{Duration, Instant};

use super::{Core, Failure, Kind, SinkFile, State, Target};
use crate::config::{OutputConfig, OutputKind};
use crate::stats::suppressed_note;
use crate::world::World;

/// First retry delay after a write error; doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// An append-only log file.
#[derive(Debug)]
pub(crate) struct Sink {
    /// Name, queue and counters.
    core: Core,
    /// The open file.
    file: SinkFile,
    /// When to retry after a write error.
    retry_at: Option<Instant>,
    /// The next retry delay.
    backoff: Duration,
}

impl Sink {
    pub(super) fn new(core: Core, file: SinkFile) -> Sink {
        Sink {
            core,
            file,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// A line cut at a reopen on a full disk (see [`SinkFile`]) did not
    /// reach any file whole: it counts as dropped, not out.
    fn count_cut(&mut self) {
        let cut = self.file.take_cut();
        if cut > 0 {
            self.core.stats.dropped += cut;
            self.core.stats.lines_out = self.core.stats.lines_out.saturating_sub(cut);
        }
    }

    fn sync(&mut self) {
        if let Err(e) = self.file.sync() {
            self.core.stats.errors += 1;
            log::error!(
                "sink {}: fsync {}: {e}",
                self.core.name,
                self.file.path().display()
            );
        }
    }
}

impl Target for Sink {
    const KIND: Kind = Kind::Sink;

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    fn holding(&self) -> bool {
        self.retry_at.is_some()
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let result = self.file.write(data);
        self.count_cut();
        result
    }

    fn write_queued(&mut self) -> (usize, io::Result<()>) {
        let file = &mut self.file;
        let result = self.core.outbox.flush(|b| file.write(b));
        self.count_cut();
        result
    }

    fn failed(&mut self, err: io::Error, _world: &World) -> Failure {
        self.core.stats.errors += 1;
        let delay = self.backoff;
        self.retry_at = Some(Instant::now() + delay);
        self.backoff = (delay * 2).min(MAX_BACKOFF);
        if let Some(held) = self.core.warning.allow() {
            log::error!(
                "sink {}: write to {} failed: {err}; {} bytes queued, retrying in {delay:?}{}",
                self.core.name,
                self.file.path().display(),
                self.core.outbox.len().max(1),
                suppressed_note(held)
            );
        }
        Failure::Retry
    }

    fn flushed(&mut self) {
        if self.core.outbox.is_empty() {
            self.retry_at = None;
            self.backoff = FIRST_BACKOFF;
        } else {
            // The file took nothing more and gave no error: try again later
            // rather than leave bytes unattended.
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    fn finishes_short_writes(&self) -> bool {
        true
    }

    fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    fn state(&self) -> State {
        if self.retry_at.is_some() {
            State::Retrying
        } else {
            State::Ok
        }
    }

    fn reconfigure(&mut self, config: &OutputConfig) {
        if let OutputKind::Sink {
            max_bytes, keep, ..
        } = config.kind
        {
            self.file.set_rotation(max_bytes, keep);
        }
    }

    /// Reopens the file at the same path (logrotate moved it away); queued
    /// lines stay queued for the file now in use.
    fn reopen(&mut self) {
        if let Err(e) = self.file.reopen() {
            self.core.stats.errors += 1;
            log::error!(
                "sink {}: cannot reopen {}: {e}; still writing to the old file",
                self.core.name,
                self.file.path().display()
            );
        }
    }

    fn close(&mut self, world: &World) {
        super::flush(self, world);
        self.sync();
    }
}
