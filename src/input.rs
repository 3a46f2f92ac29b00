//! Input FIFOs: the read end the daemon holds, line framing, and what
//! happens when the last writer leaves.
//!
//! The daemon holds only a read end of each input (no write end, unlike s6),
//! so it sees the end of file when the last writer closes and can deliver an
//! unterminated tail as a line. To not spin on `EPOLLHUP` after that, it then
//! opens a fresh read end of the same inode *before* closing the old one: a
//! new open does not report a hang-up until a writer comes and goes again,
//! and the FIFO never has zero readers, so no writer ever sees `EPIPE`.
//!
//! An input whose FIFO was replaced behind the daemon's back keeps the old
//! read end until its writers are gone ([`Input::replace_fifo`]), reading it
//! before the new one; an input a reload removed is *retired*: it is read
//! until its writers are gone, however long a full `block` output holds it
//! back, and only then closed. Either way, no line a writer wrote is lost
//! to a reload, and no writer sees `EPIPE` because of one.
//!
//! Framing is [`Framer::frame`]: complete lines are handed on as one slice of
//! the read buffer (no copy) unless a line must be truncated. This module
//! never routes: it hands [`Batch`]es to the broker.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::fifodir::{FifoDir, FifoId};
use crate::stats::{suppressed_note, InputStats, RateLimit};
use crate::world::PipeBudget;

/// Smallest read.
const MIN_READ: usize = 16 * 1024;
/// Largest read: a grown pipe is read in several turns, so that routing
/// one read never holds up a quiet input for long.
const MAX_READ: usize = 64 * 1024;

/// One input FIFO.
#[derive(Debug)]
pub(crate) struct Input {
    /// File name in the FIFO directory.
    name: String,
    /// The inode the daemon created (the current pipe's).
    fifo: FifoId,
    /// The read ends: pipes of FIFOs this one replaced, oldest first, then
    /// the current one. Never empty while the input lives.
    pipes: Vec<Pipe>,
    /// Where its fds are registered.
    token: Token,
    /// Keys of the outputs this input feeds, in config order.
    routes: Vec<usize>,
    /// Some of them are mirrors (fed by `tee(2)`, see [`Input::tee_source`]).
    mirrored: bool,
    /// Counters.
    stats: InputStats,
    /// Limits "line truncated" warnings.
    truncate_warning: RateLimit,
    /// Limits read/reopen error messages.
    error_warning: RateLimit,
    /// Removed by a reload: read until its writers are gone, then closed.
    retired: bool,
    /// The pipe whose writers are gone (its tail already delivered), until
    /// [`Input::end_of_writers`] deals with it.
    eof: Option<usize>,
    /// The last read was large: a writer streams into this input.
    streaming: bool,
    /// The most the next read takes (what a tee gave the mirrors).
    limit: Option<usize>,
}

/// One read end and the line in progress on it.
#[derive(Debug)]
struct Pipe {
    /// Unique among every pipe the daemon reads (see [`Batch::pipe`]).
    serial: u64,
    /// The non-blocking read end.
    fd: OwnedFd,
    /// The start of a line whose end has not arrived yet (at most
    /// `max_line_bytes`).
    carry: Vec<u8>,
    /// Truncation state.
    framer: Framer,
    /// The pipe's capacity (it may grow: [`PipeBudget`]).
    size: usize,
}

/// The next [`Pipe::serial`].
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

impl Pipe {
    fn new(fd: OwnedFd) -> Pipe {
        Pipe {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            size: PipeBudget::size_of(&fd).max(MIN_READ),
            fd,
            carry: Vec::new(),
            framer: Framer::default(),
        }
    }

    /// How much the next read asks for.
    fn want(&self, buf: &ReadBuf) -> usize {
        read_size(self.size).min(buf.max_read).min(MAX_READ)
    }
}

/// What one round of `read()` calls found.
enum Fill {
    /// `n` new bytes from pipe `p`, after its `carried` bytes.
    Data { p: usize, carried: usize, n: usize },
    /// The writers of pipe `p` are gone.
    Eof(usize),
    /// Every pipe is empty.
    WouldBlock,
    /// A read error, counted and logged.
    Failed,
}

/// The one read buffer all inputs share, and where truncated lines are
/// assembled.
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    /// A carried-over tail, then up to `max_read` new bytes.
    data: Vec<u8>,
    /// Truncated lines are built here.
    scratch: Vec<u8>,
    /// The most one `read()` asks for.
    max_read: usize,
}

