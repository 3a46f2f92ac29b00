//! Harness for the integration tests: runs the real `fifo-broker` binary in a
//! fresh temp dir and gives tests readers, writers and deadline-bounded waits.
//!
//! Everything that is spawned here (the daemon, `cat` readers, reader
//! threads) is stopped by a `Drop` guard, so a failing assertion never leaves
//! a process behind or a test hanging on a pipe. Waits never use fixed sleeps
//! as synchronisation: they poll a condition until a deadline and panic with
//! what was expected and what was seen.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod servers;

use rustix::fs::OFlags;
use rustix::process::{Pid, Signal};
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fifo-broker");

/// Default deadline for anything that should happen "promptly".
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How often deadline-bounded waits re-check their condition.
const POLL: Duration = Duration::from_millis(10);

/// Environment variables that would make the daemon pick other paths or talk
/// to a real systemd; removed from every child.
const SCRUBBED_ENV: &[&str] = &[
    "RUNTIME_DIRECTORY",
    "LOGS_DIRECTORY",
    "JOURNAL_STREAM",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "NOTIFY_SOCKET",
];

/// Polls `probe` until it returns `Ok`, or panics after `timeout` with the
/// last `Err`, which should say what was expected and what was seen.
pub fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?}: {why}")
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Sends `sig` to the process `pid`.
pub fn send_signal(pid: u32, sig: Signal) {
    let raw = i32::try_from(pid).expect("pid fits in i32");
    let pid = Pid::from_raw(raw).expect("pid is not 0");
    rustix::process::kill_process(pid, sig)
        .unwrap_or_else(|e| panic!("kill({raw}, {sig:?}) failed: {e}"));
}

/// True when the test runs as root; otherwise prints why `test` is skipped
/// and returns false. Under `CI=true` a missing root is a failure instead.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root and CI=true is set");
    }
    eprintln!("skipping {test}: needs root (chown), not running as root");
    false
}

