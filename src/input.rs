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
//! read end until what is in that pipe is read ([`Input::replace_fifo`]); an
//! input a reload removed is *retired*: it is read until its pipe is empty,
//! however long a full `block` output holds it back, and only then closed.
//! Either way, no line a writer already wrote is lost to a reload.
//!
//! Framing is [`Framer::frame`]: complete lines are handed on as one slice of
//! the read buffer (no copy) unless a line must be truncated. This module
//! never routes: it hands [`Batch`]es to the broker.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::fifodir::{FifoDir, FifoId};
use crate::stats::{suppressed_note, InputStats, RateLimit};

/// The kernel's default pipe capacity.
const DEFAULT_PIPE: usize = 64 * 1024;
/// Smallest read.
const MIN_READ: usize = 16 * 1024;

/// One input FIFO.
#[derive(Debug)]
pub(crate) struct Input {
    /// File name in the FIFO directory.
    name: String,
    /// The inode the daemon created.
    fifo: FifoId,
    /// The non-blocking read end.
    fd: OwnedFd,
    /// Read ends of FIFOs this one replaced, oldest first: read to their end
    /// before `fd`, so lines keep their order.
    draining: VecDeque<OwnedFd>,
    /// Where its fds are registered.
    token: Token,
    /// The start of a line whose end has not arrived yet (at most
    /// `max_line_bytes`).
    carry: Vec<u8>,
    /// Truncation state.
    framer: Framer,
    /// Keys of the outputs this input feeds, in config order.
    routes: Vec<usize>,
    /// Counters.
    stats: InputStats,
    /// Limits "line truncated" warnings.
    truncate_warning: RateLimit,
    /// Limits read/reopen error messages.
    error_warning: RateLimit,
    /// Removed by a reload: read to the end of what its pipe holds, then
    /// closed.
    retired: bool,
    /// The tail was delivered at the end of writers; report [`Read::Eof`]
    /// on the next read.
    eof_pending: bool,
}

/// The one read buffer all inputs share, and where truncated lines are
/// assembled.
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    /// A carried-over tail, then up to `read_size` new bytes.
    data: Vec<u8>,
    /// Truncated lines are built here.
    scratch: Vec<u8>,
    /// How much one `read()` asks for.
    read_size: usize,
}

impl ReadBuf {
    /// Sizes the buffer for the pipe capacity and line limit in force.
    pub(crate) fn configure(&mut self, pipe_bytes: Option<usize>, max_line_bytes: usize) {
        self.read_size = read_size(pipe_bytes);
        self.data.resize(self.read_size + max_line_bytes, 0);
    }
}