impl ReadBuf {
    /// Sizes the buffer for the largest pipe an input may have and the line
    /// limit in force.
    pub(crate) fn configure(&mut self, largest_pipe: usize, max_line_bytes: usize) {
        self.max_read = read_size(largest_pipe);
        self.data.resize(self.max_read + max_line_bytes, 0);
    }
}

/// Complete lines read from one input, each ending in `\n`, and the
/// unfinished line after them.
///
/// For the zero-copy path (`tee(2)` to subscribers that take one input's
/// lines as they are): `lines` followed by `tail` are the pipe's bytes from
/// the start of the first line on (the line in progress began in earlier
/// reads), except where a line was truncated.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    /// The lines.
    pub(crate) lines: &'a [u8],
    /// How many.
    pub(crate) count: u64,
    /// The pipe they came from (a serial number no other pipe has).
    pub(crate) pipe: u64,
    /// The start of a line whose end has not come yet.
    pub(crate) tail: &'a [u8],
    /// A writer streams into the pipe (the read was large), so the end of
    /// `tail` is most likely there already: a mirror may take `tail` now.
    /// Never set for small reads, so an interactive writer's unfinished line
    /// (`printf 'no newline'`) reaches no reader before its end.
    pub(crate) streaming: bool,
    /// A line in `lines` was truncated: from its cut on, they are not the
    /// pipe's bytes.
    pub(crate) truncated: bool,
}

/// Where a `tee(2)` may copy from before the next [`Input::read`]: the only
/// pipe, its unread bytes being the next ones of the stream after the
/// `carried` bytes of an unfinished line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TeeSource<'a> {
    /// The read end.
    pub(crate) fd: BorrowedFd<'a>,
    /// [`Batch::pipe`] of what the read will return.
    pub(crate) pipe: u64,
    /// Bytes of the unfinished line read already.
    pub(crate) carried: usize,
    /// The most a tee may copy: no more than the read will take, and never
    /// so much that a line could pass `max_line_bytes` (truncation changes
    /// the bytes, and a tee cannot).
    pub(crate) cap: usize,
}

/// What one [`Input::read`] found.
#[derive(Debug)]
pub(crate) enum Read<'a> {
    /// Lines to route (possibly none, when only part of a line came).
    Lines(Batch<'a>),
    /// The pipe is empty.
    WouldBlock,
    /// The writers are gone (an unterminated tail was already delivered);
    /// call [`Input::end_of_writers`].
    Eof,
    /// A read error, counted and logged.
    Failed,
}

/// What an input does after the end of its writers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterEof {
    /// A replaced FIFO's pipe is done; the current one may hold more.
    ReadOn,
    /// Waiting for the next writer.
    Wait,
    /// Retired and drained: remove it.
    Finished,
}

impl Input {
    /// An input reading `fd`, the read end of `fifo`, watched under `token`.
    pub(crate) fn new(
        name: &str,
        fifo: FifoId,
        fd: OwnedFd,
        token: Token,
        registry: &Registry,
    ) -> Input {
        register(registry, &fd, token);
        Input {
            name: name.to_string(),
            fifo,
            pipes: vec![Pipe::new(fd)],
            token,
            routes: Vec::new(),
            mirrored: false,
            stats: InputStats::default(),
            truncate_warning: RateLimit::default(),
            error_warning: RateLimit::default(),
            retired: false,
            eof: None,
            streaming: false,
            limit: None,
        }
    }

    /// Its file name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The inode it reads.
    pub(crate) fn fifo(&self) -> FifoId {
        self.fifo
    }

    /// Keys of the outputs it feeds.
    pub(crate) fn routes(&self) -> &[usize] {
        &self.routes
    }

    /// Sets the outputs it feeds.
    pub(crate) fn set_routes(&mut self, routes: Vec<usize>) {
        self.routes = routes;
    }

    /// True if it reads (or read, before a reload replaced its FIFO) the
    /// pipe with [`Batch::pipe`] `serial`.
    pub(crate) fn has_pipe(&self, serial: u64) -> bool {
        self.pipes.iter().any(|p| p.serial == serial)
    }

    /// Whether some of its outputs are mirrors (set on every reload).
    pub(crate) fn set_mirrored(&mut self, mirrored: bool) {
        self.mirrored = mirrored;
    }

