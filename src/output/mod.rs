//! Outputs: where routed lines go. Each kind is a file of its own
//! ([`subscriber`], [`sink`]) and one variant of [`Output`]; each keeps its
//! bytes in its own [`Outbox`] behind a [`Core`] of name, queue and counters.
//!
//! The delivery rule is the same for every kind and written once
//! ([`offer`], [`flush`]): straight to the kernel when nothing is queued, the
//! rest into the bounded outbox under `when_full`, then out again when the fd
//! is writable or a retry is due. A kind only says how to reach its target
//! ([`Target`]): how to connect, write and what a hard error means.
//!
//! Adding a kind: a new file with a struct holding a [`Core`] that implements
//! [`Target`], a variant in [`Output`] and [`Kind`], and one line in the
//! `each!` macro. The broker does not learn its name.
//!
//! Nothing here ever blocks: writes are non-blocking (pipes) or to regular
//! files, and whatever is not taken goes to the bounded outbox.

mod file;
mod forward;
mod sink;
mod subscriber;

use std::fmt;
use std::io;
use std::time::Instant;

use mio::Token;

pub(crate) use file::SinkFile;
pub(crate) use forward::{tls_client_config, Forward};
pub(crate) use sink::Sink;
pub(crate) use subscriber::Subscriber;

use crate::config::OutputConfig;
use crate::fifodir::FifoDir;
use crate::input::{Batch, TeeSource};
use crate::outbox::Outbox;
use crate::stats::{suppressed_note, OutputStats, RateLimit};
use crate::world::World;

/// One output.
#[derive(Debug)]
pub(crate) enum Output {
    /// A FIFO in the directory that readers open.
    Subscriber(Subscriber),
    /// An append-only log file.
    Sink(Sink),
    /// A network (or journal) forward.
    Forward(Box<Forward>),
}

/// Runs `$body` with `$o` bound to whichever kind `$output` is.
macro_rules! each {
    ($output:expr, $o:ident => $body:expr) => {
        match $output {
            Output::Subscriber($o) => $body,
            Output::Sink($o) => $body,
            Output::Forward($o) => $body,
        }
    };
}

/// The kinds of output, for messages and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Subscriber,
    Sink,
    Forward,
}

impl Kind {
    /// True if the kind retries on a timer (the loop checks it every turn).
    pub(crate) fn has_timer(self) -> bool {
        matches!(self, Kind::Sink | Kind::Forward)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Subscriber => "subscriber",
            Kind::Sink => "sink",
            Kind::Forward => "forward",
        })
    }
}

/// How an output is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A subscriber with a reader.
    Attached,
    /// A subscriber nobody reads.
    NoReader,
    /// Writing normally.
    Ok,
    /// Writes fail and are retried.
    Retrying,
    /// A forward with a working connection.
    Connected,
    /// A forward waiting to (re)connect.
    Disconnected,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Attached => "attached",
            State::NoReader => "no reader",
            State::Ok => "ok",
            State::Retrying => "retrying",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
        })
    }
}

/// What every kind of output has.
#[derive(Debug)]
pub(crate) struct Core {
    /// Name in the config (the file name, for a subscriber).
    name: String,
    /// Token for fds the output registers.
    token: Token,
    /// Index of its lane (filter and format) in the fan-out.
    lane: usize,
    /// Bytes waiting for the kernel.
    outbox: Outbox,
    /// Counters.
    stats: OutputStats,
    /// Limits error messages.
    warning: RateLimit,
}

impl Core {
    fn new(name: &str, token: Token) -> Core {
        Core {
            name: name.to_string(),
            token,
            lane: 0,
            outbox: Outbox::new(0, crate::config::WhenFull::DropNewest),
            stats: OutputStats::default(),
            warning: RateLimit::default(),
        }
    }

