//! The fuzz targets' view of the daemon: one function per target that
//! decodes the fuzzer's bytes, drives one private piece (config loader, line
//! framer, format renderer, outbox, NATS reply parser, syslog frame
//! splitter) and panics when one of its invariants breaks.
//!
//! The checks live here, not in `fuzz/`, so that `cargo test` replays every
//! committed corpus file (`fuzz/corpus/TARGET/`) and past finding
//! (`fuzz/regressions/TARGET/`) through exactly what the fuzzers ran (see
//! the tests at the bottom). Nothing here is part of the daemon's API: the
//! module is `#[doc(hidden)]` and only the fuzz crate and the tests use it.

use std::io;
use std::path::Path;

use crate::config::{self, Env, WhenFull};
use crate::format::{Context, Format};
use crate::forward::{nats, syslog};
use crate::input::Framer;
use crate::outbox::{count_lines, Outbox};

/// A fuzz target: takes the fuzzer's bytes, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/NAME.rs` and corpus
/// directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("framer", framer),
    ("format", format),
    ("outbox", outbox),
    ("nats", nats),
    ("syslog", syslog),
    ("syslog_encode", syslog_encode),
];

/// Reads bytes off the front of the fuzzer's input; runs dry as zeros.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A length byte (below `max`), then that many bytes as text.
    fn text(&mut self, max: u8) -> String {
        let len = usize::from(self.byte() % max);
        String::from_utf8_lossy(self.take(len)).into_owned()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The config loader on arbitrary text: it never panics, and every error
/// it locates points at a line and column inside the file (the column may
/// be one past a line's last character, where something was expected).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Env {
        uid: 1000,
        ..Env::default()
    };
    match config::parse(Path::new("/fuzz.toml"), text, &env) {
        Ok(config) => {
            let _ = config.describe();
        }
        Err(err) => {
            let Some((line, column)) = err.position else {
                return;
            };
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                (1..=lines.len()).contains(&line),
                "error {err} names line {line} of a file of {} lines",
                lines.len()
            );
            let width = lines[line - 1].chars().count();
            assert!(
                (1..=width + 1).contains(&column),
                "error {err} names column {column} of a line of {width} characters"
            );
        }
    }
}

/// The line framer on arbitrary chunks and `max_line_bytes`, fed the way
/// `Input::read` feeds it (carried tail + new bytes): the delivered lines
/// are the input split at `\n`, each cut to `max` bytes and ended by `\n`;
/// a line longer than `max` is counted once as truncated; the tail left at
/// the end is the unterminated rest (or nothing, if it was already cut).
pub fn framer(data: &[u8]) {
    let mut bytes = Bytes(data);
    let max = usize::from(bytes.byte() % 64);
    let mut framer = Framer::default();
    let (mut scratch, mut carry, mut input) = (Vec::new(), Vec::new(), Vec::new());
    let (mut out, mut count, mut truncated) = (Vec::new(), 0u64, 0u64);
    while !bytes.is_empty() {
        let len = usize::from(bytes.byte() % 48);
        let chunk = bytes.take(len);
        input.extend_from_slice(chunk);
        let mut buf = std::mem::take(&mut carry);
        buf.extend_from_slice(chunk);
        let framed = framer.frame(&buf, max, &mut scratch);
        assert_eq!(
            framed.count,
            count_lines(framed.lines),
            "count disagrees with the lines"
        );
        assert!(framed.lines.is_empty() || framed.lines.ends_with(b"\n"));
        assert!(framed.tail.len() <= max, "carried more than max");
        assert!(!framed.tail.contains(&b'\n'), "a newline in the tail");
        out.extend_from_slice(framed.lines);
        count += framed.count;
        truncated += framed.truncated;
        carry = framed.tail.to_vec();
    }

    let (mut want, mut want_truncated) = (Vec::new(), 0u64);
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default();
    for line in pieces.iter().chain((last.len() > max).then_some(&last)) {
        want.extend_from_slice(&line[..line.len().min(max)]);
        want.push(b'\n');
        want_truncated += u64::from(line.len() > max);
    }
    let want_tail: &[u8] = if last.len() > max { b"" } else { last };
    assert_eq!(out, want, "lines (max {max})");
    assert_eq!(count, count_lines(&want), "line count (max {max})");
    assert_eq!(truncated, want_truncated, "truncation count (max {max})");
    assert_eq!(carry, want_tail, "tail (max {max})");
    assert_eq!(framer.is_skipping(), last.len() > max, "skipping state");
}