    /// Keeps only the routes to outputs for which `alive` holds.
    pub(crate) fn retain_routes(&mut self, alive: impl Fn(usize) -> bool) {
        self.routes.retain(|&o| alive(o));
    }

    /// What its pipes hold at most, in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.pipes.iter().map(|pipe| pipe.size).sum()
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> &InputStats {
        &self.stats
    }

    /// True once a reload removed it.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired
    }

    /// A reload removed it: what its writers write is still read and
    /// routed until they are all gone; then it is closed.
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    /// Its FIFO was recreated behind the daemon's back: the old pipe is read
    /// until its writers are gone, before the new one whenever both have data.
    pub(crate) fn replace_fifo(&mut self, fifo: FifoId, fd: OwnedFd, registry: &Registry) {
        register(registry, &fd, self.token);
        self.fifo = fifo;
        self.pipes.push(Pipe::new(fd));
    }

    /// Asks the kernel for a pipe of `bytes`.
    pub(crate) fn set_pipe_size(&mut self, bytes: usize) {
        if let Some(pipe) = self.pipes.last_mut() {
            crate::fifodir::set_pipe_size(&pipe.fd, bytes, &self.name);
            pipe.size = PipeBudget::size_of(&pipe.fd).max(MIN_READ);
        }
    }

    /// Reads once (from the oldest pipe that has data) and frames what came
    /// into complete lines of at most `max` bytes (plus `\n`). At the end of
    /// a pipe's writers its unterminated tail is returned as one line first;
    /// [`Read::Eof`] follows.
    pub(crate) fn read<'b>(
        &mut self,
        buf: &'b mut ReadBuf,
        max: usize,
        pipes: Option<&PipeBudget>,
    ) -> Read<'b> {
        if self.eof.is_some() {
            return Read::Eof;
        }
        let (p, carried, n) = match self.fill(buf, pipes) {
            Fill::Data { p, carried, n } => (p, carried, n),
            Fill::Eof(p) => {
                self.eof = Some(p);
                return match self.take_tail_of(p, buf) {
                    Some(batch) => Read::Lines(batch),
                    None => Read::Eof,
                };
            }
            Fill::WouldBlock => return Read::WouldBlock,
            Fill::Failed => return Read::Failed,
        };
        self.stats.bytes_in += n as u64;
        let pipe = &mut self.pipes[p];
        pipe.carry.clear();
        let framed = (pipe.framer).frame(&buf.data[..carried + n], max, &mut buf.scratch);
        pipe.carry.extend_from_slice(framed.tail);
        if framed.truncated > 0 {
            self.stats.truncated += framed.truncated;
            if let Some(held) = self.truncate_warning.allow() {
                log::warn!(
                    "input {}: line longer than max_line_bytes ({max}) truncated \
                     ({} so far){}",
                    self.name,
                    self.stats.truncated,
                    suppressed_note(held)
                );
            }
        }
        self.stats.lines_in += framed.count;
        Read::Lines(Batch {
            lines: framed.lines,
            count: framed.count,
            pipe: pipe.serial,
            tail: framed.tail,
            streaming: self.streaming,
            truncated: framed.truncated > 0,
        })
    }

    /// Mirrors got `n` bytes by `tee(2)` (the most any got): the next read
    /// takes no more, or the rest would have to be copied to them.
    pub(crate) fn teed(&mut self, n: usize) {
        self.limit = (n > 0).then_some(n);
    }

    /// Where to `tee(2)` from before the next [`read`](Input::read), if the
    /// next read's bytes can be passed on as they are: it feeds a mirror, a
    /// writer streams into it (a tee may stop in the middle of a line, whose
    /// end then most likely follows at once), it has one pipe, no line is
    /// being skipped for its length, and there is room under `max`
    /// (`max_line_bytes`) for more of the line in progress.
    pub(crate) fn tee_source(&self, buf: &ReadBuf, max: usize) -> Option<TeeSource<'_>> {
        let [pipe] = self.pipes.as_slice() else {
            return None;
        };
        if !self.mirrored || !self.streaming || self.eof.is_some() || pipe.framer.is_skipping() {
            return None;
        }
        let carried = pipe.carry.len();
        let cap = pipe.want(buf).min(max.saturating_sub(carried));
        (cap > 0).then(|| TeeSource {
            fd: std::os::fd::AsFd::as_fd(&pipe.fd),
            pipe: pipe.serial,
            carried,
            cap,
        })
    }

    /// One `read()` into `buf` after the pipe's carried bytes, trying the
    /// pipes oldest first until one has data or its end; a pipe with an
    /// unfinished line is the only one tried until that line ends (a
    /// subscriber may have its first bytes already, so no other pipe's
    /// lines may come between). A read that fills its request means the
    /// writer is ahead: the pipe grows, if `pipes` allows (the broker passes
    /// it only while the outputs keep up, so a writer held back by a full
    /// `block` output meets the pipe it had).
    fn fill(&mut self, buf: &mut ReadBuf, pipes: Option<&PipeBudget>) -> Fill {
        let unfinished = self.pipes.iter().position(|pipe| !pipe.carry.is_empty());
        for (p, pipe) in self.pipes.iter_mut().enumerate() {
            if unfinished.is_some_and(|u| u != p) {
                continue;
            }
            let carried = pipe.carry.len();
            let want = pipe.want(buf);
            let ask = self.limit.take().map_or(want, |limit| limit.min(want));
            if buf.data.len() < carried + want {
                // A reload lowered max_line_bytes under a line in progress.
                buf.data.resize(carried + want, 0);
            }
            buf.data[..carried].copy_from_slice(&pipe.carry);
            loop {
                match rustix::io::read(&pipe.fd, &mut buf.data[carried..carried + ask]) {
                    Ok(0) => return Fill::Eof(p),
                    Ok(n) => {
                        self.streaming = n >= want / 2;
                        if let Some(pipes) = pipes.filter(|_| n == want) {
                            pipes.grow(&pipe.fd, &mut pipe.size);
                        }
                        return Fill::Data { p, carried, n };
                    }
                    Err(Errno::INTR) => continue,
                    Err(Errno::AGAIN) => break,
                    Err(e) => {
                        self.stats.errors += 1;
                        if let Some(held) = self.error_warning.allow() {
                            log::error!("input {}: read: {e}{}", self.name, suppressed_note(held));
                        }
                        return Fill::Failed;
                    }
                }
            }
        }
        Fill::WouldBlock
    }

    /// The unterminated tail of some pipe as one line (the daemon stops),
    /// or `None` once no pipe has one.
    pub(crate) fn take_tail<'b>(&mut self, buf: &'b mut ReadBuf) -> Option<Batch<'b>> {
        let p = (0..self.pipes.len()).find(|&p| !self.pipes[p].carry.is_empty())?;
        self.take_tail_of(p, buf)
    }

    /// Pipe `p`'s unterminated tail as one line; forgets its truncation
    /// state.
    fn take_tail_of<'b>(&mut self, p: usize, buf: &'b mut ReadBuf) -> Option<Batch<'b>> {
        let pipe = &mut self.pipes[p];
        let skipping = pipe.framer.is_skipping();
        pipe.framer.reset();
        if pipe.carry.is_empty() || skipping {
            pipe.carry.clear();
            return None;
        }
        buf.scratch.clear();
        buf.scratch.extend_from_slice(&pipe.carry);
        buf.scratch.push(b'\n');
        pipe.carry.clear();
        self.stats.lines_in += 1;
        Some(Batch {
            lines: &buf.scratch,
            count: 1,
            pipe: pipe.serial,
            tail: &[],
            streaming: false,
            truncated: false,
        })
    }

    /// After [`Read::Eof`]: closes a replaced pipe whose writers are gone,
    /// finishes a retired input whose last pipe they left, or (when
    /// `reopen`) swaps in a fresh read end of the current FIFO so the
    /// hang-up is not reported again.
    pub(crate) fn end_of_writers(
        &mut self,
        dir: &FifoDir,
        registry: &Registry,
        reopen: bool,
    ) -> AfterEof {
        let Some(p) = self.eof.take() else {
            return AfterEof::Wait;
        };
        let current = p + 1 == self.pipes.len();
        if !current || self.retired {
            let pipe = self.pipes.remove(p);
            let _ = registry.deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
            return match self.pipes.is_empty() {
                true => AfterEof::Finished,
                false => AfterEof::ReadOn,
            };
        }
        if reopen {
            self.reopen(p, dir, registry);
        }
        AfterEof::Wait
    }

    /// A fresh read end of the same FIFO, opened before the old one closes.
    fn reopen(&mut self, p: usize, dir: &FifoDir, registry: &Registry) {
        match dir.open_fifo(&self.name, self.fifo, OFlags::RDONLY) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.pipes[p].fd, fresh);
                let _ = registry.deregister(&mut SourceFd(&old.as_raw_fd()));
                drop(old);
                register(registry, &self.pipes[p].fd, self.token);
            }
            Err(e) => {
                self.stats.errors += 1;
                if let Some(held) = self.error_warning.allow() {
                    log::warn!(
                        "input {}: cannot reopen {} after its last writer left: {e}; \
                         reading on with the read end it has{}",
                        self.name,
                        dir.join(&self.name).display(),
                        suppressed_note(held)
                    );
                }
            }
        }
    }

    /// Stops watching its fds (it is about to be dropped).
    pub(crate) fn deregister(&self, registry: &Registry) {
        for pipe in &self.pipes {
            let _ = registry.deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
        }
    }

    /// The end of a stop: closes its read ends (a writer still there gets
    /// `EPIPE` from now on); only its counters remain.
    pub(crate) fn close(&mut self, registry: &Registry) {
        self.deregister(registry);
        self.pipes.clear();
    }
}