/// Result of a short-lived run of the binary (`--check`, `--help`, ...).
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Panics unless the exit code is `code`, showing both output streams.
    pub fn assert_code(&self, code: i32, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit code {code}, got {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the binary with `args` and a scrubbed environment, killing it if it
/// has not exited within `timeout`.
pub fn run_binary(args: &[&str], timeout: Duration) -> RunOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    scrub_env(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("waiting for fifo-broker"),
        Err(_) => {
            send_signal(pid, Signal::KILL);
            let out = rx
                .recv()
                .expect("waiter thread")
                .expect("waiting for fifo-broker");
            panic!(
                "fifo-broker {args:?} did not exit within {timeout:?}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    RunOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn scrub_env(cmd: &mut Command) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info").env("RUST_LOG_STYLE", "never");
}

/// A temp dir with a config written into it, ready to start a daemon on.
///
/// Cloning gives another handle on the same temp dir and config (the dir
/// lives until the last handle drops), e.g. to start a second daemon there
/// after the first was killed.
///
/// The config text given by a test is appended to a `[broker]` header that
/// sets `dir` and `log_dir` inside the temp dir, so any keys the test puts
/// before its first table also belong to `[broker]`.
#[derive(Clone)]
pub struct Setup {
    /// The temp dir; removed when the last owner drops.
    _tmp: Arc<TempDir>,
    /// The temp dir's path.
    pub root: PathBuf,
    /// `<root>/fifos`, the broker's `dir`.
    pub dir: PathBuf,
    /// `<root>/logs`, the broker's `log_dir`.
    pub log_dir: PathBuf,
    /// `<root>/broker.toml`.
    pub config: PathBuf,
    /// The full config text as written.
    pub config_text: String,
    /// Umask to run the daemon under, e.g. "077"; None inherits ours.
    umask: Option<String>,
    /// Extra environment for the daemon.
    env: Vec<(String, String)>,
    /// Point `JOURNAL_STREAM` at the daemon's stderr file.
    journal: bool,
}

impl Setup {
    pub fn new(body: &str) -> Setup {
        let tmp = tempfile::Builder::new()
            .prefix("fb-")
            .tempdir()
            .expect("creating temp dir");
        let root = tmp.path().to_path_buf();
        let dir = root.join("fifos");
        let log_dir = root.join("logs");
        let config = root.join("broker.toml");
        let config_text = format!(
            "[broker]\ndir = \"{}\"\nlog_dir = \"{}\"\n{}",
            dir.display(),
            log_dir.display(),
            body
        );
        fs::write(&config, &config_text).expect("writing config");
        Setup {
            _tmp: Arc::new(tmp),
            root,
            dir,
            log_dir,
            config,
            config_text,
            umask: None,
            env: Vec::new(),
            journal: false,
        }
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Setup {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets `JOURNAL_STREAM` to the device:inode of the daemon's stderr, as
    /// systemd does when stderr is connected to the journal.
    pub fn journal_stream(mut self) -> Setup {
        self.journal = true;
        self
    }

    /// Runs the daemon under this umask (through `sh -c 'umask ..; exec ..'`).
    pub fn umask(mut self, umask: &str) -> Setup {
        self.umask = Some(umask.to_owned());
        self
    }

    /// 1-based number of the first config line containing `needle`.
    pub fn line_of(&self, needle: &str) -> usize {
        self.config_text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no config line contains {needle:?}"))
            + 1
    }

    /// Runs `fifo-broker ARGS`, to completion.
    pub fn run(&self, args: &[&str]) -> RunOutput {
        run_binary(args, TIMEOUT)
    }

    /// Runs `fifo-broker --check --config <config>`.
    pub fn check(&self) -> RunOutput {
        let cfg = self.config.to_str().expect("utf-8 temp path");
        self.run(&["--check", "--config", cfg])
    }

    /// Starts the daemon and waits for `READY=1`.
    pub fn start(self) -> Daemon {
        let d = self.spawn();
        d.wait_notify("READY=1", TIMEOUT);
        d
    }

    /// Starts the daemon without waiting for readiness (for startup failures).
    ///
    /// The first daemon in a temp dir gets `notify.sock`, `daemon.stderr` and
    /// `daemon.stdout`; a later one (from a cloned [`Setup`]) gets
    /// `notify.N.sock`, `daemon.N.stderr`, `daemon.N.stdout`.
    pub fn spawn(self) -> Daemon {
        let name = |n: usize, stem: &str, ext: &str| match n {
            0 => self.root.join(format!("{stem}.{ext}")),
            n => self.root.join(format!("{stem}.{n}.{ext}")),
        };
        let generation = (0..)
            .find(|&n| fs::symlink_metadata(name(n, "notify", "sock")).is_err())
            .expect("a free notify socket name");
        let notify_path = name(generation, "notify", "sock");
        let notify = UnixDatagram::bind(&notify_path).expect("binding fake NOTIFY_SOCKET");
        notify
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("socket timeout");
        let stderr_path = name(generation, "daemon", "stderr");
        let stdout_path = name(generation, "daemon", "stdout");
        let cfg = self.config.to_str().expect("utf-8 temp path").to_owned();
        let mut cmd = match &self.umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["--config", &cfg]);
        scrub_env(&mut cmd);
        let stderr = File::create(&stderr_path).expect("stderr file");
        if self.journal {
            let md = stderr.metadata().expect("stat stderr file");
            cmd.env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
        Daemon {
            pid: child.id(),
            child: RefCell::new(child),
            status: RefCell::new(None),
            notify,
            notes: RefCell::new(Vec::new()),
            note_times: RefCell::new(Vec::new()),
            stderr_path,
            setup: self,
        }
    }
}

/// A running `fifo-broker`, killed (by PID) when dropped.
pub struct Daemon {
    /// Paths and config; also keeps the temp dir alive.
    pub setup: Setup,
    /// The daemon process.
    child: RefCell<Child>,
    /// Its PID (that of the `sh` wrapper, which execs the daemon).
    pid: u32,
    /// Exit status once reaped.
    status: RefCell<Option<ExitStatus>>,
    /// The fake `NOTIFY_SOCKET`.
    notify: UnixDatagram,
    /// Every notification datagram received so far.
    notes: RefCell<Vec<String>>,
    /// When each of `notes` was received (same index). Accurate only for
    /// datagrams that arrive while a `wait_notify*` call is polling; others
    /// are stamped when the next wait drains them.
    note_times: RefCell<Vec<Instant>>,
    /// File that receives the daemon's stderr.
    stderr_path: PathBuf,
}

impl Daemon {
    /// Writes the config, starts the daemon, waits for `READY=1`.
    pub fn start(body: &str) -> Daemon {
        Setup::new(body).start()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `<dir>/<name>`: an input or subscriber FIFO.
    pub fn path(&self, name: &str) -> PathBuf {
        self.setup.dir.join(name)
    }

    /// `<log_dir>/<name>`: a sink file.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.setup.log_dir.join(name)
    }

    pub fn signal(&self, sig: Signal) {
        send_signal(self.pid, sig);
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Exit status if the daemon has exited (reaps it).
    pub fn try_status(&self) -> Option<ExitStatus> {
        if self.status.borrow().is_none() {
            let st = self.child.borrow_mut().try_wait().expect("try_wait");
            *self.status.borrow_mut() = st;
        }
        *self.status.borrow()
    }

    /// Panics (with stderr) if the daemon has exited.
    pub fn assert_running(&self, when: &str) {
        if let Some(st) = self.try_status() {
            panic!(
                "{when}: expected fifo-broker to be running, but it exited with {st:?}\n\
                 --- stderr ---\n{}",
                self.stderr()
            );
        }
    }

    /// Waits for the daemon to exit and returns its status.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "expected fifo-broker to exit within {timeout:?}, it is still running\n\
                     --- stderr ---\n{}",
                    self.stderr()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the daemon to exit with `code`.
    pub fn assert_exit_code(&self, code: i32, what: &str) {
        let st = self.wait_exit(TIMEOUT);
        assert_eq!(
            st.code(),
            Some(code),
            "{what}: expected exit code {code}, got {st:?}\n--- stderr ---\n{}",
            self.stderr()
        );
    }

    /// Waits until a notification datagram contains the line `line`
    /// (e.g. `READY=1`), panicking if the daemon exits first.
    pub fn wait_notify(&self, line: &str, timeout: Duration) {
        self.wait_notify_n(line, 1, timeout);
    }

    /// Notification datagrams received so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.borrow().clone()
    }

    /// Notification datagrams received so far, with when each was received
    /// (see `note_times` for how accurate that is).
    pub fn timed_notes(&self) -> Vec<(Instant, String)> {
        self.note_times
            .borrow()
            .iter()
            .copied()
            .zip(self.notes.borrow().iter().cloned())
            .collect()
    }

    /// Number of datagrams so far that contain the line `line`.
    fn notes_with(&self, line: &str) -> usize {
        self.notes
            .borrow()
            .iter()
            .filter(|n| n.lines().any(|l| l == line))
            .count()
    }

    /// Reads every datagram already queued on the fake socket.
    fn drain_notes(&self) {
        let mut buf = vec![0u8; 65536];
        while let Ok(len) = self.notify.recv(&mut buf) {
            let note = String::from_utf8_lossy(&buf[..len]).into_owned();
            self.note_times.borrow_mut().push(Instant::now());
            self.notes.borrow_mut().push(note);
        }
    }

    /// Waits until `n` notification datagrams contain the line `line`,
    /// panicking if the daemon exits first.
    pub fn wait_notify_n(&self, line: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // Blocks for at most the socket's read timeout.
            self.drain_notes();
            if self.notes_with(line) >= n {
                return;
            }
            if let Some(st) = self.try_status() {
                self.drain_notes();
                if self.notes_with(line) >= n {
                    return;
                }
                panic!(
                    "expected notification {line:?} (x{n}), but fifo-broker exited with {st:?}; \
                     notifications so far: {:?}\n--- stderr ---\n{}",
                    self.notes.borrow(),
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "expected notification {line:?} (x{n}) within {timeout:?}; got {:?}\n\
                     --- stderr ---\n{}",
                    self.notes.borrow(),
                    self.stderr()
                );
            }
        }
    }

    /// Replaces the config file with a new body (same `[broker]` header);
    /// send SIGHUP to apply it.
    pub fn rewrite_config(&mut self, body: &str) {
        let text = format!(
            "[broker]\ndir = \"{}\"\nlog_dir = \"{}\"\n{}",
            self.setup.dir.display(),
            self.setup.log_dir.display(),
            body
        );
        fs::write(&self.setup.config, &text).expect("rewriting config");
        self.setup.config_text = text;
    }

    /// Number of inputs, subscribers and sinks in the config: the number of
    /// `counters:` lines one SIGUSR1 produces.
    fn entity_count(&self) -> usize {
        self.setup
            .config_text
            .lines()
            .map(str::trim_start)
            .filter(|l| {
                l.starts_with("[inputs.")
                    || l.starts_with("[subscribers.")
                    || l.starts_with("[sinks.")
                    || l.starts_with("[forwards.")
            })
            .count()
    }

    /// Sends SIGUSR1 and returns the counters it logs.
    pub fn counters(&self) -> Counters {
        let want = self.entity_count();
        let before = Counters::parse(&self.stderr()).lines;
        self.signal(Signal::USR1);
        eventually(TIMEOUT, || {
            self.assert_running("waiting for SIGUSR1 counters");
            let c = Counters::parse(&self.stderr());
            if c.lines >= before + want {
                Ok(c)
            } else {
                Err(format!(
                    "expected {want} new `counters:` lines after SIGUSR1, got {}\n\
                     --- stderr ---\n{}",
                    c.lines - before,
                    self.stderr()
                ))
            }
        })
    }

    /// Polls the counters until `ok` accepts them.
    pub fn wait_counters(&self, what: &str, ok: impl Fn(&Counters) -> bool) -> Counters {
        eventually(TIMEOUT, || {
            let c = self.counters();
            if ok(&c) {
                Ok(c)
            } else {
                Err(format!("expected counters where {what}, got:\n{c}"))
            }
        })
    }

    /// The daemon's fd count once it holds still: reading /proc/PID/fd is
    /// not atomic, an input reopened after its writer left (as after
    /// [`Daemon::attach`]'s probes) briefly has one fd more, and each
    /// notification to systemd opens a socket for a moment. A leaked fd
    /// shows in every sample; a transient one does not hold for five.
    pub fn steady_fd_count(&self) -> usize {
        let mut last = (0, 0);
        eventually(TIMEOUT, || {
            let now = self.fd_count();
            last = if now == last.0 {
                (now, last.1 + 1)
            } else {
                (now, 1)
            };
            thread::sleep(Duration::from_millis(20));
            match last.1 {
                5.. => Ok(now),
                _ => Err(format!("the daemon's fd count keeps changing (last {now})")),
            }
        })
    }

    /// Waits until the daemon holds `want` fds again; `detail` says what
    /// it holds if it does not.
    pub fn wait_fd_count(&self, want: usize, detail: impl Fn() -> String) {
        eventually(TIMEOUT, || {
            let now = self.fd_count();
            if now == want {
                Ok(())
            } else {
                Err(format!("expected {want} fds, got {now}; {}", detail()))
            }
        });
    }

    /// Opens input `name` for writing. Fails rather than blocks if the daemon
    /// does not hold its read end.
    pub fn open_writer(&self, name: &str) -> File {
        open_fifo_writer(&self.path(name))
    }

    /// Writes `data` into input `name` (one open, one `write_all`, close).
    pub fn write(&self, name: &str, data: &[u8]) {
        let mut f = self.open_writer(name);
        f.write_all(data)
            .unwrap_or_else(|e| panic!("writing to input {name}: {e}"));
    }

    /// Writes probe lines into `input` until every reader has received one,
    /// so that from then on each reader is attached and gets every line.
    pub fn attach(&self, input: &str, readers: &[&dyn Received]) {
        let mut n = 0u32;
        eventually(TIMEOUT, || {
            self.assert_running("attaching readers");
            self.write(input, format!("{PROBE}{n}\n").as_bytes());
            n += 1;
            let missing: Vec<usize> = readers
                .iter()
                .enumerate()
                .filter(|(_, r)| !contains(&r.bytes(), PROBE.as_bytes()))
                .map(|(i, _)| i)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "expected every reader to receive a probe line from {input} \
                     (after {n} probes); readers {missing:?} got none"
                ))
            }
        });
    }

    /// Number of open file descriptors of the daemon.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("reading /proc/PID/fd")
            .count()
    }

    /// What each open file descriptor of the daemon points at, sorted (for
    /// messages about fd leaks).
    pub fn fd_targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("reading /proc/PID/fd")
            .flatten()
            .map(|e| match fs::read_link(e.path()) {
                Ok(t) => t.display().to_string(),
                Err(err) => format!("? ({err})"),
            })
            .collect();
        targets.sort();
        targets
    }

    /// utime + stime of the daemon, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("/proc/PID/stat");
        // comm may contain spaces; fields are counted after its closing ')'.
        let rest = &stat[stat.rfind(')').expect("stat has ')'") + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        utime + stime
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.borrow().is_none() {
            let mut child = self.child.borrow_mut();
            if let Ok(None) = child.try_wait() {
                let _ = rustix::process::kill_process(
                    Pid::from_raw(self.pid as i32).expect("pid"),
                    Signal::KILL,
                );
            }
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- fifo-broker stderr ({}) ---\n{}\n--- end of fifo-broker stderr ---",
                self.stderr_path.display(),
                self.stderr()
            );
        }
    }
}

