//! fifo-broker beside `tee` and `multitee`, in one invocation, on the same
//! generated workloads:
//!
//!   cargo bench --bench fifo_bench            # everything, 3 runs each
//!   cargo bench --bench fifo_bench -- --runs 1 --only throughput,latency
//!
//! Topology for the comparisons: one input FIFO → 4 subscriber FIFOs + 1 sink
//! file, every output lossless (`when_full = "block"`), format `{line}` (so
//! all three systems do the same work), readers that count and verify every
//! line. `tee` and `multitee` cannot attach readers lazily or frame lines;
//! they get the same FIFOs, opened before the writer starts.
//!
//! Workloads: throughput (2,000,000 lines of 100 bytes in 64 KiB writes),
//! latency (one stamped line per millisecond for 2 s), writers (8 × 50,000
//! lines, one write() each), idle (1,000 inputs + 1,000 subscribers for 10
//! s, broker only), scale (10,000 FIFOs, broker only). Figures that swing
//! between runs on a shared machine are reported as median (min–max), with
//! ratios computed inside the same run.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fifo-broker");
const LINE: usize = 100;
const SUBSCRIBERS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Broker,
    Tee,
    Multitee,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Broker => "fifo-broker",
            System::Tee => "tee",
            System::Multitee => "multitee",
        }
    }
}

const SYSTEMS: [System; 3] = [System::Broker, System::Tee, System::Multitee];

struct Args {
    runs: usize,
    lines: usize,
    only: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 3,
        lines: 2_000_000,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--lines" => args.lines = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            "--only" => {
                args.only = it
                    .next()
                    .expect("--only a,b")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    ensure_multitee();
    print_machine();
    let wants = |w: &str| args.only.is_empty() || args.only.iter().any(|o| o == w);
    if wants("throughput") {
        throughput(&args);
    }
    if wants("latency") {
        latency(&args);
    }
    if wants("writers") {
        writers(&args);
    }
    if wants("idle") {
        idle();
    }
    if wants("scale") {
        scale();
    }
}