/// Watches a read end under `token`; a failure is logged (the input then
/// waits for the next reload or reopen).
fn register(registry: &Registry, fd: &OwnedFd, token: Token) {
    if let Err(e) = registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE) {
        log::error!("cannot watch an input FIFO: {e}");
    }
}

/// How much one read asks for: half of what an input pipe holds. A batch
/// that size usually fits into the free space of subscriber pipes of the same
/// size even while their readers lag a little, so it goes out in one write
/// each; a whole pipe's worth would meet a pipe that is not quite empty, be
/// written in part and have its rest copied into the outbox. Measured beside
/// multitee (docs/PERFORMANCE.md): half beat both a whole and a quarter pipe.
fn read_size(pipe_size: usize) -> usize {
    (pipe_size / 2).clamp(MIN_READ, 8 << 20)
}

/// True if no line of `lines` (which ends with `\n`, or is empty) is longer
/// than `max` bytes, as far as a few searches can tell: every aligned block
/// of `max / 2 + 1` bytes holds a `\n`. A longer line would be a run of at
/// least `max + 1` bytes without one, and such a run covers a whole block.
/// False may also mean "could not tell" (lines between half the limit and
/// the limit): the careful path then frames them.
fn lines_fit(lines: &[u8], max: usize) -> bool {
    lines
        .chunks(max / 2 + 1)
        .all(|block| memchr::memchr(b'\n', block).is_some())
}

