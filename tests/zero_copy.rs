//! Black-box tests for the verbatim fan-out path. A subscriber that takes
//! lines unchanged (`format = "{line}"`, no `match`/`exclude`, fed by one
//! input) may be fed straight from the input pipe (tee(2)) and may receive the
//! first bytes of an unfinished line early, the rest following. Whatever the
//! daemon does inside, a reader must still see what SPEC.md §4 promises: whole
//! lines in order, none lost under `block`, whole lines dropped under the drop
//! policies, lines cut to `max_line_bytes`, a writer's unterminated tail as one
//! line, and nothing from before it attached.
//!
//! The workloads write lines in pieces that do not line up with lines, reads
//! or pipe sizes, so lines straddle the daemon's reads. Every test also holds
//! for a binary without that path: they pin down behaviour, not mechanism.

// The harness is shared with tests/broker.rs; this binary uses part of it.
#[allow(dead_code)]
mod util;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, CWD};
use rustix::process::Signal;

use util::{
    count_newlines, data_lines, flush_with_markers, join_within, quote, sh, split_lines, Cat,
    Daemon, Received, SlowReader, PROBE, TIMEOUT,
};

/// One input, `alerts`, and one `{line}` subscriber of it, `tail`.
const ONE_TAIL: &str = r#"
[inputs.alerts]

[subscribers.tail]
from = ["alerts"]
"#;

// ---------------------------------------------------------------------------
// Workloads.

/// Bytes per `write()` of the streaming writers: prime, so no line length,
/// read size or pipe size lines up with it and lines straddle writes.
const CHUNK: usize = 4093;

/// The filler byte of line `i`: neighbouring lines differ, so a line merged
/// with or torn into another is seen.
fn filler(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// Line `i` of the varied workload, without its newline: 1 to 300 bytes,
/// as much of `{i}:` as fits, then filler.
fn varied_line(i: usize) -> Vec<u8> {
    let len = 1 + (i * 7919 + i / 300) % 300;
    let mut l = format!("{i}:").into_bytes();
    l.resize(len.max(l.len()), filler(i));
    l.truncate(len);
    l
}

/// Line `i` of the numbered workload, without its newline: `{i:07}:`, then
/// `ERROR:` on every seventh line, then filler. Every fourth line is about
/// `long` bytes (at least 300), the others 9 to 300.
fn numbered_line(i: usize, long: usize) -> Vec<u8> {
    let len = if i % 4 == 0 {
        long - i % 11
    } else {
        9 + (i * 7919) % 292
    };
    let mut l = format!("{i:07}:").into_bytes();
    if i % 7 == 3 {
        l.extend_from_slice(b"ERROR:");
    }
    l.resize(len.max(l.len()), filler(i));
    l
}

/// The number of `line` if it is exactly line N of the numbered workload;
/// otherwise says what is wrong with it.
fn known_number(line: &[u8], long: usize) -> Result<usize, String> {
    let n: usize = line
        .get(..7)
        .filter(|_| line.get(7) == Some(&b':'))
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("not a whole numbered line (torn?): {}", show(line)))?;
    let want = numbered_line(n, long);
    if line == want {
        Ok(n)
    } else {
        Err(format!(
            "line {n} is not whole: expected {}, got {}",
            show(&want),
            show(line)
        ))
    }
}

/// `bytes` for a message: lossy, at most 100 characters, with its length.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let short: String = text.chars().take(100).collect();
    let more = if short.len() < text.len() { "..." } else { "" };
    format!("{short:?}{more} ({} bytes)", bytes.len())
}

/// The lines, each followed by `\n`.
fn stream_of(lines: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    out
}

/// Writes `data` into `f`, `chunk` bytes per `write()`.
fn write_chunked(f: &mut File, data: &[u8], chunk: usize) {
    for piece in data.chunks(chunk) {
        f.write_all(piece).expect("writing into an input");
    }
}

// ---------------------------------------------------------------------------
// What readers received.

/// `data` without its leading probe lines (those [`Daemon::attach`] and
/// [`attach_with_error_probes`] wrote), however many of them came.
fn after_probes(data: &[u8]) -> &[u8] {
    let mut rest = data;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        if !util::contains(&rest[..end], PROBE.as_bytes()) {
            break;
        }
        rest = &rest[end + 1..];
    }
    rest
}

