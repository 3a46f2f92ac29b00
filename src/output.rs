//! Outputs: subscriber FIFOs and sink files, each behind its own [`Outbox`].
//!
//! A subscriber holds no fd while nobody reads it. When a line is routed to
//! it, the daemon tries a non-blocking write-open: that succeeds exactly when
//! a reader has the FIFO open or is waiting in `open()`, so a waiting reader
//! is attached by the next line and never sees an earlier one, and an idle
//! daemon polls nothing. An attached writer stays registered for WRITABLE so
//! that `EPOLLERR` tells the loop at once when the reader goes away.
//!
//! A sink writes straight to its file. Errors (disk full, EIO) keep the data
//! in the outbox (per `when_full`) and retry with exponential backoff; they
//! are counted and logged, never fatal.
//!
//! Neither kind ever blocks: writes are non-blocking (pipes) or to regular
//! files, and whatever is not taken goes to the bounded outbox.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::fifodir::{FifoDir, FifoId};
use crate::outbox::Outbox;
use crate::sink::SinkFile;
use crate::stats::{suppressed_note, OutputStats, RateLimit};

/// First retry delay after a sink write error; doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What an output needs from the broker to attach and detach readers.
pub struct Ctx<'a> {
    /// The FIFO directory (subscribers are opened relative to it).
    pub dir: &'a FifoDir,
    /// Where attached writers are registered.
    pub registry: &'a Registry,
    /// Kernel pipe capacity to ask for on attach.
    pub pipe_bytes: Option<usize>,
}

/// One output.
#[derive(Debug)]
pub struct Output {
    /// Name in the config (the file name, for a subscriber).
    pub name: String,
    /// Index of its format in the broker's format table.
    pub format: usize,
    /// Bytes waiting for the kernel.
    pub outbox: Outbox,
    /// Where the bytes go.
    pub target: Target,
    /// Counters.
    pub stats: OutputStats,
    /// Limits error messages.
    pub warning: RateLimit,
    /// Token for the attached writer (subscribers).
    pub token: Token,
}

/// Where an output's bytes go.
#[derive(Debug)]
pub enum Target {
    /// A FIFO in the directory.
    Subscriber {
        /// The inode the daemon created.
        fifo: FifoId,
        /// Permission bits it was created with.
        mode: u32,
        /// The write end, while a reader is attached.
        writer: Option<OwnedFd>,
    },
    /// A log file.
    Sink {
        /// The open file.
        file: SinkFile,
        /// When to retry after a write error.
        retry_at: Option<Instant>,
        /// The next retry delay.
        backoff: Duration,
    },
}

impl Target {
    /// A sink target writing to `file`, with no error pending.
    pub fn sink(file: SinkFile) -> Target {
        Target::Sink {
            file,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }
}

impl Output {
    /// True if this is a subscriber with a reader attached.
    pub fn is_attached(&self) -> bool {
        matches!(
            self.target,
            Target::Subscriber {
                writer: Some(_),
                ..
            }
        )
    }

