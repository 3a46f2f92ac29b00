//! What `fifo_bench` and `forward_bench` share: their command line, the
//! scratch dir, mkfifo, the generated workload, spawning the daemon until
//! READY=1, CPU accounting from /proc, the rotation of systems between
//! rounds, the median of a figure and the header's machine line. Each bench
//! includes it with `#[path]`, like `soak/mod.rs`; only what both use lives
//! here, so neither gets dead code. It must never print: the output format
//! is each bench's own.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// The daemon under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fifo-broker");
/// Length of every generated line, its `\n` included.
pub const LINE: usize = 100;

/// The command line both benches take: `--runs N`, `--lines N`,
/// `--only a,b` (and the `--bench` that `cargo bench` adds).
pub struct Args {
    /// Measured rounds per workload.
    pub runs: usize,
    /// Lines per pass; `None` leaves each workload its own default.
    pub lines: Option<usize>,
    /// The workloads to run; empty for all.
    pub only: Vec<String>,
}

impl Args {
    /// Parses the process's arguments; panics on anything else, naming it.
    /// `workloads` is the example shown when `--only` lacks its value.
    pub fn parse(workloads: &str) -> Args {
        let mut args = Args {
            runs: 3,
            lines: None,
            only: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
                "--lines" => {
                    args.lines = Some(it.next().and_then(|v| v.parse().ok()).expect("--lines N"))
                }
                "--only" => {
                    args.only = it
                        .next()
                        .unwrap_or_else(|| panic!("--only {workloads}"))
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

    /// Whether workload `w` runs.
    pub fn wants(&self, w: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == w)
    }
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `BENCH-TAG-PID` under `$FIFO_BENCH_DIR`, else /dev/shm: on tmpfs a
    /// file written by the system under test (the sink, rsyslog's file, the
    /// JetStream store) costs a copy into memory, not the disk's writeback,
    /// which swings with whatever the machine wrote before and would decide
    /// the ranking.
    pub fn new(bench: &str, tag: &str) -> Scratch {
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
        let dir = base.join(format!("{bench}-{tag}-{}", std::process::id()));
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

/// Makes FIFO `path` (mode 0600); panics naming it.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Lines 0..`lines` of the workload: `SEQ(12) ' ' x...`, [`LINE`] bytes
/// with `\n`.
pub fn sequence_data(lines: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(lines * LINE);
    for i in 0..lines {
        let start = data.len();
        write!(data, "{i:012} ").unwrap();
        data.resize(start + LINE - 1, b'x');
        data.push(b'\n');
    }
    data
}

/// Spawns the daemon command `cmd` (the caller has set its program,
/// `--config` and anything else it wants) with a fake NOTIFY_SOCKET in
/// `dir`, `RUST_LOG=rust_log` and its stderr in `dir/broker.stderr`; returns
/// it and the time from spawn to READY=1. Kills it and panics, showing its
/// stderr, when READY=1 does not come within 60 s.
pub fn spawn_broker(mut cmd: Command, dir: &Path, rust_log: &str) -> (Child, Duration) {
    let sock_path = dir.join("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let stderr = dir.join("broker.stderr");
    let t0 = Instant::now();
    let mut child = cmd
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", rust_log)
        .env_remove("WATCHDOG_USEC")
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn fifo-broker");
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
                panic!(
                    "no READY=1 from fifo-broker within 60 s: {e}\n{}",
                    fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        }
    }
}

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
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

/// Runs every system once per round, each round starting with a different
/// one so none always pays for the state (page cache, CPU frequency) the one
/// before it left. Returns `[round][system]`, systems in `systems`' order.
pub fn rounds<S: Copy, R>(
    systems: &[S],
    runs: usize,
    mut one: impl FnMut(usize, S) -> R,
) -> Vec<Vec<R>> {
    (0..runs)
        .map(|run| {
            let mut this: Vec<Option<R>> = systems.iter().map(|_| None).collect();
            for k in 0..systems.len() {
                let slot = (k + run) % systems.len();
                this[slot] = Some(one(run, systems[slot]));
            }
            this.into_iter()
                .map(|r| r.expect("every system ran"))
                .collect()
        })
        .collect()
}

/// Median, min and max of `values` (not empty).
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The first line of a program's output `text`, without its newline.
pub fn first_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// `machine: N cores, CPU MODEL, Linux RELEASE`, the second line of each
/// bench's header.
pub fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {} cores, {cpu}, Linux {}",
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    )
}