/// Splits bytes into lines, truncating those longer than the limit.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// The rest of an overlong line is being thrown away up to its `\n`.
    skipping: bool,
}

/// The result of framing one buffer.
#[derive(Debug)]
pub(crate) struct Framed<'a> {
    /// Complete lines, each ending in `\n`.
    pub(crate) lines: &'a [u8],
    /// How many lines are in `lines`.
    pub(crate) count: u64,
    /// How many of them were truncated.
    pub(crate) truncated: u64,
    /// An unfinished line to carry over to the next read.
    pub(crate) tail: &'a [u8],
}

impl Framer {
    /// Frames `data` (the carried-over tail followed by newly read bytes)
    /// into complete lines of at most `max` bytes plus `\n`. Lines are a
    /// slice of `data` when nothing needs truncating, else built in
    /// `scratch`.
    pub(crate) fn frame<'a>(
        &mut self,
        data: &'a [u8],
        max: usize,
        scratch: &'a mut Vec<u8>,
    ) -> Framed<'a> {
        if !self.skipping {
            let end = memchr::memrchr(b'\n', data).map_or(0, |i| i + 1);
            let (lines, tail) = data.split_at(end);
            if tail.len() <= max && lines_fit(lines, max) {
                // Counted, not searched line by line: `count` is a
                // vectorised pass.
                return Framed {
                    lines,
                    count: memchr::memchr_iter(b'\n', lines).count() as u64,
                    truncated: 0,
                    tail,
                };
            }
        }
        self.frame_slow(data, max, scratch)
    }

    fn frame_slow<'a>(
        &mut self,
        data: &'a [u8],
        max: usize,
        scratch: &'a mut Vec<u8>,
    ) -> Framed<'a> {
        scratch.clear();
        let (mut count, mut truncated, mut pos) = (0, 0, 0);
        if self.skipping {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    pos = i + 1;
                    self.skipping = false;
                }
                None => pos = data.len(),
            }
        }
        let mut tail: &[u8] = &[];
        while pos < data.len() {
            match memchr::memchr(b'\n', &data[pos..]) {
                Some(i) => {
                    let line = &data[pos..pos + i];
                    if line.len() > max {
                        truncated += 1;
                    }
                    scratch.extend_from_slice(&line[..line.len().min(max)]);
                    scratch.push(b'\n');
                    count += 1;
                    pos += i + 1;
                }
                None => {
                    let rest = &data[pos..];
                    if rest.len() > max {
                        // Deliver the first `max` bytes now and throw the rest
                        // away up to the line's end.
                        scratch.extend_from_slice(&rest[..max]);
                        scratch.push(b'\n');
                        count += 1;
                        truncated += 1;
                        self.skipping = true;
                    } else {
                        tail = rest;
                    }
                    break;
                }
            }
        }
        Framed {
            lines: scratch,
            count,
            truncated,
            tail,
        }
    }

    /// Forgets a line being skipped (the writer went away).
    pub(crate) fn reset(&mut self) {
        self.skipping = false;
    }

    /// True while the rest of an overlong line is being thrown away.
    pub(crate) fn is_skipping(&self) -> bool {
        self.skipping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` through a framer as the broker does, returning the
    /// lines, the final tail and the truncation count.
    fn feed(chunks: &[&[u8]], max: usize) -> (Vec<u8>, Vec<u8>, u64, u64) {
        let mut framer = Framer::default();
        let mut scratch = Vec::new();
        let (mut out, mut carry, mut count, mut truncated) = (Vec::new(), Vec::new(), 0, 0);
        for chunk in chunks {
            let mut data = std::mem::take(&mut carry);
            data.extend_from_slice(chunk);
            let framed = framer.frame(&data, max, &mut scratch);
            out.extend_from_slice(framed.lines);
            count += framed.count;
            truncated += framed.truncated;
            carry = framed.tail.to_vec();
        }
        assert_eq!(count as usize, memchr::memchr_iter(b'\n', &out).count());
        (out, carry, count, truncated)
    }

    #[test]
    fn whole_lines_pass_and_tails_carry_over() {
        let (out, tail, count, truncated) = feed(&[b"ab\ncd", b"ef\n\x00\xff\ng"], 10);
        assert_eq!(out, b"ab\ncdef\n\x00\xff\n");
        assert_eq!((tail.as_slice(), count, truncated), (&b"g"[..], 3, 0));
    }

    #[test]
    fn long_complete_lines_are_truncated() {
        let (out, tail, count, truncated) = feed(&[b"12345678\nok\n123456\n"], 5);
        assert_eq!(out, b"12345\nok\n12345\n");
        assert_eq!((tail.len(), count, truncated), (0, 3, 2));
    }

    #[test]
    fn long_unfinished_lines_are_cut_and_the_rest_skipped() {
        let (out, tail, count, truncated) = feed(&[b"123", b"4567", b"89", b"0\nnext\n"], 5);
        assert_eq!(out, b"12345\nnext\n");
        assert_eq!((tail.len(), count, truncated), (0, 2, 1));
    }

    #[test]
    fn lines_fit_never_passes_a_line_over_the_limit() {
        // Every sequence of three lines of 0..=9 bytes, at every limit:
        // a "fits" answer is always right, and lines of at most half the
        // limit always fit.
        for max in 0..12 {
            for lens in (0..1000).map(|n| [n % 10, n / 10 % 10, n / 100]) {
                let mut lines = Vec::new();
                for len in lens {
                    lines.extend(std::iter::repeat_n(b'x', len));
                    lines.push(b'\n');
                }
                let longest = *lens.iter().max().unwrap();
                if lines_fit(&lines, max) {
                    assert!(longest <= max, "max {max}, lines {lens:?}");
                }
                if longest <= max / 2 {
                    assert!(lines_fit(&lines, max), "max {max}, lines {lens:?}");
                }
            }
        }
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_kept_whole() {
        let (out, _, _, truncated) = feed(&[b"12345", b"\n"], 5);
        assert_eq!((out.as_slice(), truncated), (&b"12345\n"[..], 0));
    }
}
