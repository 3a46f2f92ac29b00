//! Input FIFOs: the read end the daemon holds, and line framing.
//!
//! The daemon holds only a read end of each input (no write end, unlike s6),
//! so it sees the end of file when the last writer closes and can deliver an
//! unterminated tail as a line. To not spin on `EPOLLHUP` after that, it then
//! opens a fresh read end of the same inode *before* closing the old one: a
//! new open does not report a hang-up until a writer comes and goes again,
//! and the FIFO never has zero readers, so no writer ever sees `EPIPE`.
//!
//! Framing is [`Framer::frame`]: complete lines are handed on as one slice of
//! the read buffer (no copy) unless a line must be truncated.

use std::os::fd::OwnedFd;

use crate::fifodir::FifoId;
use crate::stats::{InputStats, RateLimit};

/// One input FIFO.
#[derive(Debug)]
pub struct Input {
    /// File name in the FIFO directory.
    pub name: String,
    /// Permission bits it was created with.
    pub mode: u32,
    /// The inode the daemon created.
    pub fifo: FifoId,
    /// The non-blocking read end.
    pub fd: OwnedFd,
    /// The start of a line whose end has not arrived yet (at most
    /// `max_line_bytes`).
    pub carry: Vec<u8>,
    /// Truncation state.
    pub framer: Framer,
    /// Indices of the outputs this input feeds.
    pub routes: Vec<usize>,
    /// Counters.
    pub stats: InputStats,
    /// Limits "line truncated" warnings.
    pub truncate_warning: RateLimit,
    /// Limits read/reopen error messages.
    pub error_warning: RateLimit,
    /// Waiting for a full `block` output to drain before reading again.
    pub stalled: bool,
    /// On the broker's busy list: it used its reads for a turn and may have
    /// more (kept once on the list however often it is read).
    pub busy: bool,
    /// Being drained before it goes (removed by a reload, or its FIFO
    /// replaced): the end of its writers is final, nothing is reopened.
    pub retired: bool,
}

/// Splits bytes into lines, truncating those longer than the limit.
#[derive(Debug, Default)]
pub struct Framer {
    /// The rest of an overlong line is being thrown away up to its `\n`.
    skipping: bool,
}

/// The result of framing one buffer.
#[derive(Debug)]
pub struct Framed<'a> {
    /// Complete lines, each ending in `\n`.
    pub lines: &'a [u8],
    /// How many lines are in `lines`.
    pub count: u64,
    /// How many of them were truncated.
    pub truncated: u64,
    /// An unfinished line to carry over to the next read.
    pub tail: &'a [u8],
}

impl Framer {
    /// Frames `data` (the carried-over tail followed by newly read bytes)
    /// into complete lines of at most `max` bytes plus `\n`. Lines are a
    /// slice of `data` when nothing needs truncating, else built in
    /// `scratch`.
    pub fn frame<'a>(
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
    pub fn reset(&mut self) {
        self.skipping = false;
    }

    /// True while the rest of an overlong line is being thrown away.
    pub fn is_skipping(&self) -> bool {
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
