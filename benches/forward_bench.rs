//! fifo-broker's network forwards beside the alternatives, in one
//! invocation, on the same generated workload:
//!
//!   cargo bench --bench forward_bench                 # both workloads, 3 runs
//!   cargo bench --bench forward_bench -- --runs 1 --lines 100000 --only syslog
//!
//! syslog: one input FIFO → a `syslog+tcp` forward (`when_full = "block"`)
//! into a throwaway `rsyslogd` (imtcp on 127.0.0.1, omfile on tmpfs), beside
//! syslog-ng reading the same kind of FIFO with `pipe()` and sending with a
//! `syslog(transport("tcp"))` destination, `flags(flow-control)`, into the
//! same kind of rsyslog. syslog-ng runs twice: with its stock window and
//! fetch sizes, and tuned for throughput. 1,000,000 lines of 100 bytes in
//! 64 KiB writes; the clock stops when the last line is in rsyslog's file,
//! which is then checked line by line (none lost, torn or reordered; rsyslog
//! runs its main queue with one worker so that it keeps the order).
//!
//! nats: the same FIFO → a `nats://` forward into `nats-server -js` (stream
//! on `logs.>`, file storage on tmpfs), default window (256),
//! `when_full = "block"`, 200,000 lines; the clock stops when the forward's
//! `acked=` counter (SIGUSR1) reaches the count. Beside it, a reference
//! publisher (this bench binary re-run as a separate process: a blocking
//! reader of the same FIFO, HPUB with a `Nats-Msg-Id` and a reply subject
//! per line, the same window of 256 unacknowledged, a second thread reading
//! the PubAcks): what a straightforward client gets from the same server.
//!
//! Every server listens on 127.0.0.1 only, on a free port, keeps its files in
//! a scratch dir on tmpfs and is killed by its PID when its guard drops.
//! CPU is per process (utime + stime from /proc/PID/stat): the sender (the
//! daemon, syslog-ng, the reference publisher) and, separately, the server.
//! Figures that swing between runs on a shared machine are reported as
//! median (min–max), with ratios computed inside the same run; each run
//! starts with a different system.
//!
//! syslog-ng: an installed `syslog-ng` is used; otherwise the Debian package
//! `syslog-ng-core` is unpacked under `target/forward-bench/` (not installed:
//! it conflicts with rsyslog, which apt would remove) and, as root, its
//! missing library dependencies are installed with apt-get. rsyslog and
//! nats-server (packages `rsyslog`, `nats-server`) are installed when root
//! and missing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::{cpu_seconds, mkfifo, rounds, sequence_data, stats, Args, Scratch, BIN, LINE};

/// Pipe size of the input FIFO for every system (set by the writer with
/// F_SETPIPE_SZ, and by the daemon's `pipe_bytes`).
const PIPE_BYTES: usize = 1 << 20;
/// NATS: most unacknowledged messages (the forward's default `window`).
const WINDOW: usize = 256;
/// A sender that makes no progress for this long failed.
const STALL: Duration = Duration::from_secs(30);

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--nats-publisher") {
        reference_publisher(&argv[2..]);
        return;
    }
    let args = Args::parse("syslog,nats");
    assert!(args.runs > 0, "--runs must be at least 1");
    let tools = Tools::find(args.wants("syslog"), args.wants("nats"));
    print_machine(&tools);
    if args.wants("syslog") {
        syslog_workload(&args, &tools);
    }
    if args.wants("nats") {
        nats_workload(&args, &tools);
    }
    println!(
        "\ncommand: cargo bench --bench forward_bench -- {}",
        std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect::<Vec<_>>()
            .join(" ")
    );
}

// ---------------------------------------------------------------------------
// Processes, files, ports.

