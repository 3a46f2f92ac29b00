//! fifo-broker beside `tee` and `multitee`, in one invocation, on the same
//! generated workloads:
//!
//!   cargo bench --bench fifo_bench            # everything, 3 runs each
//!   cargo bench --bench fifo_bench -- --runs 1 --only throughput,latency
//!   cargo bench --bench fifo_bench -- --runs 1 --only filter --lines 200000
//!
//! Topology for the comparisons: one input FIFO → 4 subscriber FIFOs + 1 sink
//! file, every output lossless (`when_full = "block"`), format `{line}` (so
//! all three systems do the same work), readers that count and verify every
//! line. `tee` and `multitee` cannot attach readers lazily or frame lines;
//! they get the same FIFOs, opened before the writer starts.
//!
//! The daemon runs as shipped: no `pipe_bytes`, so FIFOs start at the
//! kernel's default size (64 KiB) and the daemon grows them where it helps.
//! The throughput workload adds a second daemon row with
//! `pipe_bytes = 1048576`.
//!
//! Workloads: throughput (2,000,000 lines of 100 bytes in 64 KiB writes),
//! filter (the throughput workload, daemon only, unfiltered beside a run in
//! which subscribers s1 and s2 of the 4 have `match = '^\d{11}7 |^probe'`:
//! the 10 % of lines whose sequence number ends in 7, plus the harness's
//! probe lines; every line still verified at every reader and in the sink),
//! sweep (the same at 1, 4, 16 and 64 subscribers, fewer lines for large
//! fan-outs; writes docs/fanout-sweep.svg, or `$FIFO_BENCH_SVG`), fairness
//! (input `bulk` flooded while input `alerts` carries a stamped line every
//! 2 ms; the daemon beside one `cat` relay per input), latency (one stamped
//! line per millisecond for 2 s), writers (8 × 50,000 lines, one write()
//! each), idle (1,000 inputs + 1,000 subscribers for 10 s, broker only),
//! scale (10,000 FIFOs, broker only). Figures that swing between runs on a
//! shared machine are reported as median (min–max), with ratios computed
//! inside the same run.
//!
//! Environment: `FIFO_BENCH_DIR` (scratch, default /dev/shm),
//! `FIFO_BENCH_PIPE_BYTES` (the default rows' `pipe_bytes`),
//! `FIFO_BENCH_BUFFER_BYTES`, and `FIFO_BENCH_WRAP` / `FIFO_BENCH_WRAP_BASELINE`:
//! a profiler command line for the daemon / for tee, multitee and cat, in
//! which `{name}` becomes the system's name, e.g.
//! `FIFO_BENCH_WRAP="strace -c -o /tmp/strace-{name}"`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::{cpu_seconds, mkfifo, rounds, sequence_data, stats, Args, Scratch, BIN, LINE};

const SUBSCRIBERS: usize = 4;
/// Lines per pass of throughput (and, scaled, of sweep) without `--lines`.
const LINES: usize = 2_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    /// The daemon as shipped: no `pipe_bytes`, so the kernel's default pipe
    /// size, grown by the daemon where it helps.
    Broker,
    /// The daemon with `pipe_bytes = 1048576` on every FIFO.
    Broker1M,
    /// The daemon as shipped, subscribers s1 and s2 with
    /// `match = FILTER_MATCH` (the filter workload).
    BrokerFiltered,
    Tee,
    Multitee,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Broker => "fifo-broker",
            System::Broker1M => "fifo-broker, pipe_bytes 1 MiB",
            System::BrokerFiltered => "fifo-broker, match on 2 of 4",
            System::Tee => "tee",
            System::Multitee => "multitee",
        }
    }

    /// The name for `{name}` in FIFO_BENCH_WRAP*.
    fn tag(self) -> &'static str {
        match self {
            System::Broker => "broker",
            System::Broker1M => "broker-1m",
            System::BrokerFiltered => "broker-filtered",
            System::Tee => "tee",
            System::Multitee => "multitee",
        }
    }

    fn is_broker(self) -> bool {
        matches!(
            self,
            System::Broker | System::Broker1M | System::BrokerFiltered
        )
    }

    /// Whether subscriber `s{k}` (from 1) has `match = FILTER_MATCH`.
    fn filters(self, k: usize) -> bool {
        self == System::BrokerFiltered && (k == 1 || k == 2)
    }

    /// The `[broker]` line that sets the pipe size, if any.
    fn pipe_bytes_line(self) -> String {
        match self {
            // FIFO_BENCH_PIPE_BYTES=N gives the default column N-byte pipes.
            System::Broker | System::BrokerFiltered => {
                match std::env::var("FIFO_BENCH_PIPE_BYTES").as_deref() {
                    Ok("0") | Err(_) => String::new(),
                    Ok(v) => format!("pipe_bytes = {v}\n"),
                }
            }
            System::Broker1M => "pipe_bytes = 1048576\n".to_string(),
            System::Tee | System::Multitee => String::new(),
        }
    }
}

/// The comparisons that show the daemon as shipped beside the baselines.
const SYSTEMS: [System; 3] = [System::Broker, System::Tee, System::Multitee];
/// The throughput workload adds the daemon with 1 MiB pipes.
const THROUGHPUT_SYSTEMS: [System; 4] = [
    System::Broker,
    System::Broker1M,
    System::Tee,
    System::Multitee,
];
/// The filter workload: the daemon unfiltered, then with 2 of 4 filtered.
const FILTER_SYSTEMS: [System; 2] = [System::Broker, System::BrokerFiltered];
/// The filtered subscribers' `match`: the lines (`SEQ(12) ' ' x...`) whose
/// sequence number ends in 7, and the probe lines that tell the harness a
/// reader is attached.
const FILTER_MATCH: &str = r"^\d{11}7 |^probe";

fn main() {
    let args = Args::parse("a,b");
    ensure_multitee();
    print_machine();
    if args.wants("throughput") {
        throughput(&args);
    }
    if args.wants("filter") {
        filter(&args);
    }
    if args.wants("sweep") {
        sweep(&args);
    }
    if args.wants("fairness") {
        fairness(&args);
    }
    if args.wants("latency") {
        latency(&args);
    }
    if args.wants("writers") {
        writers(&args);
    }
    if args.wants("idle") {
        idle();
    }
    if args.wants("scale") {
        scale();
    }
}

// ---------------------------------------------------------------------------
// Setup of one system under test.

