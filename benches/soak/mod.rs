//! The chaos soak: the real `fifo-broker` binary under a long mixed run in
//! which the books must always balance. Shared by `benches/soak.rs`
//! (`cargo bench --bench soak -- --seconds N`, default 600 s) and one 60 s
//! test at the end of `tests/broker.rs`.
//!
//! What runs: 8 writers (6 with an input each, whose lines are 1 B–8 KiB,
//! sometimes ending a session with an unterminated line, and who every
//! 0.1–2 s write a burst of 16–256 KiB of lines in one `write()` or back to
//! back, so the daemon falls behind, reads large chunks and takes its
//! zero-copy path; 2 sharing an input with lines of at most `PIPE_BUF`, which
//! must never tear), a ninth writer on an input that reloads add and remove,
//! 10 subscribers over every `when_full` policy read by `cat` processes that
//! are stopped, continued, killed and restarted at random (the "stable" ones
//! are only stopped and continued), 4 of them mirrors (one input each, as it
//! is: fed by `tee(2)` while a writer streams), one of which reloads take off
//! the zero-copy path and back now and then (by a format or a filter), a
//! block sink rotated logrotate-style (rename + SIGHUP), a reload every 2 s
//! (one in four invalid, some adding and removing an input and a
//! subscriber), SIGUSR1 now and then, and, when running as root, a
//! drop-newest sink on a 4 MiB tmpfs that a ballast file fills and frees.
//! Two network forwards, both `block` with a 256 KiB queue, each when its
//! server is installed (else a note; a failure under `CI=true`): `js`, a
//! NATS JetStream forward of `w4` and `shared` (subject `soak.{input}`,
//! stream `SOAK`, `window = 16`) to a `nats-server -js` on a free loopback
//! port, killed (SIGKILL) every 5–15 s and restarted on the same port and
//! store after up to 2 s; `syslog`, a `syslog+tcp` forward of `w3` and `w5`
//! to an `rsyslogd` writing to a file, killed every 5–25 s and restarted
//! likewise (the first kill of each 2–5 s in, down 2 s, in the warm-up).
//! The servers are those of the forward tests (`tests/util/servers.rs`).
//!
//! What is checked (every failure is collected, none stops the run): no
//! output ever gets a torn or unknown line; per writer, lines arrive in
//! order and at most once; the block subscribers and the block sink get
//! every line exactly once; per output, the daemon's final counters balance
//! (lines routed = out + dropped + discarded + filtered), and a stable
//! reader counted exactly `lines_out`; each input's `lines_in` is what its
//! writers wrote; fd count and RSS after warm-up stay within 10 % of the
//! warm-up's peak; the daemon uses no CPU once the load stops, exits 0 on
//! SIGTERM, and never panics. The one line allowed to be cut: a reload that
//! takes `mir-flip` off the zero-copy path while it has the start of a line
//! makes it owe the rest, and only if waiting for it fills a `block` queue
//! is that line ended there with `\n` (docs/semantics.md); such a cut must
//! be the start of a written line, the whole line must follow, and there
//! are no more cuts than such reloads.
//!
//! The forwards, from what their servers stored (docs/forwarding.md, "What
//! `block` guarantees"): the stream holds every line written to `w4` and
//! `shared` exactly once (records and short lines), on its input's subject,
//! in per-writer order, none torn, each with its own `Nats-Msg-Id`, and
//! `acked` = `lines_out` = the stream's count. rsyslog's file holds RFC 5424
//! messages whose APP-NAME is the line's input and whose MSG is a whole
//! written line, in per-writer order, none twice (a message cut by a failed
//! connection is sent again whole, and rsyslog drops the cut frame); lines
//! the kernel or rsyslogd held when it was killed may be missing: their
//! count is a note. A line rsyslogd itself left half written in its file
//! when killed is cut off before it restarts (counted; not the daemon's).
//! Both forwards' books balance with `dropped = discarded = 0`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

// The throwaway nats-server and rsyslogd of the forward tests; they need
// `eventually` and `TIMEOUT` from here, their parent module. tests/broker.rs
// has them as `util::servers` too: the soak stays whole for its bench.
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/util/servers.rs"]
mod servers;

use servers::{find_binary, NatsServer, Rsyslog};

/// Writers with an input each (lines up to 8 KiB, unterminated tails).
const OWN_WRITERS: usize = 6;
/// Writers sharing the input `shared` (lines up to `PIPE_BUF`).
const SHARED_WRITERS: usize = 2;
/// The writer of the input `x0`, which reloads add and remove.
const EXTRA_WRITER: usize = OWN_WRITERS + SHARED_WRITERS;
/// All writers.
const WRITERS: usize = EXTRA_WRITER + 1;
/// Longest line (without its newline) on an input of its own.
const MAX_LINE: usize = 8192;
/// Longest line on the shared input: with its newline, `PIPE_BUF`.
const MAX_SHARED_LINE: usize = 4095;
/// Lines shorter than this carry no header: `TINY` letters, one per writer.
const TINY: usize = 24;
/// The tmpfs for the small sink.
const TMPFS_BYTES: usize = 4 << 20;
/// A burst (lines written at once, so that the daemon falls behind) is
/// this many bytes at least, and at most `BURST_MAX`.
const BURST_MIN: u64 = 16 << 10;
const BURST_MAX: u64 = 256 << 10;
/// The writer of `mir-flip`'s input.
const FLIP_WRITER: usize = 2;
/// The inputs the NATS forward `js` reads (subject `soak.{input}`, stream
/// `SOAK`), and those the syslog forward `syslog` reads.
const NATS_FROM: &str = r#"["w4", "shared"]"#;
const SYSLOG_FROM: &str = r#"["w3", "w5"]"#;
const NATS_STREAM: &str = "SOAK";
/// Both forwards' `buffer_bytes`: small, so that a server that is down
/// soon holds back the inputs (`block`).
const FORWARD_BUFFER: usize = 256 << 10;
/// Deadline of a server helper's waits (a server starting, a port closing,
/// a reply).
const TIMEOUT: Duration = Duration::from_secs(10);

/// How the soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon binary.
    pub bin: PathBuf,
    /// How long the load runs.
    pub duration: Duration,
    /// Lines per second per writer (on average).
    pub rate: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Print progress every few seconds.
    pub verbose: bool,
}

/// What a soak found.
#[derive(Debug, Default)]
pub struct Report {
    /// Every broken invariant, in words.
    pub failures: Vec<String>,
    /// Things worth knowing that are not failures (skipped parts).
    pub notes: Vec<String>,
    /// The summary table.
    pub table: String,
}

// ---------------------------------------------------------------------------
// Small tools.

/// xorshift64*: a seeded generator, enough for choosing chaos.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }

    /// A line length from 1 to `max`, log-uniform (mostly short lines,
    /// some long ones).
    fn line_len(&mut self, max: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((max as f64).powf(u) as usize).clamp(1, max)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

fn signal(pid: u32, sig: Signal) -> bool {
    match Pid::from_raw(pid as i32) {
        Some(pid) => rustix::process::kill_process(pid, sig).is_ok(),
        None => false,
    }
}

/// Polls `probe` until it returns `Ok`, or panics after `timeout` with the
/// last `Err` (what the server helpers wait with).
fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => panic!("timed out after {timeout:?}: {why}"),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Sleeps until `deadline` or until `stop` is set, whichever is first.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// `VmRSS` in KiB and the number of open fds of `pid`.
fn rss_and_fds(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after ')'.
    field(11) + field(12)
}

// ---------------------------------------------------------------------------
// Lines.

/// The input each writer writes to.
fn input_of(w: usize) -> &'static str {
    const NAMES: [&str; WRITERS] = ["w0", "w1", "w2", "w3", "w4", "w5", "shared", "shared", "x0"];
    NAMES[w]
}

/// Line `seq` of writer `w`, `len` bytes without its newline: a header
/// `W.SEQ.LEN.K` (K is `T` for a line written unterminated, else `L`) and
/// a payload that depends on both, or, below `TINY` bytes, the writer's
/// letter repeated.
fn make_line(w: usize, seq: u64, len: usize, tail: bool, out: &mut Vec<u8>) {
    out.clear();
    if len < TINY && !tail {
        out.resize(len, b'a' + w as u8);
        return;
    }
    let kind = if tail { 'T' } else { 'L' };
    let _ = write!(out, "{w}.{seq}.{len}.{kind}");
    let mut i = out.len() as u64 + seq;
    while out.len() < len {
        out.push(b'A' + (i % 26) as u8);
        i += 1;
    }
}