    /// Queues what the kernel did not take, counting and logging drops.
    fn queue(&mut self, kind: Kind, data: &[u8], continues_line: bool) {
        let dropped = self.outbox.push(data, continues_line);
        if dropped > 0 {
            self.stats.dropped += dropped;
            self.stats.lines_out = self.stats.lines_out.saturating_sub(dropped);
            if let Some(held) = self.warning.allow() {
                log::warn!(
                    "{kind} {}: output full ({} bytes queued), dropped {dropped} lines \
                     ({} so far){}",
                    self.name,
                    self.outbox.len(),
                    self.stats.dropped,
                    suppressed_note(held)
                );
            }
        }
    }

    /// Throws away what is queued, counting those lines as discarded (they
    /// were counted out when accepted). Returns how many.
    fn discard_queue(&mut self) -> u64 {
        let lost = self.outbox.discard();
        self.stats.discarded += lost;
        self.stats.lines_out = self.stats.lines_out.saturating_sub(lost);
        lost
    }
}

/// What a hard write error means for an output.
pub(crate) enum Failure {
    /// Nobody is there any more (the reader left); the queue was discarded.
    Gone,
    /// The data stays queued and is retried later.
    Retry,
}

/// What a kind of output must say about its target; delivery itself is
/// [`offer`] and [`flush`].
pub(crate) trait Target {
    /// The kind, for messages.
    const KIND: Kind;
    fn core(&self) -> &Core;
    fn core_mut(&mut self) -> &mut Core;
    /// Makes sure there is somewhere to write; false if there is nobody to
    /// deliver to (the lines are discarded).
    fn connect(&mut self, _world: &World) -> bool {
        true
    }
    /// True while writes wait for a retry: new lines go to the queue.
    fn holding(&self) -> bool {
        false
    }
    /// One write of `data`.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Writes what is queued until the kernel takes no more: bytes written,
    /// or the first hard error.
    fn write_queued(&mut self) -> (usize, io::Result<()>);
    /// Handles a hard write error (counted and logged).
    fn failed(&mut self, err: io::Error, world: &World) -> Failure;
    /// After a flush without error: bookkeeping of retries.
    fn flushed(&mut self) {}
    /// True if a short write must be finished at once, because no readiness
    /// event will come for it (regular files).
    fn finishes_short_writes(&self) -> bool {
        false
    }
    /// The fd is writable, or reports an error or hang-up (`closed`).
    fn on_event(&mut self, _closed: bool, world: &World) {
        flush(self, world);
    }
    /// When a retry is due, if one is.
    fn retry_at(&self) -> Option<Instant> {
        None
    }
    /// How it is doing (besides being full).
    fn state(&self) -> State {
        State::Ok
    }
    /// Takes the settings of `config` that only this kind has.
    fn reconfigure(&mut self, _config: &OutputConfig) {}
    /// SIGHUP: reopens files (logrotate).
    fn reopen(&mut self) {}
    /// True unless its target was replaced behind the daemon's back.
    fn is_intact(&self, _dir: &FifoDir) -> bool {
        true
    }
    /// Lets go of fds and of what only makes sense for this target (a
    /// reader's queue), keeping what may carry over to a renewed target.
    fn release(&mut self, _world: &World) {}
    /// Leaves for good: removed by a reload, or at the end of a stop.
    fn close(&mut self, world: &World);
    /// Delivers `data`, `lines` complete lines (see [`offer`]).
    fn offer(&mut self, data: &[u8], lines: u64, world: &World) {
        offer(self, data, lines, 0, world)
    }
    /// Writes what is queued (see [`flush`]).
    fn flush(&mut self, world: &World) {
        flush(self, world)
    }
    /// True if nothing waits to be delivered.
    fn is_drained(&self) -> bool {
        self.core().outbox.is_empty()
    }
    /// Extra words in the counter line (`attached=yes`).
    fn counter_note(&self) -> String {
        String::new()
    }
}