/// A child process killed (SIGKILL, by its PID) and reaped on drop.
struct Guard {
    child: Child,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// Where a program is, in `PATH` or the sbin directories.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Spawns `cmd` with its output in `log`, without any `NOTIFY_SOCKET`.
fn spawn_logged(mut cmd: Command, log: &Path) -> Guard {
    let out = File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = cmd
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    Guard { child }
}

/// Spawns the server `what` with [`spawn_logged`] and waits (at most 20 s)
/// until it accepts connections on `port`.
fn spawn_listening(cmd: Command, port: u16, what: &str, log: &Path) -> Guard {
    let mut server = spawn_logged(cmd, log);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if !server.alive() {
            panic!(
                "{what} exited before listening on 127.0.0.1:{port}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on 127.0.0.1:{port} after 20 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Opens FIFO `path` for writing once its reader has it open (at most 20 s,
/// without blocking in open), blocking writes, pipe size [`PIPE_BYTES`].
fn open_writer(path: &Path, reader: &mut Guard) -> File {
    let deadline = Instant::now() + Duration::from_secs(20);
    let f = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
        {
            Ok(f) => break f,
            Err(e) => {
                assert!(reader.alive(), "the reader of {} exited", path.display());
                assert!(
                    Instant::now() < deadline,
                    "nobody reads {} after 20 s: {e}",
                    path.display()
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::empty()).unwrap();
    let _ = rustix::pipe::fcntl_setpipe_size(&f, PIPE_BYTES);
    f
}

/// Writes `data` into `input` in 64 KiB writes on a thread (so a sender
/// that stalls cannot hang the bench: dropping it ends the write with
/// EPIPE).
fn write_all_chunked(mut input: File, data: Arc<Vec<u8>>) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        let chunk = (65536 / LINE) * LINE;
        data.chunks(chunk).all(|c| input.write_all(c).is_ok())
    })
}

// ---------------------------------------------------------------------------
// Passes, rounds and the table, the same for both workloads.

/// What one pass measured.
struct Run {
    /// Lines per second through the sender (for NATS: acknowledged).
    rate: f64,
    /// Sender CPU seconds.
    cpu: f64,
    /// Server (rsyslogd, nats-server) CPU seconds.
    server_cpu: f64,
    /// Every line arrived as checked.
    ok: bool,
}

/// What a workload's figures are called in its lines and table.
struct Labels {
    /// What [`Run::rate`] counts: `lines/s`, `acked lines/s`.
    rate: &'static str,
    /// The server's process name.
    server: &'static str,
    /// What a verified pass showed.
    verified: &'static str,
}

/// Passes `lines` lines through each of `systems` (the daemon first) with
/// `once`: an unreported warm-up pass on a tenth of them (page cache,
/// binaries, CPU frequency), then `args.runs` [`rounds`] with a line per
/// pass; then the table of medians, ratios to the daemon taken per run.
fn compare<S: Copy>(
    args: &Args,
    lines: usize,
    systems: &[S],
    name: fn(S) -> &'static str,
    labels: &Labels,
    once: impl Fn(S, &Arc<Vec<u8>>) -> Run,
) {
    let data = Arc::new(sequence_data(lines));
    let warm = Arc::new(sequence_data((lines / 10).max(1)));
    for &system in systems {
        let _ = once(system, &warm);
    }
    // One column wider than the longest name.
    let width = systems.iter().map(|&s| name(s).len()).max().unwrap_or(0) + 1;
    let results = rounds(systems, args.runs, |run, system| {
        let r = once(system, &data);
        println!(
            "run {}: {:<width$} {:>9.0} {}  sender cpu {:.2} s  {} cpu {:.2} s  {}",
            run + 1,
            name(system),
            r.rate,
            labels.rate,
            r.cpu,
            labels.server,
            r.server_cpu,
            if r.ok {
                labels.verified
            } else {
                "NOT VERIFIED"
            }
        );
        r
    });
    let per_m = |secs: f64| secs / lines as f64 * 1e6;
    println!(
        "\n| system | {}, median (min–max) | sender CPU s per 1 M lines | {} CPU s per 1 M lines | fifo-broker's lines/s ÷ this (per run, median) | verified |",
        labels.rate, labels.server
    );
    println!("|---|---|---|---|---|---|");
    for (k, &system) in systems.iter().enumerate() {
        let rates: Vec<f64> = results.iter().map(|r| r[k].rate).collect();
        let cpu: Vec<f64> = results.iter().map(|r| per_m(r[k].cpu)).collect();
        let server: Vec<f64> = results.iter().map(|r| per_m(r[k].server_cpu)).collect();
        let ratio: Vec<f64> = results.iter().map(|r| r[0].rate / r[k].rate).collect();
        let (med, min, max) = stats(&rates);
        println!(
            "| {} | {} ({}–{}) | {:.3} | {:.2} | {:.2}× | {} |",
            name(system),
            thousands(med),
            thousands(min),
            thousands(max),
            stats(&cpu).0,
            stats(&server).0,
            stats(&ratio).0,
            if results.iter().all(|r| r[k].ok) {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// The programs: found, or installed when root.

struct Tools {
    rsyslogd: Option<PathBuf>,
    syslog_ng: Option<SyslogNg>,
    nats_server: Option<PathBuf>,
}

/// A syslog-ng binary and what it needs to run from where it is.
struct SyslogNg {
    bin: PathBuf,
    /// `--module-path`, for an unpacked package.
    modules: Option<PathBuf>,
    /// `LD_LIBRARY_PATH`, for an unpacked package.
    libs: Option<PathBuf>,
}

impl SyslogNg {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(m) = &self.modules {
            c.arg(format!("--module-path={}", m.display()));
        }
        if let Some(l) = &self.libs {
            c.env("LD_LIBRARY_PATH", l);
        }
        c
    }

    fn version(&self) -> String {
        self.command()
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| common::first_line(&o.stdout))
            .unwrap_or_default()
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Tools {
    fn find(syslog: bool, nats: bool) -> Tools {
        let mut updated = false;
        let mut install = |binary: &str, package: &str| -> Option<PathBuf> {
            if let Some(p) = find_binary(binary) {
                return Some(p);
            }
            if !is_root() {
                return None;
            }
            eprintln!("installing {package} from Debian's packages ...");
            if !updated {
                apt_get(&["update", "-q"]);
                updated = true;
            }
            apt_get(&["install", "-y", "-q", package]);
            find_binary(binary)
        };
        let rsyslogd = if syslog {
            install("rsyslogd", "rsyslog")
        } else {
            None
        };
        let nats_server = if nats {
            install("nats-server", "nats-server")
        } else {
            None
        };
        let syslog_ng = if syslog { find_syslog_ng() } else { None };
        if syslog {
            assert!(
                rsyslogd.is_some(),
                "rsyslogd is needed (apt-get install rsyslog)"
            );
            assert!(
                syslog_ng.is_some(),
                "syslog-ng is needed (as root this bench unpacks Debian's syslog-ng-core)"
            );
        }
        if nats {
            assert!(
                nats_server.is_some(),
                "nats-server is needed (apt-get install nats-server)"
            );
        }
        Tools {
            rsyslogd,
            syslog_ng,
            nats_server,
        }
    }
}

/// An installed syslog-ng, else Debian's `syslog-ng-core` unpacked under
/// `target/forward-bench/` (installing it would remove rsyslog: both are
/// a `system-log-daemon`), its library dependencies installed as root.
fn find_syslog_ng() -> Option<SyslogNg> {
    if let Some(bin) = find_binary("syslog-ng") {
        return Some(SyslogNg {
            bin,
            modules: None,
            libs: None,
        });
    }
    let target = Path::new(BIN).parent()?.parent()?;
    let root = target.join("forward-bench").join("syslog-ng-core");
    let unpacked = |root: &Path| -> Option<SyslogNg> {
        let libs = root.join("usr/lib/syslog-ng");
        let modules = fs::read_dir(&libs)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("libaffile.so").is_file())?;
        Some(SyslogNg {
            bin: root.join("usr/sbin/syslog-ng"),
            modules: Some(modules),
            libs: Some(libs),
        })
    };
    if let Some(s) = unpacked(&root).filter(|s| !s.version().is_empty()) {
        return Some(s);
    }
    eprintln!(
        "unpacking Debian's syslog-ng-core into {} ...",
        root.display()
    );
    let download = target.join("forward-bench").join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).ok()?;
    let fetched = Command::new("apt-get")
        .args(["download", "-q", "syslog-ng-core"])
        .current_dir(&download)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fetched && is_root() {
        apt_get(&["update", "-q"]);
        Command::new("apt-get")
            .args(["download", "-q", "syslog-ng-core"])
            .current_dir(&download)
            .stdout(Stdio::null())
            .status()
            .ok()?;
    }
    let deb = fs::read_dir(&download)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))?;
    let _ = fs::remove_dir_all(&root);
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let s = unpacked(&root)?;
    if s.version().is_empty() && is_root() {
        // Its libraries (libivykis0, libnet1, ...): the first alternative of
        // each dependency, which conflicts with nothing.
        let depends = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Depends")
            .output()
            .ok()?;
        let packages: Vec<String> = String::from_utf8_lossy(&depends.stdout)
            .split(',')
            .filter_map(|d| d.split('|').next())
            .filter_map(|d| d.split_whitespace().next())
            .map(String::from)
            .collect();
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(packages.iter().map(String::as_str));
        if !apt_get(&args) {
            apt_get(&["update", "-q"]);
            apt_get(&args);
        }
    }
    Some(s).filter(|s| !s.version().is_empty())
}

fn print_machine(tools: &Tools) {
    let first_line = |mut c: Command| {
        c.output()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                common::first_line(&text).trim().to_string()
            })
            .unwrap_or_default()
    };
    let mut versions = vec![format!("fifo-broker {}", env!("CARGO_PKG_VERSION"))];
    if let Some(r) = &tools.rsyslogd {
        let mut c = Command::new(r);
        c.arg("-v");
        let v = first_line(c);
        let v = v.trim_end_matches(" compiled with:").split_whitespace();
        versions.push(v.collect::<Vec<_>>().join(" "));
    }
    if let Some(s) = &tools.syslog_ng {
        versions.push(s.version());
    }
    if let Some(n) = &tools.nats_server {
        let mut c = Command::new(n);
        c.arg("--version");
        versions.push(first_line(c));
    }
    println!("# {}\n{}", versions.join(", "), common::machine());
}

// ---------------------------------------------------------------------------
// The daemon.

/// Starts fifo-broker on `config` (written to `dir/broker.toml`) with a fake
/// NOTIFY_SOCKET, and returns it once it sent READY=1.
fn start_broker(dir: &Path, config: &str, rust_log: &str) -> Guard {
    let path = dir.join("broker.toml");
    fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&path).stdin(Stdio::null());
    Guard {
        child: common::spawn_broker(cmd, dir, rust_log).0,
    }
}