/// What one line turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Line `seq` of writer `w`.
    Record { w: usize, seq: u64 },
    /// A header-less short line of writer `w`.
    Tiny { w: usize },
}

/// Recognises a line (without its newline) as one that was written, whole.
fn parse_line(line: &[u8]) -> Option<Parsed> {
    if line.is_empty() {
        return None;
    }
    if line.len() < TINY && line[0].is_ascii_lowercase() && line.iter().all(|&b| b == line[0]) {
        let w = usize::from(line[0] - b'a');
        return (w < WRITERS).then_some(Parsed::Tiny { w });
    }
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.splitn(4, '.');
    let w: usize = parts.next()?.parse().ok()?;
    let seq: u64 = parts.next()?.parse().ok()?;
    let len: usize = parts.next()?.parse().ok()?;
    let kind = parts.next()?.as_bytes().first()?;
    if w >= WRITERS || len != line.len() {
        return None;
    }
    let mut want = Vec::with_capacity(len);
    make_line(w, seq, len, *kind == b'T', &mut want);
    (want == line).then_some(Parsed::Record { w, seq })
}

// ---------------------------------------------------------------------------
// Checking what an output received.

/// What one output got, line by line.
#[derive(Debug, Default)]
struct Seen {
    /// Lines counted.
    lines: u64,
    /// Records per writer, in arrival order checked as they come.
    last_seq: [Option<u64>; WRITERS],
    /// Records per writer.
    records: [u64; WRITERS],
    /// Header-less short lines per writer.
    tiny: [u64; WRITERS],
    /// Broken invariants (the first few are kept in full).
    problems: Vec<String>,
    /// How many problems there were.
    problem_count: u64,
    /// Lines that a new reader found half-read in the pipe by the one
    /// killed before it (allowed only as a reader's first line).
    inherited_fragments: u64,
    /// Sink files that end with a line cut on a full disk (the daemon
    /// counts that line as dropped); for `mir-flip`, lines a reload cut.
    cut: u64,
    /// `mir-flip`: the start of the line a reload cut, whose whole must
    /// come next.
    resend: Option<Vec<u8>>,
}

impl Seen {
    fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < 5 {
            self.problems.push(what);
        }
    }

    /// Checks one line; `first` if it is the first a new reader got.
    fn line(&mut self, line: &[u8], first: bool) {
        self.lines += 1;
        match parse_line(line) {
            Some(Parsed::Record { w, seq }) => {
                if let Some(last) = self.last_seq[w] {
                    if seq <= last {
                        self.problem(format!("writer {w}: line {seq} after line {last}"));
                    }
                }
                self.last_seq[w] = Some(seq);
                self.records[w] += 1;
            }
            Some(Parsed::Tiny { w }) => self.tiny[w] += 1,
            None if first => self.inherited_fragments += 1,
            None => {
                self.problem(format!(
                    "torn or unknown line of {} bytes: {:?}",
                    line.len(),
                    shown(line)
                ));
            }
        }
    }

    /// Checks one line of `mir-flip`, when `allowed` reloads so far took it
    /// off the zero-copy path. Such a reload ends the line whose start the
    /// reader has with `\n` there; the daemon then sends the whole line and
    /// counts it once. So a cut must be the start of a line and come with
    /// its whole right after. (A cut that happens to be a whole short line,
    /// or a whole record without its `\n`, parses as a line: the first the
    /// books find, the second is the record once more, right after.)
    fn flip_line(&mut self, line: &[u8], allowed: u64) {
        if let Some(start) = self.resend.take() {
            if line.len() <= start.len() || !line.starts_with(&start) {
                self.problem(format!(
                    "cut line {:?} followed by {:?}, not by its whole",
                    shown(&start),
                    shown(line)
                ));
            }
        }
        let parsed = parse_line(line);
        let cut = match parsed {
            None => is_line_start(line),
            Some(Parsed::Record { w, seq }) => self.last_seq[w] == Some(seq),
            Some(Parsed::Tiny { .. }) => false,
        };
        if cut && self.cut < allowed {
            self.lines += 1;
            self.cut += 1;
            if parsed.is_none() {
                self.resend = Some(line.to_vec());
            }
            return;
        }
        self.line(line, false);
    }
}

/// The start of `line`, for a message.
fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

/// True if `line` is the start, not the whole, of a line a writer wrote
/// (with a header): what a mirror has of a line when a reload takes it off
/// the zero-copy path.
fn is_line_start(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let fields: Vec<&str> = text.splitn(4, '.').collect();
    if let [w, seq, len, rest] = fields[..] {
        if !rest.is_empty() {
            let (Ok(w), Ok(seq), Ok(len)) = (w.parse::<usize>(), seq.parse(), len.parse()) else {
                return false;
            };
            let tail = match rest.as_bytes()[0] {
                b'L' => false,
                b'T' => true,
                _ => return false,
            };
            if w >= WRITERS || line.len() >= len {
                return false;
            }
            let mut whole = Vec::with_capacity(len);
            make_line(w, seq, len, tail, &mut whole);
            return whole.starts_with(line);
        }
    }
    // Inside the header: digits and at most three dots.
    line.first().is_some_and(u8::is_ascii_digit)
        && line.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && line.iter().filter(|&&b| b == b'.').count() <= 3
}

/// One output in the final books.
struct Row {
    name: &'static str,
    policy: &'static str,
    from: &'static str,
    /// What was read from it.
    seen: Seen,
    /// How much of what it sent that reading can have seen.
    reading: Reading,
    /// `mir-flip`: reloads may cut a line (see [`Seen::flip_line`]).
    flips: bool,
}

/// How much of an output's lines were read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// All: a reader never killed, a sink file, the NATS stream.
    Whole,
    /// A reader killed and restarted: at most what was sent, each once.
    Churn,
    /// rsyslog's file, its server killed now and then: at most what was
    /// sent, each once; what is missing is the loss docs/forwarding.md
    /// allows (bytes the kernel had taken when a connection reset).
    Lossy,
}

// ---------------------------------------------------------------------------
// The daemon, its config, and the outputs.

/// One subscriber of the soak.
#[derive(Debug, Clone, Copy)]
struct SubSpec {
    name: &'static str,
    policy: &'static str,
    buffer: usize,
    from: &'static str,
    /// A `match` regex, if any.
    filter: Option<&'static str>,
    /// Readers are only stopped and continued, never killed.
    stable: bool,
    /// Reloads take it off the zero-copy path and back (see [`Variant`]).
    flips: bool,
}

const SUBS: [SubSpec; 10] = [
    SubSpec {
        name: "blk",
        policy: "block",
        buffer: 65536,
        from: r#"["w*", "shared", "x*"]"#,
        filter: None,
        stable: true,
        flips: false,
    },
    SubSpec {
        name: "new",
        policy: "drop-newest",
        buffer: 16384,
        from: r#"["w*", "shared"]"#,
        filter: None,
        stable: true,
        flips: false,
    },
    SubSpec {
        name: "old",
        policy: "drop-oldest",
        buffer: 16384,
        from: r#"["w*", "shared"]"#,
        filter: None,
        stable: true,
        flips: false,
    },
    SubSpec {
        name: "blk-churn",
        policy: "block",
        buffer: 32768,
        from: r#"["w0", "w1", "w2", "shared"]"#,
        filter: None,
        stable: false,
        flips: false,
    },
    SubSpec {
        name: "new-churn",
        policy: "drop-newest",
        buffer: 8192,
        from: r#"["w*", "shared"]"#,
        filter: None,
        stable: false,
        flips: false,
    },
    SubSpec {
        name: "old-churn",
        policy: "drop-oldest",
        buffer: 8192,
        from: r#"["w3", "w4", "w5", "shared"]"#,
        filter: Some(r"^[0-9]\.[0-9]*[02468]\."),
        stable: false,
        flips: false,
    },
    // Mirrors: one input each, taken as it is (the zero-copy path).
    SubSpec {
        name: "mir",
        policy: "block",
        buffer: 65536,
        from: r#"["w0"]"#,
        filter: None,
        stable: true,
        flips: false,
    },
    SubSpec {
        name: "mir-new",
        policy: "drop-newest",
        buffer: 8192,
        from: r#"["w3"]"#,
        filter: None,
        stable: true,
        flips: false,
    },
    SubSpec {
        name: "mir-churn",
        policy: "drop-oldest",
        buffer: 8192,
        from: r#"["w1"]"#,
        filter: None,
        stable: false,
        flips: false,
    },
    SubSpec {
        name: "mir-flip",
        policy: "block",
        buffer: 32768,
        from: r#"["w2"]"#,
        filter: None,
        stable: true,
        flips: true,
    },
];