    /// When this sink wants to retry a failed write, if it does.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.target {
            Target::Sink { retry_at, .. } => retry_at,
            Target::Subscriber { .. } => None,
        }
    }

    /// Delivers `data` (`lines` complete lines): straight to the kernel if
    /// nothing is queued, the rest into the outbox under its policy.
    pub fn offer(&mut self, data: &[u8], lines: u64, ctx: &Ctx<'_>) {
        // Twice at most: if the reader turns out to be gone, a new one may
        // already be waiting for this very line.
        for _ in 0..2 {
            if let Target::Subscriber { writer: None, .. } = self.target {
                if !self.attach(ctx) {
                    self.stats.discarded += lines;
                    return;
                }
            }
            self.stats.lines_out += lines;
            if !self.outbox.is_empty() || self.retry_at().is_some() {
                self.queue(data, false);
                return;
            }
            match self.write(data) {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    if n < data.len() {
                        self.queue(&data[n..], n > 0 && data[n - 1] != b'\n');
                        if self.is_sink() {
                            // No readiness event comes for a file: a short
                            // write (rotation, disk filling) goes on now.
                            self.flush(ctx);
                        }
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue(data, false);
                    return;
                }
                Err(e) => {
                    if !self.failed(e, ctx) {
                        // A sink keeps the lines and retries.
                        self.queue(data, false);
                        return;
                    }
                    // The reader is gone: these lines were not delivered.
                    self.stats.lines_out = self.stats.lines_out.saturating_sub(lines);
                }
            }
        }
        self.stats.discarded += lines;
    }

    /// Writes what is queued, as far as the kernel takes it.
    pub fn flush(&mut self, ctx: &Ctx<'_>) {
        if self.outbox.is_empty() {
            if let Target::Sink {
                retry_at, backoff, ..
            } = &mut self.target
            {
                *retry_at = None;
                *backoff = FIRST_BACKOFF;
            }
            return;
        }
        let (written, result) = match &mut self.target {
            Target::Subscriber {
                writer: Some(fd), ..
            } => self
                .outbox
                .flush(|b| rustix::io::write(&*fd, b).map_err(io::Error::from)),
            Target::Subscriber { writer: None, .. } => return,
            Target::Sink { file, .. } => self.outbox.flush(|b| file.write(b)),
        };
        self.stats.bytes_out += written as u64;
        match result {
            Ok(()) => {
                if let Target::Sink {
                    retry_at, backoff, ..
                } = &mut self.target
                {
                    if self.outbox.is_empty() {
                        *retry_at = None;
                        *backoff = FIRST_BACKOFF;
                    } else {
                        // The file took nothing more and gave no error: try
                        // again later rather than leave bytes unattended.
                        *retry_at = Some(Instant::now() + *backoff);
                    }
                }
            }
            Err(e) => {
                self.failed(e, ctx);
            }
        }
    }

    /// True for a sink, false for a subscriber.
    pub fn is_sink(&self) -> bool {
        matches!(self.target, Target::Sink { .. })
    }

    /// The subscriber's FIFO, if this is a subscriber.
    pub fn fifo(&self) -> Option<FifoId> {
        match self.target {
            Target::Subscriber { fifo, .. } => Some(fifo),
            Target::Sink { .. } => None,
        }
    }

    /// The subscriber's mode, if this is a subscriber.
    pub fn subscriber_mode(&self) -> Option<u32> {
        match self.target {
            Target::Subscriber { mode, .. } => Some(mode),
            Target::Sink { .. } => None,
        }
    }

    /// Records a subscriber's new mode (after it was applied to the FIFO).
    pub fn set_subscriber_mode(&mut self, new: u32) {
        if let Target::Subscriber { mode, .. } = &mut self.target {
            *mode = new;
        }
    }

    /// The sink's path, if this is a sink.
    pub fn sink_path(&self) -> Option<&std::path::Path> {
        match &self.target {
            Target::Sink { file, .. } => Some(file.path()),
            Target::Subscriber { .. } => None,
        }
    }

    /// On reload: switch a sink to a newly opened file (its path changed),
    /// or reopen its file at the same path (logrotate moved it away).
    /// Queued lines stay queued for the file now in use.
    pub fn replace_or_reopen_sink(&mut self, fresh: Option<SinkFile>) {
        if let Target::Sink { file, .. } = &mut self.target {
            match fresh {
                Some(fresh) => *file = fresh,
                None => {
                    if let Err(e) = file.reopen() {
                        self.stats.errors += 1;
                        log::error!(
                            "sink {}: cannot reopen {}: {e}; still writing to the old file",
                            self.name,
                            file.path().display()
                        );
                    }
                }
            }
        }
    }

    /// Changes a sink's rotation settings.
    pub fn set_rotation(&mut self, max_bytes: u64, keep: u32) {
        if let Target::Sink { file, .. } = &mut self.target {
            file.set_rotation(max_bytes, keep);
        }
    }

    /// Re-registers an attached writer under `self.token` (after reload
    /// renumbered the outputs).
    pub fn retoken(&self, registry: &Registry) {
        if let Target::Subscriber {
            writer: Some(fd), ..
        } = &self.target
        {
            let mut source = SourceFd(&fd.as_raw_fd());
            if let Err(e) = registry.reregister(&mut source, self.token, Interest::WRITABLE) {
                log::error!("subscriber {}: cannot watch the reader: {e}", self.name);
            }
        }
    }

    /// Flushes a sink's file to disk.
    pub fn sync(&mut self) {
        if let Target::Sink { file, .. } = &self.target {
            if let Err(e) = file.sync() {
                self.stats.errors += 1;
                log::error!("sink {}: fsync {}: {e}", self.name, file.path().display());
            }
        }
    }

    /// Throws away what is queued, counting those lines as discarded (they
    /// were counted out when accepted). Returns how many.
    pub fn discard_queue(&mut self) -> u64 {
        let lost = self.outbox.discard();
        self.stats.discarded += lost;
        self.stats.lines_out = self.stats.lines_out.saturating_sub(lost);
        lost
    }

    /// Drops the attached writer (if any), discarding and counting its queue.
    pub fn detach(&mut self, ctx: &Ctx<'_>) {
        if let Target::Subscriber { writer, .. } = &mut self.target {
            if let Some(fd) = writer.take() {
                let _ = ctx.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
                let lost = self.discard_queue();
                log::debug!(
                    "subscriber {}: reader left; {lost} queued lines discarded",
                    self.name
                );
            }
        }
    }

    fn queue(&mut self, data: &[u8], continues_line: bool) {
        let dropped = self.outbox.push(data, continues_line);
        if dropped > 0 {
            self.stats.dropped += dropped;
            self.stats.lines_out = self.stats.lines_out.saturating_sub(dropped);
            if let Some(held) = self.warning.allow() {
                log::warn!(
                    "{} {}: output full ({} bytes queued), dropped {dropped} lines ({} so far){}",
                    self.kind_name(),
                    self.name,
                    self.outbox.len(),
                    self.stats.dropped,
                    suppressed_note(held)
                );
            }
        }
    }

    /// One write of `data`, retried on `EINTR`.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            let result = match &mut self.target {
                Target::Subscriber {
                    writer: Some(fd), ..
                } => rustix::io::write(fd.as_fd(), data).map_err(io::Error::from),
                Target::Subscriber { writer: None, .. } => Ok(0),
                Target::Sink { file, .. } => file.write(data),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Handles a hard write error. For a subscriber, the reader is gone:
    /// detach, and return true. For a sink, count, log, schedule a retry and
    /// return false (the data stays).
    fn failed(&mut self, err: io::Error, ctx: &Ctx<'_>) -> bool {
        match &mut self.target {
            Target::Subscriber { .. } => {
                if err.raw_os_error() != Some(Errno::PIPE.raw_os_error()) {
                    self.stats.errors += 1;
                    if let Some(held) = self.warning.allow() {
                        log::warn!(
                            "subscriber {}: write: {err}{}",
                            self.name,
                            suppressed_note(held)
                        );
                    }
                }
                self.detach(ctx);
                true
            }
            Target::Sink {
                file,
                retry_at,
                backoff,
            } => {
                self.stats.errors += 1;
                let delay = *backoff;
                *retry_at = Some(Instant::now() + delay);
                *backoff = (delay * 2).min(MAX_BACKOFF);
                if let Some(held) = self.warning.allow() {
                    log::error!(
                        "sink {}: write to {} failed: {err}; {} bytes queued, \
                         retrying in {delay:?}{}",
                        self.name,
                        file.path().display(),
                        self.outbox.len().max(1),
                        suppressed_note(held)
                    );
                }
                false
            }
        }
    }

    /// Tries to open the subscriber's write end; true if a reader is there.
    fn attach(&mut self, ctx: &Ctx<'_>) -> bool {
        let Target::Subscriber { fifo, writer, .. } = &mut self.target else {
            return true;
        };
        match ctx.dir.open_fifo(&self.name, *fifo, OFlags::WRONLY) {
            Ok(fd) => {
                if let Some(bytes) = ctx.pipe_bytes {
                    set_pipe_size(&fd, bytes, &self.name);
                }
                if let Err(e) = ctx.registry.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    self.token,
                    Interest::WRITABLE,
                ) {
                    self.stats.errors += 1;
                    log::error!("subscriber {}: cannot watch the reader: {e}", self.name);
                    return false;
                }
                *writer = Some(fd);
                log::debug!("subscriber {}: reader attached", self.name);
                true
            }
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => false,
            Err(e) => {
                self.stats.errors += 1;
                if let Some(held) = self.warning.allow() {
                    log::warn!(
                        "subscriber {}: cannot open {}: {e}{}",
                        self.name,
                        ctx.dir.join(&self.name).display(),
                        suppressed_note(held)
                    );
                }
                false
            }
        }
    }

    /// "subscriber" or "sink".
    pub fn kind_name(&self) -> &'static str {
        match self.target {
            Target::Subscriber { .. } => "subscriber",
            Target::Sink { .. } => "sink",
        }
    }
}

/// Asks the kernel for a pipe of `bytes`; a refusal (over
/// `/proc/sys/fs/pipe-max-size` without privilege) only costs speed.
pub fn set_pipe_size(fd: &OwnedFd, bytes: usize, name: &str) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(fd, bytes) {
        log::debug!("{name}: cannot set pipe size to {bytes}: {e}");
    }
}