/// The daemon's config: one input `in` whose FIFO is `dir/fifos/in`, one
/// lossless forward `fwd` with `forward` (url and more).
fn broker_config(dir: &Path, forward: &str) -> String {
    format!(
        "[broker]\ndir = {:?}\nlog_dir = {:?}\npipe_bytes = {PIPE_BYTES}\n\
         [inputs.in]\n\
         [forwards.fwd]\nfrom = [\"in\"]\nwhen_full = \"block\"\n{forward}\n",
        dir.join("fifos"),
        dir
    )
}

// ---------------------------------------------------------------------------
// syslog: fifo-broker vs syslog-ng into rsyslog.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Broker,
    SyslogNgTuned,
    SyslogNgStock,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Broker => "fifo-broker (syslog+tcp forward)",
            Sender::SyslogNgTuned => "syslog-ng, tuned windows",
            Sender::SyslogNgStock => "syslog-ng, stock windows",
        }
    }
}

const SENDERS: [Sender; 3] = [Sender::Broker, Sender::SyslogNgTuned, Sender::SyslogNgStock];

/// A throwaway rsyslogd: imtcp on 127.0.0.1:`port`, every message's MSG
/// (`%msg%\n`) appended to `out`. Its main queue has one worker thread: with
/// the default pool, batches (256 messages) are written out of order once
/// the queue backs up, which the order check would blame on the sender
/// (seen at the daemon's rate: whole 256-line blocks swapped, none lost).
struct Rsyslog {
    guard: Guard,
    port: u16,
    out: PathBuf,
}