/// Complete lines read from one input, each ending in `\n`.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    /// The lines.
    pub(crate) lines: &'a [u8],
    /// How many.
    pub(crate) count: u64,
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
            fd,
            draining: VecDeque::new(),
            token,
            carry: Vec::new(),
            framer: Framer::default(),
            routes: Vec::new(),
            stats: InputStats::default(),
            truncate_warning: RateLimit::default(),
            error_warning: RateLimit::default(),
            retired: false,
            eof_pending: false,
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

    /// Keeps only the routes to outputs for which `alive` holds.
    pub(crate) fn retain_routes(&mut self, alive: impl Fn(usize) -> bool) {
        self.routes.retain(|&o| alive(o));
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> &InputStats {
        &self.stats
    }

    /// True once a reload removed it.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired
    }

    /// A reload removed it: what its pipe holds is still read and routed,
    /// then it is closed.
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    /// Its FIFO was recreated behind the daemon's back: read the new one
    /// after what is left in the old pipe.
    pub(crate) fn replace_fifo(&mut self, fifo: FifoId, fd: OwnedFd, registry: &Registry) {
        register(registry, &fd, self.token);
        self.fifo = fifo;
        let old = std::mem::replace(&mut self.fd, fd);
        self.draining.push_back(old);
    }

    /// Asks the kernel for a pipe of `bytes`.
    pub(crate) fn set_pipe_size(&self, bytes: usize) {
        crate::fifodir::set_pipe_size(&self.fd, bytes, &self.name);
    }

    /// Reads once and frames what came into complete lines of at most `max`
    /// bytes (plus `\n`). At the end of the writers an unterminated tail is
    /// returned as one line first; [`Read::Eof`] follows on the next call.
    pub(crate) fn read<'b>(&mut self, buf: &'b mut ReadBuf, max: usize) -> Read<'b> {
        if std::mem::take(&mut self.eof_pending) {
            return Read::Eof;
        }
        let carried = self.carry.len();
        if buf.data.len() < carried + buf.read_size {
            // A reload lowered max_line_bytes under a line in progress.
            buf.data.resize(carried + buf.read_size, 0);
        }
        buf.data[..carried].copy_from_slice(&self.carry);
        let fd = self.draining.front().unwrap_or(&self.fd);
        let room = &mut buf.data[carried..carried + buf.read_size];
        let n = loop {
            match rustix::io::read(fd, &mut *room) {
                Ok(n) => break n,
                Err(Errno::INTR) => continue,
                // A replaced or retired pipe is done once it is empty: no new
                // writer can open it.
                Err(Errno::AGAIN) if self.draining.is_empty() && !self.retired => {
                    return Read::WouldBlock
                }
                Err(Errno::AGAIN) => break 0,
                Err(e) => {
                    self.stats.errors += 1;
                    if let Some(held) = self.error_warning.allow() {
                        log::error!("input {}: read: {e}{}", self.name, suppressed_note(held));
                    }
                    return Read::Failed;
                }
            }
        };
        if n == 0 {
            return match self.take_tail(buf) {
                Some(batch) => {
                    self.eof_pending = true;
                    Read::Lines(batch)
                }
                None => Read::Eof,
            };
        }
        self.carry.clear();
        self.stats.bytes_in += n as u64;
        let framed = self
            .framer
            .frame(&buf.data[..carried + n], max, &mut buf.scratch);
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
        self.carry.extend_from_slice(framed.tail);
        Read::Lines(Batch {
            lines: framed.lines,
            count: framed.count,
        })
    }

    /// The unterminated tail as one line (its writers are gone, or the
    /// daemon stops), and forgets truncation state.
    pub(crate) fn take_tail<'b>(&mut self, buf: &'b mut ReadBuf) -> Option<Batch<'b>> {
        let skipping = self.framer.is_skipping();
        self.framer.reset();
        if self.carry.is_empty() || skipping {
            self.carry.clear();
            return None;
        }
        buf.scratch.clear();
        buf.scratch.extend_from_slice(&self.carry);
        buf.scratch.push(b'\n');
        self.carry.clear();
        self.stats.lines_in += 1;
        Some(Batch {
            lines: &buf.scratch,
            count: 1,
        })
    }

    /// After [`Read::Eof`]: moves on from a replaced pipe, finishes a retired
    /// input, or (when `reopen`) swaps in a fresh read end of the same FIFO
    /// so the hang-up is not reported again.
    pub(crate) fn end_of_writers(
        &mut self,
        dir: &FifoDir,
        registry: &Registry,
        reopen: bool,
    ) -> AfterEof {
        if let Some(old) = self.draining.pop_front() {
            let _ = registry.deregister(&mut SourceFd(&old.as_raw_fd()));
            return AfterEof::ReadOn;
        }
        if self.retired {
            return AfterEof::Finished;
        }
        if !reopen {
            return AfterEof::Wait;
        }
        match dir.open_fifo(&self.name, self.fifo, OFlags::RDONLY) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.fd, fresh);
                let _ = registry.deregister(&mut SourceFd(&old.as_raw_fd()));
                drop(old);
                register(registry, &self.fd, self.token);
            }
            Err(e) => {
                self.stats.errors += 1;
                if let Some(held) = self.error_warning.allow() {
                    log::warn!(
                        "input {}: cannot reopen {} after its last writer left: {e}; \
                         send SIGHUP to recreate it{}",
                        self.name,
                        dir.join(&self.name).display(),
                        suppressed_note(held)
                    );
                }
            }
        }
        AfterEof::Wait
    }

    /// Stops watching its fds (it is about to be dropped).
    pub(crate) fn deregister(&self, registry: &Registry) {
        for fd in self.draining.iter().chain([&self.fd]) {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
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
fn read_size(pipe_bytes: Option<usize>) -> usize {
    (pipe_bytes.unwrap_or(DEFAULT_PIPE) / 2).clamp(MIN_READ, 8 << 20)
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
            if data.len() - end <= max {
                let mut count = 0;
                let mut start = 0;
                let mut fits = true;
                for newline in memchr::memchr_iter(b'\n', &data[..end]) {
                    if newline - start > max {
                        fits = false;
                        break;
                    }
                    count += 1;
                    start = newline + 1;
                }
                if fits {
                    return Framed {
                        lines: &data[..end],
                        count,
                        truncated: 0,
                        tail: &data[end..],
                    };
                }
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
    fn a_line_of_exactly_max_bytes_is_kept_whole() {
        let (out, _, _, truncated) = feed(&[b"12345", b"\n"], 5);
        assert_eq!((out.as_slice(), truncated), (&b"12345\n"[..], 0));
    }
}