/// Length of the longest common prefix of `a` and `b` (block by block, so
/// that megabytes compare quickly in a debug build).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let len = a.len().min(b.len());
    let mut at = 0;
    while at + BLOCK <= len && a[at..at + BLOCK] == b[at..at + BLOCK] {
        at += BLOCK;
    }
    at + a[at..len]
        .iter()
        .zip(&b[at..len])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Compares a stream received so far with the one expected: `Ok(None)` when
/// they are equal, `Ok(Some(progress))` while what came is a proper prefix
/// of what is expected, `Err` naming the first line where they differ.
fn stream_progress(got: &[u8], want: &[u8]) -> Result<Option<String>, String> {
    let same = common_prefix(got, want);
    if same == got.len() {
        if same == want.len() {
            return Ok(None);
        }
        return Ok(Some(format!(
            "{} of {} bytes so far ({} of {} lines)",
            got.len(),
            want.len(),
            count_newlines(got),
            count_newlines(want)
        )));
    }
    // `got` and `want` agree up to `same`, so the line starts there in both.
    let start = memchr::memrchr(b'\n', &want[..same]).map_or(0, |i| i + 1);
    let line_of = |s: &[u8]| {
        let rest = &s[start.min(s.len())..];
        rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())].to_vec()
    };
    Err(format!(
        "line {} (at byte {start}) differs: expected {}, got {}",
        count_newlines(&want[..start]),
        show(&line_of(want)),
        show(&line_of(got))
    ))
}