fn start_rsyslog(bin: &Path, dir: &Path) -> Rsyslog {
    let port = free_port();
    let dir = dir.join("rsyslog");
    fs::create_dir_all(dir.join("spool")).unwrap();
    let out = dir.join("received.log");
    let conf = format!(
        "global(workDirectory=\"{spool}\" maxMessageSize=\"256k\"\n\
         \x20      parser.escapeControlCharactersOnReceive=\"off\"\n\
         \x20      parser.escape8BitCharactersOnReceive=\"off\")\n\
         main_queue(queue.workerThreads=\"1\")\n\
         module(load=\"imtcp\")\n\
         template(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\n\
         ruleset(name=\"r\") {{\n\
         \x20 action(type=\"omfile\" file=\"{out}\" template=\"msg\")\n\
         }}\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")\n",
        spool = dir.join("spool").display(),
        out = out.display(),
    );
    fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"));
    let log = dir.join("rsyslogd.log");
    let guard = spawn_listening(cmd, port, "rsyslogd", &log);
    Rsyslog { guard, port, out }
}

/// Starts `sender` reading FIFO `dir/fifos/in` and sending to 127.0.0.1:
/// `port`; returns it and the FIFO's path.
fn start_sender(sender: Sender, tools: &Tools, dir: &Path, port: u16) -> (Guard, PathBuf) {
    let input = dir.join("fifos").join("in");
    if sender == Sender::Broker {
        let config = broker_config(dir, &format!("url = \"syslog+tcp://127.0.0.1:{port}\""));
        return (start_broker(dir, &config, "warn"), input);
    }
    fs::create_dir_all(dir.join("fifos")).unwrap();
    mkfifo(&input);
    // Stock: syslog-ng's defaults (log-fetch-limit 10, log-iw-size 1000,
    // log-fifo-size 10000, flush-lines 100). Tuned: windows and batches
    // large enough that flow control never idles the source.
    let (source_opts, global_opts) = match sender {
        Sender::SyslogNgTuned => (
            " log-fetch-limit(1000) log-iw-size(100000)",
            " log-fifo-size(100000); flush-lines(1000);",
        ),
        _ => ("", ""),
    };
    let conf = format!(
        "@version: 3.38\n\
         options {{ use-dns(no); dns-cache(no); stats-freq(0);{global_opts} }};\n\
         source s_in {{ pipe(\"{input}\" flags(no-parse){source_opts}); }};\n\
         destination d_out {{ syslog(\"127.0.0.1\" port({port}) transport(\"tcp\")); }};\n\
         log {{ source(s_in); destination(d_out); flags(flow-control); }};\n",
        input = input.display(),
    );
    let conf_path = dir.join("syslog-ng.conf");
    fs::write(&conf_path, conf).unwrap();
    let mut cmd = tools.syslog_ng.as_ref().expect("syslog-ng").command();
    cmd.arg("-F")
        .arg("--no-caps")
        .arg("-f")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.join("syslog-ng.pid"))
        .arg("-c")
        .arg(dir.join("syslog-ng.ctl"))
        .arg("-R")
        .arg(dir.join("syslog-ng.persist"));
    (spawn_logged(cmd, &dir.join("syslog-ng.log")), input)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until `path` is `want` bytes long; false if it stopped growing for