/// Opens a FIFO for writing without ever blocking in `open` (fails with
/// ENXIO when nobody reads it), then makes writes blocking.
pub fn open_fifo_writer(path: &Path) -> File {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {} for writing: {e}", path.display()));
    rustix::fs::fcntl_setfl(&f, OFlags::empty()).expect("clearing O_NONBLOCK");
    f
}

/// Counters parsed from the daemon's `counters:` log lines.
#[derive(Debug, Default)]
pub struct Counters {
    /// Number of `counters:` lines seen in the log.
    pub lines: usize,
    /// Latest values per (kind, name).
    pub by_entity: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl Counters {
    /// Parses every `counters: KIND NAME key=value...` line; later lines win.
    pub fn parse(log: &str) -> Counters {
        let mut c = Counters::default();
        // A line still being written has no newline yet: skip it.
        for line in log.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let Some(at) = line.find("counters: ") else {
                continue;
            };
            let mut words = line[at + "counters: ".len()..].split_whitespace();
            let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            c.lines += 1;
            c.by_entity
                .insert((kind.to_owned(), name.to_owned()), fields);
        }
        c
    }

    /// Raw value of `key` for `kind` `name`; panics naming what exists.
    pub fn raw(&self, kind: &str, name: &str, key: &str) -> &str {
        self.by_entity
            .get(&(kind.to_owned(), name.to_owned()))
            .and_then(|f| f.get(key))
            .unwrap_or_else(|| panic!("no counter {kind} {name} {key} in:\n{self}"))
    }