/// Delivers `data` (`lines` complete lines): straight to the kernel if
/// nothing is queued, the rest into the outbox under its policy. The target
/// already has the first `skip` bytes (the start of a line, passed on
/// earlier by the zero-copy path), unless its reader changes on the way.
fn offer<T: Target + ?Sized>(t: &mut T, all: &[u8], lines: u64, skip: usize, world: &World) {
    let mut skip = skip.min(all.len());
    // Twice at most: if the reader turns out to be gone, a new one may
    // already be waiting for this very line, from its start.
    for _ in 0..2 {
        if !t.connect(world) {
            break;
        }
        let from = std::mem::take(&mut skip);
        let (data, continues) = (&all[from..], from > 0);
        t.core_mut().stats.lines_out += lines;
        if data.is_empty() {
            return;
        }
        if !t.core().outbox.is_empty() || t.holding() {
            t.core_mut().queue(T::KIND, data, continues);
            return;
        }
        let result = loop {
            match t.write(data) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                t.core_mut().stats.bytes_out += n as u64;
                if n < data.len() {
                    let continues = match n {
                        0 => continues,
                        n => data[n - 1] != b'\n',
                    };
                    t.core_mut().queue(T::KIND, &data[n..], continues);
                    if t.finishes_short_writes() {
                        flush(t, world);
                    }
                }
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                t.core_mut().queue(T::KIND, data, continues);
                return;
            }
            Err(e) => match t.failed(e, world) {
                Failure::Retry => {
                    t.core_mut().queue(T::KIND, data, continues);
                    return;
                }
                Failure::Gone => {
                    let stats = &mut t.core_mut().stats;
                    stats.lines_out = stats.lines_out.saturating_sub(lines);
                }
            },
        }
    }
    t.core_mut().stats.discarded += lines;
}

/// Writes what is queued, as far as the kernel takes it.
fn flush<T: Target + ?Sized>(t: &mut T, world: &World) {
    if !t.core().outbox.is_empty() {
        let (written, result) = t.write_queued();
        t.core_mut().stats.bytes_out += written as u64;
        if let Err(e) = result {
            t.failed(e, world);
            return;
        }
    }
    t.flushed();
}

impl Output {
    /// A new output of `config`'s kind, for a FIFO or file already made.
    pub(crate) fn subscriber(name: &str, fifo: crate::fifodir::FifoId, token: Token) -> Output {
        Output::Subscriber(Subscriber::new(Core::new(name, token), fifo))
    }

    /// A forward made by [`Forward::new`], registering under `token`.
    pub(crate) fn forward(mut forward: Box<Forward>, token: Token) -> Output {
        forward.set_token(token);
        Output::Forward(forward)
    }

    /// A new sink writing to `file`.
    pub(crate) fn sink(name: &str, file: SinkFile, token: Token) -> Output {
        Output::Sink(Sink::new(Core::new(name, token), file))
    }

    fn core(&self) -> &Core {
        each!(self, o => o.core())
    }

    fn core_mut(&mut self) -> &mut Core {
        each!(self, o => o.core_mut())
    }

    /// Its name in the config.
    pub(crate) fn name(&self) -> &str {
        &self.core().name
    }