/// Waits until `check` says the output is complete. `check` is asked on
/// every poll once `ready` (a cheap test, e.g. enough bytes) holds, and
/// every second before that; a wrong output fails as soon as it is seen,
/// an incomplete one at `timeout`.
fn wait_complete(
    what: &str,
    timeout: Duration,
    ready: impl Fn() -> bool,
    check: impl Fn() -> Result<Option<String>, String>,
) {
    let deadline = Instant::now() + timeout;
    let mut checked = Instant::now();
    loop {
        let expired = Instant::now() >= deadline;
        if ready() || expired || checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            match check() {
                Ok(None) => return,
                Err(why) => panic!("{what}: {why}"),
                Ok(Some(progress)) if expired => {
                    panic!("{what}: incomplete after {timeout:?}: {progress}")
                }
                Ok(Some(_)) => {}
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `bytes()` (what one reader or file received), after its
/// probe lines, is exactly `want`; `len()` is how many bytes came so far.
fn wait_stream(
    what: &str,
    len: impl Fn() -> u64,
    bytes: impl Fn() -> Vec<u8>,
    want: &[u8],
    timeout: Duration,
) {
    wait_complete(
        what,
        timeout,
        || len() >= want.len() as u64,
        || stream_progress(after_probes(&bytes()), want),
    );
}

/// Size of the file at `path` (0 while it does not exist).
fn file_len(path: &std::path::Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until the daemon has read `n` bytes from `input` in all.
fn wait_bytes_in(d: &Daemon, input: &str, n: u64) {
    d.wait_counters(&format!("input {input} bytes_in >= {n}"), |c| {
        c.input(input, "bytes_in") >= n
    });
}

/// Writes `probe-ERROR-N` lines (which pass a `match = "ERROR"` filter) into
/// `input` until every reader has received one.
fn attach_with_error_probes(d: &Daemon, input: &str, readers: &[&dyn Received]) {
    let mut n = 0;
    util::eventually(TIMEOUT, || {
        d.write(input, format!("{PROBE}ERROR-{n}\n").as_bytes());
        n += 1;
        let missing = readers
            .iter()
            .filter(|r| !util::contains(&r.bytes(), PROBE.as_bytes()))
            .count();
        match missing {
            0 => Ok(()),
            m => Err(format!("{m} readers got no probe line after {n} probes")),
        }
    });
}

// ---------------------------------------------------------------------------
// 1. `block` is lossless, byte for byte.

#[test]
fn block_subscribers_and_sink_get_every_byte_of_200k_lines_split_across_writes() {
    const N: usize = 200_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers.tiny]
from = ["alerts"]
when_full = "block"
buffer_bytes = 4096

[subscribers.paced]
from = ["alerts"]
when_full = "block"
buffer_bytes = 65536

[subscribers.lagging]
from = ["alerts"]
when_full = "block"

[subscribers.fast]
from = ["alerts"]
when_full = "block"
buffer_bytes = 4096

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
when_full = "block"
"#,
    );
    // Small reads, reads with pauses, big reads with longer pauses, and `cat`.
    let tiny = SlowReader::start(&d.path("tiny"), 1000, Duration::ZERO);
    let paced = SlowReader::start(&d.path("paced"), 4096, Duration::from_micros(200));
    let lagging = SlowReader::start(&d.path("lagging"), 16384, Duration::from_millis(1));
    let fast = Cat::on(&d, "fast", "r");
    d.attach("alerts", &[&tiny, &paced, &lagging, &fast]);

    let want = stream_of((0..N).map(varied_line));
    let data = want.clone();
    let mut f = d.open_writer("alerts");
    let writer = thread::spawn(move || write_chunked(&mut f, &data, CHUNK));
    join_within(writer, Duration::from_secs(60), "writer into a block input");

    let timeout = Duration::from_secs(60);
    for (name, r) in [("tiny", &tiny), ("paced", &paced), ("lagging", &lagging)] {
        wait_stream(name, || r.len(), || r.bytes(), &want, timeout);
    }
    wait_stream("fast", || fast.len(), || fast.bytes(), &want, timeout);
    let raw = d.log_path("raw.log");
    wait_stream(
        "sink raw",
        || file_len(&raw),
        || fs::read(&raw).unwrap_or_default(),
        &want,
        timeout,
    );

    let c = d.counters();
    for name in ["tiny", "paced", "lagging", "fast"] {
        assert_eq!(
            c.subscriber(name, "dropped"),
            0,
            "block subscriber {name} dropped lines:\n{c}"
        );
    }
    assert_eq!(
        c.sink("raw", "dropped"),
        0,
        "block sink dropped lines:\n{c}"
    );
}

// ---------------------------------------------------------------------------
// 2. Drop policies drop whole lines, and the counters account for each.

/// A subscriber with `when_full = policy` and a 4 KiB queue, whose reader
/// stalls and catches up in turns while a writer floods its input.
fn drop_policy_keeps_whole_known_lines_and_counts_every_line(policy: &str) {
    const N: usize = 100_000;
    let d = Daemon::start(&format!(
        r#"
[inputs.alerts]

[subscribers.tail]
from = ["alerts"]
when_full = "{policy}"
buffer_bytes = 4096
"#
    ));
    let r = SlowReader::start(&d.path("tail"), 1000, Duration::ZERO);
    d.attach("alerts", &[&r]);
    r.pause();

    let mut f = d.open_writer("alerts");
    let writer = thread::spawn(move || {
        let data = stream_of((0..N).map(|i| numbered_line(i, 300)));
        write_chunked(&mut f, &data, CHUNK);
    });
    // Pacing the reader, not synchronisation: stall and resume in turns
    // until the writer is done (a drop policy never holds it back).
    let deadline = Instant::now() + TIMEOUT;
    let mut paused = true;
    while !writer.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(15));
        if paused {
            r.resume();
        } else {
            r.pause();
        }
        paused = !paused;
    }
    join_within(writer, TIMEOUT, "writer into a drop-policy input");
    r.resume();
    d.wait_counters("every written line was read", |c| {
        c.input("alerts", "lines_in") >= N as u64
    });
    flush_with_markers(&d, "alerts", &r);

    let what = format!("{policy} subscriber");
    let received = r.bytes();
    let mut seqs: Vec<usize> = Vec::new();
    for (k, line) in data_lines(&received).iter().enumerate() {
        if line.starts_with(b"end-") {
            continue;
        }
        let n = known_number(line, 300).unwrap_or_else(|e| panic!("{what}, data line {k}: {e}"));
        if let Some(&prev) = seqs.last() {
            assert!(n > prev, "{what}: line {n} came after line {prev}");
        }
        seqs.push(n);
    }
    assert_eq!(
        seqs.first(),
        Some(&0),
        "{what}: line 0 went into an empty pipe and cannot have been dropped"
    );
    if policy == "drop-oldest" {
        assert_eq!(
            seqs.last(),
            Some(&(N - 1)),
            "{what}: drop-oldest keeps the newest line"
        );
    }
    assert!(
        seqs.len() < N,
        "{what}: expected a stalling reader behind a 4 KiB queue to lose lines, got all {N}"
    );

    let c = d.counters();
    let lines_in = c.input("alerts", "lines_in");
    let (out, dropped, discarded, filtered) = (
        c.subscriber("tail", "lines_out"),
        c.subscriber("tail", "dropped"),
        c.subscriber("tail", "discarded"),
        c.subscriber("tail", "filtered"),
    );
    assert!(
        dropped > 0,
        "{what}: dropped=0 although lines were lost:\n{c}"
    );
    assert_eq!(
        out,
        split_lines(&received).len() as u64,
        "{what}: lines_out should be the lines its reader got (probes and markers included):\n{c}"
    );
    assert_eq!(
        out + dropped + discarded + filtered,
        lines_in,
        "{what}: lines_out + dropped + discarded + filtered should be input lines_in:\n{c}"
    );
}