/// The inputs an output named by `from` reads, as writer ids.
fn writers_of(from: &str) -> Vec<usize> {
    (0..WRITERS)
        .filter(|&w| {
            let input = input_of(w);
            from.contains(&format!("\"{input}\""))
                || (from.contains("\"w*\"") && input.starts_with('w'))
                || (from.contains("\"x*\"") && input.starts_with('x'))
        })
        .collect()
}

/// One config the reloads choose from.
#[derive(Debug, Clone, Copy, Default)]
struct Variant {
    extra_input: bool,
    extra_output: bool,
    bigger_new: bool,
    /// `mir-flip`: 0, a mirror; 1, `format = "{input} {line}"`; 2, a
    /// filter that excludes nothing. Either of the last two takes it off
    /// the zero-copy path and ends a line it has the start of.
    flip: u8,
    /// 0: valid; 1..=3: one kind of mistake each.
    invalid: u8,
}

struct Paths {
    root: PathBuf,
    dir: PathBuf,
    logs: PathBuf,
    config: PathBuf,
    notify: PathBuf,
    stderr: PathBuf,
    /// The tmpfs mount point, when there is one.
    small: Option<PathBuf>,
    /// The forwards' urls, when their servers run.
    nats_url: Option<String>,
    syslog_url: Option<String>,
}

fn config_text(p: &Paths, v: Variant) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "[broker]\ndir = \"{}\"\nlog_dir = \"{}\"\nmax_line_bytes = 16384\n",
        p.dir.display(),
        p.logs.display()
    );
    for w in (0..WRITERS).filter(|&w| w != EXTRA_WRITER || v.extra_input) {
        if w == OWN_WRITERS + 1 {
            continue; // the second writer of `shared`
        }
        let _ = writeln!(c, "[inputs.{}]\nmode = 0o600\n", input_of(w));
    }
    for s in SUBS {
        let buffer = if s.name == "new" && v.bigger_new {
            2 * s.buffer
        } else {
            s.buffer
        };
        let _ = writeln!(
            c,
            "[subscribers.\"{}\"]\nfrom = {}\nwhen_full = \"{}\"\nbuffer_bytes = {buffer}",
            s.name, s.from, s.policy
        );
        if let Some(re) = s.filter {
            let _ = writeln!(c, "match = '{re}'");
        }
        match v.flip {
            1 if s.flips => c.push_str("format = \"{input} {line}\"\n"),
            2 if s.flips => c.push_str("exclude = '^$'\n"),
            _ => {}
        }
        c.push('\n');
    }
    let _ = writeln!(
        c,
        "[sinks.log]\npath = \"soak.log\"\nfrom = [\"w*\", \"shared\", \"x*\"]\n\
         when_full = \"block\"\nmax_bytes = 0\nbuffer_bytes = 262144\n"
    );
    if let Some(small) = &p.small {
        let _ = writeln!(
            c,
            "[sinks.small]\npath = \"{}/small.log\"\nfrom = [\"w0\", \"w1\"]\nformat = \"{{line}}\"\n\
             when_full = \"drop-newest\"\nmax_bytes = 0\nbuffer_bytes = 65536\n",
            small.display()
        );
    }
    if let Some(url) = &p.nats_url {
        let _ = writeln!(
            c,
            "[forwards.js]\nurl = \"{url}\"\nsubject = \"soak.{{input}}\"\nfrom = {NATS_FROM}\n\
             when_full = \"block\"\nbuffer_bytes = {FORWARD_BUFFER}\n"
        );
    }
    if let Some(url) = &p.syslog_url {
        let _ = writeln!(
            c,
            "[forwards.syslog]\nurl = \"{url}\"\nfrom = {SYSLOG_FROM}\n\
             when_full = \"block\"\nbuffer_bytes = {FORWARD_BUFFER}\n"
        );
    }
    if v.extra_output {
        let _ = writeln!(c, "[subscribers.xs]\nfrom = [\"w0\", \"x*\"]\n");
    }
    match v.invalid {
        1 => c.push_str("[inputs.w0b]\nmode = 0o600\ncolour = \"blue\"\n"),
        2 => c.push_str("[subscribers.bad]\nfrom = [\"nonexistent\"]\n"),
        3 => c.push_str("[subscribers.bad]\nfrom = [\"w0\"]\nmatch = \"(unclosed\"\n"),
        _ => {}
    }
    c
}