/// [`STALL`] first.
fn wait_len(path: &Path, want: u64) -> bool {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let len = file_len(path);
        if len >= want {
            return true;
        }
        if len != last {
            (last, since) = (len, Instant::now());
        } else if since.elapsed() > STALL {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Checks rsyslog's file: `probe`, then lines 0..`want` whole and in order;
/// what is wrong otherwise (lost, duplicated, torn, out of order).
fn verify_syslog(path: &Path, want: usize) -> Result<(), String> {
    let data = fs::read(path).map_err(|e| e.to_string())?;
    let body = data
        .strip_prefix(b"probe\n")
        .ok_or("the first message is not the probe")?;
    let mut seen = vec![0u32; want];
    let (mut next, mut out_of_order, mut torn, mut first_wrong) = (0, 0, 0, None);
    for (k, l) in body.split(|&b| b == b'\n').enumerate() {
        if l.is_empty() && k == body.len() / LINE {
            break;
        }
        let seq = (l.len() == LINE - 1 && l[12] == b' ' && l[13..].iter().all(|&b| b == b'x'))
            .then(|| std::str::from_utf8(&l[..12]).ok()?.parse::<usize>().ok())
            .flatten()
            .filter(|&s| s < want);
        match seq {
            Some(s) => {
                seen[s] += 1;
                if s != next {
                    out_of_order += 1;
                    first_wrong.get_or_insert((k, s));
                }
                next = s + 1;
            }
            None => torn += 1,
        }
    }
    let lost = seen.iter().filter(|&&n| n == 0).count();
    let duplicated: usize = seen.iter().map(|&n| n.saturating_sub(1) as usize).sum();
    if lost + duplicated + torn + out_of_order == 0 {
        return Ok(());
    }
    Err(format!(
        "{lost} lost, {duplicated} duplicated, {torn} torn, {out_of_order} jumps in the \
         sequence (first: message {} is line {})",
        first_wrong.map_or(0, |f| f.0),
        first_wrong.map_or(0, |f| f.1)
    ))
}

fn syslog_once(sender: Sender, tools: &Tools, data: &Arc<Vec<u8>>) -> Run {
    let lines = data.len() / LINE;
    let scratch = Scratch::new("forward-bench", "syslog");
    let rsyslog = start_rsyslog(tools.rsyslogd.as_ref().unwrap(), &scratch.0);
    let (mut guard, input) = start_sender(sender, tools, &scratch.0, rsyslog.port);
    let mut writer = open_writer(&input, &mut guard);
    // One probe line through, so the connection is up before the clock runs.
    writer.write_all(b"probe\n").unwrap();
    let base = b"probe\n".len() as u64;
    assert!(
        wait_len(&rsyslog.out, base),
        "{}: the probe line did not reach rsyslog",
        sender.name()
    );
    let (cpu0, server0) = (cpu_seconds(guard.pid()), cpu_seconds(rsyslog.guard.pid()));
    let t0 = Instant::now();
    let writing = write_all_chunked(writer, data.clone());
    let arrived = wait_len(&rsyslog.out, base + data.len() as u64);
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, server_cpu) = (
        cpu_seconds(guard.pid()) - cpu0,
        cpu_seconds(rsyslog.guard.pid()) - server0,
    );
    drop(guard);
    let written = writing.join().unwrap_or(false);
    let verified = if arrived && written {
        verify_syslog(&rsyslog.out, lines)
    } else {
        Err(format!(
            "written: {written}, {} of {} bytes arrived",
            file_len(&rsyslog.out),
            base + data.len() as u64
        ))
    };
    if let Err(e) = &verified {
        eprintln!("{}: NOT VERIFIED: {e}", sender.name());
    }
    Run {
        rate: lines as f64 / secs,
        cpu,
        server_cpu,
        ok: verified.is_ok(),
    }
}

fn syslog_workload(args: &Args, tools: &Tools) {
    let lines = args.lines.unwrap_or(1_000_000);
    println!(
        "\n## syslog: {lines} lines of {LINE} bytes in 64 KiB writes, 1 FIFO → syslog over TCP → rsyslog imtcp → file (tmpfs)"
    );
    let labels = Labels {
        rate: "lines/s",
        server: "rsyslogd",
        verified: "verified: 0 lost, torn or reordered",
    };
    compare(
        args,
        lines,
        &SENDERS,
        Sender::name,
        &labels,
        |sender, data| syslog_once(sender, tools, data),
    );
}

// ---------------------------------------------------------------------------
// NATS: fifo-broker's forward vs a reference publisher into JetStream.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Broker,
    Reference,
}

