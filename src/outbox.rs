//! The bounded queue in front of one output, with a partial-write cursor and
//! the `when_full` policy.
//!
//! The queue holds bytes the kernel did not take yet. It only ever receives
//! whole lines, except that the remainder of a line the kernel took part of
//! may start it; that line is never dropped, so nothing torn reaches a reader.
//! Drop policies drop whole lines only. `block` never drops: it lets the queue
//! pass its capacity by at most one batch and leaves it to the broker to stop
//! reading the inputs feeding it ([`Outbox::is_full`]).

use std::io;

use crate::config::WhenFull;

/// Bytes queued for one output.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Queued bytes are `buf[head..]`; `buf[..head]` was written already.
    buf: Vec<u8>,
    /// Write cursor into `buf`.
    head: usize,
    /// `buffer_bytes`: how much may wait here before `policy` applies.
    capacity: usize,
    /// What to do when a push would pass `capacity`.
    policy: WhenFull,
    /// The first queued line was partly written already, so it must be kept.
    mid_line: bool,
}

/// Compact the buffer once the written part is at least this large (and
/// half of it), so steady partial writes do not memmove every time.
const COMPACT_AT: usize = 64 * 1024;
/// An emptied queue gives back memory above this.
const KEEP_CAPACITY: usize = 256 * 1024;

impl Outbox {
    /// An empty queue.
    pub fn new(capacity: usize, policy: WhenFull) -> Outbox {
        Outbox {
            buf: Vec::new(),
            head: 0,
            capacity,
            policy,
            mid_line: false,
        }
    }

    /// Changes the capacity and policy (on reload); queued bytes stay.
    pub fn reconfigure(&mut self, capacity: usize, policy: WhenFull) {
        self.capacity = capacity;
        self.policy = policy;
    }