/// Everything spawned, killed when dropped.
struct Procs {
    daemon: Option<Child>,
    readers: Vec<Arc<Mutex<Option<Child>>>>,
    tmpfs: Option<PathBuf>,
    _tmp: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for slot in &self.readers {
            if let Ok(mut slot) = slot.lock() {
                if let Some(mut child) = slot.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(mount) = &self.tmpfs {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

/// Final counters from the daemon's log: name → key → value.
type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// The last `counters:` line of each input and output in `log`.
fn parse_counters(log: &str) -> Counters {
    let mut all = Counters::new();
    for line in log.lines() {
        let Some(rest) = line.split_once("counters: ").map(|(_, r)| r) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(_kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let values = words
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        all.insert(name.to_string(), values);
    }
    all
}

/// State shared by the threads of one run.
struct Shared {
    stop: AtomicBool,
    stop_writers: AtomicBool,
    /// Lines each writer wrote (all complete).
    written: [AtomicU64; WRITERS],
    /// Records each writer wrote.
    records: [AtomicU64; WRITERS],
    /// Highest record seq of each writer the `blk` reader has seen + 1.
    blk_seen: [AtomicU64; WRITERS],
    /// `READY=1` notifications so far.
    readies: AtomicU64,
    /// Chaos done to readers.
    stops: AtomicU64,
    kills: AtomicU64,
    attaches: AtomicU64,
    /// Writers that waited too long for their unterminated line.
    tail_timeouts: AtomicU64,
    /// Each writer is in a burst.
    bursting: [AtomicBool; WRITERS],
    /// The controller asks `FLIP_WRITER` for a long burst (to reload in).
    long_burst: AtomicBool,
    /// Bursts written, and the lines in them.
    bursts: AtomicU64,
    burst_lines: AtomicU64,
    /// Reloads so far that took `mir-flip` off the zero-copy path (counted
    /// before the SIGHUP).
    flips_off: AtomicU64,
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// One writer: sessions of lines, each one `write()`; a session of a
/// writer with its own input may end with an unterminated line, after which
/// it waits until `blk` got it (so its next session starts a new line).
/// Such a writer also writes a burst every 0.1–2 s (and `FLIP_WRITER` a
/// long one when the controller asks).
fn writer(w: usize, dir: PathBuf, rate: u32, seed: u64, sh: Arc<Shared>) {
    let mut rng = Rng::new(seed);
    let mut line = Vec::new();
    let mut next_burst = Instant::now() + rng.millis(100, 2000);
    let max = if input_of(w) == "shared" {
        MAX_SHARED_LINE
    } else {
        MAX_LINE
    };
    let pause = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let path = dir.join(input_of(w));
    while !sh.stop_writers.load(Ordering::Relaxed) {
        // The daemon always has the read end open: this open never waits,
        // except on an input a reload just removed (then it fails).
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
        {
            Ok(f) => f,
            Err(_) => {
                thread::sleep(rng.millis(50, 200));
                continue;
            }
        };
        // Blocking writes from here on: a `block` output holds writers back.
        let _ = rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty());
        let mut file = file;
        let session = rng.range(1, 300);
        let mut sent = 0;
        let mut tail = false;
        while sent < session && !sh.stop_writers.load(Ordering::Relaxed) {
            let long = w == FLIP_WRITER && sh.long_burst.swap(false, Ordering::SeqCst);
            if long || (w < OWN_WRITERS && Instant::now() >= next_burst) {
                burst(w, long, &mut file, &mut rng, &sh, &mut line);
                next_burst = Instant::now() + rng.millis(100, 2000);
                sent += 1;
                continue;
            }
            let len = rng.line_len(max);
            tail = sent + 1 == session && w < OWN_WRITERS && rng.one_in(3);
            let seq = sh.records[w].load(Ordering::Relaxed);
            make_line(
                w,
                seq,
                len.max(if tail { TINY } else { 1 }),
                tail,
                &mut line,
            );
            let is_record = parse_line(&line) != Some(Parsed::Tiny { w });
            if !tail {
                line.push(b'\n');
            }
            match file.write(&line) {
                Ok(n) if n == line.len() => {
                    sh.written[w].fetch_add(1, Ordering::Relaxed);
                    if is_record {
                        sh.records[w].fetch_add(1, Ordering::Relaxed);
                    }
                }
                // A short write or an error: the soak's own bug.
                other => panic!("writer {w}: write of {} bytes: {other:?}", line.len()),
            }
            sent += 1;
            if rng.one_in(4) {
                thread::sleep(pause * 4);
            }
        }
        drop(file);
        // An unterminated line, or a line into `x0` (which a reload may
        // retire while a new `x0` takes its place): wait until `blk` got
        // everything, so the next session starts a new line on a pipe read
        // after this one.
        if tail || w == EXTRA_WRITER {
            let seq = sh.records[w].load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(30);
            while sh.blk_seen[w].load(Ordering::Relaxed) < seq {
                if Instant::now() > deadline {
                    sh.tail_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
        } else {
            thread::sleep(rng.millis(0, 50));
        }
    }
}

/// A burst of writer `w` (whose input is its own: on a shared input, writes
/// over `PIPE_BUF` may interleave): 16–256 KiB of whole lines, all in one
/// `write()` or each in one without a pause, so the daemon falls behind and
/// its reads come back large (then it tees to the mirrors, and lines
/// straddle reads and tees). A `long` one is 256 KiB–1 MiB in one
/// `write()`, long enough for a reload to come in the middle.
fn burst(w: usize, long: bool, file: &mut File, rng: &mut Rng, sh: &Shared, line: &mut Vec<u8>) {
    let size = match long {
        true => rng.range(BURST_MAX, 4 * BURST_MAX),
        false => rng.range(BURST_MIN, BURST_MAX),
    } as usize;
    let at_once = long || rng.one_in(2);
    let mut buf = Vec::with_capacity(if at_once { size + MAX_LINE + 1 } else { 0 });
    let (mut lines, mut records, mut bytes) = (0u64, 0u64, 0usize);
    let seq = sh.records[w].load(Ordering::Relaxed);
    if !at_once {
        sh.bursting[w].store(true, Ordering::SeqCst);
    }
    while bytes < size {
        let len = rng.line_len(MAX_LINE);
        make_line(w, seq + records, len, false, line);
        line.push(b'\n');
        bytes += line.len();
        let is_record = len >= TINY;
        if at_once {
            buf.extend_from_slice(line);
            lines += 1;
            records += u64::from(is_record);
            continue;
        }
        if let Err(e) = file.write_all(line) {
            panic!("writer {w}: burst write of {} bytes: {e}", line.len());
        }
        sh.written[w].fetch_add(1, Ordering::Relaxed);
        if is_record {
            sh.records[w].fetch_add(1, Ordering::Relaxed);
            records += 1;
        }
        sh.burst_lines.fetch_add(1, Ordering::Relaxed);
    }
    if at_once {
        sh.bursting[w].store(true, Ordering::SeqCst);
        if let Err(e) = file.write_all(&buf) {
            panic!("writer {w}: burst write of {} bytes: {e}", buf.len());
        }
        sh.written[w].fetch_add(lines, Ordering::Relaxed);
        sh.records[w].fetch_add(records, Ordering::Relaxed);
        sh.burst_lines.fetch_add(lines, Ordering::Relaxed);
    }
    sh.bursts.fetch_add(1, Ordering::Relaxed);
    sh.bursting[w].store(false, Ordering::SeqCst);
}

/// Starts `cat SUB` with its output piped back to us.
fn spawn_cat(path: &Path) -> Child {
    Command::new("cat")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning cat")
}

/// Reads one subscriber through successive `cat` processes, checking every
/// line; a killed reader's half-read last line is its own loss.
fn reader(
    spec: SubSpec,
    path: PathBuf,
    slot: Arc<Mutex<Option<Child>>>,
    seen: Arc<Mutex<Seen>>,
    sh: Arc<Shared>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let flip_prefix = format!("{} ", input_of(FLIP_WRITER));
    loop {
        let stdout = {
            let mut slot = slot.lock().unwrap();
            if sh.stop.load(Ordering::Relaxed) && !spec.stable {
                return;
            }
            let mut child = spawn_cat(&path);
            let out = child.stdout.take().expect("cat stdout");
            *slot = Some(child);
            out
        };
        sh.attaches.fetch_add(1, Ordering::Relaxed);
        let mut r = BufReader::with_capacity(1 << 16, stdout);
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.last() != Some(&b'\n') => {
                    if spec.stable {
                        seen.lock()
                            .unwrap()
                            .problem("a reader's last line is torn".into());
                    }
                    break;
                }
                Ok(_) => {
                    line.pop();
                    let mut seen = seen.lock().unwrap();
                    if spec.flips {
                        // `format = "{input} {line}"` for a while.
                        let body = line.strip_prefix(flip_prefix.as_bytes()).unwrap_or(&line);
                        seen.flip_line(body, sh.flips_off.load(Ordering::SeqCst));
                    } else {
                        seen.line(&line, first && !spec.stable);
                    }
                    if spec.name == "blk" {
                        if let Some(Parsed::Record { w, seq }) = parse_line(&line) {
                            sh.blk_seen[w].fetch_max(seq + 1, Ordering::Relaxed);
                        }
                    }
                    first = false;
                }
            }
        }
        if let Some(mut child) = slot.lock().unwrap().take() {
            let _ = child.wait();
        }
        if spec.stable || sh.stop.load(Ordering::Relaxed) {
            return;
        }
        // Away for a while: lines routed meanwhile are discarded.
        thread::sleep(rng.millis(0, 500));
    }
}

/// Stops, continues and kills readers at random.
fn chaos(subs: Vec<(SubSpec, Arc<Mutex<Option<Child>>>)>, sh: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !sh.stop.load(Ordering::Relaxed) {
        nap(rng.millis(100, 600), &sh.stop);
        let (spec, slot) = &subs[rng.range(0, subs.len() as u64 - 1) as usize];
        let pid = match slot.lock().unwrap().as_ref() {
            Some(c) => c.id(),
            None => continue,
        };
        if !spec.stable && rng.one_in(2) {
            // Killed (or gone, if it already exited: the slot lock above
            // was released, but a reaped pid is never signalled again
            // because the reader clears the slot before waiting).
            let slot = slot.lock().unwrap();
            if slot.as_ref().map(Child::id) == Some(pid) {
                signal(pid, Signal::KILL);
                sh.kills.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let stopped = {
                let slot = slot.lock().unwrap();
                slot.as_ref().map(Child::id) == Some(pid) && signal(pid, Signal::STOP)
            };
            if stopped {
                sh.stops.fetch_add(1, Ordering::Relaxed);
                thread::sleep(rng.millis(20, 800));
                let slot = slot.lock().unwrap();
                if slot.as_ref().map(Child::id) == Some(pid) {
                    signal(pid, Signal::CONT);
                }
            }
        }
    }
    for (_, slot) in &subs {
        if let Some(c) = slot.lock().unwrap().as_ref() {
            signal(c.id(), Signal::CONT);
        }
    }
}

/// Reads a sink file, line by line, into `seen`. The default format puts
/// `{time} {input} ` before the line; `prefixed` says whether to expect it.
fn check_sink_file(path: &Path, prefixed: bool, cut_ok: bool, seen: &mut Seen) {
    let Ok(file) = File::open(path) else {
        seen.problem(format!("cannot open {}", path.display()));
        return;
    };
    let mut r = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            // A line half written on a full disk when the file was moved
            // away, whose rest the old file then refused.
            Ok(_) if line.last() != Some(&b'\n') && cut_ok => {
                seen.cut += 1;
                break;
            }
            Ok(_) if line.last() != Some(&b'\n') => {
                seen.problem(format!("{}: unterminated last line", path.display()));
                break;
            }
            Ok(_) => {
                line.pop();
                let body = if prefixed {
                    let mut parts = line.splitn(3, |&b| b == b' ');
                    let (time, input, body) = (parts.next(), parts.next(), parts.next());
                    let (Some(time), Some(input), Some(body)) = (time, input, body) else {
                        seen.problem("sink line without time and input".into());
                        continue;
                    };
                    let ok_input = match parse_line(body) {
                        Some(Parsed::Record { w, .. } | Parsed::Tiny { w }) => {
                            input == input_of(w).as_bytes()
                        }
                        None => true,
                    };
                    if !ok_input || time.len() != 27 || !time.ends_with(b"Z") {
                        seen.problem(format!(
                            "sink prefix {:?}",
                            String::from_utf8_lossy(&line[..line.len().min(60)])
                        ));
                    }
                    body.to_vec()
                } else {
                    line.clone()
                };
                let before = seen.problem_count;
                seen.line(&body, false);
                if seen.problem_count > before && seen.problem_count <= 5 {
                    if let Some(last) = seen.problems.last_mut() {
                        let _ = write!(last, " (in {})", path.display());
                    }
                }
            }
            Err(e) => {
                seen.problem(format!("{}: {e}", path.display()));
                break;
            }
        }
    }
}

/// Mounts a small tmpfs at `at` (root only).
fn mount_tmpfs(at: &Path) -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not running as root".into());
    }
    fs::create_dir_all(at).map_err(|e| e.to_string())?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={TMPFS_BYTES},mode=0700"))
        .arg("tmpfs")
        .arg(at)
        .status()
        .map_err(|e| format!("mount: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("mount -t tmpfs failed: {status}"))
    }
}

/// Fills what is left of the tmpfs with a ballast file.
fn fill(ballast: &Path) {
    if let Ok(mut f) = File::create(ballast) {
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
    }
}

// ---------------------------------------------------------------------------
// The forwards' servers.

/// The nats-server and rsyslogd the forwards send to (each only when its
/// binary is installed), and what the chaos did to them.
#[derive(Default)]
struct Servers {
    nats: Option<NatsServer>,
    rsyslog: Option<Rsyslog>,
    /// SIGKILLs (each followed by a restart on the same port and store).
    nats_kills: u64,
    rsyslog_kills: u64,
    /// Seconds the servers were down, in all.
    nats_down: Duration,
    rsyslog_down: Duration,
    /// Lines rsyslogd was writing to its file when it was killed, cut
    /// off before it restarted (see [`cut_torn_tail`]).
    rsyslog_torn: u64,
}

/// Starts the servers whose binaries exist, under `root`, and the stream
/// that captures the NATS forward's subject; a missing binary is a note
/// (a failure under `CI=true`, as CI installs both).
fn start_servers(root: &Path, report: &mut Report) -> Servers {
    let mut missing = |binary: &str, part: &str| {
        if find_binary(binary).is_some() {
            return false;
        }
        let why = format!("{part} part skipped: {binary} is not installed");
        if std::env::var("CI").as_deref() == Ok("true") {
            report.failures.push(format!("{why}, and CI=true is set"));
        } else {
            report.notes.push(why);
        }
        true
    };
    let nats = (!missing("nats-server", "NATS forward")).then(|| {
        let nats = NatsServer::start(root);
        // The duplicate window is longer than the whole soak: a resend
        // after any restart is recognised.
        nats.client()
            .create_stream(NATS_STREAM, &["soak.>"], Duration::from_secs(3600));
        nats
    });
    let rsyslog = (!missing("rsyslogd", "syslog forward")).then(|| Rsyslog::start(root, None));
    Servers {
        nats,
        rsyslog,
        ..Servers::default()
    }
}

/// Kills (SIGKILL) nats-server every 5–15 s and rsyslogd every 5–25 s,
/// each down for up to 2 s before it restarts on the same port (and
/// store), until `sh.stop`; returns them running. The first kill of each
/// comes 2–5 s in and lasts 2 s: inside the warm-up, so that the forwards'
/// queues have been full once before the RSS check starts.
fn server_chaos(mut servers: Servers, sh: Arc<Shared>, seed: u64) -> Servers {
    let mut rng = Rng::new(seed);
    let mut next_nats = Instant::now() + rng.millis(2000, 5000);
    let mut next_rsyslog = Instant::now() + rng.millis(2000, 5000);
    let (mut nats_first, mut rsyslog_first) = (true, true);
    while !sh.stop.load(Ordering::Relaxed) {
        nap(Duration::from_millis(100), &sh.stop);
        let now = Instant::now();
        if let Some(nats) = servers.nats.as_mut().filter(|_| now >= next_nats) {
            nats.kill();
            let down = Instant::now();
            nap(outage(&mut rng, &mut nats_first), &sh.stop);
            nats.restart();
            servers.nats_down += down.elapsed();
            servers.nats_kills += 1;
            next_nats = Instant::now() + rng.millis(5000, 15000);
        }
        if let Some(rsyslog) = servers.rsyslog.as_mut().filter(|_| now >= next_rsyslog) {
            rsyslog.kill();
            let down = Instant::now();
            if cut_torn_tail(&rsyslog.received_path()) {
                servers.rsyslog_torn += 1;
            }
            nap(outage(&mut rng, &mut rsyslog_first), &sh.stop);
            rsyslog.restart();
            servers.rsyslog_down += down.elapsed();
            servers.rsyslog_kills += 1;
            next_rsyslog = Instant::now() + rng.millis(5000, 25000);
        }
    }
    servers
}

/// How long a killed server stays down: up to 2 s, and exactly 2 s the
/// first time (`first` is then cleared).
fn outage(rng: &mut Rng, first: &mut bool) -> Duration {
    let pause = rng.millis(0, 2000);
    match std::mem::take(first) {
        true => Duration::from_secs(2),
        false => pause,
    }
}

/// rsyslogd writes its file in buffers that may end inside a line: killed,
/// it leaves that line half written, and the next one would be glued to
/// it. Cuts such a tail off (rsyslog's own loss, not the daemon's: the
/// daemon counts a syslog line delivered once the kernel took it); true if
/// there was one.
fn cut_torn_tail(path: &Path) -> bool {
    let Ok(text) = fs::read(path) else {
        return false;
    };
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if keep == text.len() {
        return false;
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("rsyslog's file");
    file.set_len(keep as u64).expect("cutting rsyslog's file");
    true
}

/// The writer of a line that was written, whole.
fn writer_of(line: &[u8]) -> Option<usize> {
    match parse_line(line)? {
        Parsed::Record { w, .. } | Parsed::Tiny { w } => Some(w),
    }
}

/// Reads every message of the stream into `seen`: each must be a line of
/// the input its subject names, with a `Nats-Msg-Id` no other has.
fn check_stream(nats: &NatsServer, seen: &mut Seen) {
    let mut client = nats.client();
    let mut ids = std::collections::HashSet::new();
    for seq in 1..=client.stream_messages(NATS_STREAM) {
        let m = client.get_message(NATS_STREAM, seq);
        match m.header("Nats-Msg-Id") {
            Some(id) if ids.insert(id.to_owned()) => {}
            Some(id) => seen.problem(format!("stream seq {seq}: Nats-Msg-Id {id} again")),
            None => seen.problem(format!("stream seq {seq}: no Nats-Msg-Id")),
        }
        if let Some(w) = writer_of(&m.data) {
            if m.subject != format!("soak.{}", input_of(w)) {
                seen.problem(format!(
                    "stream seq {seq}: writer {w}'s line on {}",
                    m.subject
                ));
            }
        }
        seen.line(&m.data, false);
    }
}

/// Reads rsyslog's file (`VERSION|PRI|HOST|APP|PROCID|MSGID|SD|TIME|MSG`
/// per message) into `seen`: each must be an RFC 5424 message whose
/// APP-NAME is the input of the line that is its MSG.
fn check_rsyslog(path: &Path, seen: &mut Seen) {
    let text = fs::read(path).unwrap_or_default();
    for piece in text.split_inclusive(|&b| b == b'\n') {
        let Some(line) = piece.strip_suffix(b"\n") else {
            seen.problem(format!(
                "rsyslog's file ends inside a line: {:?}",
                shown(piece)
            ));
            break;
        };
        let fields: Vec<&[u8]> = line.splitn(9, |&b| b == b'|').collect();
        let [version, _, _, app, .., msg] = fields[..] else {
            seen.lines += 1;
            seen.problem(format!("not a message rsyslog wrote: {:?}", shown(line)));
            continue;
        };
        if fields.len() != 9 || version != b"1" {
            seen.problem(format!("not an RFC 5424 message: {:?}", shown(line)));
        }
        if let Some(w) = writer_of(msg) {
            if app != input_of(w).as_bytes() {
                seen.problem(format!("writer {w}'s line with APP-NAME {:?}", shown(app)));
            }
        }
        seen.line(msg, false);
    }
}

/// Waits (at most `limit`) until `count` has not changed for `quiet`.
fn wait_quiet(limit: Duration, quiet: Duration, mut count: impl FnMut() -> u64) {
    let end = Instant::now() + limit;
    let (mut last, mut since) = (count(), Instant::now());
    while Instant::now() < end && since.elapsed() < quiet {
        thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

// ---------------------------------------------------------------------------
// The run.

/// Runs the soak and checks everything at the end.
pub fn run(opts: &Options) -> Report {
    let mut report = Report::default();
    let tmp = tempfile::Builder::new()
        .prefix("fb-soak-")
        .tempdir()
        .expect("temp dir");
    let root = tmp.path().to_path_buf();
    let mut paths = Paths {
        dir: root.join("fifos"),
        logs: root.join("logs"),
        config: root.join("soak.toml"),
        notify: root.join("notify.sock"),
        stderr: root.join("daemon.stderr"),
        small: None,
        nats_url: None,
        syslog_url: None,
        root,
    };
    fs::create_dir_all(&paths.logs).unwrap();
    let mut procs = Procs {
        daemon: None,
        readers: Vec::new(),
        tmpfs: None,
        _tmp: tmp,
    };
    let small_dir = paths.root.join("small");
    match mount_tmpfs(&small_dir) {
        Ok(()) => {
            procs.tmpfs = Some(small_dir.clone());
            paths.small = Some(small_dir);
        }
        Err(why) => report.notes.push(format!(
            "disk-full part skipped ({why}): it needs root to mount a tmpfs"
        )),
    }
    let servers = start_servers(&paths.root, &mut report);
    paths.nats_url = servers.nats.as_ref().map(NatsServer::url);
    paths.syslog_url = servers.rsyslog.as_ref().map(Rsyslog::url);
    let mut variant = Variant::default();
    fs::write(&paths.config, config_text(&paths, variant)).unwrap();

    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        stop_writers: AtomicBool::new(false),
        written: zeros(),
        records: zeros(),
        blk_seen: zeros(),
        readies: AtomicU64::new(0),
        stops: AtomicU64::new(0),
        kills: AtomicU64::new(0),
        attaches: AtomicU64::new(0),
        tail_timeouts: AtomicU64::new(0),
        bursting: std::array::from_fn(|_| AtomicBool::new(false)),
        long_burst: AtomicBool::new(false),
        bursts: AtomicU64::new(0),
        burst_lines: AtomicU64::new(0),
        flips_off: AtomicU64::new(0),
    });
    let notify = UnixDatagram::bind(&paths.notify).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let status_note = Arc::new(Mutex::new(String::new()));
    let notify_thread = {
        let sh = sh.clone();
        let status_note = status_note.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                match notify.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if text.lines().any(|l| l == "READY=1") {
                            sh.readies.fetch_add(1, Ordering::SeqCst);
                        }
                        if let Some(s) = text.lines().find_map(|l| l.strip_prefix("STATUS=")) {
                            *status_note.lock().unwrap() = s.to_string();
                        }
                    }
                    Err(_) if sh.stop.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };

    let daemon = Command::new(&opts.bin)
        .arg("--config")
        .arg(&paths.config)
        .env("NOTIFY_SOCKET", &paths.notify)
        // The subscribers' debug lines say when a reload ended a line early.
        .env("RUST_LOG", "info,fifo_broker::output::subscriber=debug")
        .env("RUST_LOG_STYLE", "never")
        .env_remove("JOURNAL_STREAM")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&paths.stderr).unwrap())
        .spawn()
        .expect("spawning fifo-broker");
    let pid = daemon.id();
    procs.daemon = Some(daemon);
    let ready_by = Instant::now() + Duration::from_secs(10);
    while sh.readies.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < ready_by,
            "fifo-broker not ready within 10 s: {}",
            fs::read_to_string(&paths.stderr).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();

    // Readers first, so early lines have somewhere to go.
    let mut seen: Vec<Arc<Mutex<Seen>>> = Vec::new();
    let mut reader_threads = Vec::new();
    let mut chaos_subs = Vec::new();
    for (i, spec) in SUBS.iter().enumerate() {
        let slot = Arc::new(Mutex::new(None));
        let s = Arc::new(Mutex::new(Seen::default()));
        procs.readers.push(slot.clone());
        seen.push(s.clone());
        chaos_subs.push((*spec, slot.clone()));
        let (spec, path, sh, seed) = (
            *spec,
            paths.dir.join(spec.name),
            sh.clone(),
            opts.seed + i as u64,
        );
        reader_threads.push(thread::spawn(move || reader(spec, path, slot, s, sh, seed)));
    }
    // A stable reader is attached once a line reaches it.
    thread::sleep(Duration::from_millis(200));
    let server_thread = {
        let sh = sh.clone();
        let seed = opts.seed ^ 0x5E4E4;
        thread::spawn(move || server_chaos(servers, sh, seed))
    };
    let chaos_thread = {
        let sh = sh.clone();
        let seed = opts.seed ^ 0xC4A05;
        thread::spawn(move || chaos(chaos_subs, sh, seed))
    };
    let writer_threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (dir, sh) = (paths.dir.clone(), sh.clone());
            let seed = opts.seed.wrapping_add(1000 + w as u64);
            let rate = opts.rate;
            thread::spawn(move || writer(w, dir, rate, seed, sh))
        })
        .collect();

    // The controller: reloads, rotation, SIGUSR1, disk full; samples.
    let mut rng = Rng::new(opts.seed ^ 0x50A4);
    let (mut reloads, mut invalid, mut rotations, mut usr1, mut fills) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut log_seen = Seen::default();
    let mut small_seen = Seen::default();
    let mut small_rotated = 0u64;
    let mut small_pending: std::collections::VecDeque<PathBuf> = Default::default();
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let mut next_reload = Instant::now() + Duration::from_secs(2);
    let mut next_usr1 = Instant::now() + rng.millis(1000, 6000);
    let mut next_print = Instant::now() + Duration::from_secs(10);
    let mut ballast: Option<Instant> = None;
    // What `mir-flip` runs with (an invalid reload keeps it).
    let mut applied_flip = 0u8;
    let ballast_path = paths.small.as_ref().map(|s| s.join("ballast"));
    let log_path = paths.logs.join("soak.log");
    let small_path = paths.small.as_ref().map(|s| s.join("small.log"));
    let mut last_sample = Instant::now();
    while started.elapsed() < opts.duration {
        thread::sleep(Duration::from_millis(50));
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            if let Some((rss, fds)) = rss_and_fds(pid) {
                samples.push((started.elapsed(), rss, fds));
            }
        }
        if let Some(status) = procs.daemon.as_mut().unwrap().try_wait().unwrap() {
            report
                .failures
                .push(format!("fifo-broker exited during the soak: {status}"));
            break;
        }
        if Instant::now() >= next_usr1 {
            signal(pid, Signal::USR1);
            usr1 += 1;
            next_usr1 = Instant::now() + rng.millis(1000, 6000);
        }
        if let Some(ballast_path) = &ballast_path {
            match ballast {
                None if rng.one_in(100) => {
                    fill(ballast_path);
                    fills += 1;
                    ballast = Some(Instant::now() + rng.millis(300, 3000));
                }
                Some(until) if Instant::now() >= until => {
                    let _ = fs::remove_file(ballast_path);
                    ballast = None;
                }
                _ => {}
            }
        }
        if Instant::now() >= next_reload {
            next_reload = Instant::now() + Duration::from_secs(2);
            let rotate_log = rng.one_in(3);
            let rotate_small = small_path.is_some() && rng.one_in(2);
            variant = Variant {
                extra_input: if rng.one_in(3) {
                    !variant.extra_input
                } else {
                    variant.extra_input
                },
                extra_output: if rng.one_in(3) {
                    !variant.extra_output
                } else {
                    variant.extra_output
                },
                bigger_new: rng.one_in(2),
                flip: match (rng.one_in(2), variant.flip) {
                    (false, same) => same,
                    (true, 0) => rng.range(1, 2) as u8,
                    (true, _) => 0,
                },
                invalid: if rng.one_in(4) {
                    rng.range(1, 3) as u8
                } else {
                    0
                },
            };
            if variant.invalid == 0 && applied_flip == 0 && variant.flip != 0 {
                // Taking `mir-flip` off the zero-copy path cuts a line only
                // if it has the start of one: most likely while its writer
                // streams, so in the middle of a long burst.
                sh.long_burst.store(true, Ordering::SeqCst);
                let by = Instant::now() + Duration::from_secs(3);
                while !sh.bursting[FLIP_WRITER].load(Ordering::SeqCst) && Instant::now() < by {
                    thread::sleep(Duration::from_millis(1));
                }
                thread::sleep(rng.millis(0, 3));
                sh.flips_off.fetch_add(1, Ordering::SeqCst);
            }
            fs::write(&paths.config, config_text(&paths, variant)).unwrap();
            let rotated_log = paths.logs.join(format!("soak.log.{rotations}"));
            if rotate_log && fs::rename(&log_path, &rotated_log).is_ok() {
                rotations += 1;
            }
            let rotated_small = small_path
                .as_ref()
                .map(|p| p.with_extension(format!("log.{small_rotated}")));
            let small_moved = rotate_small
                && fs::rename(
                    small_path.as_ref().unwrap(),
                    rotated_small.as_ref().unwrap(),
                )
                .is_ok();
            if small_moved {
                small_rotated += 1;
            }
            let before = sh.readies.load(Ordering::SeqCst);
            signal(pid, Signal::HUP);
            reloads += 1;
            if variant.invalid != 0 {
                invalid += 1;
                // An invalid config keeps the old one: the next valid
                // reload must still apply from whatever ran.
                variant.invalid = 0;
                variant.flip = applied_flip;
            } else {
                applied_flip = variant.flip;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while sh.readies.load(Ordering::SeqCst) == before && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if sh.readies.load(Ordering::SeqCst) == before {
                report.failures.push(format!(
                    "reload {reloads} not acknowledged with READY=1 in 10 s"
                ));
            }
            // After READY=1 the sinks write to the new files: the moved
            // ones are complete.
            if rotate_log && rotated_log.exists() {
                check_sink_file(&rotated_log, true, false, &mut log_seen);
                let _ = fs::remove_file(&rotated_log);
            }
            if small_moved {
                small_pending.push_back(rotated_small.unwrap());
            }
        }
        // A moved sink file is complete once the sink has opened the new
        // one: a line half written when the disk filled is finished in (or,
        // if it still refuses, cut at the end of) the old file first.
        while let Some(old) = small_pending.front() {
            if !small_path.as_ref().is_some_and(|p| p.exists()) {
                break;
            }
            check_sink_file(old, false, true, &mut small_seen);
            let _ = fs::remove_file(old);
            small_pending.pop_front();
        }
        if opts.verbose && Instant::now() >= next_print {
            next_print = Instant::now() + Duration::from_secs(10);
            let lines: u64 = sh.written.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            eprintln!(
                "soak {:>4}s: {lines} lines written, {reloads} reloads, rss/fds {:?}",
                started.elapsed().as_secs(),
                samples.last().map(|s| (s.1, s.2))
            );
        }
    }
    let load_time = started.elapsed();

    // Stop the load, let everything drain, then check idleness.
    sh.stop_writers.store(true, Ordering::SeqCst);
    sh.stop.store(true, Ordering::SeqCst);
    let _ = chaos_thread.join();
    let servers = server_thread.join().ok();
    if servers.is_none() {
        // The servers are gone with the thread: the writers that a `block`
        // forward holds back would wait for ever, but not on a dead daemon.
        report
            .failures
            .push("killing and restarting the servers failed (see the panic above)".into());
        signal(pid, Signal::KILL);
    }
    for t in writer_threads {
        if t.join().is_err() {
            report
                .failures
                .push("a writer failed (see its panic above)".into());
        }
    }
    if let Some(b) = &ballast_path {
        let _ = fs::remove_file(b);
    }
    let written: Vec<u64> = sh
        .written
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    let records: Vec<u64> = sh
        .records
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    let drain_by = Instant::now() + Duration::from_secs(60);
    while (0..WRITERS).any(|w| sh.blk_seen[w].load(Ordering::SeqCst) < records[w])
        && Instant::now() < drain_by
    {
        thread::sleep(Duration::from_millis(20));
    }
    // The forwards: the stream has every line (or more, which the check
    // below finds) once the last PubAcks are in; rsyslog's file stops
    // growing once the daemon sent everything.
    let servers = servers.unwrap_or_default();
    if let Some(nats) = &servers.nats {
        let want: u64 = writers_of(NATS_FROM).iter().map(|&w| written[w]).sum();
        let mut client = nats.client();
        let by = Instant::now() + Duration::from_secs(60);
        while client.stream_messages(NATS_STREAM) < want && Instant::now() < by {
            thread::sleep(Duration::from_millis(100));
        }
    }
    if let Some(rsyslog) = &servers.rsyslog {
        let path = rsyslog.received_path();
        wait_quiet(Duration::from_secs(30), Duration::from_secs(2), || {
            fs::metadata(&path).map_or(0, |m| m.len())
        });
    }
    // The small sink retries on a backoff of up to 10 s after a full disk.
    thread::sleep(Duration::from_secs(if paths.small.is_some() {
        11
    } else {
        1
    }));
    let cpu_before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(3));
    let idle_ticks = cpu_ticks(pid) - cpu_before;

    signal(pid, Signal::TERM);
    let exit_by = Instant::now() + Duration::from_secs(15);
    let mut exit = None;
    while exit.is_none() && Instant::now() < exit_by {
        exit = procs.daemon.as_mut().unwrap().try_wait().unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    match exit {
        Some(st) if st.code() == Some(0) => {}
        Some(st) => report
            .failures
            .push(format!("fifo-broker exited with {st} on SIGTERM")),
        None => report
            .failures
            .push("fifo-broker did not exit within 15 s of SIGTERM".into()),
    }
    // Readers waiting in open() for a daemon that is gone never return.
    for slot in &procs.readers {
        if let Some(c) = slot.lock().unwrap().as_mut() {
            let _ = c.kill();
        }
    }
    for t in reader_threads {
        let _ = t.join();
    }
    let _ = notify_thread.join();
    let log = fs::read_to_string(&paths.stderr).unwrap_or_default();
    if log.contains("panicked") {
        report
            .failures
            .push("fifo-broker panicked (see its log)".into());
    }
    let counters = parse_counters(&log);
    let ended_early = log
        .lines()
        .filter(|l| l.contains("subscriber mir-flip: a reload changed its input in the middle"))
        .count() as u64;

    // The sinks' last files.
    check_sink_file(&log_path, true, false, &mut log_seen);
    if let Some(p) = &small_path {
        for old in &small_pending {
            check_sink_file(old, false, true, &mut small_seen);
        }
        check_sink_file(p, false, false, &mut small_seen);
    }

    // Inputs: what was written came in.
    for (w, &wrote) in written.iter().enumerate().take(OWN_WRITERS) {
        let got = counters
            .get(input_of(w))
            .and_then(|c| c.get("lines_in"))
            .copied();
        if got != Some(wrote) {
            report.failures.push(format!(
                "input {}: lines_in {got:?}, writer wrote {wrote}",
                input_of(w)
            ));
        }
    }
    let shared_written = written[OWN_WRITERS] + written[OWN_WRITERS + 1];
    let got = counters
        .get("shared")
        .and_then(|c| c.get("lines_in"))
        .copied();
    if got != Some(shared_written) {
        report.failures.push(format!(
            "input shared: lines_in {got:?}, writers wrote {shared_written}"
        ));
    }
    // What each output was routed: its inputs' lines (x0's from its writer,
    // as a reload may have removed it and its counters).
    let routed = |from: &str| -> u64 { writers_of(from).iter().map(|&w| written[w]).sum() };

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<10} {:<11} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>5} {:>3} books",
        "output",
        "when_full",
        "routed",
        "lines_out",
        "dropped",
        "discarded",
        "filtered",
        "read",
        "frags",
        "cut",
    );
    let flips_off = sh.flips_off.load(Ordering::SeqCst);
    let mut flip_cuts = 0;
    let mut rows: Vec<Row> = Vec::new();
    for (spec, s) in SUBS.iter().zip(&seen) {
        rows.push(Row {
            name: spec.name,
            policy: spec.policy,
            from: spec.from,
            seen: std::mem::take(&mut *s.lock().unwrap()),
            reading: if spec.stable {
                Reading::Whole
            } else {
                Reading::Churn
            },
            flips: spec.flips,
        });
    }
    let row = |name, policy, from, seen, reading| Row {
        name,
        policy,
        from,
        seen,
        reading,
        flips: false,
    };
    let all = r#"["w*", "shared", "x*"]"#;
    rows.push(row("log", "block", all, log_seen, Reading::Whole));
    if paths.small.is_some() {
        let from = r#"["w0", "w1"]"#;
        rows.push(row(
            "small",
            "drop-newest",
            from,
            small_seen,
            Reading::Whole,
        ));
    }
    // The forwards, as their servers stored what they got.
    let mut syslog_lost = None;
    if let Some(nats) = &servers.nats {
        let mut s = Seen::default();
        check_stream(nats, &mut s);
        rows.push(row("js", "block", NATS_FROM, s, Reading::Whole));
    }
    if let Some(rsyslog) = &servers.rsyslog {
        let mut s = Seen::default();
        check_rsyslog(&rsyslog.received_path(), &mut s);
        s.cut = servers.rsyslog_torn;
        rows.push(row("syslog", "block", SYSLOG_FROM, s, Reading::Lossy));
    }
    for Row {
        name,
        policy,
        from,
        seen: s,
        reading,
        flips,
    } in &mut rows
    {
        let (name, policy, from, flips) = (*name, *policy, *from, *flips);
        let stable = *reading == Reading::Whole;
        let c = counters.get(name).cloned().unwrap_or_default();
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let routed = routed(from);
        let (out, dropped, discarded, filtered) = (
            get("lines_out"),
            get("dropped"),
            get("discarded"),
            get("filtered"),
        );
        let mut books = Vec::new();
        if c.is_empty() {
            books.push("no counters".to_string());
        }
        if out + dropped + discarded + filtered != routed {
            books.push(format!("routed {routed} != out+dropped+discarded+filtered"));
        }
        if let Some(&acked) = c.get("acked") {
            if acked != out {
                books.push(format!("acked {acked} != lines_out {out}"));
            }
        }
        if policy == "block" && stable {
            for w in writers_of(from) {
                if s.records[w] != records[w] {
                    books.push(format!(
                        "writer {w}: {} of {} lines",
                        s.records[w], records[w]
                    ));
                }
                // A cut that is a whole short line was read as one: the
                // extra ones are cuts.
                let short = written[w] - records[w];
                match s.tiny[w].checked_sub(short) {
                    Some(extra) if flips => s.cut += extra,
                    Some(0) => {}
                    _ => books.push(format!("writer {w}: {} of {short} short lines", s.tiny[w])),
                }
            }
        }
        // Lost lines may be missing, but none is there twice (the order
        // check finds a record twice; short lines are counted).
        if *reading == Reading::Lossy {
            for w in writers_of(from) {
                let short = written[w] - records[w];
                if s.tiny[w] > short {
                    books.push(format!("writer {w}: {} of {short} short lines", s.tiny[w]));
                }
            }
            syslog_lost = Some((out.saturating_sub(s.lines), out));
        }
        // A stable reader of `mir-flip` read the lines out and the cuts.
        let cuts = if flips { s.cut } else { 0 };
        if flips && cuts > flips_off {
            books.push(format!(
                "{cuts} cut lines, but only {flips_off} reloads took it off the zero-copy path"
            ));
        }
        if flips && cuts != ended_early {
            books.push(format!(
                "{cuts} cut lines, but the daemon says it ended {ended_early} lines early"
            ));
        }
        flip_cuts += cuts;
        if stable && s.lines != out + cuts {
            books.push(format!("read {} != lines_out {out} + {cuts} cut", s.lines));
        }
        if !stable && s.lines > out {
            books.push(format!("read {} > lines_out {out}", s.lines));
        }
        let holds_all = stable || *reading == Reading::Lossy;
        if policy == "block" && holds_all && (dropped != 0 || discarded != 0) {
            books.push(format!(
                "a block output lost lines ({dropped} dropped, {discarded} discarded)"
            ));
        }
        if s.problem_count > 0 {
            books.push(format!(
                "{} bad lines, e.g. {:?}",
                s.problem_count, s.problems
            ));
        }
        let _ = writeln!(
            table,
            "{name:<10} {policy:<11} {routed:>9} {out:>9} {dropped:>8} {discarded:>9} {filtered:>8} {:>9} {:>5} {:>3} {}",
            s.lines,
            s.inherited_fragments,
            s.cut,
            if books.is_empty() { "ok" } else { "FAIL" }
        );
        for b in books {
            report.failures.push(format!("{name}: {b}"));
        }
    }

    // Resources: after warm-up, within 10 % of the warm-up's peak.
    let warm = (load_time / 5)
        .max(Duration::from_secs(10))
        .min(load_time / 2);
    let peak = |f: &dyn Fn(&(Duration, u64, u64)) -> u64, after: bool| {
        samples
            .iter()
            .filter(|s| (s.0 > warm) == after)
            .map(f)
            .max()
            .unwrap_or(0)
    };
    let (rss_warm, rss_after) = (peak(&|s| s.1, false), peak(&|s| s.1, true));
    let (fds_warm, fds_after) = (peak(&|s| s.2, false), peak(&|s| s.2, true));
    let rss_min = samples
        .iter()
        .filter(|s| s.0 > warm)
        .map(|s| s.1)
        .min()
        .unwrap_or(0);
    if rss_after * 10 > rss_warm * 11 {
        report.failures.push(format!(
            "RSS grew from {rss_warm} KiB (warm-up peak) to {rss_after} KiB"
        ));
    }
    if fds_after * 10 > fds_warm * 11 {
        report.failures.push(format!(
            "fds grew from {fds_warm} (warm-up peak) to {fds_after}"
        ));
    }
    // 100 ticks a second: more than 2 ticks in 3 s idle is not idle.
    if idle_ticks > 2 {
        report.failures.push(format!(
            "{idle_ticks} CPU ticks in 3 s after the load stopped"
        ));
    }
    if sh.tail_timeouts.load(Ordering::SeqCst) > 0 {
        report.failures.push(format!(
            "{} unterminated lines not delivered within 30 s",
            sh.tail_timeouts.load(Ordering::SeqCst)
        ));
    }

    let total: u64 = written.iter().sum();
    let _ = writeln!(
        table,
        "\nload {:.0} s, seed {}: {total} lines written ({:.0}/s), {} with a header; \
         {reloads} reloads ({invalid} invalid), {rotations} log rotations, \
         {small_rotated} small-sink rotations, {fills} disk fills, {usr1} SIGUSR1",
        load_time.as_secs_f64(),
        opts.seed,
        total as f64 / load_time.as_secs_f64(),
        records.iter().sum::<u64>(),
    );
    let _ = writeln!(
        table,
        "bursts: {} ({} lines); {flips_off} reloads took mir-flip off the zero-copy path, \
         cutting {flip_cuts} lines (the daemon says {ended_early})",
        sh.bursts.load(Ordering::SeqCst),
        sh.burst_lines.load(Ordering::SeqCst),
    );
    let _ = writeln!(
        table,
        "readers: {} attaches, {} SIGSTOP/SIGCONT, {} SIGKILL; after warm-up ({} s): \
         RSS {rss_min}-{rss_after} KiB (warm-up peak {rss_warm}), fds peak {fds_after} \
         (warm-up peak {fds_warm}); idle CPU {idle_ticks} ticks/3 s; exit {}",
        sh.attaches.load(Ordering::SeqCst),
        sh.stops.load(Ordering::SeqCst),
        sh.kills.load(Ordering::SeqCst),
        warm.as_secs(),
        exit.map_or("none".to_string(), |s| s.to_string()),
    );
    if servers.nats.is_some() || servers.rsyslog.is_some() {
        let _ = writeln!(
            table,
            "forwards: nats-server killed {} times (down {:.1} s in all), rsyslogd {} times \
             (down {:.1} s, {} half-written lines in its file cut at its kills)",
            servers.nats_kills,
            servers.nats_down.as_secs_f64(),
            servers.rsyslog_kills,
            servers.rsyslog_down.as_secs_f64(),
            servers.rsyslog_torn,
        );
    }
    if let Some((lost, out)) = syslog_lost {
        report.notes.push(format!(
            "syslog forward: {lost} of {out} lines lost across {} rsyslogd kills \
             (in the kernel or in rsyslogd when it died; allowed)",
            servers.rsyslog_kills
        ));
    }
    let _ = writeln!(table, "last STATUS={}", status_note.lock().unwrap());
    report.table = table;
    report
}

/// `--seconds N --seed N --rate N` from the command line.
pub fn options_from_args(bin: PathBuf) -> Options {
    let mut opts = Options {
        bin,
        duration: Duration::from_secs(600),
        rate: 200,
        seed: 16,
        verbose: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--seconds" => opts.duration = Duration::from_secs(value()),
            "--seed" => opts.seed = value(),
            "--rate" => opts.rate = value() as u32,
            "--bench" => {}
            other => panic!("unknown argument {other}; use --seconds N --seed N --rate N"),
        }
    }
    opts
}
