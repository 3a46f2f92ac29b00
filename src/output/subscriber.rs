//! Subscriber FIFOs: lazy attach, detach on `EPOLLERR`.
//!
//! A subscriber holds no fd while nobody reads it. When a line is routed to
//! it, the daemon tries a non-blocking write-open: that succeeds exactly when
//! a reader has the FIFO open or is waiting in `open()`, so a waiting reader
//! is attached by the next line and never sees an earlier one, and an idle
//! daemon polls nothing. An attached writer stays registered for WRITABLE so
//! that `EPOLLERR` tells the loop at once when the reader goes away; its
//! queue is then discarded and counted, never delivered to a later reader.
//!
//! Zero-copy: a subscriber that takes one input's lines as they are (a
//! *mirror*: format `{line}`, no filter, fed by exactly one input) gets the
//! input pipe's bytes with `tee(2)` before the daemon reads them, so an extra
//! subscriber costs a system call, not a copy. A tee cannot stop at a line's
//! end, so a mirror may hold the first bytes of an unfinished line
//! ([`Ahead`]); the broker hands it each batch as the pipe's bytes
//! ([`Subscriber::deliver`]) so it gets the rest of that line and nothing
//! twice. Its queue still only ever starts mid-line with a line it is owed
//! the rest of, so no policy tears a line, and a reader that attaches starts
//! at a line's start. A reload that ends its mirror role mid-line leaves it
//! owing the rest of that line, which the copy path delivers before anything
//! else ([`Subscriber::settle`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use mio::unix::SourceFd;
use mio::Interest;
use rustix::fs::OFlags;
use rustix::io::Errno;

use super::{flush, offer, Core, Failure, Kind, State, Target};
use crate::fifodir::{FifoDir, FifoId};
use crate::input::{Batch, TeeSource};
use crate::stats::suppressed_note;
use crate::world::{PipeBudget, World};

/// A FIFO in the directory that readers open.
#[derive(Debug)]
pub(crate) struct Subscriber {
    /// Name, queue and counters.
    core: Core,
    /// The inode the daemon created.
    fifo: FifoId,
    /// The write end, while a reader is attached.
    writer: Option<OwnedFd>,
    /// The attached pipe's capacity, and how much of it is growth taken
    /// from the budget (given back when the reader leaves).
    pipe: PipeState,
    /// Takes one input's lines as they are: eligible for `tee(2)`.
    mirror: bool,
    /// The start of an unfinished line the attached reader has already.
    ahead: Option<Ahead>,
    /// Such a line, from before a reload took it off the zero-copy path:
    /// its rest comes from the copy path ([`Subscriber::settle`]), and
    /// until then nothing else is written (lines from other inputs wait in
    /// the queue behind it).
    owed: Option<Ahead>,
    /// A tee took bytes for the batch the next read returns (if it came
    /// short of that read, the pipe was full).
    teed: bool,
}

/// How far into an input pipe's unfinished line a mirror is.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    /// [`Batch::pipe`] of that pipe.
    pipe: u64,
    /// Bytes of the line it has.
    bytes: usize,
}

/// A subscriber pipe's capacity, for adaptive growth.
#[derive(Debug, Default)]
struct PipeState {
    size: usize,
    grown: usize,
    budget: Option<Rc<PipeBudget>>,
    /// The reader took bytes out of a full pipe since the last growth: it
    /// is reading, only slower than the bursts. A stalled reader never
    /// sets this, so its pipe stays as it is and `when_full` applies as
    /// configured.
    draining: bool,
    /// A write or tee found the pipe full since the last growth.
    filled: bool,
}

impl PipeState {
    /// Writes `data`; if the pipe is full, grows it (within the budget)
    /// and writes on.
    fn write(&mut self, fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
        let written = match rustix::io::write(fd, data) {
            Ok(n) if n == data.len() => return Ok(n),
            Ok(n) => n,
            Err(Errno::AGAIN) => 0,
            Err(e) => return Err(e.into()),
        };
        if !self.full(fd) {
            return finish(written);
        }
        match rustix::io::write(fd, &data[written..]) {
            Ok(more) => Ok(written + more),
            Err(_) => finish(written),
        }
    }