/// The format renderer: any template that parses renders one output line
/// per input line, and `{json}` renders one JSON object per line whose
/// fields are what went in (the line lossily decoded).
pub fn format(data: &[u8]) {
    let mut bytes = Bytes(data);
    let template = bytes.text(32);
    // Input names, RFC 3339 stamps and host names hold no line breaks.
    let host = bytes.text(16).replace('\n', " ");
    let input = bytes.text(16).replace('\n', " ");
    let time = bytes.text(16).replace('\n', " ");
    let mut lines = bytes.0.to_vec();
    if !lines.is_empty() && !lines.ends_with(b"\n") {
        lines.push(b'\n');
    }
    let cx = Context {
        input: &input,
        time: &time,
        host: &host,
    };
    let n = count_lines(&lines);
    if let Ok(format) = Format::parse(&template) {
        let mut out = Vec::new();
        format.render(&lines, cx, &mut out);
        assert_eq!(count_lines(&out), n, "template {template:?}: line count");
        assert!(out.is_empty() || out.ends_with(b"\n"));
        if format.is_verbatim() {
            assert_eq!(out, lines, "{{line}} must pass lines through");
        }
    }

    let mut out = Vec::new();
    Format::parse("{json}")
        .unwrap()
        .render(&lines, cx, &mut out);
    assert_eq!(count_lines(&out), n, "{{json}}: line count");
    let rendered = out.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    for (json, line) in rendered.zip(lines.split(|&b| b == b'\n')) {
        let value: serde_json::Value = serde_json::from_slice(json).unwrap_or_else(|e| {
            panic!("{{json}} rendered {:?}: {e}", String::from_utf8_lossy(json))
        });
        assert_eq!(value["line"], *String::from_utf8_lossy(line));
        assert_eq!(value["input"], *input);
        assert_eq!(value["host"], *host);
        assert_eq!(value["time"], *time);
    }
}

/// One outbox driven the way `Output::offer` and `flush` drive it (write
/// straight through when empty, queue the rest; partial writes; a reader
/// that leaves; a reload that changes the policy) against a model of the
/// reader: it only ever receives whole lines, in the order offered, each at
/// most once; every line offered is received, queued, or counted as
/// dropped or discarded, and so is every byte.
pub fn outbox(data: &[u8]) {
    let mut bytes = Bytes(data);
    let policy = |b: u8| match b % 3 {
        0 => WhenFull::Block,
        1 => WhenFull::DropNewest,
        _ => WhenFull::DropOldest,
    };
    let mut policy_now = policy(bytes.byte());
    let mut capacity = usize::from(bytes.byte() % 64);
    let mut q = Outbox::new(capacity, policy_now);
    let mut model = OutboxModel::default();
    while !bytes.is_empty() {
        let op = bytes.byte();
        match op % 8 {
            // A batch of lines, and how much the kernel takes of it if
            // nothing is queued.
            0..=3 => offer_lines(&mut bytes, op, &mut q, &mut model, policy_now, capacity),
            // The kernel takes some bytes per write, then would block.
            4 | 5 => flush_some(&mut bytes, &mut q, &mut model),
            // The reader leaves: the queue is thrown away.
            6 => {
                model.discarded += q.discard();
                assert!(q.is_empty());
                model.reader_left();
            }
            // A reload changes the capacity and policy.
            _ => {
                policy_now = policy(bytes.byte());
                capacity = usize::from(bytes.byte() % 64);
                q.reconfigure(capacity, policy_now);
            }
        }
        model.check(&q);
    }
    // Drain: the reader gets everything still queued.
    let mut got = Vec::new();
    let (_, result) = q.flush(|b| {
        got.extend_from_slice(b);
        Ok(b.len())
    });
    assert!(result.is_ok() && q.is_empty());
    model.receive(&got);
    model.check(&q);
    assert!(model.partial.is_empty(), "a torn line at the end");
}