    /// Its kind.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Output::Subscriber(_) => Kind::Subscriber,
            Output::Sink(_) => Kind::Sink,
            Output::Forward(_) => Kind::Forward,
        }
    }

    /// Index of its lane (filter and format) in the fan-out.
    pub(crate) fn lane(&self) -> usize {
        self.core().lane
    }

    /// Counts lines its filter kept out.
    pub(crate) fn count_filtered(&mut self, lines: u64) {
        self.core_mut().stats.filtered += lines;
    }

    /// Its counters as reported (SIGUSR1, `STATUS=`, `status`):
    /// `lines_out` counts the lines delivered, not those still queued (or,
    /// for NATS, awaiting their PubAck; see [`queue_lines`](Self::queue_lines)),
    /// so that it never goes down when a queue drops or is discarded.
    pub(crate) fn stats(&self) -> OutputStats {
        self.stats_and_queue().0
    }

    /// [`stats`](Self::stats) and [`queue_lines`](Self::queue_lines),
    /// counting the queue once.
    pub(crate) fn stats_and_queue(&self) -> (OutputStats, u64) {
        let queued = self.queue_lines();
        let mut stats = self.core().stats.clone();
        stats.lines_out = stats.lines_out.saturating_sub(queued);
        (stats, queued)
    }

    /// How its target is doing (whether it is also full is
    /// [`is_full`](Output::is_full)).
    pub(crate) fn state(&self) -> State {
        each!(self, o => o.state())
    }

    /// A reload changed `pipe_bytes`: an attached subscriber's pipe takes
    /// the new size (other kinds have no pipe).
    pub(crate) fn set_pipe_size(&mut self, bytes: usize) {
        if let Output::Subscriber(s) = self {
            s.set_pipe_size(bytes);
        }
    }

    /// The end of a stop that ran out of time: a `block` output no longer
    /// holds its inputs back; what it cannot take is dropped.
    pub(crate) fn give_up_blocking(&mut self) {
        self.core_mut().outbox.give_up_blocking();
    }

    /// True if a `block` output must hold its inputs back.
    pub(crate) fn is_full(&self) -> bool {
        self.core().outbox.is_full()
    }

    /// Bytes waiting in its queue (for a forward, also those taken from it
    /// and not delivered yet: encoded for the socket, or awaiting a PubAck).
    pub(crate) fn queue_bytes(&self) -> usize {
        let held = match self {
            Output::Forward(f) => f.held_bytes(),
            _ => 0,
        };
        self.core().outbox.len() + held
    }

    /// Lines accepted and not delivered yet: queued (a partly written one
    /// included) or, for a forward, held by the protocol.
    pub(crate) fn queue_lines(&self) -> u64 {
        let held = match self {
            Output::Forward(f) => f.held_lines(),
            _ => 0,
        };
        self.core().outbox.lines() + held
    }

    /// Its queue's capacity (`buffer_bytes`).
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.core().outbox.capacity()
    }

    /// True if nothing waits to be delivered.
    pub(crate) fn is_drained(&self) -> bool {
        each!(self, o => o.is_drained())
    }

    /// Delivers `data`, `lines` complete lines.
    pub(crate) fn offer(&mut self, data: &[u8], lines: u64, world: &World) {
        each!(self, o => o.offer(data, lines, world))
    }

    /// True if it is a subscriber that takes one input's lines as they are
    /// (the zero-copy path; see [`subscriber`]).
    pub(crate) fn is_mirror(&self) -> bool {
        matches!(self, Output::Subscriber(s) if s.is_mirror())
    }

    /// Makes a subscriber a mirror, or not (on reload; see
    /// [`Output::is_mirror`]); `fed` says whether a pipe still feeds it.
    pub(crate) fn set_mirror(&mut self, mirror: bool, fed: impl Fn(u64) -> bool, world: &World) {
        if let Output::Subscriber(s) = self {
            s.set_mirror(mirror, fed, world);
        }
    }

    /// True if it owes the rest of a line of the pipe `pipe` (a subscriber
    /// a reload took off the zero-copy path in the middle of a line).
    pub(crate) fn owes(&self, pipe: u64) -> bool {
        matches!(self, Output::Subscriber(s) if s.owes(pipe))
    }

    /// True if it owes the rest of some line.
    pub(crate) fn owes_any(&self) -> bool {
        matches!(self, Output::Subscriber(s) if s.owes_any())
    }

    /// `line` is the whole line it owes the rest of.
    pub(crate) fn settle(&mut self, line: &[u8], world: &World) {
        if let Output::Subscriber(s) = self {
            s.settle(line, world);
        }
    }

    /// Stops waiting for an owed line once a `block` queue is full.
    pub(crate) fn give_up_if_full(&mut self, world: &World) {
        if let Output::Subscriber(s) = self {
            s.give_up_if_full(world);
        }
    }

    /// Zero-copy: a mirror takes what it can of `src` with `tee(2)`;
    /// returns how much.
    pub(crate) fn tee(&mut self, src: TeeSource) -> usize {
        match self {
            Output::Subscriber(s) => s.tee(src),
            _ => 0,
        }
    }

    /// A batch with no whole line followed a tee: see
    /// [`Subscriber::forget_tee`].
    pub(crate) fn forget_tee(&mut self) {
        if let Output::Subscriber(s) = self {
            s.forget_tee();
        }
    }

    /// Delivers `batch` to a mirror as the input pipe's bytes.
    pub(crate) fn deliver(&mut self, batch: &Batch, world: &World) {
        if let Output::Subscriber(s) = self {
            s.deliver(batch, world);
        }
    }

    /// Writes what is queued.
    pub(crate) fn flush(&mut self, world: &World) {
        each!(self, o => o.flush(world))
    }

    /// Its fd is ready (`closed`: it reported an error or hang-up).
    pub(crate) fn on_event(&mut self, closed: bool, world: &World) {
        each!(self, o => o.on_event(closed, world))
    }

    /// When a retry is due.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        each!(self, o => o.retry_at())
    }

    /// Applies `config` (its lane, queue size and policy, and the settings
    /// of its kind); queued bytes stay.
    pub(crate) fn reconfigure(&mut self, config: &OutputConfig, lane: usize) {
        let core = self.core_mut();
        core.lane = lane;
        core.outbox
            .reconfigure(config.buffer_bytes, config.when_full);
        each!(self, o => o.reconfigure(config))
    }

    /// SIGHUP: reopens files.
    pub(crate) fn reopen(&mut self) {
        each!(self, o => o.reopen())
    }

    /// True unless its target was replaced behind the daemon's back.
    pub(crate) fn is_intact(&self, dir: &FifoDir) -> bool {
        each!(self, o => o.is_intact(dir))
    }

    /// Takes over what `old` (the same output, on a target now renewed)
    /// holds that still applies: counters and, unless its target made them
    /// meaningless, queued lines.
    pub(crate) fn adopt(&mut self, mut old: Output, world: &World) {
        if let (Output::Forward(new), Output::Forward(old)) = (&mut *self, &mut old) {
            new.inherit(old);
        }
        each!(&mut old, o => o.release(world));
        let old = std::mem::replace(old.core_mut(), Core::new("", Token(0)));
        let core = self.core_mut();
        core.stats = old.stats;
        core.warning = old.warning;
        core.outbox = old.outbox;
    }

    /// Removed by a reload: lets go of its target.
    pub(crate) fn close(mut self, world: &World) {
        each!(&mut self, o => o.close(world))
    }

    /// The end of a stop: a last flush, then what is still queued is
    /// counted as lost; the target is closed. Returns the lines lost.
    pub(crate) fn finish(&mut self, world: &World) -> u64 {
        self.flush(world);
        let lost = self.core_mut().discard_queue();
        each!(self, o => o.close(world));
        lost
    }

    /// One line of counters (SIGUSR1 and shutdown).
    pub(crate) fn counter_line(&self) -> String {
        let note = each!(self, o => o.counter_note());
        format!("{} {}{note} {}", self.kind(), self.name(), self.stats())
    }
}

impl From<&crate::config::OutputKind> for Kind {
    fn from(kind: &crate::config::OutputKind) -> Kind {
        match kind {
            crate::config::OutputKind::Subscriber { .. } => Kind::Subscriber,
            crate::config::OutputKind::Sink { .. } => Kind::Sink,
            crate::config::OutputKind::Forward(_) => Kind::Forward,
        }
    }
}