    /// The pipe is full: grows it if its reader is draining it and the
    /// budget allows. True if it grew.
    fn full(&mut self, fd: &OwnedFd) -> bool {
        self.filled = true;
        let Some(budget) = self.budget.as_ref().filter(|_| self.draining) else {
            return false;
        };
        let before = self.size;
        if !budget.grow(fd, &mut self.size) {
            return false;
        }
        self.draining = false;
        self.filled = false;
        self.grown += self.size - before;
        true
    }

    /// The fd is writable again: if it had filled, its reader drains it.
    fn writable(&mut self) {
        if self.filled {
            self.draining = true;
        }
    }

    /// The reader left: the growth goes back to the budget.
    fn release(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.give_back(std::mem::take(&mut self.grown));
        }
    }
}

/// A short write, or `WouldBlock` if nothing was written.
fn finish(written: usize) -> io::Result<usize> {
    match written {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        n => Ok(n),
    }
}

impl Subscriber {
    pub(super) fn new(core: Core, fifo: FifoId) -> Subscriber {
        Subscriber {
            core,
            fifo,
            writer: None,
            pipe: PipeState::default(),
            mirror: false,
            ahead: None,
            owed: None,
            teed: false,
        }
    }

    /// True if it takes one input's lines as they are (see the module) and
    /// owes no line from before a reload.
    pub(super) fn is_mirror(&self) -> bool {
        self.mirror && self.owed.is_none()
    }

    /// Says whether it takes one input's lines as they are (on reload).
    /// One that stops while its reader has an unfinished line's start owes
    /// the rest of that line, if the pipe it comes from still feeds it
    /// (`fed`); otherwise the line is ended here.
    pub(super) fn set_mirror(&mut self, mirror: bool, fed: impl Fn(u64) -> bool, world: &World) {
        if !mirror {
            if let Some(a) = self.ahead.take() {
                self.owed = Some(a);
            }
        }
        if self
            .owed
            .is_some_and(|a| !fed(a.pipe) || self.writer.is_none())
        {
            self.end_line(world);
        }
        self.mirror = mirror;
    }

    /// True if it owes the rest of a line of the pipe `pipe`.
    pub(super) fn owes(&self, pipe: u64) -> bool {
        self.owed.is_some_and(|a| a.pipe == pipe)
    }

    /// A reload changed `pipe_bytes`: the attached pipe takes the new size
    /// (the kernel refuses a size smaller than what the pipe holds: it then
    /// keeps its size until its next reader).
    pub(super) fn set_pipe_size(&mut self, bytes: usize) {
        if let Some(fd) = &self.writer {
            crate::fifodir::set_pipe_size(fd, bytes, &self.core.name);
            self.pipe.size = PipeBudget::size_of(fd);
        }
    }

    /// True if it owes the rest of a line.
    pub(super) fn owes_any(&self) -> bool {
        self.owed.is_some()
    }

    /// `line` is the whole line it owes the rest of (a reload took it off
    /// the zero-copy path in the middle of it): the rest goes first, then
    /// what waited behind it.
    pub(super) fn settle(&mut self, line: &[u8], world: &World) {
        let Some(owed) = self.owed.take() else {
            return;
        };
        self.core.stats.lines_out += 1;
        self.put_first(&line[owed.bytes.min(line.len())..], world);
    }

    /// A `block` queue filled while it waited for an owed line's rest (its
    /// input may be held back by that very queue): the line is ended here
    /// instead, as a last resort.
    pub(super) fn give_up_if_full(&mut self, world: &World) {
        if self.owed.is_some() && self.core.outbox.len() >= self.core.outbox.capacity() {
            self.end_line(world);
        }
    }