#[test]
fn drop_oldest_subscriber_with_stalling_reader_gets_only_whole_known_lines() {
    drop_policy_keeps_whole_known_lines_and_counts_every_line("drop-oldest");
}

#[test]
fn drop_newest_subscriber_with_stalling_reader_gets_only_whole_known_lines() {
    drop_policy_keeps_whole_known_lines_and_counts_every_line("drop-newest");
}

// ---------------------------------------------------------------------------
// 3. A reader attaching mid-stream starts at a line boundary.

#[test]
fn reader_attaching_mid_stream_never_sees_a_partial_first_line() {
    const LONG: usize = 3000;
    const CYCLES: usize = 50;
    let d = Daemon::start(ONE_TAIL);
    let stop = Arc::new(AtomicBool::new(false));
    let mut f = d.open_writer("alerts");
    let writing = stop.clone();
    let writer = thread::spawn(move || {
        let (mut pending, mut i) = (Vec::new(), 0);
        while !writing.load(Ordering::SeqCst) {
            while pending.len() < CHUNK {
                pending.extend_from_slice(&numbered_line(i, LONG));
                pending.push(b'\n');
                i += 1;
            }
            if f.write_all(&pending[..CHUNK]).is_err() {
                // The daemon is gone; the test fails on its own account.
                break;
            }
            pending.drain(..CHUNK);
            // Pacing the writer, so the stream never ends while readers come.
            thread::sleep(Duration::from_micros(200));
        }
    });

    let mut last_seen: Option<usize> = None;
    for cycle in 0..CYCLES {
        // Read a different amount each time, in reads of a different size,
        // so the reader leaves at a different place in a line.
        let want = 2_000 + cycle * 1_237 % 30_000;
        let read_size = 1 + cycle * 613 % 8_192;
        let path = d.path("tail");
        let reader = thread::spawn(move || {
            let mut f = File::open(&path).expect("opening the subscriber");
            let (mut got, mut buf) = (Vec::new(), vec![0u8; read_size]);
            while got.len() < want || count_newlines(&got) < 2 {
                match f.read(&mut buf).expect("reading the subscriber") {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        });
        let got = join_within(reader, TIMEOUT, &format!("reader {cycle}"));
        let lines = split_lines(&got);
        // The last piece may be a line the reader left in the middle of.
        let whole = &lines[..count_newlines(&got)];
        assert!(
            !whole.is_empty(),
            "reader {cycle}: no whole line in {}",
            show(&got)
        );
        let mut prev = last_seen;
        for (k, line) in whole.iter().enumerate() {
            let n = known_number(line, LONG)
                .unwrap_or_else(|e| panic!("reader {cycle}, line {k} of what it read: {e}"));
            assert!(
                prev.is_none_or(|p| n > p),
                "reader {cycle}, line {k}: line {n} after line {prev:?} (a line from before \
                 it attached, or out of order)"
            );
            prev = Some(n);
        }
        last_seen = prev;
        // The next reader must meet a fresh pipe. One that opens the FIFO
        // before the daemon has seen this one go shares the old pipe and
        // reads what this one left in it, from the middle of a line; the
        // daemon cannot tell (to it the reader never changed), so that race
        // is a limit of FIFOs, not of the path under test.
        d.wait_counters("subscriber tail detached after its reader left", |c| {
            !c.attached("tail")
        });
    }
    stop.store(true, Ordering::SeqCst);
    join_within(writer, TIMEOUT, "streaming writer");
    d.assert_running("after attach/detach cycles mid-stream");
}

/// A daemon with one subscriber `tail` of input `alerts`, a reader tagged
/// `tag` attached to it, and a writer that has written the first half of a
/// line (`half-`), which the daemon has read.
fn half_line_written(tag: &str) -> (Daemon, Cat, std::fs::File) {
    let d = Daemon::start(ONE_TAIL);
    let r = Cat::on(&d, "tail", tag);
    d.attach("alerts", &[&r]);
    let bytes0 = d.counters().input("alerts", "bytes_in");
    let mut w = d.open_writer("alerts");
    w.write_all(b"half-").expect("writing the first half");
    wait_bytes_in(&d, "alerts", bytes0 + 5);
    (d, r, w)
}

#[test]
fn reader_arriving_while_a_line_is_half_read_gets_that_line_whole() {
    // A reader is attached while the first half of a line comes, and leaves.
    let (d, old, mut w) = half_line_written("old");
    drop(old);
    d.wait_counters(
        "subscriber tail detached after its reader was killed",
        |c| !c.attached("tail"),
    );

    let new = Cat::on(&d, "tail", "new");
    if !new.wait_open_or_waiting(&d.path("tail")) {
        eprintln!(
            "skipping reader_arriving_while_a_line_is_half_read_gets_that_line_whole: \
             cannot see cat blocked in open() through /proc/PID/wchan"
        );
        return;
    }
    w.write_all(b"line\nnext\n")
        .expect("writing the second half");
    drop(w);
    // SPEC §4: a reader waiting in open() gets the next line routed, whole.
    wait_stream(
        "reader that came while a line was half read",
        || new.len(),
        || new.bytes(),
        b"half-line\nnext\n",
        TIMEOUT,
    );
}

// ---------------------------------------------------------------------------
// 4. `max_line_bytes` applies to verbatim subscribers.

#[test]
fn overlong_lines_are_cut_to_max_line_bytes_for_a_verbatim_subscriber() {
    const MAX: usize = 100;
    let d = Daemon::start(&format!(
        "max_line_bytes = {MAX}\n\n[inputs.alerts]\n\n[subscribers.tail]\nfrom = [\"alerts\"]\n"
    ));
    let r = Cat::on(&d, "tail", "r");
    d.attach("alerts", &[&r]);
    let base = d.counters();
    let (bytes0, lines0, truncated0) = (
        base.input("alerts", "bytes_in"),
        base.input("alerts", "lines_in"),
        base.input("alerts", "truncated"),
    );

    let lens = [50, 100, 101, 5_000, 200_000, 99, 4_096, 65_537];
    let mut w = d.open_writer("alerts");
    let (mut written, mut lines, mut cut) = (0u64, 0u64, 0u64);
    let mut want = Vec::new();
    for mode in ["whole", "chunked", "small", "paired", "split"] {
        let mut batch = Vec::new();
        for (k, &len) in lens.iter().enumerate() {
            batch.push(format!("{mode}-short-{k}").into_bytes());
            let mut long = format!("{mode}-{len}:").into_bytes();
            long.resize(len, filler(k));
            batch.push(long);
        }
        for line in &batch {
            want.extend_from_slice(&line[..line.len().min(MAX)]);
            want.push(b'\n');
            lines += 1;
            cut += u64::from(line.len() > MAX);
        }
        let data = stream_of(batch);
        match mode {
            "whole" => w.write_all(&data).expect("writing"),
            "chunked" => write_chunked(&mut w, &data, CHUNK),
            "small" => write_chunked(&mut w, &data, 61),
            "paired" => {
                // Each long line in a read of its own (with the short line
                // before it), so no other long line decides how it is framed.
                let mut done = written;
                for pair in data
                    .split_inclusive(|&b| b == b'\n')
                    .collect::<Vec<_>>()
                    .chunks(2)
                {
                    let pair = pair.concat();
                    w.write_all(&pair).expect("writing");
                    done += pair.len() as u64;
                    wait_bytes_in(&d, "alerts", bytes0 + done);
                }
            }
            "split" => {
                // Each line reaches the daemon in reads that end just
                // before, at and just after the limit.
                let mut done = written;
                for line in data.split_inclusive(|&b| b == b'\n') {
                    let mut at = 0;
                    for end in [MAX - 1, MAX, MAX + 1, line.len()] {
                        let end = end.min(line.len());
                        if end > at {
                            w.write_all(&line[at..end]).expect("writing");
                            wait_bytes_in(&d, "alerts", bytes0 + done + end as u64);
                            at = end;
                        }
                    }
                    done += line.len() as u64;
                }
            }
            other => unreachable!("no write mode {other}"),
        }
        written += data.len() as u64;
    }
    drop(w);

    wait_stream(
        "verbatim subscriber with max_line_bytes = 100",
        || r.len(),
        || r.bytes(),
        &want,
        TIMEOUT,
    );
    let c = d.wait_counters("every line was read", |c| {
        c.input("alerts", "lines_in") >= lines0 + lines
    });
    assert_eq!(
        (
            c.input("alerts", "lines_in") - lines0,
            c.input("alerts", "truncated") - truncated0
        ),
        (lines, cut),
        "input alerts: expected {lines} lines in, {cut} of them truncated:\n{c}"
    );
}

// ---------------------------------------------------------------------------
// 5. An unterminated tail is one line when its writer closes.

#[test]
fn unterminated_tail_written_in_pieces_is_one_line_when_the_writer_closes() {
    let d = Daemon::start(ONE_TAIL);
    let r = Cat::on(&d, "tail", "r");
    d.attach("alerts", &[&r]);

    sh(&format!(
        "printf 'no newline' > {}",
        quote(&d.path("alerts"))
    ));
    // A new writer must not come before the daemon read the last one's end
    // (docs/semantics.md: its tail would join the new writer's first line).
    r.wait_data_lines(1);

    let mut bytes_in = d.counters().input("alerts", "bytes_in");
    let mut w = d.open_writer("alerts");
    for piece in [&b"abc"[..], b"def"] {
        w.write_all(piece).expect("writing");
        bytes_in += piece.len() as u64;
        wait_bytes_in(&d, "alerts", bytes_in);
    }
    drop(w);
    r.wait_data_lines(2);

    let mut w = d.open_writer("alerts");
    for piece in [&b"first\nsec"[..], b"o", b"nd"] {
        w.write_all(piece).expect("writing");
        bytes_in += piece.len() as u64;
        wait_bytes_in(&d, "alerts", bytes_in);
    }
    drop(w);
    r.wait_data_lines(4);
    d.write("alerts", b"next\n");

    let want = b"no newline\nabcdef\nfirst\nsecond\nnext\n";
    wait_stream("subscriber tail", || r.len(), || r.bytes(), want, TIMEOUT);
}

// ---------------------------------------------------------------------------
// 6. Verbatim and other outputs side by side on one input.

#[test]
fn mixed_outputs_on_one_input_each_get_exactly_their_lines() {
    const N: usize = 100_000;
    const M: usize = 20_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]
[inputs.other]

[subscribers.verbatim]
from = ["alerts"]
when_full = "block"

[subscribers.tagged]
from = ["alerts"]
format = "{input}: {line}"
when_full = "block"

[subscribers.errors]
from = ["alerts"]
match = "ERROR"
when_full = "block"

[subscribers.both]
from = ["alerts", "other"]
when_full = "block"

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
when_full = "block"
"#,
    );
    let verbatim = Cat::on(&d, "verbatim", "r");
    let tagged = Cat::on(&d, "tagged", "r");
    let errors = Cat::on(&d, "errors", "r");
    let both = Cat::on(&d, "both", "r");
    attach_with_error_probes(&d, "alerts", &[&verbatim, &tagged, &errors, &both]);

    let alerts: Vec<Vec<u8>> = (0..N).map(|i| numbered_line(i, 300)).collect();
    let other: Vec<Vec<u8>> = (0..M)
        .map(|i| [&b"o"[..], &numbered_line(i, 300)].concat())
        .collect();
    let writers = [
        ("alerts", stream_of(alerts.clone()), CHUNK),
        ("other", stream_of(other.clone()), 997),
    ]
    .map(|(input, data, chunk)| {
        let mut f = d.open_writer(input);
        thread::spawn(move || write_chunked(&mut f, &data, chunk))
    });
    for w in writers {
        join_within(w, Duration::from_secs(60), "writers into block inputs");
    }

    let timeout = Duration::from_secs(30);
    let want = stream_of(alerts.clone());
    wait_stream(
        "verbatim",
        || verbatim.len(),
        || verbatim.bytes(),
        &want,
        timeout,
    );
    let raw = d.log_path("raw.log");
    wait_stream(
        "sink raw",
        || file_len(&raw),
        || fs::read(&raw).unwrap_or_default(),
        &want,
        timeout,
    );
    let want = stream_of(alerts.iter().map(|l| [&b"alerts: "[..], l].concat()));
    wait_stream("tagged", || tagged.len(), || tagged.bytes(), &want, timeout);
    let want = stream_of(
        alerts
            .iter()
            .filter(|l| util::contains(l, b"ERROR"))
            .cloned(),
    );
    wait_stream("errors", || errors.len(), || errors.bytes(), &want, timeout);

    // Two inputs interleave as they were read: each in its own order.
    let (want_alerts, want_other) = (stream_of(alerts), stream_of(other));
    wait_complete(
        "both (alerts and other)",
        timeout,
        || both.len() >= (want_alerts.len() + want_other.len()) as u64,
        || {
            let received = both.bytes();
            let lines =
                data_lines(&received[..memchr::memrchr(b'\n', &received).map_or(0, |i| i + 1)]);
            let (from_other, from_alerts): (Vec<_>, Vec<_>) =
                lines.into_iter().partition(|l| l.first() == Some(&b'o'));
            let a = stream_progress(&stream_of(from_alerts), &want_alerts)
                .map_err(|e| format!("lines from alerts: {e}"))?;
            let o = stream_progress(&stream_of(from_other), &want_other)
                .map_err(|e| format!("lines from other: {e}"))?;
            Ok(match (a, o) {
                (None, None) => None,
                (a, o) => Some(format!("alerts: {a:?}, other: {o:?}")),
            })
        },
    );
}