/// A running system under test: one input, 4 subscribers, one sink file.
struct Rig {
    system: System,
    child: Child,
    input: PathBuf,
    subscribers: Vec<PathBuf>,
    sink: PathBuf,
    _scratch: Scratch,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `system` with `fanout` subscribers and the sink; for tee/multitee
/// the readers must open the subscriber FIFOs before the writer opens the
/// input (both block in open until then).
fn start(system: System, fanout: usize) -> Rig {
    let scratch = Scratch::new("fifo-bench", system.name().split(',').next().unwrap());
    let dir = scratch.0.join("fifos");
    let sink = scratch.0.join("sink.log");
    let (input, subscribers): (PathBuf, Vec<PathBuf>) = (
        dir.join("in"),
        (1..=fanout).map(|k| dir.join(format!("s{k}"))).collect(),
    );
    let child = match system {
        System::Broker | System::Broker1M | System::BrokerFiltered => {
            let mut config = format!(
                "[broker]\ndir = {dir:?}\nlog_dir = {:?}\n{}[inputs.in]\n",
                scratch.0,
                system.pipe_bytes_line()
            );
            // FIFO_BENCH_BUFFER_BYTES=N sets every output's buffer_bytes.
            let buffer = std::env::var("FIFO_BENCH_BUFFER_BYTES")
                .map(|v| format!("buffer_bytes = {v}\n"))
                .unwrap_or_default();
            for k in 1..=fanout {
                config += &format!(
                    "[subscribers.s{k}]\nfrom = [\"in\"]\nwhen_full = \"block\"\n{buffer}"
                );
                if system.filters(k) {
                    config += &format!("match = '{FILTER_MATCH}'\n");
                }
            }
            config += &format!(
                "[sinks.sink]\npath = {sink:?}\nfrom = [\"in\"]\nformat = \"{{line}}\"\n\
                 when_full = \"block\"\nmax_bytes = 0\n{buffer}"
            );
            let path = scratch.0.join("broker.toml");
            fs::write(&path, config).unwrap();
            spawn_broker(system.tag(), &scratch.0, &path).0
        }
        System::Tee | System::Multitee => {
            fs::create_dir_all(&dir).unwrap();
            mkfifo(&input);
            for s in &subscribers {
                mkfifo(s);
            }
            // bash, not sh: dash takes only one-digit fds in redirections.
            // $0 is the input, $1 the sink, $2... the subscribers.
            let script = if system == System::Tee {
                "sink=$1; shift; exec tee \"$@\" < \"$0\" >> \"$sink\"".to_string()
            } else {
                let fds: Vec<String> = (0..=fanout).map(|k| (3 + k).to_string()).collect();
                let mut script = format!("exec multitee -b65536 0-{} < \"$0\"", fds.join(","));
                for k in 1..=fanout {
                    script += &format!(" {}>\"${{{}}}\"", 2 + k, 1 + k);
                }
                script + &format!(" {}>>\"$1\"", 3 + fanout)
            };
            wrapped("FIFO_BENCH_WRAP_BASELINE", system.tag(), "bash")
                .arg("-c")
                .arg(script)
                .arg(&input)
                .arg(&sink)
                .args(&subscribers)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn bash")
        }
    };
    Rig {
        system,
        child,
        input,
        subscribers,
        sink,
        _scratch: scratch,
    }
}

/// `program`, run under the profiler named in the environment variable
/// `wrap_var` if set (e.g. `strace -c -o /tmp/strace-{name}`), `{name}`
/// replaced by `name`.
fn wrapped(wrap_var: &str, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let wrap = std::env::var(wrap_var).unwrap_or_default();
    let mut words = wrap.split_whitespace().map(|w| w.replace("{name}", name));
    match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn profiling() -> bool {
    std::env::var_os("FIFO_BENCH_WRAP").is_some()
        || std::env::var_os("FIFO_BENCH_WRAP_BASELINE").is_some()
}

/// The process doing the work under `pid`: `pid` itself, or when it runs
/// under a profiler (strace, perf stat), the profiler's child.
fn leaf_pid(pid: u32) -> u32 {
    let mut pid = pid;
    while let Some(child) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|v| v.parse().ok()))
    {
        pid = child;
    }
    pid
}

fn terminate(child: &Child) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(leaf_pid(child.id()) as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
}

/// Spawns the daemon on `config` with a fake NOTIFY_SOCKET in `dir`;
/// returns it and the time from spawn to READY=1.
fn spawn_broker(tag: &str, dir: &Path, config: &Path) -> (Child, Duration) {
    // FIFO_BENCH_WRAP="strace -c -o FILE" (or perf stat ...) profiles the daemon.
    let mut cmd = wrapped("FIFO_BENCH_WRAP", tag, BIN);
    cmd.arg("--config").arg(config);
    common::spawn_broker(cmd, dir, "warn")
}

/// CPU time of the single-threaded process `pid` (the daemon, tee,
/// multitee), in seconds, to the nanosecond where the kernel tells
/// (`se.sum_exec_runtime` in /proc/PID/sched), else in clock ticks.
fn child_cpu_seconds(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/sched"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("se.sum_exec_runtime"))
                .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse::<f64>().ok())
        })
        .map(|ms| ms / 1000.0)
        .unwrap_or_else(|| cpu_seconds(pid))
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Readers that verify.

/// What one reader saw.
#[derive(Default, Debug)]
struct Seen {
    lines: usize,
    errors: usize,
    last: Option<Instant>,
    latencies_ns: Vec<u64>,
}

/// How a reader checks each line.
#[derive(Clone, Copy)]
enum Check {
    /// `SEQ(12) ' ' x...` in order from 0.
    Sequence,
    /// `SEQ(12) ' ' x...`, only the lines with SEQ % 10 == 7, in order
    /// (what a subscriber with `match = FILTER_MATCH` gets).
    Tenth,
    /// `wK SEQ(8) ...` in order per writer K.
    PerWriter,
    /// `SEQ(12) ' ' NANOS(20) ...`: record now - NANOS.
    Stamped,
}

impl Check {
    /// The first sequence number expected and the step to the next.
    fn first_and_step(self) -> (usize, usize) {
        match self {
            Check::Tenth => (7, 10),
            Check::Sequence | Check::PerWriter | Check::Stamped => (0, 1),
        }
    }

    /// How many of lines 0..`lines` a reader with this check gets.
    fn of(self, lines: usize) -> usize {
        match self {
            Check::Tenth => (lines + 2) / 10,
            Check::Sequence | Check::PerWriter | Check::Stamped => lines,
        }
    }
}