impl Publisher {
    fn name(self) -> &'static str {
        match self {
            Publisher::Broker => "fifo-broker (nats forward)",
            Publisher::Reference => "reference publisher (bench)",
        }
    }
}

const PUBLISHERS: [Publisher; 2] = [Publisher::Broker, Publisher::Reference];

/// A throwaway `nats-server -js` with its store in `dir`.
struct Nats {
    guard: Guard,
    port: u16,
}

fn start_nats(bin: &Path, dir: &Path) -> Nats {
    let port = free_port();
    let dir = dir.join("nats");
    fs::create_dir_all(dir.join("store")).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("store"));
    let log = dir.join("nats-server.log");
    let guard = spawn_listening(cmd, port, "nats-server", &log);
    Nats { guard, port }
}

/// A minimal blocking NATS client for the JetStream API (a trimmed copy of
/// the test harness's): requests and their JSON replies.
struct NatsClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next: u64,
}

impl NatsClient {
    fn connect(port: u16) -> NatsClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to nats-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut c = NatsClient {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            next: 0,
        };
        let info = c.read_line();
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        c.writer
            .write_all(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
                  \"no_responders\":true,\"protocol\":1,\"name\":\"forward-bench\"}\r\n\
                  SUB _INBOX.bench.* 1\r\nPING\r\n",
            )
            .unwrap();
        loop {
            match c.read_line().as_str() {
                "PONG" => return c,
                "PING" => c.writer.write_all(b"PONG\r\n").unwrap(),
                other => panic!("expected PONG after CONNECT, got {other:?}"),
            }
        }
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("nats-server closed the connection"),
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("reading from nats-server: {e}"),
        }
    }

    /// A request to `subject`; its reply as JSON.
    fn request(&mut self, subject: &str, payload: &str) -> serde_json::Value {
        self.next += 1;
        let reply = format!("_INBOX.bench.{}", self.next);
        self.writer
            .write_all(
                format!("PUB {subject} {reply} {}\r\n{payload}\r\n", payload.len()).as_bytes(),
            )
            .unwrap();
        loop {
            let line = self.read_line();
            let words: Vec<&str> = line.split_whitespace().collect();
            let (subj, hdr, total) = match words.as_slice() {
                ["PING"] => {
                    self.writer.write_all(b"PONG\r\n").unwrap();
                    continue;
                }
                ["PONG"] | ["+OK"] => continue,
                ["MSG", subj, _, size] | ["MSG", subj, _, _, size] => {
                    (subj.to_string(), 0, size.parse::<usize>().unwrap())
                }
                ["HMSG", subj, _, hdr, total] | ["HMSG", subj, _, _, hdr, total] => (
                    subj.to_string(),
                    hdr.parse::<usize>().unwrap(),
                    total.parse::<usize>().unwrap(),
                ),
                _ => panic!("unexpected from nats-server: {line:?}"),
            };
            let mut body = vec![0; total + 2];
            self.reader.read_exact(&mut body).unwrap();
            if subj == reply {
                let v: serde_json::Value = serde_json::from_slice(&body[hdr..total])
                    .unwrap_or_else(|e| {
                        panic!(
                            "{subject}: not JSON ({e}): {:?}",
                            String::from_utf8_lossy(&body)
                        )
                    });
                assert!(v.get("error").is_none(), "{subject}: {v}");
                return v;
            }
        }
    }

    fn create_stream(&mut self) {
        self.request(
            "$JS.API.STREAM.CREATE.LOGS",
            r#"{"name":"LOGS","subjects":["logs.>"],"storage":"file","num_replicas":1,"duplicate_window":120000000000}"#,
        );
    }

    fn stream_messages(&mut self) -> u64 {
        self.request("$JS.API.STREAM.INFO.LOGS", "{}")["state"]["messages"]
            .as_u64()
            .expect("state.messages")
    }

    /// The payload of stream message `seq`.
    fn message(&mut self, seq: u64) -> Vec<u8> {
        let v = self.request("$JS.API.STREAM.MSG.GET.LOGS", &format!("{{\"seq\":{seq}}}"));
        data_encoding::BASE64
            .decode(v["message"]["data"].as_str().unwrap_or("").as_bytes())
            .unwrap_or_default()
    }
}