// ---------------------------------------------------------------------------
// 7. A half line on a FIFO replaced behind the daemon's back.

#[test]
fn half_line_on_a_fifo_replaced_behind_the_daemon_is_completed_not_merged() {
    const M: usize = 2_000;
    let (d, r, mut old) = half_line_written("r");

    let path = d.path("alerts");
    fs::remove_file(&path).expect("removing the input FIFO");
    rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o620)).expect("mkfifo");
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    assert!(
        d.stderr().contains("recreated input alerts"),
        "expected the reload to recreate the replaced input:\n{}",
        d.stderr()
    );

    let new_lines: Vec<Vec<u8>> = (0..M).map(|i| numbered_line(i, 300)).collect();
    let data = stream_of(new_lines.clone());
    let mut new = d.open_writer("alerts");
    let writer = thread::spawn(move || write_chunked(&mut new, &data, 997));
    // Pacing, not synchronisation: give the new FIFO's lines a moment to
    // come while the old pipe still holds half a line. A daemon may hold
    // them back until that line ends, so this waits for nothing.
    let until = Instant::now() + Duration::from_millis(300);
    while !writer.is_finished() && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    old.write_all(b"line\n").expect("writing the second half");
    drop(old);
    join_within(writer, TIMEOUT, "writer into the new FIFO");

    let lines = eventually_lines(&r, M + 1);
    let mut seqs = Vec::new();
    let mut halves = 0;
    for (k, line) in lines.iter().enumerate() {
        if line == b"half-line" {
            halves += 1;
            continue;
        }
        let n = known_number(line, 300)
            .unwrap_or_else(|e| panic!("data line {k} of the subscriber: {e}"));
        seqs.push(n);
    }
    assert_eq!(
        halves, 1,
        "expected `half-line` exactly once as a whole line"
    );
    assert_eq!(
        seqs,
        (0..M).collect::<Vec<_>>(),
        "the new FIFO's lines, whole and in order"
    );
}