/// Reads `path` until `want` lines (not counting probe lines) arrived.
fn reader(
    path: PathBuf,
    want: usize,
    check: Check,
    attached: Arc<AtomicUsize>,
    base: Instant,
) -> thread::JoinHandle<Seen> {
    thread::spawn(move || {
        let mut f = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut seen = Seen::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut carry: Vec<u8> = Vec::new();
        let (mut next, step) = check.first_and_step();
        let mut per_writer = [0usize; 64];
        let mut probed = false;
        while seen.lines < want {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            // Complete the line carried over from the last read, then work
            // on the buffer in place.
            let mut start = 0;
            if !carry.is_empty() {
                match memchr::memchr(b'\n', &buf[..n]) {
                    Some(i) => {
                        carry.extend_from_slice(&buf[..=i]);
                        start = i + 1;
                    }
                    None => {
                        carry.extend_from_slice(&buf[..n]);
                        continue;
                    }
                }
            }
            let joined = std::mem::take(&mut carry);
            let lines = std::iter::once(&joined[..joined.len().saturating_sub(1)])
                .filter(|_| !joined.is_empty())
                .chain(LinesIn {
                    buf: &buf[..n],
                    pos: &mut start,
                });
            for line in lines {
                if line.starts_with(b"probe") {
                    if !probed {
                        probed = true;
                        attached.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                seen.lines += 1;
                match check {
                    Check::Sequence | Check::Tenth | Check::Stamped => {
                        let ok = line.len() == LINE - 1
                            && parse(&line[..12]) == Some(next)
                            && line[LINE - 2] == b'x';
                        if !ok {
                            seen.errors += 1;
                        }
                        if let Check::Stamped = check {
                            if let Some(sent) = parse(&line[13..33]) {
                                let at = now.duration_since(base).as_nanos() as u64;
                                seen.latencies_ns.push(at.saturating_sub(sent as u64));
                            }
                        }
                        next += step;
                    }
                    Check::PerWriter => {
                        let w = line
                            .get(1)
                            .map(|b| (b - b'0') as usize)
                            .unwrap_or(63)
                            .min(63);
                        let ok = line.len() == LINE - 1
                            && parse(&line[3..11]) == Some(per_writer[w])
                            && line[LINE - 2] == b'x';
                        if !ok {
                            seen.errors += 1;
                        }
                        per_writer[w] += 1;
                    }
                }
            }
            carry.extend_from_slice(&buf[start..n]);
            seen.last = Some(now);
        }
        if !carry.is_empty() {
            seen.errors += 1;
        }
        seen
    })
}

/// Complete lines of `buf` from `*pos` on (without their `\n`), leaving
/// `*pos` at the start of the unfinished tail.
struct LinesIn<'a, 'p> {
    buf: &'a [u8],
    pos: &'p mut usize,
}

impl<'a> Iterator for LinesIn<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[*self.pos..];
        let end = memchr::memchr(b'\n', rest)?;
        *self.pos += end + 1;
        Some(&rest[..end])
    }
}

/// Parses ASCII digits (the readers' hot path: no UTF-8 or trimming).
fn parse(digits: &[u8]) -> Option<usize> {
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as usize;
    }
    Some(n)
}

/// Checks the sink file the way the readers check a stream.
fn verify_sink(path: &Path, want: usize, check: Check) -> Seen {
    let data = fs::read(path).unwrap_or_default();
    let mut seen = Seen::default();
    let (mut next, step) = check.first_and_step();
    let mut per_writer = [0usize; 64];
    for line in data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"probe"))
    {
        seen.lines += 1;
        let ok = match check {
            Check::Sequence | Check::Tenth | Check::Stamped => {
                let ok = line.len() == LINE - 1 && parse(&line[..12]) == Some(next);
                next += step;
                ok
            }
            Check::PerWriter => {
                let w = (line[1] - b'0') as usize;
                let ok = line.len() == LINE - 1 && parse(&line[3..11]) == Some(per_writer[w]);
                per_writer[w] += 1;
                ok
            }
        };
        if !ok {
            seen.errors += 1;
        }
    }
    if seen.lines != want {
        seen.errors += 1;
    }
    seen
}

/// Starts the readers, each wanting `want` lines checked by `check`, and
/// for the broker writes probe lines until every reader is attached.
/// Returns the reader threads and the writer fd.
fn connect(
    rig: &Rig,
    want: usize,
    check: Check,
    base: Instant,
) -> (Vec<thread::JoinHandle<Seen>>, File) {
    connect_each(rig, &vec![(want, check); rig.subscribers.len()], base)
}

/// What each subscriber of a `system` rig gets of lines 0..`lines` of the
/// sequence workload, and how its reader checks them.
fn sequence_plan(system: System, fanout: usize, lines: usize) -> Vec<(usize, Check)> {
    (1..=fanout)
        .map(|k| {
            let check = if system.filters(k) {
                Check::Tenth
            } else {
                Check::Sequence
            };
            (check.of(lines), check)
        })
        .collect()
}

/// [`connect`], with the `(want, check)` of each subscriber's reader in
/// `plan`.
fn connect_each(
    rig: &Rig,
    plan: &[(usize, Check)],
    base: Instant,
) -> (Vec<thread::JoinHandle<Seen>>, File) {
    assert_eq!(plan.len(), rig.subscribers.len());
    let attached = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = rig
        .subscribers
        .iter()
        .zip(plan)
        .map(|(s, &(want, check))| reader(s.clone(), want, check, attached.clone(), base))
        .collect();
    let mut input = OpenOptions::new()
        .write(true)
        .open(&rig.input)
        .expect("open input");
    if rig.system.is_broker() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while attached.load(Ordering::SeqCst) < rig.subscribers.len() {
            input.write_all(b"probe\n").unwrap();
            thread::sleep(Duration::from_millis(5));
            assert!(Instant::now() < deadline, "readers did not attach");
        }
    }
    (readers, input)
}

// ---------------------------------------------------------------------------
// Workloads.

struct Run {
    rate: f64,
    cpu: f64,
    ok: bool,
}

/// One measured pass: `data` (whole lines) into a fresh rig with `fanout`
/// subscribers and the sink, every line verified at every reader and in the
/// sink. Prints one line tagged `tag`.
fn run_once(system: System, fanout: usize, data: &[u8], lines: usize, tag: &str) -> Run {
    let chunk = (65536 / LINE) * LINE;
    let rig = start(system, fanout);
    let base = Instant::now();
    let plan = sequence_plan(system, fanout, lines);
    let (readers, mut input) = connect_each(&rig, &plan, base);
    let cpu0 = child_cpu_seconds(leaf_pid(rig.child.id()));
    let clients0 = cpu_seconds(std::process::id());
    let t0 = Instant::now();
    for c in data.chunks(chunk) {
        input.write_all(c).unwrap();
    }
    let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let last = seen.iter().filter_map(|s| s.last).max().unwrap_or(t0);
    let cpu = child_cpu_seconds(leaf_pid(rig.child.id())) - cpu0;
    let clients = cpu_seconds(std::process::id()) - clients0;
    drop(input);
    let stopped = stop(rig, system);
    let sink = verify_sink(&stopped.0, lines, Check::Sequence);
    let secs = last.duration_since(t0).as_secs_f64();
    let ok = seen
        .iter()
        .zip(&plan)
        .all(|(s, &(want, _))| s.lines == want && s.errors == 0)
        && sink.errors == 0;
    let r = Run {
        rate: lines as f64 / secs,
        cpu,
        ok,
    };
    println!(
        "{tag}: {:<29} {:>6.2} M lines/s  cpu {:.3} s per M lines (writer+readers {:.2} s)  {}",
        system.name(),
        r.rate / 1e6,
        r.cpu / lines as f64 * 1e6,
        clients,
        if ok {
            "verified: 0 lost, torn or reordered".to_string()
        } else {
            format!(
                "LOSS/ERRORS: readers {:?} sink {:?}",
                seen.iter().map(|s| (s.lines, s.errors)).collect::<Vec<_>>(),
                (sink.lines, sink.errors)
            )
        }
    );
    r
}