/// The last `acked=` of the daemon's `counters: forward fwd` lines in
/// `stderr` (read from `*offset` on).
fn last_acked(stderr: &Path, offset: &mut u64, acked: &mut u64) {
    let Ok(mut f) = File::open(stderr) else {
        return;
    };
    let mut text = Vec::new();
    if std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(*offset)).is_err()
        || f.read_to_end(&mut text).is_err()
    {
        return;
    }
    // Only whole lines.
    let Some(end) = memchr::memrchr(b'\n', &text) else {
        return;
    };
    *offset += end as u64 + 1;
    for line in String::from_utf8_lossy(&text[..end]).lines() {
        if let Some(rest) = line.split("counters: forward fwd ").nth(1) {
            if let Some(n) = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("acked="))
                .and_then(|n| n.parse().ok())
            {
                *acked = n;
            }
        }
    }
}

fn nats_once(publisher: Publisher, tools: &Tools, data: &Arc<Vec<u8>>) -> Run {
    let lines = data.len() / LINE;
    let scratch = Scratch::new("forward-bench", "nats");
    let nats = start_nats(tools.nats_server.as_ref().unwrap(), &scratch.0);
    let mut client = NatsClient::connect(nats.port);
    client.create_stream();
    let dir = &scratch.0;
    let (mut guard, input, mut done_rx) = match publisher {
        Publisher::Broker => {
            let config = broker_config(
                dir,
                &format!(
                    "url = \"nats://127.0.0.1:{}\"\nsubject = \"logs.{{input}}\"",
                    nats.port
                ),
            );
            (
                start_broker(dir, &config, "info"),
                dir.join("fifos").join("in"),
                None,
            )
        }
        Publisher::Reference => {
            fs::create_dir_all(dir.join("fifos")).unwrap();
            let input = dir.join("fifos").join("in");
            mkfifo(&input);
            let mut child = Command::new(std::env::current_exe().unwrap())
                .arg("--nats-publisher")
                .arg(nats.port.to_string())
                .arg(&input)
                .arg((lines + 1).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning the reference publisher");
            // Its last line: "done ACKED ERRORS CPU_SECONDS".
            let out = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send((Instant::now(), line));
                }
            });
            (Guard { child }, input, Some(rx))
        }
    };
    let mut writer = open_writer(&input, &mut guard);
    writer.write_all(b"probe\n").unwrap();
    // The probe is stored: the connection and stream are up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.stream_messages() < 1 {
        assert!(
            Instant::now() < deadline,
            "{}: the probe line was not stored",
            publisher.name()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let (cpu0, server0) = (cpu_seconds(guard.pid()), cpu_seconds(nats.guard.pid()));
    let t0 = Instant::now();
    let writing = write_all_chunked(writer, data.clone());
    let want = lines as u64 + 1;
    let mut ok = true;
    let (t1, cpu) = match publisher {
        Publisher::Broker => {
            let stderr = dir.join("broker.stderr");
            let (mut offset, mut acked, mut last, mut since) = (0, 0, 0, Instant::now());
            let pid = rustix::process::Pid::from_raw(guard.pid() as i32).unwrap();
            loop {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::USR1);
                thread::sleep(Duration::from_millis(5));
                last_acked(&stderr, &mut offset, &mut acked);
                if acked >= want {
                    break (Instant::now(), cpu_seconds(guard.pid()) - cpu0);
                }
                if acked != last {
                    (last, since) = (acked, Instant::now());
                } else if since.elapsed() > STALL {
                    eprintln!("{}: stalled at acked={acked}", publisher.name());
                    ok = false;
                    break (Instant::now(), cpu_seconds(guard.pid()) - cpu0);
                }
            }
        }
        Publisher::Reference => {
            let rx = done_rx.take().unwrap();
            let mut result = None;
            while let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(120)) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let ["done", acked, errors, cpu] = w.as_slice() {
                    ok &= acked.parse() == Ok(want) && *errors == "0";
                    result = Some((at, cpu.parse::<f64>().unwrap_or(0.0) - cpu0));
                    break;
                }
            }
            result.unwrap_or_else(|| {
                ok = false;
                (Instant::now(), 0.0)
            })
        }
    };
    let server_cpu = cpu_seconds(nats.guard.pid()) - server0;
    let secs = t1.duration_since(t0).as_secs_f64();
    drop(guard);
    ok &= writing.join().unwrap_or(false);
    // Exactly once, and a sample of 100 messages in order.
    let stored = client.stream_messages();
    ok &= stored == want;
    let mut expected = Vec::with_capacity(LINE);
    for s in 0..100u64 {
        let i = (s as usize * lines / 100 + s as usize % 7).min(lines - 1);
        expected.clear();
        write!(expected, "{i:012} ").unwrap();
        expected.resize(LINE - 1, b'x');
        if client.message(i as u64 + 2) != expected {
            ok = false;
        }
    }
    if !ok {
        eprintln!(
            "{}: NOT VERIFIED: {stored} of {want} messages stored",
            publisher.name()
        );
    }
    Run {
        rate: lines as f64 / secs,
        cpu,
        server_cpu,
        ok,
    }
}