    /// Numeric value of `key` for `kind` `name`.
    pub fn get(&self, kind: &str, name: &str, key: &str) -> u64 {
        let raw = self.raw(kind, name, key);
        raw.parse()
            .unwrap_or_else(|_| panic!("counter {kind} {name} {key}={raw:?} is not a number"))
    }

    pub fn input(&self, name: &str, key: &str) -> u64 {
        self.get("input", name, key)
    }

    pub fn subscriber(&self, name: &str, key: &str) -> u64 {
        self.get("subscriber", name, key)
    }

    pub fn sink(&self, name: &str, key: &str) -> u64 {
        self.get("sink", name, key)
    }

    /// The subscriber's `attached=yes|no`.
    pub fn attached(&self, name: &str) -> bool {
        match self.raw("subscriber", name, "attached") {
            "yes" => true,
            "no" => false,
            other => panic!("subscriber {name} attached={other:?}, expected yes or no"),
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((kind, name), fields) in &self.by_entity {
            write!(f, "  {kind} {name}")?;
            for (k, v) in fields {
                write!(f, " {k}={v}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Prefix of the lines [`Daemon::attach`] writes.
pub const PROBE: &str = "probe-";

/// Something that collects the bytes a subscriber FIFO delivers.
pub trait Received {
    fn bytes(&self) -> Vec<u8>;
}

/// True if `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Splits into lines without their `\n`; a trailing unterminated piece is
/// kept with a `<UNTERMINATED>` marker so assertions notice it.
pub fn split_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let last = lines.pop().unwrap_or_default();
    if !last.is_empty() {
        let mut l = last;
        l.extend_from_slice(b"<UNTERMINATED>");
        lines.push(l);
    }
    lines
}

/// Lines that are not probes from [`Daemon::attach`].
pub fn data_lines(data: &[u8]) -> Vec<Vec<u8>> {
    split_lines(data)
        .into_iter()
        .filter(|l| !contains(l, PROBE.as_bytes()))
        .collect()
}

/// [`data_lines`] as (lossy) strings.
pub fn text_lines(data: &[u8]) -> Vec<String> {
    data_lines(data)
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// Number of `\n` in `data`.
pub fn count_newlines(data: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', data).count()
}

/// A `cat FIFO > FILE` child process, killed when dropped.
pub struct Cat {
    child: Child,
    out: PathBuf,
}

impl Cat {
    /// Starts `cat` on `fifo`, writing to `out`. `cat` blocks in `open()`
    /// until the daemon attaches it.
    pub fn spawn(fifo: &Path, out: &Path) -> Cat {
        let child = Command::new("cat")
            .arg(fifo)
            .stdin(Stdio::null())
            .stdout(File::create(out).expect("cat output file"))
            .spawn()
            .expect("spawning cat");
        Cat {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Starts `cat` on subscriber `name`, writing to `<root>/<name>.<tag>.out`.
    pub fn on(d: &Daemon, name: &str, tag: &str) -> Cat {
        Cat::spawn(
            &d.path(name),
            &d.setup.root.join(format!("{name}.{tag}.out")),
        )
    }

    /// Waits (up to 5 s) until `cat` either sleeps in `open()` of `fifo`
    /// (seen in /proc/PID/wchan) or already has it open (the daemon still
    /// held a write end when `cat` came). False if neither can be observed
    /// (wchan not exposed by this kernel), so callers can skip.
    pub fn wait_open_or_waiting(&self, fifo: &Path) -> bool {
        let pid = self.child.id();
        let wchan = format!("/proc/{pid}/wchan");
        let has_open = || {
            fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|t| t == fifo))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let w = fs::read_to_string(&wchan).unwrap_or_default();
            if w == "wait_for_partner" || w == "fifo_open" || has_open() {
                return true;
            }
            thread::sleep(POLL);
        }
        false
    }

    /// Bytes received so far, without reading them.
    pub fn len(&self) -> u64 {
        fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// Kills (SIGKILL) and reaps the reader.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True once `cat` has exited (e.g. on EOF).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the output holds at least `n` data (non-probe) lines.
    pub fn wait_data_lines(&self, n: usize) -> Vec<Vec<u8>> {
        eventually(TIMEOUT, || {
            let lines = data_lines(&self.bytes());
            if lines.len() >= n {
                Ok(lines)
            } else {
                Err(format!(
                    "expected at least {n} data lines from {}, got {}: {:?}",
                    self.out.display(),
                    lines.len(),
                    lines
                        .iter()
                        .rev()
                        .take(5)
                        .map(|l| String::from_utf8_lossy(l))
                        .collect::<Vec<_>>()
                ))
            }
        })
    }
}

impl Received for Cat {
    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.out).unwrap_or_default()
    }
}

impl Drop for Cat {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process reader thread with a controllable pace; it can be paused
/// to simulate a stalled reader.
pub struct SlowReader {
    path: PathBuf,
    data: Arc<Mutex<Vec<u8>>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicBool>,
}

impl SlowReader {
    /// Opens `path` (blocking until attached), then reads up to `chunk`
    /// bytes at a time, sleeping `delay` after each read.
    pub fn start(path: &Path, chunk: usize, delay: Duration) -> SlowReader {
        let r = SlowReader {
            path: path.to_path_buf(),
            data: Arc::default(),
            paused: Arc::default(),
            stop: Arc::default(),
            opened: Arc::default(),
        };
        let (path, data, paused, stop, opened) = (
            r.path.clone(),
            r.data.clone(),
            r.paused.clone(),
            r.stop.clone(),
            r.opened.clone(),
        );
        thread::spawn(move || {
            let Ok(mut f) = File::open(&path) else { return };
            opened.store(true, Ordering::SeqCst);
            let mut buf = vec![0u8; chunk];
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                }
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.lock().unwrap().extend_from_slice(&buf[..n]),
                }
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
            }
        });
        r
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Bytes received so far, without copying them.
    // Not every test binary that includes this harness waits on it.
    #[allow(dead_code)]
    pub fn len(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
}

impl Received for SlowReader {
    fn bytes(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if !self.opened.load(Ordering::SeqCst) {
            // Release a thread still blocked in open(): a non-blocking
            // writer open completes the rendezvous.
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(OFlags::NONBLOCK.bits() as i32)
                .open(&self.path);
        }
    }
}

/// Runs `sh -c script` to completion (bounded by [`TIMEOUT`]) and asserts
/// it succeeded.
pub fn sh(script: &str) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning sh");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().expect("waiting for sh") {
            assert!(
                st.success(),
                "sh -c {script:?}: expected success, got {st:?}"
            );
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sh -c {script:?} did not finish within {TIMEOUT:?}");
        }
        thread::sleep(POLL);
    }
}

/// Joins `handle`, panicking if it has not finished within `timeout`.
pub fn join_within<T>(handle: thread::JoinHandle<T>, timeout: Duration, what: &str) -> T {
    eventually(timeout, || {
        if handle.is_finished() {
            Ok(())
        } else {
            Err(format!("expected {what} to finish, it is still running"))
        }
    });
    handle.join().unwrap_or_else(|_| panic!("{what} panicked"))
}

/// Shell-quotes a path for [`sh`].
pub fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Writes `end-K` markers into `input` until `r` has received the latest
/// one, so that every earlier line that will ever reach `r` has reached it.
pub fn flush_with_markers(d: &Daemon, input: &str, r: &dyn Received) {
    let mut k = 0;
    eventually(Duration::from_secs(30), || {
        k += 1;
        let marker = format!("end-{k}");
        d.write(input, format!("{marker}\n").as_bytes());
        // Paces the markers; the check below is what decides.
        thread::sleep(Duration::from_millis(50));
        let got = text_lines(&r.bytes());
        if got.last() == Some(&marker) {
            Ok(())
        } else {
            Err(format!(
                "expected the reader to catch up to {marker}, last line {:?}",
                got.last()
            ))
        }
    });
}

// ---------------------------------------------------------------------------
// The status command and the control socket.

/// Runs `fifo-broker status --config <config> ARGS`.
pub fn status_run(s: &Setup, args: &[&str]) -> RunOutput {
    let cfg = s.config.to_str().expect("utf-8 temp path");
    let mut all = vec!["status", "--config", cfg];
    all.extend_from_slice(args);
    s.run(&all)
}

/// `status --json`, parsed.
pub fn status_json(d: &Daemon) -> serde_json::Value {
    let out = status_run(&d.setup, &["--json"]);
    out.assert_code(0, "status --json");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{out}"))
}

/// The entry named `name` in `list` ("inputs"/"outputs") of a status.
pub fn json_entry<'a>(v: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    v[list]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry {name} in {v}"))
}

/// One counter of the entry named `name` in `list`.
pub fn json_counter(v: &serde_json::Value, list: &str, name: &str, key: &str) -> u64 {
    json_entry(v, list, name)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{list}.{name}.{key} is not a number in {v}"))
}

/// A connection to the daemon's control socket.
pub fn control_connect(d: &Daemon) -> std::os::unix::net::UnixStream {
    std::os::unix::net::UnixStream::connect(d.path(".control")).expect("connecting to .control")
}

/// `STATUS=` of the `n`th (1-based) notification carrying `READY=1` (the
/// startup's is the first; each reload's is one more).
pub fn status_with_ready(d: &Daemon, n: usize) -> String {
    let notes = d.notes();
    let note = notes
        .iter()
        .filter(|note| note.lines().any(|l| l == "READY=1"))
        .nth(n - 1)
        .unwrap_or_else(|| panic!("no READY=1 number {n} in {notes:?}"));
    note.lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 number {n} carries no STATUS=: {note:?}"))
        .to_owned()
}