/// Offers a batch of 1..=6 new lines as `Output::offer` does: the kernel
/// takes a prefix if nothing is queued, the outbox queues the rest.
fn offer_lines(
    bytes: &mut Bytes,
    op: u8,
    q: &mut Outbox,
    model: &mut OutboxModel,
    policy_now: WhenFull,
    capacity: usize,
) {
    let lines = usize::from(op >> 3) % 6 + 1;
    let mut batch = Vec::new();
    for _ in 0..lines {
        let line = model.new_line(usize::from(bytes.byte() % 24));
        batch.extend_from_slice(&line);
    }
    let before = q.len();
    let was_empty = q.is_empty();
    let mut continues = false;
    let rest = if was_empty {
        let n = usize::from(bytes.byte()).min(batch.len());
        model.receive(&batch[..n]);
        continues = n > 0 && batch[n - 1] != b'\n';
        &batch[n..]
    } else {
        &batch[..]
    };
    model.dropped += q.push(rest, continues);
    let after = q.len();
    match policy_now {
        WhenFull::Block => assert_eq!(after, before + rest.len(), "block dropped"),
        WhenFull::DropNewest => assert!(
            after <= capacity.max(before) || (was_empty && count_lines(rest) >= 1),
            "drop-newest grew the queue to {after} (capacity {capacity})"
        ),
        WhenFull::DropOldest => {}
    }
}

/// A flush where the kernel takes a few bytes per write, then would block.
fn flush_some(bytes: &mut Bytes, q: &mut Outbox, model: &mut OutboxModel) {
    let step = usize::from(bytes.byte() % 16);
    let mut writes = usize::from(bytes.byte() % 4) + 1;
    let mut got = Vec::new();
    let (written, result) = q.flush(|b| {
        if writes == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        writes -= 1;
        let n = step.min(b.len());
        got.extend_from_slice(&b[..n]);
        Ok(n)
    });
    assert!(result.is_ok());
    assert_eq!(written, got.len());
    model.receive(&got);
}

/// What a reader of one outbox should see.
#[derive(Default)]
struct OutboxModel {
    /// Every line offered, in order (`"<id> xxx\n"`).
    offered: Vec<Vec<u8>>,
    /// Ids of the lines received whole, in order.
    received: Vec<usize>,
    /// Bytes of a line the current reader has only part of.
    partial: Vec<u8>,
    /// Lines the outbox said it dropped.
    dropped: u64,
    /// Lines the outbox said it discarded.
    discarded: u64,
    /// Bytes of lines lost with their reader (the part it got).
    torn_bytes: usize,
    /// Every byte written to a reader.
    written: usize,
}

impl OutboxModel {
    fn new_line(&mut self, pad: usize) -> Vec<u8> {
        let mut line = format!("{} ", self.offered.len()).into_bytes();
        line.resize(line.len() + pad, b'x');
        line.push(b'\n');
        self.offered.push(line.clone());
        line
    }

    /// Bytes written to the reader: whole lines, in order, never twice.
    fn receive(&mut self, bytes: &[u8]) {
        self.written += bytes.len();
        self.partial.extend_from_slice(bytes);
        while let Some(end) = memchr::memchr(b'\n', &self.partial) {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let id = self.line_id(&line);
            if let Some(&last) = self.received.last() {
                assert!(id > last, "line {id} after line {last}: order or duplicate");
            }
            self.received.push(id);
        }
    }