fn nats_workload(args: &Args, tools: &Tools) {
    let lines = args.lines.unwrap_or(200_000);
    println!(
        "\n## nats: {lines} lines of {LINE} bytes in 64 KiB writes, 1 FIFO → JetStream (file storage on tmpfs), window {WINDOW}, acknowledged"
    );
    let labels = Labels {
        rate: "acked lines/s",
        server: "nats-server",
        verified: "verified: each stored once, sample in order",
    };
    compare(
        args,
        lines,
        &PUBLISHERS,
        Publisher::name,
        &labels,
        |p, data| nats_once(p, tools, data),
    );
}

/// The reference publisher (`--nats-publisher PORT FIFO N`): reads lines
/// from FIFO, publishes each to `logs.in` as an HPUB with a `Nats-Msg-Id`
/// and its own reply subject, at most [`WINDOW`] unacknowledged, until N
/// PubAcks came; then prints `done ACKED ERRORS CPU_SECONDS`.
fn reference_publisher(argv: &[String]) {
    let port: u16 = argv[0].parse().expect("PORT");
    let fifo = PathBuf::from(&argv[1]);
    let want: u64 = argv[2].parse().expect("N");
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to nats-server");
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().unwrap());
    let mut writer = stream;
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
    writer
        .write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
              \"no_responders\":true,\"protocol\":1,\"name\":\"reference\"}\r\n\
              SUB _INBOX.ref.* 1\r\nPING\r\n",
        )
        .unwrap();
    // Window slots: one taken per publish, given back per PubAck.
    let (slots, acks) = mpsc::sync_channel::<()>(WINDOW);
    let acker = {
        let mut writer = writer.try_clone().unwrap();
        thread::spawn(move || {
            let (mut acked, mut errors) = (0u64, 0u64);
            let mut line = Vec::new();
            let mut body = Vec::new();
            while acked < want {
                line.clear();
                if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let w: Vec<&str> = text.split_whitespace().collect();
                let (hdr, total) = match w.as_slice() {
                    ["PING"] => {
                        let _ = writer.write_all(b"PONG\r\n");
                        continue;
                    }
                    ["MSG", _, _, size] | ["MSG", _, _, _, size] => (0, size.parse().unwrap()),
                    ["HMSG", _, _, hdr, total] | ["HMSG", _, _, _, hdr, total] => {
                        (hdr.parse().unwrap(), total.parse().unwrap())
                    }
                    _ => continue,
                };
                body.resize(total + 2, 0);
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                if hdr > 0 || memchr::memmem::find(&body[..total], b"\"error\"").is_some() {
                    errors += 1;
                }
                acked += 1;
                let _ = acks.recv();
            }
            (acked, errors)
        })
    };
    let token = std::process::id();
    let mut input = File::open(&fifo).expect("opening the FIFO");
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut seq = 0u64;
    'reading: while seq < want {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        let mut used = 0;
        for end in memchr::memchr_iter(b'\n', &carry) {
            let payload = &carry[used..end];
            used = end + 1;
            if slots.try_send(()).is_err() {
                // The window is full: send what is encoded, then wait.
                writer.write_all(&out).unwrap();
                out.clear();
                if slots.send(()).is_err() {
                    break 'reading;
                }
            }
            seq += 1;
            let headers = format!("NATS/1.0\r\nNats-Msg-Id: ref-{token}-{seq}\r\n\r\n");
            write!(
                out,
                "HPUB logs.in _INBOX.ref.{seq} {} {}\r\n{headers}",
                headers.len(),
                headers.len() + payload.len()
            )
            .unwrap();
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
            if seq == want {
                break;
            }
        }
        carry.drain(..used);
        writer.write_all(&out).unwrap();
        out.clear();
    }
    let (acked, errors) = acker.join().unwrap();
    println!(
        "done {acked} {errors} {:.2}",
        cpu_seconds(std::process::id())
    );
}