/// Waits until `r` has received `n` whole data lines (and no part of a
/// next one) and returns them, failing if more came.
fn eventually_lines(r: &Cat, n: usize) -> Vec<Vec<u8>> {
    let lines = util::eventually(TIMEOUT, || {
        let received = r.bytes();
        let lines = data_lines(&received);
        match lines.len() >= n && received.ends_with(b"\n") {
            true => Ok(lines),
            false => Err(format!(
                "expected {n} whole data lines, got {}; last: {}",
                lines.len(),
                lines.last().map_or_else(String::new, |l| show(l))
            )),
        }
    });
    assert_eq!(
        lines.len(),
        n,
        "expected exactly {n} data lines, got {}",
        lines.len()
    );
    lines
}

/// SPEC §4 and §5: a reload that takes a `{line}` subscriber off the
/// zero-copy path (its `from` gains a second input, then loses it again, 20
/// times) while a writer streams long lines in pieces. The subscriber may
/// hold the start of a line at that moment; the rest must follow from the
/// copy path: its reader gets every line whole, in order, once.
#[test]
fn reloads_taking_a_subscriber_off_the_zero_copy_path_mid_line_tear_nothing() {
    let (_d, r, n) = reload_routes_while_streaming(false);
    let want = stream_of((0..n).map(|i| numbered_line(i, RELOAD_LONG)));
    wait_stream(
        "the subscriber whose route the reloads changed",
        || r.len(),
        || r.bytes(),
        &want,
        Duration::from_secs(30),
    );
}