    /// Ends the unfinished line the reader has the start of, if any: its
    /// input no longer feeds it, or waiting for the rest held up too much.
    fn end_line(&mut self, world: &World) {
        if self.ahead.take().or(self.owed.take()).is_some() {
            log::debug!(
                "subscriber {}: a reload changed its input in the middle of a line; \
                 the line was ended early",
                self.core.name
            );
            self.put_first(b"\n", world);
        }
    }

    /// Writes `data` (the end of a line the reader has the start of) before
    /// anything queued, then what is queued.
    fn put_first(&mut self, data: &[u8], world: &World) {
        if self.writer.is_none() {
            return;
        }
        let written = if self.core.outbox.is_empty() {
            match self.write(data) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    self.failed(e, world);
                    return;
                }
            }
        } else {
            0
        };
        self.core.stats.bytes_out += written as u64;
        self.core.outbox.push_front(&data[written..]);
        flush(self, world);
    }

    /// Zero-copy: duplicates up to `src.cap` bytes of the input pipe into
    /// its own pipe, if it is a mirror with a reader, nothing queued, and
    /// has exactly the bytes of the line in progress that were read so far.
    /// A full pipe or a reader gone is left to the write that follows.
    /// Returns the bytes it took.
    pub(super) fn tee(&mut self, src: TeeSource) -> usize {
        let Some(fd) = &self.writer else {
            return 0;
        };
        let have = match self.ahead {
            None => 0,
            Some(a) if a.pipe == src.pipe => a.bytes,
            Some(_) => return 0,
        };
        if !self.is_mirror() || have != src.carried || !self.core.outbox.is_empty() {
            return 0;
        }
        let flags = rustix::pipe::SpliceFlags::NONBLOCK;
        match rustix::pipe::tee(src.fd, fd, src.cap, flags) {
            Ok(n) if n > 0 => {
                // Only a tee that took bytes is sure to be followed by a
                // batch (the read finds them); an `EAGAIN` from an empty
                // input is not, and a full pipe shows in the write after.
                self.teed = true;
                self.core.stats.bytes_out += n as u64;
                self.ahead = Some(Ahead {
                    pipe: src.pipe,
                    bytes: src.carried + n,
                });
                n
            }
            _ => 0,
        }
    }

    /// The read after a tee brought no whole line (so no
    /// [`deliver`](Subscriber::deliver)): the "tee took bytes" mark must not
    /// carry over to a later batch, where it could pass for a full pipe.
    pub(super) fn forget_tee(&mut self) {
        self.teed = false;
    }

    /// Delivers `batch` to a mirror as the pipe's bytes: what it does not
    /// have of the lines, then, if a writer streams and nothing is queued,
    /// what it can of the unfinished line after them (so the next read can
    /// be teed).
    pub(super) fn deliver(&mut self, batch: &Batch, world: &World) {
        let mut skip = match self.ahead.take() {
            Some(a) if a.pipe == batch.pipe => a.bytes,
            Some(a) => {
                self.ahead = Some(a);
                self.end_line(world);
                0
            }
            None => 0,
        };
        if std::mem::take(&mut self.teed) && skip < batch.lines.len() + batch.tail.len() {
            // The tee took less than the read: the pipe filled up.
            if let Some(fd) = &self.writer {
                self.pipe.full(fd);
            }
        }
        if batch.truncated && skip > 0 {
            // Tees never reach a cut (see `TeeSource::cap`) unless a reload
            // lowered max_line_bytes under the line: it ends where it is.
            skip = skip.min(memchr::memchr(b'\n', batch.lines).unwrap_or(skip));
        }
        offer(self, batch.lines, batch.count, skip, world);
        if self.writer.is_none() {
            return;
        }
        let mut have = skip.saturating_sub(batch.lines.len());
        if batch.streaming && self.core.outbox.is_empty() && have < batch.tail.len() {
            match self.write(&batch.tail[have..]) {
                Ok(n) => {
                    self.core.stats.bytes_out += n as u64;
                    have += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.failed(e, world);
                    return;
                }
            }
        }
        if have > 0 {
            self.ahead = Some(Ahead {
                pipe: batch.pipe,
                bytes: have,
            });
        }
    }

    /// Drops the attached writer (if any), discarding and counting its queue.
    fn detach(&mut self, world: &World) {
        self.ahead = None;
        self.owed = None;
        if let Some(fd) = self.writer.take() {
            self.pipe.release();
            let _ = world.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
            let lost = self.core.discard_queue();
            log::debug!(
                "subscriber {}: reader left; {lost} queued lines discarded",
                self.core.name
            );
        }
    }

    /// Tries to open the write end; true if a reader is there.
    fn attach(&mut self, world: &World) -> bool {
        let name = &self.core.name;
        match world.dir.open_fifo(name, self.fifo, OFlags::WRONLY) {
            Ok(fd) => {
                if let Some(bytes) = world.pipe_bytes {
                    crate::fifodir::set_pipe_size(&fd, bytes, name);
                }
                let mut source = SourceFd(&fd.as_raw_fd());
                let token = self.core.token;
                if let Err(e) = world
                    .registry()
                    .register(&mut source, token, Interest::WRITABLE)
                {
                    self.core.stats.errors += 1;
                    log::error!("subscriber {name}: cannot watch the reader: {e}");
                    return false;
                }
                self.pipe = PipeState {
                    size: PipeBudget::size_of(&fd),
                    grown: 0,
                    budget: Some(world.pipes.clone()),
                    draining: false,
                    filled: false,
                };
                self.writer = Some(fd);
                log::debug!("subscriber {name}: reader attached");
                true
            }
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => false,
            Err(e) => {
                self.core.stats.errors += 1;
                if let Some(held) = self.core.warning.allow() {
                    log::warn!(
                        "subscriber {name}: cannot open {}: {e}{}",
                        world.dir.join(name).display(),
                        suppressed_note(held)
                    );
                }
                false
            }
        }
    }
}