    /// The reader left holding part of a line; a new one starts clean.
    fn reader_left(&mut self) {
        self.torn_bytes += self.partial.len();
        self.partial.clear();
    }

    /// Conservation: of every line offered, each is received, still queued
    /// (whole, or the rest of the one the reader has part of), or counted
    /// as dropped or discarded; every byte written belongs to one of them.
    fn check(&self, q: &Outbox) {
        let mut queued = Vec::new();
        let _ = q.clone().flush(|b| {
            queued.extend_from_slice(b);
            Ok(b.len())
        });
        assert_eq!(queued.len(), q.len());
        let mut queued_ids = Vec::new();
        let mut rest = &queued[..];
        if !self.partial.is_empty() {
            let end = memchr::memchr(b'\n', rest).expect("the rest of a started line is gone") + 1;
            let mut line = self.partial.clone();
            line.extend_from_slice(&rest[..end]);
            queued_ids.push(self.line_id(&line));
            rest = &rest[end..];
        }
        for line in rest.split_inclusive(|&b| b == b'\n') {
            queued_ids.push(self.line_id(line));
        }
        let ids = self.received.iter().chain(&queued_ids);
        for (a, b) in ids.clone().zip(ids.skip(1)) {
            assert!(a < b, "line {b} after line {a}: order or duplicate");
        }
        let lost = self.offered.len() - self.received.len() - queued_ids.len();
        assert_eq!(
            lost as u64,
            self.dropped + self.discarded,
            "lines: offered = received + queued + dropped + discarded"
        );
        let received_bytes: usize = self.received.iter().map(|&id| self.offered[id].len()).sum();
        assert_eq!(
            self.written,
            received_bytes + self.partial.len() + self.torn_bytes,
            "bytes written that belong to no line"
        );
    }

    /// The id of `line`, which must be one offered, whole.
    fn line_id(&self, line: &[u8]) -> usize {
        let id = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split(' ').next())
            .and_then(|id| id.parse::<usize>().ok())
            .filter(|&id| id < self.offered.len() && line == self.offered[id]);
        id.unwrap_or_else(|| panic!("torn or unknown line {:?}", String::from_utf8_lossy(line)))
    }
}