/// The same reloads with a second writer on `b`, whose lines reach the
/// subscriber while `from` names it: they may wait behind a line the
/// subscriber owes the rest of, but never cut into it.
#[test]
fn lines_of_another_input_wait_for_an_owed_line_and_never_cut_into_it() {
    let (_d, r, n) = reload_routes_while_streaming(true);
    let lines = eventually_lines_of_a(&r, n);
    let (mut next_a, mut last_b) = (0, None::<usize>);
    for line in &lines {
        if let Some(b) = line.strip_prefix(b"b:") {
            let b: usize = std::str::from_utf8(b).unwrap().parse().unwrap();
            assert!(last_b.is_none_or(|l| b > l), "b's lines out of order");
            last_b = Some(b);
            continue;
        }
        let got = known_number(line, RELOAD_LONG).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, next_a, "a's lines in order, each once");
        next_a += 1;
    }
    assert_eq!(next_a, n, "every line of a");
    assert!(last_b.is_some(), "some lines of b came while from named it");
}

/// Long lines of the numbered workload in [`reload_routes_while_streaming`].
const RELOAD_LONG: usize = 3000;

/// Inputs `a` and `b` and a `block` `{line}` subscriber `sa` of `a`, read by
/// `r`; a writer streams numbered lines into `a` (and, `with_b`, another
/// writes `b:N` lines into `b`) while 20 reloads add `b` to `sa`'s `from`
/// and take it away again. Returns the daemon, the reader, and how many
/// lines were written into `a`.
fn reload_routes_while_streaming(with_b: bool) -> (Daemon, Cat, usize) {
    let config = |both: bool| {
        let from = if both { r#""a", "b""# } else { r#""a""# };
        format!(
            "[inputs.a]\n[inputs.b]\n[subscribers.sa]\nfrom = [{from}]\nwhen_full = \"block\"\n"
        )
    };
    let mut d = Daemon::start(&config(false));
    let r = Cat::on(&d, "sa", "r");
    d.attach("a", &[&r]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut wa = d.open_writer("a");
    let writer_a = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Bursts large enough that the daemon's reads come back
                // full: the zero-copy path is taken, and tees end mid-line.
                let data = stream_of((i..i + 300).map(|n| numbered_line(n, RELOAD_LONG)));
                write_chunked(&mut wa, &data, CHUNK);
                i += 300;
                thread::sleep(Duration::from_millis(1));
            }
            i
        })
    };
    let writer_b = with_b.then(|| {
        let stop = stop.clone();
        let mut wb = d.open_writer("b");
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                wb.write_all(format!("b:{i}\n").as_bytes()).unwrap();
                i += 1;
                thread::sleep(Duration::from_millis(1));
            }
        })
    });
    for k in 0..20 {
        thread::sleep(Duration::from_millis(100));
        d.rewrite_config(&config(k % 2 == 0));
        d.signal(Signal::HUP);
        d.wait_notify_n("READY=1", k + 2, TIMEOUT);
    }
    stop.store(true, Ordering::Relaxed);
    let n = join_within(writer_a, TIMEOUT, "writer a");
    if let Some(writer_b) = writer_b {
        join_within(writer_b, TIMEOUT, "writer b");
    }
    (d, r, n)
}

/// The data lines `r` received, once `n` lines not of `b` are among them
/// (or after 30 s).
fn eventually_lines_of_a(r: &Cat, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<Vec<u8>> = split_lines(after_probes(&r.bytes()));
        let of_a = lines.iter().filter(|l| !l.starts_with(b"b:")).count();
        if of_a >= n || Instant::now() >= deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