impl Target for Subscriber {
    const KIND: Kind = Kind::Subscriber;

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    fn connect(&mut self, world: &World) -> bool {
        self.writer.is_some() || self.attach(world)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &self.writer {
            Some(fd) => self.pipe.write(fd, data),
            None => Ok(0),
        }
    }

    fn holding(&self) -> bool {
        self.owed.is_some()
    }

    fn write_queued(&mut self) -> (usize, io::Result<()>) {
        if self.owed.is_some() {
            return (0, Ok(()));
        }
        let pipe = &mut self.pipe;
        match &self.writer {
            Some(fd) => self.core.outbox.flush(|b| pipe.write(fd, b)),
            None => (0, Ok(())),
        }
    }

    /// The reader is gone (`EPIPE`, or anything else a pipe write can fail
    /// with): detach.
    fn failed(&mut self, err: io::Error, world: &World) -> Failure {
        if err.raw_os_error() != Some(Errno::PIPE.raw_os_error()) {
            self.core.stats.errors += 1;
            if let Some(held) = self.core.warning.allow() {
                log::warn!(
                    "subscriber {}: write: {err}{}",
                    self.core.name,
                    suppressed_note(held)
                );
            }
        }
        self.detach(world);
        Failure::Gone
    }

    fn on_event(&mut self, closed: bool, world: &World) {
        if closed {
            self.detach(world);
        } else {
            self.pipe.writable();
            flush(self, world);
        }
    }

    fn state(&self) -> State {
        if self.writer.is_some() {
            State::Attached
        } else {
            State::NoReader
        }
    }

    fn is_intact(&self, dir: &FifoDir) -> bool {
        dir.is_ours(&self.core.name, self.fifo)
    }

    fn release(&mut self, world: &World) {
        self.detach(world);
    }

    fn close(&mut self, world: &World) {
        self.detach(world);
        let name = &self.core.name;
        if let Err(e) = world.dir.remove_if_ours(name, self.fifo) {
            log::error!("cannot remove {}: {e}", world.dir.join(name).display());
        }
    }

    fn counter_note(&self) -> String {
        let yes = if self.writer.is_some() { "yes" } else { "no" };
        format!(" attached={yes}")
    }
}