/// The NATS server-reply parser on arbitrary bytes: never panics; a
/// complete operation takes between 1 and all of the bytes, `check` agrees
/// with `parse`, and no shorter prefix of it is an error (bytes arriving in
/// pieces are never mistaken for a malformed reply). The acks and INFO it
/// yields go through their own parsers.
pub fn nats(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((op, used))) = nats::parse(rest) {
        assert!(
            (1..=rest.len()).contains(&used),
            "used {used} of {}",
            rest.len()
        );
        assert_eq!(nats::check(rest), Ok(Some(used)));
        assert_eq!(
            nats::parse(&rest[..used]).map(|r| r.map(|(_, u)| u)),
            Ok(Some(used)),
            "the operation alone parses the same"
        );
        for cut in prefixes(used) {
            assert_eq!(nats::check(&rest[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        match op {
            nats::ServerOp::Info(json) => {
                let _ = nats::parse_info(json);
            }
            nats::ServerOp::Msg(msg) => {
                let _ = nats::parse_ack(&msg);
            }
            nats::ServerOp::Err(text) => {
                assert!(nats::printable(text).chars().count() <= 256);
            }
            _ => {}
        }
        rest = &rest[used..];
    }
}

/// The syslog octet-counting splitter on arbitrary bytes: a frame is
/// `LEN SP MSG` with MSG exactly LEN bytes, and no shorter prefix of a
/// frame is an error.
pub fn syslog(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((msg, used))) = syslog::split_frames(rest) {
        let header = format!("{} ", msg.len());
        assert!(rest.starts_with(header.as_bytes()), "bad header");
        assert_eq!(used, header.len() + msg.len());
        assert_eq!(&rest[header.len()..used], msg);
        for cut in prefixes(used) {
            assert_eq!(
                syslog::split_frames(&rest[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        rest = &rest[used..];
    }
}

/// The syslog encoder the daemon runs, on arbitrary header settings and
/// lines: its output splits into exactly one RFC 6587 frame per line, each
/// an RFC 5424 header of non-empty PRINTUSASCII fields within their limits
/// (`<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - `) followed by the line
/// as it was, without its `\n`.
pub fn syslog_encode(data: &[u8]) {
    const FACILITIES: [&str; 4] = ["kern", "user", "daemon", "local7"];
    const SEVERITIES: [&str; 4] = ["emerg", "err", "notice", "debug"];
    let mut bytes = Bytes(data);
    let facility = syslog::Facility::parse(FACILITIES[usize::from(bytes.byte() % 4)]).unwrap();
    let severity = syslog::Severity::parse(SEVERITIES[usize::from(bytes.byte() % 4)]).unwrap();
    let hostname = bytes.text(255);
    let app_name = bytes.text(80);
    let input = bytes.text(80);
    let timestamp = bytes.text(40);
    let procid = u32::from_le_bytes([bytes.byte(), bytes.byte(), bytes.byte(), bytes.byte()]);
    let lines = bytes.take(usize::MAX);
    let format = syslog::SyslogFormat::new(facility, severity, &hostname, &app_name, procid);
    let mut out = Vec::new();
    let messages = format.encode(lines, &input, &timestamp, &mut out);
    let want: Vec<&[u8]> = lines
        .split_inclusive(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
        .collect();
    assert_eq!(messages, want.len() as u64, "one message per line");
    let pri = format!("<{}>1 ", facility.code() * 8 + severity.code());
    let mut rest = &out[..];
    for line in want {
        let (msg, used) = match syslog::split_frames(rest) {
            Ok(Some(frame)) => frame,
            other => panic!("not a whole frame: {other:?}"),
        };
        rest = &rest[used..];
        let header = msg
            .strip_prefix(pri.as_bytes())
            .unwrap_or_else(|| panic!("PRI: {:?}", String::from_utf8_lossy(msg)));
        let mut fields = header.splitn(6, |&b| b == b' ');
        let limits = [32, syslog::MAX_HOSTNAME, syslog::MAX_APP_NAME, 128];
        for (what, max) in ["TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID"]
            .iter()
            .zip(limits)
        {
            let field = fields.next().unwrap_or_else(|| panic!("no {what}"));
            assert!(
                (1..=max).contains(&field.len()) && field.iter().all(|b| (33..=126).contains(b)),
                "{what} {:?}",
                String::from_utf8_lossy(field)
            );
        }
        assert_eq!(fields.next(), Some(&b"-"[..]), "MSGID");
        let sd_and_msg = fields.next().expect("STRUCTURED-DATA");
        assert_eq!(
            sd_and_msg,
            [&b"- "[..], line].concat(),
            "`- ` then MSG, the line as it was"
        );
    }
    assert!(rest.is_empty(), "bytes after the last frame");
}

/// Prefix lengths worth checking for a frame of `len` bytes: all of them
/// for a short one, else the first and last few and some in between.
fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let step = (len / 64).max(1);
    (0..len).filter(move |&i| i < 16 || len - i < 16 || i % step == 0)
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every committed corpus file and past finding goes through its
    /// target's checks, so the fuzzers' findings stay fixed on the stable
    /// toolchain.
    #[test]
    fn replay_fuzz_corpora() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for (name, target) in TARGETS {
            let mut n = 0;
            for dir in [
                fuzz.join("corpus").join(name),
                fuzz.join("regressions").join(name),
            ] {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let replay = std::panic::catch_unwind(|| target(&data));
                    assert!(
                        replay.is_ok(),
                        "fuzz target {name} fails on {}",
                        path.display()
                    );
                    n += 1;
                }
            }
            assert!(n > 0, "no corpus for fuzz target {name}");
        }
    }
}