    /// The end of a stop that ran out of time: a `block` queue drops what
    /// does not fit (`drop-newest`) instead of holding its inputs back.
    pub fn give_up_blocking(&mut self) {
        if self.policy == WhenFull::Block {
            self.policy = WhenFull::DropNewest;
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes it may hold before `when_full` applies.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True if a `block` output must stop its inputs: it holds `capacity`
    /// bytes or more (or anything at all, for a capacity of 0).
    pub fn is_full(&self) -> bool {
        self.policy == WhenFull::Block && !self.is_empty() && self.len() >= self.capacity
    }

    /// Queues `data`, whole lines each ending in `\n`, except that when
    /// `continues_line` its first line is the rest of one already partly
    /// written. Applies the policy and returns how many lines it dropped.
    pub fn push(&mut self, data: &[u8], continues_line: bool) -> u64 {
        if data.is_empty() {
            return 0;
        }
        if self.is_empty() {
            self.clear_buffer();
            self.mid_line = continues_line;
        }
        self.compact();
        match self.policy {
            WhenFull::Block => {
                self.buf.extend_from_slice(data);
                0
            }
            WhenFull::DropNewest => {
                let room = self.capacity.saturating_sub(self.len());
                let keep = if data.len() <= room {
                    data.len()
                } else {
                    // The started line always goes; then whole lines that fit.
                    let first = if continues_line { line_end(data, 0) } else { 0 };
                    let limit = room.max(first).min(data.len());
                    memchr::memrchr(b'\n', &data[..limit])
                        .map_or(0, |i| i + 1)
                        .max(first)
                };
                self.buf.extend_from_slice(&data[..keep]);
                count_lines(&data[keep..])
            }
            WhenFull::DropOldest => {
                self.buf.extend_from_slice(data);
                self.trim_front()
            }
        }
    }

    /// Puts `data`, the rest of a line the reader has the start of, before
    /// everything queued (which holds whole lines only): it must reach the
    /// reader first, and is never dropped.
    pub fn push_front(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.is_empty() {
            self.push(data, true);
            return;
        }
        debug_assert!(!self.mid_line, "the queue starts with a whole line");
        self.buf.splice(self.head..self.head, data.iter().copied());
        self.mid_line = true;
    }

    /// Drops whole lines from the front, after a partly written one, until
    /// the queue fits its capacity. Returns the lines dropped.
    fn trim_front(&mut self) -> u64 {
        let excess = self.len().saturating_sub(self.capacity);
        if excess == 0 {
            return 0;
        }
        let start = if self.mid_line {
            line_end(&self.buf, self.head)
        } else {
            self.head
        };
        if start >= self.buf.len() {
            return 0;
        }
        // Cut at the end of the line holding the last byte that must go.
        let last = (start + excess - 1).min(self.buf.len() - 1);
        let cut = line_end(&self.buf, last);
        let dropped = count_lines(&self.buf[start..cut]);
        self.buf.drain(start..cut);
        dropped
    }

    /// Writes queued bytes with `write` until the queue is empty or `write`
    /// would block. Returns the bytes written, or the first hard error (with
    /// the queue intact past what was written).
    pub fn flush(
        &mut self,
        mut write: impl FnMut(&[u8]) -> io::Result<usize>,
    ) -> (usize, io::Result<()>) {
        let mut written = 0;
        let mut result = Ok(());
        while self.head < self.buf.len() {
            match write(&self.buf[self.head..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.head += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if self.is_empty() {
            self.clear_buffer();
        } else if written > 0 {
            self.mid_line = self.buf[self.head - 1] != b'\n';
        }
        (written, result)
    }

    /// Lines queued, including a partly written one.
    pub fn lines(&self) -> u64 {
        count_lines(&self.buf[self.head..])
    }

    /// Empties the queue, returning how many lines (including a partly
    /// written one) were in it.
    pub fn discard(&mut self) -> u64 {
        let lines = self.lines();
        self.clear_buffer();
        lines
    }

    fn clear_buffer(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.mid_line = false;
        // A queue that is used keeps its allocation (regrowing it on every
        // burst costs a realloc each time); only memory far beyond what the
        // output may hold is given back.
        let keep = KEEP_CAPACITY.max(self.capacity.saturating_mul(2));
        if self.buf.capacity() > keep {
            self.buf.shrink_to(keep);
        }
    }

    fn compact(&mut self) {
        if self.head >= COMPACT_AT && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }
}

/// Index just past the `\n` ending the line that contains `buf[from]`
/// (or the end of `buf`).
fn line_end(buf: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &buf[from..]).map_or(buf.len(), |i| from + i + 1)
}

/// Number of `\n` in `bytes`.
pub fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &mut Outbox) -> Vec<u8> {
        let mut out = Vec::new();
        let (_, result) = outbox.flush(|b| {
            out.extend_from_slice(b);
            Ok(b.len())
        });
        result.unwrap();
        out
    }

    #[test]
    fn push_front_puts_an_owed_rest_first_and_drop_oldest_never_drops_it() {
        let mut q = Outbox::new(16, WhenFull::DropOldest);
        q.push(b"b:1\nb:2\n", false);
        q.push_front(b"rest-of-a\n");
        // Over capacity: whole lines go from the front, but never the rest
        // of a line the reader has the start of.
        assert_eq!(q.push(b"b:3\n", false), 2);
        assert_eq!(drain(&mut q), b"rest-of-a\nb:3\n");
        q.push_front(b"alone\n");
        assert_eq!(drain(&mut q), b"alone\n");
    }

    #[test]
    fn drop_newest_keeps_whole_lines_that_fit() {
        let mut q = Outbox::new(10, WhenFull::DropNewest);
        assert_eq!(q.push(b"aaa\nbbb\nccc\n", false), 1);
        assert_eq!(q.push(b"d\n", false), 0);
        assert_eq!(q.push(b"e\n", false), 1);
        assert_eq!(drain(&mut q), b"aaa\nbbb\nd\n");
    }

    #[test]
    fn drop_newest_keeps_a_started_line_even_past_capacity() {
        let mut q = Outbox::new(2, WhenFull::DropNewest);
        assert_eq!(q.push(b"rest-of-line\nnext\n", true), 1);
        assert_eq!(drain(&mut q), b"rest-of-line\n");
    }

    #[test]
    fn drop_oldest_drops_whole_lines_from_the_front() {
        let mut q = Outbox::new(8, WhenFull::DropOldest);
        assert_eq!(q.push(b"11\n22\n", false), 0);
        assert_eq!(q.push(b"33\n44\n", false), 2);
        assert_eq!(drain(&mut q), b"33\n44\n");
        // A batch larger than the whole queue keeps its newest lines.
        assert_eq!(q.push(b"a\nb\nc\nd\ne\n", false), 1);
        assert_eq!(drain(&mut q), b"b\nc\nd\ne\n");
    }

    #[test]
    fn drop_oldest_never_drops_a_partly_written_line() {
        let mut q = Outbox::new(8, WhenFull::DropOldest);
        q.push(b"abcd\nef\n", false);
        let mut first = true;
        let _ = q.flush(|_| {
            if first {
                first = false;
                Ok(2)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        assert_eq!(q.push(b"gh\n", false), 1);
        assert_eq!(drain(&mut q), b"cd\ngh\n");
    }

    #[test]
    fn block_never_drops_and_reports_full() {
        let mut q = Outbox::new(4, WhenFull::Block);
        assert!(!q.is_full());
        assert_eq!(q.push(b"abc\n", false), 0);
        assert!(q.is_full());
        assert_eq!(q.push(b"defgh\n", false), 0);
        assert_eq!(drain(&mut q), b"abc\ndefgh\n");
        assert!(!q.is_full());
    }

    #[test]
    fn flush_stops_at_would_block_and_resumes_at_the_cursor() {
        let mut q = Outbox::new(100, WhenFull::Block);
        q.push(b"hello\nworld\n", false);
        let mut calls = 0;
        let (n, r) = q.flush(|b| {
            calls += 1;
            if calls == 1 {
                Ok(3.min(b.len()))
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        assert_eq!((n, r.is_ok(), q.len()), (3, true, 9));
        assert_eq!(drain(&mut q), b"lo\nworld\n");
    }

    #[test]
    fn discard_counts_lines() {
        let mut q = Outbox::new(100, WhenFull::DropNewest);
        q.push(b"a\nb\n", false);
        assert_eq!(q.discard(), 2);
        assert!(q.is_empty());
    }
}