// ---------------------------------------------------------------------------
// Setup of one system under test.

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// Under `$FIFO_BENCH_DIR`, else /dev/shm: on tmpfs the sink file's cost
    /// is the copy into memory, not the disk's writeback, which swings with
    /// whatever the machine wrote before and would decide the ranking.
    fn new(tag: &str) -> Scratch {
        let base = std::env::var_os("FIFO_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = PathBuf::from("/dev/shm");
                if shm.is_dir() {
                    shm
                } else {
                    std::env::temp_dir()
                }
            });
        let dir = base.join(format!("fifo-bench-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

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

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Starts `system`; for tee/multitee the readers must open the subscriber
/// FIFOs before the writer opens the input (both block in open until then).
fn start(system: System) -> Rig {
    let scratch = Scratch::new(system.name());
    let dir = scratch.0.join("fifos");
    let sink = scratch.0.join("sink.log");
    let (input, subscribers): (PathBuf, Vec<PathBuf>) = (
        dir.join("in"),
        (1..=SUBSCRIBERS)
            .map(|k| dir.join(format!("s{k}")))
            .collect(),
    );
    let child = match system {
        System::Broker => {
            let mut config = format!(
                "[broker]\ndir = {dir:?}\nlog_dir = {:?}\n{}[inputs.in]\n",
                scratch.0,
                // The broker's pipe size knob; FIFO_BENCH_PIPE_BYTES=0 keeps
                // the kernel default (64 KiB), like the baselines' pipes.
                match std::env::var("FIFO_BENCH_PIPE_BYTES").as_deref() {
                    Ok("0") => String::new(),
                    Ok(v) => format!("pipe_bytes = {v}\n"),
                    Err(_) => "pipe_bytes = 1048576\n".to_string(),
                }
            );
            // FIFO_BENCH_BUFFER_BYTES=N sets every output's buffer_bytes.
            let buffer = std::env::var("FIFO_BENCH_BUFFER_BYTES")
                .map(|v| format!("buffer_bytes = {v}\n"))
                .unwrap_or_default();
            for k in 1..=SUBSCRIBERS {
                config += &format!(
                    "[subscribers.s{k}]\nfrom = [\"in\"]\nwhen_full = \"block\"\n{buffer}"
                );
            }
            config += &format!(
                "[sinks.sink]\npath = {sink:?}\nfrom = [\"in\"]\nformat = \"{{line}}\"\n\
                 when_full = \"block\"\nmax_bytes = 0\n{buffer}"
            );
            let path = scratch.0.join("broker.toml");
            fs::write(&path, config).unwrap();
            spawn_broker(&scratch.0, &path).0
        }
        System::Tee | System::Multitee => {
            fs::create_dir_all(&dir).unwrap();
            mkfifo(&input);
            for s in &subscribers {
                mkfifo(s);
            }
            let script = if system == System::Tee {
                "exec tee \"$1\" \"$2\" \"$3\" \"$4\" < \"$0\" >> \"$5\"".to_string()
            } else {
                "exec multitee -b65536 0-3,4,5,6,7 < \"$0\" 3>\"$1\" 4>\"$2\" 5>\"$3\" 6>\"$4\" 7>>\"$5\""
                    .to_string()
            };
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(&input)
                .args(&subscribers)
                .arg(&sink)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sh")
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

/// Spawns the daemon with a fake NOTIFY_SOCKET; returns it and the time
/// from spawn to READY=1.
fn spawn_broker(dir: &Path, config: &Path) -> (Child, Duration) {
    let sock_path = dir.join("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let t0 = Instant::now();
    // FIFO_BENCH_WRAP="strace -c -o FILE" (or perf stat ...) profiles the daemon.
    let wrap = std::env::var("FIFO_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let child = command
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "warn")
        .env_remove("WATCHDOG_USEC")
        .stderr(File::create(dir.join("broker.stderr")).unwrap())
        .spawn()
        .expect("spawn fifo-broker");
    let mut child = child;
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return (child, t0.elapsed());
            }
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no READY=1 from fifo-broker within 60 s: {e}");
            }
        }
    }
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
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
    /// `wK SEQ(8) ...` in order per writer K.
    PerWriter,
    /// `SEQ(12) ' ' NANOS(20) ...`: record now - NANOS.
    Stamped,
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
        let mut next = 0usize;
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
                    Check::Sequence | Check::Stamped => {
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
                        next += 1;
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
    let mut next = 0;
    let mut per_writer = [0usize; 64];
    for line in data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"probe"))
    {
        seen.lines += 1;
        let ok = match check {
            Check::Sequence | Check::Stamped => {
                let ok = line.len() == LINE - 1 && parse(&line[..12]) == Some(next);
                next += 1;
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

/// Starts the readers, and for the broker writes probe lines until every
/// reader is attached. Returns the reader threads and the writer fd.
fn connect(
    rig: &Rig,
    want: usize,
    check: Check,
    base: Instant,
) -> (Vec<thread::JoinHandle<Seen>>, File) {
    let attached = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = rig
        .subscribers
        .iter()
        .map(|s| reader(s.clone(), want, check, attached.clone(), base))
        .collect();
    let mut input = OpenOptions::new()
        .write(true)
        .open(&rig.input)
        .expect("open input");
    if rig.system == System::Broker {
        let deadline = Instant::now() + Duration::from_secs(20);
        while attached.load(Ordering::SeqCst) < SUBSCRIBERS {
            input.write_all(b"probe\n").unwrap();
            thread::sleep(Duration::from_millis(5));
            assert!(Instant::now() < deadline, "readers did not attach");
        }
    }
    (readers, input)
}

// ---------------------------------------------------------------------------
// Workloads.

fn sequence_data(lines: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(lines * LINE);
    for i in 0..lines {
        let start = data.len();
        write!(data, "{i:012} ").unwrap();
        data.resize(start + LINE - 1, b'x');
        data.push(b'\n');
    }
    data
}

struct Run {
    rate: f64,
    cpu: f64,
    ok: bool,
}

fn throughput(args: &Args) {
    println!(
        "\n## throughput: {} lines of {LINE} bytes in 64 KiB writes, 1 → 4 FIFOs + 1 file",
        args.lines
    );
    let data = sequence_data(args.lines);
    let chunk = (65536 / LINE) * LINE;
    let mut results: Vec<Vec<Run>> = Vec::new();
    // An unreported warm-up round: the first system to run otherwise pays
    // for cold caches and page faults the others do not.
    for system in SYSTEMS {
        let rig = start(system);
        let warm = args.lines / 10;
        let (readers, mut input) = connect(&rig, warm, Check::Sequence, Instant::now());
        input.write_all(&data[..warm * LINE]).unwrap();
        for r in readers {
            r.join().unwrap();
        }
        drop(input);
        let _ = stop(rig, system);
    }
    for run in 0..args.runs {
        // Each run starts with a different system, so none always pays for
        // the state (page cache, CPU frequency) the one before it left.
        let mut this: Vec<Option<Run>> = vec![None, None, None];
        for k in 0..SYSTEMS.len() {
            let slot = (k + run) % SYSTEMS.len();
            let system = SYSTEMS[slot];
            let rig = start(system);
            let base = Instant::now();
            let (readers, mut input) = connect(&rig, args.lines, Check::Sequence, base);
            let cpu0 = cpu_seconds(rig.child.id());
            let clients0 = cpu_seconds(std::process::id());
            let t0 = Instant::now();
            for c in data.chunks(chunk) {
                input.write_all(c).unwrap();
            }
            let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            let last = seen.iter().filter_map(|s| s.last).max().unwrap_or(t0);
            let cpu = cpu_seconds(rig.child.id()) - cpu0;
            let clients = cpu_seconds(std::process::id()) - clients0;
            drop(input);
            let stopped = stop(rig, system);
            let sink = verify_sink(&stopped.0, args.lines, Check::Sequence);
            let secs = last.duration_since(t0).as_secs_f64();
            let ok =
                seen.iter().all(|s| s.lines == args.lines && s.errors == 0) && sink.errors == 0;
            let r = Run {
                rate: args.lines as f64 / secs,
                cpu,
                ok,
            };
            println!(
                "run {}: {:<11} {:>6.2} M lines/s  cpu {:.2} s (writer+readers {:.2} s)  {}",
                run + 1,
                system.name(),
                r.rate / 1e6,
                r.cpu,
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
            this[slot] = Some(r);
        }
        let this: Vec<Run> = this
            .into_iter()
            .map(|r| r.expect("every system ran"))
            .collect();
        let tee = this[1].rate;
        let multi = this[2].rate;
        println!(
            "run {}: fifo-broker / tee = {:.2}×, fifo-broker / multitee = {:.2}×; cpu per M lines: broker {:.3} s, tee {:.3} s, multitee {:.3} s",
            run + 1,
            this[0].rate / tee,
            this[0].rate / multi,
            this[0].cpu / args.lines as f64 * 1e6,
            this[1].cpu / args.lines as f64 * 1e6,
            this[2].cpu / args.lines as f64 * 1e6,
        );
        results.push(this);
    }
    println!("\n| system | lines/s (median, min–max) | CPU s per 1 M lines (median) | ratio to tee (median of per-run ratios) | ratio to multitee | verified |");
    println!("|---|---|---|---|---|---|");
    for (k, system) in SYSTEMS.iter().enumerate() {
        let rates: Vec<f64> = results.iter().map(|r| r[k].rate).collect();
        let cpus: Vec<f64> = results
            .iter()
            .map(|r| r[k].cpu / args.lines as f64 * 1e6)
            .collect();
        let to_tee: Vec<f64> = results.iter().map(|r| r[k].rate / r[1].rate).collect();
        let to_multi: Vec<f64> = results.iter().map(|r| r[k].rate / r[2].rate).collect();
        let (med, min, max) = stats(&rates);
        println!(
            "| {} | {:.2} M ({:.2}–{:.2}) | {:.3} | {:.2}× | {:.2}× | {} |",
            system.name(),
            med / 1e6,
            min / 1e6,
            max / 1e6,
            stats(&cpus).0,
            stats(&to_tee).0,
            stats(&to_multi).0,
            if results.iter().all(|r| r[k].ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

/// Stops a rig and returns where its sink is (kept until the scratch drops).
fn stop(mut rig: Rig, system: System) -> (PathBuf, Rig) {
    if system == System::Broker {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(rig.child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
    }
    let _ = rig.child.wait();
    (rig.sink.clone(), rig)
}

fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
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
            let rig = start(system);
            let base = Instant::now();
            let (readers, mut input) = connect(&rig, lines, Check::Stamped, base);
            let t0 = Instant::now();
            let mut line = Vec::with_capacity(LINE);
            for i in 0..lines {
                let due = t0 + Duration::from_millis(i as u64);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                line.clear();
                let stamp = Instant::now().duration_since(base).as_nanos();
                write!(line, "{i:012} {stamp:020} ").unwrap();
                line.resize(LINE - 1, b'x');
                line.push(b'\n');
                input.write_all(&line).unwrap();
            }
            let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            drop(input);
            let _ = stop(rig, system);
            let mut lat = seen[0].latencies_ns.clone();
            lat.sort_unstable();
            let at = |p: f64| {
                let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
                lat.get(i).copied().unwrap_or(0) as f64 / 1000.0
            };
            verified[slot] &= seen.iter().all(|s| s.lines == lines && s.errors == 0);
            results[slot].push([at(0.50), at(0.99), at(1.0)]);
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
            let rig = start(system);
            let (readers, probe_input) =
                connect(&rig, WRITERS * PER, Check::PerWriter, Instant::now());
            let cpu0 = cpu_seconds(rig.child.id());
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
            let cpu = cpu_seconds(rig.child.id()) - cpu0;
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
    let scratch = Scratch::new(tag);
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
    let (child, ready) = spawn_broker(&scratch.0, &path);
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
    thread::sleep(Duration::from_secs(1));
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
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
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
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let tee = Command::new("tee")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "# fifo-broker {} vs {tee}, multitee (Debian)\nmachine: {} cores, {cpu}, Linux {}",
        env!("CARGO_PKG_VERSION"),
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    );
}