fn index_of(systems: &[System], system: System) -> usize {
    systems.iter().position(|&s| s == system).unwrap()
}

/// `lines` sequence lines through `systems` (1 → [`SUBSCRIBERS`] FIFOs + 1
/// file): an unreported warm-up round (the first system to run otherwise
/// pays for cold caches and page faults the others do not), then
/// `args.runs` measured rounds, systems alternating their order.
fn warm_then_rounds(systems: &[System], args: &Args, lines: usize) -> Vec<Vec<Run>> {
    let data = sequence_data(lines);
    let warm = lines / 10;
    // Not under a profiler: one spawn per system and run makes its counts.
    for &system in systems.iter().filter(|_| !profiling()) {
        let rig = start(system, SUBSCRIBERS);
        let plan = sequence_plan(system, SUBSCRIBERS, warm);
        let (readers, mut input) = connect_each(&rig, &plan, Instant::now());
        input.write_all(&data[..warm * LINE]).unwrap();
        for r in readers {
            r.join().unwrap();
        }
        drop(input);
        let _ = stop(rig, system);
    }
    rounds(systems, args.runs, |run, system| {
        run_once(
            system,
            SUBSCRIBERS,
            &data,
            lines,
            &format!("run {}", run + 1),
        )
    })
}

fn throughput(args: &Args) {
    let lines = args.lines.unwrap_or(LINES);
    println!(
        "\n## throughput: {lines} lines of {LINE} bytes in 64 KiB writes, 1 → {SUBSCRIBERS} FIFOs + 1 file"
    );
    let systems = &THROUGHPUT_SYSTEMS[..];
    let results = warm_then_rounds(systems, args, lines);
    let (b, tee, multi) = (
        index_of(systems, System::Broker),
        index_of(systems, System::Tee),
        index_of(systems, System::Multitee),
    );
    let per_m = |r: &Run| r.cpu / lines as f64 * 1e6;
    for (run, this) in results.iter().enumerate() {
        println!(
            "run {}: fifo-broker / tee = {:.2}×, / multitee = {:.2}× (1 MiB pipes: {:.2}×, {:.2}×); \
             cpu per M lines / multitee's = {:.2}×",
            run + 1,
            this[b].rate / this[tee].rate,
            this[b].rate / this[multi].rate,
            this[1].rate / this[tee].rate,
            this[1].rate / this[multi].rate,
            per_m(&this[b]) / per_m(&this[multi]),
        );
    }
    println!("\n| system | lines/s (median, min–max) | CPU s per 1 M lines (median) | ratio to tee (median of per-run ratios) | ratio to multitee | CPU per line / multitee's | verified |");
    println!("|---|---|---|---|---|---|---|");
    for (k, system) in systems.iter().enumerate() {
        let of = |f: &dyn Fn(&Vec<Run>) -> f64| stats(&results.iter().map(f).collect::<Vec<_>>());
        let (med, min, max) = of(&|r| r[k].rate);
        println!(
            "| {} | {:.2} M ({:.2}–{:.2}) | {:.3} | {:.2}× | {:.2}× | {:.2}× | {} |",
            system.name(),
            med / 1e6,
            min / 1e6,
            max / 1e6,
            of(&|r| per_m(&r[k])).0,
            of(&|r| r[k].rate / r[tee].rate).0,
            of(&|r| r[k].rate / r[multi].rate).0,
            of(&|r| per_m(&r[k]) / per_m(&r[multi])).0,
            if results.iter().all(|r| r[k].ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

/// The throughput workload, daemon only, unfiltered beside the same with
/// `match = FILTER_MATCH` on 2 of the 4 subscribers: what content filters
/// cost (or save) in one invocation.
fn filter(args: &Args) {
    let lines = args.lines.unwrap_or(LINES);
    println!(
        "\n## filter: {lines} lines of {LINE} bytes in 64 KiB writes, 1 → {SUBSCRIBERS} FIFOs + 1 file, \
         unfiltered vs s1 and s2 with match = '{FILTER_MATCH}' ({} lines each)",
        Check::Tenth.of(lines)
    );
    let systems = &FILTER_SYSTEMS[..];
    let results = warm_then_rounds(systems, args, lines);
    let (plain, filtered) = (
        index_of(systems, System::Broker),
        index_of(systems, System::BrokerFiltered),
    );
    let per_m = |r: &Run| r.cpu / lines as f64 * 1e6;
    for (run, this) in results.iter().enumerate() {
        println!(
            "run {}: unfiltered {:.2} M lines/s (cpu {:.3} s per M lines), \
             filtered {:.2} M lines/s (cpu {:.3} s per M lines), ratio filtered / unfiltered {:.2}×",
            run + 1,
            this[plain].rate / 1e6,
            per_m(&this[plain]),
            this[filtered].rate / 1e6,
            per_m(&this[filtered]),
            this[filtered].rate / this[plain].rate,
        );
    }
    println!("\n| system | lines/s (median, min–max) | CPU s per 1 M lines (median) | ratio filtered / unfiltered (median of per-run ratios) | verified |");
    println!("|---|---|---|---|---|");
    for (k, system) in systems.iter().enumerate() {
        let of = |f: &dyn Fn(&Vec<Run>) -> f64| stats(&results.iter().map(f).collect::<Vec<_>>());
        let (med, min, max) = of(&|r| r[k].rate);
        println!(
            "| {} | {:.2} M ({:.2}–{:.2}) | {:.3} | {} | {} |",
            system.name(),
            med / 1e6,
            min / 1e6,
            max / 1e6,
            of(&|r| per_m(&r[k])).0,
            if k == filtered {
                format!("{:.2}×", of(&|r| r[filtered].rate / r[plain].rate).0)
            } else {
                "–".to_string()
            },
            if results.iter().all(|r| r[k].ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

// ---------------------------------------------------------------------------
// Fan-out sweep.

const FANOUTS: [usize; 4] = [1, 4, 16, 64];

/// Lines per pass at `fanout` subscribers: fewer for large fan-outs, so a
/// pass moves about as many bytes to readers as at 4 (the readers, not the
/// systems, are what a 2-core machine runs out of).
fn sweep_lines(args: &Args, fanout: usize) -> usize {
    (args.lines.unwrap_or(LINES) * 4 / fanout.max(4)).max(10_000)
}

fn sweep(args: &Args) {
    println!(
        "\n## sweep: 1 → N subscribers + 1 file, N in {FANOUTS:?}, lines of {LINE} bytes in 64 KiB writes"
    );
    // [fanout][round][system]
    let mut results: Vec<Vec<Vec<Run>>> = Vec::new();
    for &fanout in &FANOUTS {
        let lines = sweep_lines(args, fanout);
        let data = sequence_data(lines);
        results.push(rounds(&SYSTEMS, args.runs, |run, system| {
            run_once(
                system,
                fanout,
                &data,
                lines,
                &format!("run {} N={fanout}", run + 1),
            )
        }));
    }
    // Medians: [fanout][system] = (lines/s, cpu s per M lines).
    let medians: Vec<Vec<(f64, f64)>> = FANOUTS
        .iter()
        .zip(&results)
        .map(|(&fanout, rounds)| {
            let lines = sweep_lines(args, fanout) as f64;
            (0..SYSTEMS.len())
                .map(|k| {
                    let rate = stats(&rounds.iter().map(|r| r[k].rate).collect::<Vec<_>>()).0;
                    let cpu = stats(
                        &rounds
                            .iter()
                            .map(|r| r[k].cpu / lines * 1e6)
                            .collect::<Vec<_>>(),
                    )
                    .0;
                    (rate, cpu)
                })
                .collect()
        })
        .collect();
    println!("\n| subscribers | lines per pass | lines/s: fifo-broker | tee | multitee | broker / multitee | broker / tee | CPU s per M lines: fifo-broker | tee | multitee | verified |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (f, &fanout) in FANOUTS.iter().enumerate() {
        let m = &medians[f];
        let ratio = |other: usize| {
            stats(
                &results[f]
                    .iter()
                    .map(|r| r[0].rate / r[other].rate)
                    .collect::<Vec<_>>(),
            )
            .0
        };
        println!(
            "| {fanout} | {} | {:.2} M | {:.2} M | {:.2} M | {:.2}× | {:.2}× | {:.3} | {:.3} | {:.3} | {} |",
            sweep_lines(args, fanout),
            m[0].0 / 1e6,
            m[1].0 / 1e6,
            m[2].0 / 1e6,
            ratio(2),
            ratio(1),
            m[0].1,
            m[1].1,
            m[2].1,
            if results[f].iter().flatten().all(|r| r.ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
    let (first, last) = (&medians[0], &medians[FANOUTS.len() - 1]);
    println!(
        "CPU per line at {} subscribers / at {}: fifo-broker {:.1}×, tee {:.1}×, multitee {:.1}×",
        FANOUTS[FANOUTS.len() - 1],
        FANOUTS[0],
        last[0].1 / first[0].1,
        last[1].1 / first[1].1,
        last[2].1 / first[2].1,
    );
    let svg = std::env::var_os("FIFO_BENCH_SVG")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fanout-sweep.svg"));
    fs::write(&svg, sweep_svg(&medians, args.runs)).unwrap();
    println!("chart: {}", svg.display());
}

/// The sweep as a hand-written SVG: lines/s (left) and CPU per M lines on a
/// log scale (right) against the number of subscribers.
fn sweep_svg(medians: &[Vec<(f64, f64)>], runs: usize) -> String {
    const W: f64 = 860.0;
    const H: f64 = 400.0;
    const COLORS: [&str; 3] = ["#d62728", "#1f77b4", "#2ca02c"];
    let (pw, ph, top) = (330.0, 260.0, 60.0);
    let lefts = [70.0, 70.0 + pw + 100.0];
    let x_at =
        |left: f64, f: usize| left + 20.0 + f as f64 * (pw - 40.0) / (FANOUTS.len() - 1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Fan-out sweep: 1 input → N subscriber FIFOs + 1 sink file, \
         100-byte lines, default pipes (median of {runs})</text>\n",
        W / 2.0
    );
    // Both panels on log scales (fan-out spans 64×), ranges a little wider
    // than the data, ticks at 1, 2 and 5 of each decade.
    let range = |values: Vec<f64>| {
        let lo = values.iter().cloned().fold(f64::MAX, f64::min).max(1e-4) / 1.4;
        let hi = values.iter().cloned().fold(0.0, f64::max).max(lo * 10.0) * 1.4;
        (lo.log10(), hi.log10())
    };
    let ranges = [
        range(medians.iter().flatten().map(|m| m.0 / 1e6).collect()),
        range(medians.iter().flatten().map(|m| m.1).collect()),
    ];
    let y_at = |p: usize, v: f64| {
        let (lo, hi) = ranges[p];
        top + ph - (v.max(1e-4).log10() - lo) / (hi - lo) * ph
    };
    for (p, left) in lefts.iter().enumerate() {
        let (title, unit) = if p == 0 {
            ("throughput", "M lines/s (log)")
        } else {
            ("fan-out process CPU per line", "CPU s per M lines (log)")
        };
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{title}</text>\n\
             <text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{unit}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">subscribers</text>\n",
            left + pw / 2.0,
            top - 10.0,
            left - 48.0,
            top + ph / 2.0,
            left + pw / 2.0,
            top + ph + 36.0
        );
        let (lo, hi) = ranges[p];
        let ticks: Vec<(f64, String)> = (lo.floor() as i32..=hi.ceil() as i32)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(&v.log10()))
            .map(|v| (y_at(p, v), format!("{}", (v * 1e4).round() / 1e4)))
            .collect();
        for (y, label) in ticks {
            out += &format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
                left + pw,
                left - 6.0,
                y + 4.0
            );
        }
        for (f, fanout) in FANOUTS.iter().enumerate() {
            out += &format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{fanout}</text>\n",
                x_at(*left, f),
                top + ph + 18.0
            );
        }
        out += &format!(
            "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n"
        );
        if p == 1 {
            // The issue's target: at 64 subscribers, at most 4× the
            // daemon's CPU per line at 1.
            let y = y_at(1, 4.0 * medians[0][0].1);
            out += &format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#d62728\" \
                 stroke-dasharray=\"5,4\" opacity=\"0.6\"/>\n<text x=\"{}\" y=\"{:.1}\" \
                 fill=\"#d62728\" font-size=\"11\">target: 4× fifo-broker at 1</text>\n",
                left + pw,
                left + 6.0,
                y - 5.0
            );
        }
        for (k, color) in COLORS.iter().enumerate() {
            let points: Vec<(f64, f64)> = medians
                .iter()
                .enumerate()
                .map(|(f, m)| {
                    let v = if p == 0 { m[k].0 / 1e6 } else { m[k].1 };
                    (x_at(*left, f), y_at(p, v))
                })
                .collect();
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            out += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
                path.join(" ")
            );
            for (x, y) in points {
                out +=
                    &format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{color}\"/>\n");
            }
        }
    }
    // Legend.
    for (k, system) in SYSTEMS.iter().enumerate() {
        let x = 250.0 + k as f64 * 140.0;
        out += &format!(
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"3\"/>\n\
             <text x=\"{}\" y=\"{}\">{}</text>\n",
            x + 24.0,
            COLORS[k],
            x + 30.0,
            H - 14.0 + 4.0,
            system.name(),
            y = H - 14.0
        );
    }
    out + "</svg>\n"
}

// ---------------------------------------------------------------------------
// Fairness: a flood on one input must not delay another.

/// What carries the two streams from their writers to their readers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// One daemon: inputs `bulk` and `alerts`, a `block` subscriber on
    /// `bulk`, a `{line}` subscriber on `alerts`, and the shipped
    /// config's catch-all sink.
    Broker,
    /// The hand-rolled alternative: `cat bulk_in > bulk_out` and
    /// `cat alerts_in > alerts_out`, one process per input, no sink.
    Cat,
    /// No relay for the alerts (written straight into the FIFO their reader
    /// reads); the flood still goes through `cat`. The machine's own floor.
    Direct,
}

const FAIRNESS: [(Relay, bool); 5] = [
    (Relay::Broker, false),
    (Relay::Broker, true),
    (Relay::Cat, false),
    (Relay::Cat, true),
    (Relay::Direct, true),
];

/// Alerts per pass, one every `ALERT_EVERY`: 3 s.
const ALERTS: usize = 1500;
const ALERT_EVERY: Duration = Duration::from_millis(2);

fn fairness_name(relay: Relay, flood: bool) -> &'static str {
    match (relay, flood) {
        (Relay::Broker, false) => "fifo-broker, quiet",
        (Relay::Broker, true) => "fifo-broker, bulk flooded",
        (Relay::Cat, false) => "cat relay per input, quiet",
        (Relay::Cat, true) => "cat relay per input, bulk flooded",
        (Relay::Direct, _) => "no relay for alerts, bulk flooded via cat",
    }
}

struct FairRun {
    /// p50, p99, max of the alerts' arrival delay, µs.
    latency: [f64; 3],
    /// Bytes per second the busy reader of `bulk` got while alerts ran.
    bulk_rate: f64,
    ok: bool,
}

fn fairness_once(relay: Relay, flood: bool) -> FairRun {
    let scratch = Scratch::new("fifo-bench", "fairness");
    let dir = scratch.0.join("fifos");
    let (bulk_in, bulk_out) = (dir.join("bulk"), dir.join("bulk.out"));
    let (alerts_in, alerts_out) = (dir.join("alerts"), dir.join("alerts.out"));
    let mut children: Vec<Child> = Vec::new();
    if relay == Relay::Broker {
        let config = format!(
            "[broker]\ndir = {dir:?}\nlog_dir = {:?}\n{}\
             [inputs.bulk]\n[inputs.alerts]\n\
             [subscribers.\"bulk.out\"]\nfrom = [\"bulk\"]\nwhen_full = \"block\"\n\
             [subscribers.\"alerts.out\"]\nfrom = [\"alerts\"]\nformat = \"{{line}}\"\n\
             [sinks.archive]\npath = \"archive.log\"\nfrom = [\"*\"]\n\
             format = \"{{time}} {{input}} {{line}}\"\nmax_bytes = 104857600\nkeep = 1\n",
            scratch.0,
            System::Broker.pipe_bytes_line()
        );
        let path = scratch.0.join("broker.toml");
        fs::write(&path, config).unwrap();
        children.push(spawn_broker("broker-fairness", &scratch.0, &path).0);
    } else {
        fs::create_dir_all(&dir).unwrap();
        for p in [&bulk_in, &bulk_out, &alerts_in, &alerts_out] {
            mkfifo(p);
        }
        let mut pairs = vec![(&bulk_in, &bulk_out)];
        if relay == Relay::Cat {
            pairs.push((&alerts_in, &alerts_out));
        }
        for (from, to) in pairs {
            children.push(
                wrapped("FIFO_BENCH_WRAP_BASELINE", "cat", "sh")
                    .arg("-c")
                    .arg("exec cat < \"$0\" > \"$1\"")
                    .arg(from)
                    .arg(to)
                    .spawn()
                    .expect("spawn cat"),
            );
        }
    }
    let alerts_path = if relay == Relay::Direct {
        &alerts_out
    } else {
        &alerts_in
    };
    // The busy reader of `bulk`: reads as fast as it can, counts bytes.
    let bulk_bytes = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (path, bytes) = (bulk_out.clone(), bulk_bytes.clone());
        thread::spawn(move || {
            let mut f = File::open(&path).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(n @ 1..) = f.read(&mut buf) {
                bytes.fetch_add(n, Ordering::Relaxed);
            }
        })
    };
    let base = Instant::now();
    let attached = Arc::new(AtomicUsize::new(0));
    let alerts_reader = reader(
        alerts_out.clone(),
        ALERTS,
        Check::Stamped,
        attached.clone(),
        base,
    );
    let mut alerts = OpenOptions::new().write(true).open(alerts_path).unwrap();
    let mut bulk = OpenOptions::new().write(true).open(&bulk_in).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while attached.load(Ordering::SeqCst) < 1 || bulk_bytes.load(Ordering::SeqCst) == 0 {
        alerts.write_all(b"probe\n").unwrap();
        bulk.write_all(b"probe\n").unwrap();
        thread::sleep(Duration::from_millis(5));
        assert!(Instant::now() < deadline, "readers did not attach");
    }
    let stop_flood = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = if flood {
        let stop = stop_flood.clone();
        Some(thread::spawn(move || {
            let chunk = sequence_data(65536 / LINE);
            while !stop.load(Ordering::Relaxed) {
                if bulk.write_all(&chunk).is_err() {
                    break;
                }
            }
        }))
    } else {
        // Quiet: the writer stays attached and writes nothing.
        let (idle, stop) = (bulk, stop_flood.clone());
        Some(thread::spawn(move || {
            let _idle = idle;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
        }))
    };
    // Let the flood settle (the daemon may grow pipes) before alerts start.
    thread::sleep(Duration::from_millis(300));
    let bytes0 = bulk_bytes.load(Ordering::SeqCst);
    let t0 = write_stamped(&mut alerts, ALERTS, ALERT_EVERY, base);
    let wait = Instant::now() + Duration::from_secs(5);
    while !alerts_reader.is_finished() && Instant::now() < wait {
        thread::sleep(Duration::from_millis(5));
    }
    let bulk_rate =
        (bulk_bytes.load(Ordering::SeqCst) - bytes0) as f64 / t0.elapsed().as_secs_f64();
    stop_flood.store(true, Ordering::SeqCst);
    drop(alerts);
    if let Some(f) = flooder {
        f.join().unwrap();
    }
    for mut child in children {
        if relay == Relay::Broker {
            terminate(&child);
        }
        let _ = child.wait();
    }
    let seen = alerts_reader.join().unwrap();
    busy.join().unwrap();
    FairRun {
        latency: latency_us(&seen),
        bulk_rate,
        ok: seen.lines == ALERTS && seen.errors == 0,
    }
}

fn fairness(args: &Args) {
    println!(
        "\n## fairness: input `bulk` flooded (64 KiB writes, a `block` subscriber read by a busy reader, \
         the shipped-style sink) while input `alerts` carries one stamped line every {} ms ({} lines) to its own subscriber",
        ALERT_EVERY.as_millis(),
        ALERTS
    );
    let mut results: Vec<Vec<FairRun>> = (0..FAIRNESS.len()).map(|_| Vec::new()).collect();
    for run in 0..args.runs {
        for k in 0..FAIRNESS.len() {
            let slot = (k + run) % FAIRNESS.len();
            let (relay, flood) = FAIRNESS[slot];
            let r = fairness_once(relay, flood);
            println!(
                "run {}: {:<42} alerts p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs  bulk {:>6.0} MB/s  {}",
                run + 1,
                fairness_name(relay, flood),
                r.latency[0],
                r.latency[1],
                r.latency[2],
                r.bulk_rate / 1e6,
                if r.ok { "all alerts, in order" } else { "ALERTS LOST/TORN" }
            );
            results[slot].push(r);
        }
        let p99 = |k: usize| results[k][run].latency[1];
        println!(
            "run {}: under the flood, fifo-broker p99 {:.0} µs vs cat relay {:.0} µs ({:.2}×)",
            run + 1,
            p99(1),
            p99(3),
            p99(1) / p99(3)
        );
    }
    println!("\n| alerts carried by | alerts p50 µs | p99 µs, median (min–max) | max µs (median) | bulk through, MB/s | all alerts in order |");
    println!("|---|---|---|---|---|---|");
    for (k, &(relay, flood)) in FAIRNESS.iter().enumerate() {
        let of = |f: &dyn Fn(&FairRun) -> f64| stats(&results[k].iter().map(f).collect::<Vec<_>>());
        let p99 = of(&|r| r.latency[1]);
        println!(
            "| {} | {:.0} | {:.0} ({:.0}–{:.0}) | {:.0} | {} | {} |",
            fairness_name(relay, flood),
            of(&|r| r.latency[0]).0,
            p99.0,
            p99.1,
            p99.2,
            of(&|r| r.latency[2]).0,
            if flood {
                format!("{:.0}", of(&|r| r.bulk_rate / 1e6).0)
            } else {
                "–".to_string()
            },
            if results[k].iter().all(|r| r.ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

/// Stops a rig and returns where its sink is (kept until the scratch drops).
fn stop(mut rig: Rig, system: System) -> (PathBuf, Rig) {
    if system.is_broker() {
        terminate(&rig.child);
    }
    let _ = rig.child.wait();
    (rig.sink.clone(), rig)
}

/// Writes `count` lines into `out` in the form [`Check::Stamped`] expects,
/// one write() each, line `i` due `i × every` after the first and stamped
/// with the nanoseconds from `base` to when it goes out. Returns when the
/// first was due.
fn write_stamped(out: &mut File, count: usize, every: Duration, base: Instant) -> Instant {
    let t0 = Instant::now();
    let mut line = Vec::with_capacity(LINE);
    for i in 0..count {
        let due = t0 + every * i as u32;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        line.clear();
        let stamp = Instant::now().duration_since(base).as_nanos();
        write!(line, "{i:012} {stamp:020} ").unwrap();
        line.resize(LINE - 1, b'x');
        line.push(b'\n');
        out.write_all(&line).unwrap();
    }
    t0
}

/// p50, p99 and max of the arrival delays a stamped reader saw, in µs.
fn latency_us(seen: &Seen) -> [f64; 3] {
    let mut lat = seen.latencies_ns.clone();
    lat.sort_unstable();
    let at = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    [at(0.50), at(0.99), at(1.0)]
}

fn latency(args: &Args) {
    println!("\n## latency: one stamped line per ms for 2 s, arrival delay at one subscriber");
    let lines = 2000;
    // Per system: p50, p99, max of each run (µs).
    let mut results: Vec<Vec<[f64; 3]>> = vec![Vec::new(); SYSTEMS.len()];
    let mut verified = [true; 3];
    for run in 0..args.runs {
        for k in 0..SYSTEMS.len() {
            let slot = (k + run) % SYSTEMS.len();
            let system = SYSTEMS[slot];
            let rig = start(system, SUBSCRIBERS);
            let base = Instant::now();
            let (readers, mut input) = connect(&rig, lines, Check::Stamped, base);
            write_stamped(&mut input, lines, Duration::from_millis(1), base);
            let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            drop(input);
            let _ = stop(rig, system);
            verified[slot] &= seen.iter().all(|s| s.lines == lines && s.errors == 0);
            results[slot].push(latency_us(&seen[0]));
        }
    }
    println!("| system | p50 µs | p99 µs | max µs | p50 / tee | p99 / tee | verified |");
    println!("|---|---|---|---|---|---|---|");
    let median_of =
        |k: usize, i: usize| stats(&results[k].iter().map(|r| r[i]).collect::<Vec<_>>());
    for (k, system) in SYSTEMS.iter().enumerate() {
        let (p50, p99, max) = (median_of(k, 0), median_of(k, 1), median_of(k, 2));
        println!(
            "| {} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {:.0} | {:.2}× | {:.2}× | {} |",
            system.name(),
            p50.0,
            p50.1,
            p50.2,
            p99.0,
            p99.1,
            p99.2,
            max.0,
            p50.0 / median_of(1, 0).0,
            p99.0 / median_of(1, 1).0,
            if verified[k] { "yes" } else { "NO" }
        );
    }
}

fn writers(args: &Args) {
    const WRITERS: usize = 8;
    const PER: usize = 50_000;
    println!("\n## writers: {WRITERS} concurrent writers × {PER} lines, one write() per line");
    println!(
        "| system | lines/s | cpu s | verified (untorn, per-writer order, all 4 readers + sink) |"
    );
    println!("|---|---|---|---|");
    for _run in 0..args.runs.min(1) {
        for system in SYSTEMS {
            let rig = start(system, SUBSCRIBERS);
            let (readers, probe_input) =
                connect(&rig, WRITERS * PER, Check::PerWriter, Instant::now());
            let cpu0 = child_cpu_seconds(leaf_pid(rig.child.id()));
            let t0 = Instant::now();
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let path = rig.input.clone();
                    thread::spawn(move || {
                        let mut f = OpenOptions::new()
                            .write(true)
                            .custom_flags(0)
                            .open(path)
                            .unwrap();
                        let mut line = Vec::with_capacity(LINE);
                        for i in 0..PER {
                            line.clear();
                            write!(line, "w{w} {i:08} ").unwrap();
                            line.resize(LINE - 1, b'x');
                            line.push(b'\n');
                            f.write_all(&line).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            let last = seen.iter().filter_map(|s| s.last).max().unwrap_or(t0);
            let cpu = child_cpu_seconds(leaf_pid(rig.child.id())) - cpu0;
            drop(probe_input);
            let (sink, _rig) = stop(rig, system);
            let sink = verify_sink(&sink, WRITERS * PER, Check::PerWriter);
            let ok = seen
                .iter()
                .all(|s| s.lines == WRITERS * PER && s.errors == 0)
                && sink.errors == 0;
            println!(
                "| {} | {:.2} M | {:.2} | {} |",
                system.name(),
                (WRITERS * PER) as f64 / last.duration_since(t0).as_secs_f64() / 1e6,
                cpu,
                if ok {
                    "yes".to_string()
                } else {
                    format!("NO {:?}", seen)
                }
            );
        }
    }
}

/// Starts the broker on `n_in` inputs, `n_sub` subscribers (sub i from in i)
/// and a catch-all sink; returns the child, its READY time and the scratch.
fn start_many(tag: &str, n_in: usize, n_sub: usize) -> (Child, Duration, Scratch) {
    let scratch = Scratch::new("fifo-bench", tag);
    // FIFOs on tmpfs (Scratch is there), as /run is under systemd.
    let dir = scratch.0.join("fifos");
    let mut config = format!("[broker]\ndir = {dir:?}\nlog_dir = {:?}\n", scratch.0);
    for i in 0..n_in {
        config += &format!("[inputs.in{i}]\n");
    }
    for i in 0..n_sub {
        config += &format!("[subscribers.sub{i}]\nfrom = [\"in{i}\"]\n");
    }
    config += "[sinks.all]\npath = \"all.log\"\nfrom = [\"*\"]\n";
    let path = scratch.0.join("broker.toml");
    fs::write(&path, config).unwrap();
    let (child, ready) = spawn_broker(tag, &scratch.0, &path);
    (child, ready, scratch)
}

fn idle() {
    println!("\n## idle: 1,000 inputs + 1,000 subscribers, readers and writers attached, 10 s");
    let (mut child, ready, scratch) = start_many("idle", 1000, 1000);
    let pid = child.id();
    let dir = scratch.0.join("fifos");
    let readers: Vec<File> = (0..1000)
        .map(|i| {
            OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(dir.join(format!("sub{i}")))
                .unwrap()
        })
        .collect();
    let mut writers: Vec<File> = (0..1000)
        .map(|i| {
            OpenOptions::new()
                .write(true)
                .open(dir.join(format!("in{i}")))
                .unwrap()
        })
        .collect();
    for w in &mut writers {
        w.write_all(b"attach\n").unwrap();
    }
    // The daemon refreshes `STATUS=` once, a second after the last activity
    // (the lines above): let that pass before the idle window starts.
    thread::sleep(Duration::from_secs(2));
    let (cpu0, csw0) = (
        cpu_seconds(pid),
        proc_status(pid, "voluntary_ctxt_switches:"),
    );
    thread::sleep(Duration::from_secs(10));
    let (cpu1, csw1) = (
        cpu_seconds(pid),
        proc_status(pid, "voluntary_ctxt_switches:"),
    );
    let rss = proc_status(pid, "VmRSS:");
    let attached = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("| READY=1 after start | CPU over 10 s | voluntary context switches over 10 s | RSS | open fds |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} ms | {:.2} s | {} | {:.1} MiB | {attached} |",
        ready.as_secs_f64() * 1000.0,
        cpu1 - cpu0,
        csw1 - csw0,
        rss as f64 / 1024.0
    );
    drop(readers);
    drop(writers);
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_dir_all(&dir);
    drop(scratch);
}

fn scale() {
    println!(
        "\n## scale: 5,000 inputs + 5,000 subscribers (10,000 FIFOs), one line into each input"
    );
    let (mut child, ready, scratch) = start_many("scale", 5000, 5000);
    let dir = scratch.0.join("fifos");
    let t0 = Instant::now();
    for i in 0..5000 {
        let mut w = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(dir.join(format!("in{i}")))
            .expect("every input accepts a writer");
        w.write_all(format!("line {i}\n").as_bytes()).unwrap();
    }
    let sink = scratch.0.join("all.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = 0;
    while Instant::now() < deadline {
        lines = fs::read(&sink)
            .map(|d| memchr::memchr_iter(b'\n', &d).count())
            .unwrap_or(0);
        if lines >= 5000 {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let fds = fs::read_dir(format!("/proc/{}/fd", child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("| READY=1 after start | lines reaching the sink | time to deliver all | open fds |");
    println!("|---|---|---|---|");
    println!(
        "| {:.0} ms | {lines} / 5000 | {:.0} ms | {fds} |",
        ready.as_secs_f64() * 1000.0,
        t0.elapsed().as_secs_f64() * 1000.0
    );
    terminate(&child);
    let _ = child.wait();
    let _ = fs::remove_dir_all(&dir);
    drop(scratch);
}

// ---------------------------------------------------------------------------

fn ensure_multitee() {
    if Command::new("sh")
        .arg("-c")
        .arg("command -v multitee")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return;
    }
    eprintln!("installing multitee from Debian's packages ...");
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .stdout(Stdio::null())
        .status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "multitee"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "multitee is needed (apt-get install multitee, as root)");
}

fn print_machine() {
    let tee = Command::new("tee")
        .arg("--version")
        .output()
        .map(|o| common::first_line(&o.stdout))
        .unwrap_or_default();
    println!(
        "# fifo-broker {} vs {tee}, multitee (Debian)\n{}",
        env!("CARGO_PKG_VERSION"),
        common::machine()
    );
}
