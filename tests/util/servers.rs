//! Throwaway network servers for the forward tests: `rsyslogd` as a syslog
//! receiver (plain TCP, TLS, or TLS demanding client certificates),
//! `nats-server` with JetStream (and any extra flags or config file), a
//! small blocking NATS client to look into its streams (over TCP or TLS,
//! with a token, a user and password or a JWT), and a test CA made with the
//! `openssl` command line.
//!
//! Every server listens on 127.0.0.1 only, on a free port picked for it,
//! keeps all its files in the test's temp dir, and is killed by its PID
//! when its guard drops. Waits are deadline-bounded polls, like the rest of
//! the harness. Nothing here uses the crate's own protocol code: the
//! servers and this client are the independent judges of what the daemon
//! sends.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use serde_json::{json, Value};

use super::{eventually, TIMEOUT};

/// Where a server binary is, looking in `PATH` and in the sbin directories
/// (rsyslogd lives in /usr/sbin, which a non-root `PATH` may lack).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Prints `skipping <test>: <why>`; under `CI=true`, where every server
/// and driver is installed (`.ci/install-servers.sh`), panics instead.
pub fn skip_test(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}, and CI=true is set");
    }
    eprintln!("skipping {test}: {why} (see .ci/install-servers.sh)");
}

/// The path of `binary`, or `None` after printing why `test` is skipped
/// ([`skip_test`]: a failure under `CI=true`).
pub fn require_binary(test: &str, binary: &str) -> Option<PathBuf> {
    if let Some(path) = find_binary(binary) {
        return Some(path);
    }
    skip_test(test, &format!("{binary} is not installed"));
    None
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Kills `child` by its PID (SIGKILL) and reaps it.
fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    let _ = child.wait();
}

/// Waits until `child` accepts connections on `port`, panicking with its
/// log if it exits first or the deadline passes.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    eventually(TIMEOUT, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening on port {port}\n--- {} ---\n{}",
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if port_open(port) {
            Ok(())
        } else {
            Err(format!("expected {what} to listen on 127.0.0.1:{port}"))
        }
    });
}

/// Spawns `cmd` with stdout and stderr going to `log`, without the test's
/// `NOTIFY_SOCKET` (rsyslogd would send `READY=1` to it).
fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = File::create(log).expect("server log file");
    let err = out.try_clone().expect("server log file");
    cmd.env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// One server process on a port of 127.0.0.1 that stays the same across
/// restarts, its output in a log file; killed by PID on drop. The part of
/// [`Rsyslog`] and [`NatsServer`] that does not know which server it runs.
struct Server {
    /// Its name in messages: `rsyslogd`, `nats-server`.
    what: &'static str,
    /// The port it listens on.
    port: u16,
    /// Its stdout and stderr.
    log: PathBuf,
    /// The running process, if not killed.
    child: Option<Child>,
}

impl Server {
    /// A server not started yet; [`Server::restart`] starts it.
    fn new(what: &'static str, port: u16, log: PathBuf) -> Server {
        Server {
            what,
            port,
            log,
            child: None,
        }
    }

    /// What it printed.
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it (SIGKILL by PID) and waits until the port is closed.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        let (port, what) = (self.port, self.what);
        eventually(TIMEOUT, || match port_open(port) {
            false => Ok(()),
            true => Err(format!("expected port {port} closed after killing {what}")),
        });
    }

    /// Kills the running one, if any, then spawns `cmd` (which must listen
    /// on the same port) and returns once the port accepts connections.
    fn restart(&mut self, cmd: Command) {
        if self.child.is_some() {
            self.kill();
        }
        let mut child = spawn_logged(cmd, &self.log);
        wait_listening(&mut child, self.port, self.what, &self.log);
        self.child = Some(child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} log (port {}) ---\n{}--- end of {} log ---",
                self.what,
                self.port,
                self.log(),
                self.what
            );
        }
    }
}

// ---------------------------------------------------------------------------
// TLS files

/// A test CA and the certificates it signed, made by `openssl` in a temp
/// dir: a server certificate for `localhost` and `127.0.0.1`, and a client
/// certificate for mutual TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM) that signed the others.
    pub ca: PathBuf,
    /// Server certificate (PEM), SAN `DNS:localhost, IP:127.0.0.1`.
    pub cert: PathBuf,
    /// The server certificate's key (PEM, unencrypted).
    pub key: PathBuf,
    /// Client certificate (PEM), CN `fifo-broker`.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Makes the CA and certificates in `dir/tls` (P-256 keys, valid for
    /// two days) and checks them with `openssl verify`.
    pub fn generate(dir: &Path) -> TlsFiles {
        let dir = dir.join("tls");
        fs::create_dir_all(&dir).expect("creating the tls dir");
        let p = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=fifo-broker test CA",
                ][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        let leaf = |name: &str, cn: &str, ext: &str| {
            fs::write(p(&format!("{name}.ext")), ext).expect("writing extensions");
            openssl(
                &[
                    &["req", "-subj", cn][..],
                    &key,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
            openssl(&["verify", "-CAfile", "ca.pem", &format!("{name}.pem")]);
        };
        leaf(
            "server",
            "/CN=localhost",
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
             extendedKeyUsage=serverAuth\n",
        );
        leaf(
            "client",
            "/CN=fifo-broker",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        TlsFiles {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
        }
    }
}

// ---------------------------------------------------------------------------
// rsyslog

/// What rsyslog's template wrote for one received message:
/// `VERSION|PRI|HOSTNAME|APP-NAME|PROCID|MSGID|SD|TIMESTAMP|MSG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogRecord {
    /// `1` for RFC 5424; rsyslog falls back to RFC 3164 (`0`) for anything
    /// that does not parse as 5424.
    pub version: String,
    pub pri: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    /// TIMESTAMP as rsyslog re-renders it (RFC 3339).
    pub timestamp: String,
    /// MSG as received (NUL shows as `#000`).
    pub msg: String,
}

/// The output template; `%msg%` last so a `|` in it stays in it.
const RSYSLOG_TEMPLATE: &str = "%protocol-version%|%pri%|%hostname%|%app-name%|%procid%|\
    %msgid%|%structured-data%|%timereported:::date-rfc3339%|%msg%\\n";

/// rsyslog's TLS network stream drivers, in order of preference: the
/// module file and its `streamDriver.name`.
const RSYSLOG_DRIVERS: [(&str, &str); 2] = [("lmnsd_ossl.so", "ossl"), ("lmnsd_gtls.so", "gtls")];

/// The `streamDriver.name` of an installed rsyslog TLS driver
/// (rsyslog-openssl, else rsyslog-gnutls), if any.
pub fn rsyslog_tls_driver() -> Option<&'static str> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/rsyslog"),
        PathBuf::from("/usr/lib64/rsyslog"),
    ];
    for lib in ["/usr/lib", "/usr/lib64", "/lib"] {
        for entry in fs::read_dir(lib).into_iter().flatten().flatten() {
            dirs.push(entry.path().join("rsyslog"));
        }
    }
    RSYSLOG_DRIVERS
        .iter()
        .find(|(file, _)| dirs.iter().any(|d| d.join(file).is_file()))
        .map(|(_, name)| *name)
}

/// How an [`Rsyslog`] takes TLS connections.
#[derive(Debug, Clone, Copy)]
pub struct RsyslogTls<'a> {
    /// Its CA, certificate and key.
    pub files: &'a TlsFiles,
    /// `streamDriver.name`: `ossl` or `gtls` (see [`rsyslog_tls_driver`]).
    pub driver: &'a str,
    /// `streamDriver.authMode`: `anon` takes any client; `x509/certvalid`
    /// only clients with a certificate signed by the CA.
    pub auth_mode: &'a str,
}

/// An `rsyslogd -n` receiving on 127.0.0.1 and writing every message, one
/// line each, to a file; killed by PID on drop.
pub struct Rsyslog {
    /// Its working dir: config, pid file, spool, log and output.
    dir: PathBuf,
    /// TLS instead of plain TCP.
    tls: bool,
    /// The daemon and its TCP port (kept across restarts).
    server: Server,
}

impl Rsyslog {
    /// Starts rsyslogd on a free port with its files in a new dir under
    /// `tmp`; with `tls`, it expects TLS (anonymous clients) using those
    /// files. Returns once the port accepts connections.
    pub fn start(tmp: &Path, tls: Option<&TlsFiles>) -> Rsyslog {
        let driver = rsyslog_tls_driver().unwrap_or("ossl");
        let tls = tls.map(|files| RsyslogTls {
            files,
            driver,
            auth_mode: "anon",
        });
        Rsyslog::start_with(tmp, tls)
    }

    /// [`Rsyslog::start`] with the TLS driver and authentication mode
    /// given, e.g. to demand client certificates.
    pub fn start_with(tmp: &Path, tls: Option<RsyslogTls>) -> Rsyslog {
        let port = free_port();
        let dir = tmp.join(format!("rsyslog-{port}"));
        fs::create_dir_all(dir.join("spool")).expect("creating the rsyslog dir");
        let (module_tls, input_tls) = match tls {
            None => (String::new(), String::new()),
            Some(RsyslogTls {
                files: t,
                driver,
                auth_mode,
            }) => (
                format!(
                    " streamDriver.name=\"{driver}\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"{auth_mode}\""
                ),
                format!(
                    " streamDriver.CAFile=\"{}\" streamDriver.CertFile=\"{}\" \
                     streamDriver.KeyFile=\"{}\"",
                    t.ca.display(),
                    t.cert.display(),
                    t.key.display()
                ),
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{spool}\" maxMessageSize=\"256k\"\n\
             \x20      parser.escapeControlCharactersOnReceive=\"off\"\n\
             \x20      parser.escape8BitCharactersOnReceive=\"off\")\n\
             main_queue(queue.workerThreads=\"1\")\n\
             module(load=\"imtcp\"{module_tls})\n\
             template(name=\"show\" type=\"string\" string=\"{RSYSLOG_TEMPLATE}\")\n\
             ruleset(name=\"r\") {{\n\
             \x20 action(type=\"omfile\" file=\"{out}\" template=\"show\")\n\
             }}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\"{input_tls})\n",
            spool = dir.join("spool").display(),
            out = dir.join("received.log").display(),
        );
        fs::write(dir.join("rsyslog.conf"), conf).expect("writing rsyslog.conf");
        let log = dir.join("rsyslogd.log");
        let mut r = Rsyslog {
            dir,
            tls: tls.is_some(),
            server: Server::new("rsyslogd", port, log),
        };
        r.restart();
        r
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// A forward `url` pointing at it.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "syslog+tls" } else { "syslog+tcp" };
        format!("{scheme}://127.0.0.1:{}", self.server.port)
    }

    /// The file it writes every message to, one line each (appended to
    /// across restarts).
    pub fn received_path(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    /// Every line written so far, without its `\n` (a line still being
    /// written is left out).
    pub fn lines(&self) -> Vec<String> {
        let text = fs::read(self.received_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        text.split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(str::to_owned)
            .collect()
    }

    /// [`Rsyslog::lines`] split into their fields.
    pub fn records(&self) -> Vec<SyslogRecord> {
        self.lines()
            .iter()
            .map(|line| {
                let f: Vec<&str> = line.splitn(9, '|').collect();
                assert_eq!(
                    f.len(),
                    9,
                    "rsyslog output line {line:?} has too few fields"
                );
                SyslogRecord {
                    version: f[0].into(),
                    pri: f[1].into(),
                    hostname: f[2].into(),
                    app_name: f[3].into(),
                    procid: f[4].into(),
                    msgid: f[5].into(),
                    structured_data: f[6].into(),
                    timestamp: f[7].into(),
                    msg: f[8].into(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages were written; returns them all.
    pub fn wait_records(&self, n: usize) -> Vec<SyslogRecord> {
        eventually(TIMEOUT, || {
            let records = self.records();
            if records.len() >= n {
                Ok(records)
            } else {
                Err(format!(
                    "expected at least {n} messages at rsyslog, got {}: {records:?}\n\
                     --- rsyslogd log ---\n{}",
                    records.len(),
                    self.log()
                ))
            }
        })
    }

    /// What rsyslogd printed (its errors about a bad config or TLS).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Kills rsyslogd (SIGKILL by PID) and waits until the port is closed.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// (Re)starts rsyslogd with the same config, port and output file
    /// (which it appends to); kills the running one first.
    pub fn restart(&mut self) {
        let bin = find_binary("rsyslogd").expect("rsyslogd is installed");
        let mut cmd = Command::new(bin);
        cmd.arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"));
        self.server.restart(cmd);
    }
}

// ---------------------------------------------------------------------------
// nats-server

/// A `nats-server -js` on 127.0.0.1 with its store in the test's temp dir;
/// killed by PID on drop.
pub struct NatsServer {
    /// Its dir: JetStream store (`store/`) and log.
    dir: PathBuf,
    /// What follows the usual arguments (kept across restarts).
    args: Vec<String>,
    /// The server and its client port (kept across restarts).
    server: Server,
}

impl NatsServer {
    /// Starts nats-server with JetStream on a free port, its store in a new
    /// dir under `tmp`. Returns once the port accepts connections.
    pub fn start(tmp: &Path) -> NatsServer {
        NatsServer::start_with(tmp, &[])
    }

    /// [`NatsServer::start`] with `args` after `-js -a 127.0.0.1 -p PORT
    /// -sd STORE`: `--auth TOKEN`, `--user U --pass P`, `--tls --tlscert
    /// CERT --tlskey KEY`, or `-c FILE` for what has no flag, such as
    /// operator mode (the flags before it win over the file).
    pub fn start_with(tmp: &Path, args: &[&str]) -> NatsServer {
        let port = free_port();
        let dir = tmp.join(format!("nats-{port}"));
        fs::create_dir_all(dir.join("store")).expect("creating the nats dir");
        let log = dir.join("nats-server.log");
        let mut n = NatsServer {
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            server: Server::new("nats-server", port, log),
        };
        n.restart();
        n
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// A forward `url` pointing at it.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port)
    }

    /// A connected [`NatsClient`].
    pub fn client(&self) -> NatsClient {
        NatsClient::connect(self.server.port)
    }

    /// What nats-server logged.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Kills nats-server (SIGKILL by PID) and waits until the port is
    /// closed.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// (Re)starts nats-server on the same port and store dir (streams and
    /// their duplicate windows survive); kills the running one first.
    pub fn restart(&mut self) {
        let bin = find_binary("nats-server").expect("nats-server is installed");
        let mut cmd = Command::new(bin);
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.server.port.to_string(),
            "-sd",
        ])
        .arg(self.dir.join("store"))
        .args(&self.args);
        self.server.restart(cmd);
    }
}

/// A message read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    /// The subject it was published to.
    pub subject: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The header block as stored (`NATS/1.0\r\nNats-Msg-Id: ...`), if any.
    pub headers: Option<String>,
}

impl StoredMsg {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_deref()?.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A reply delivered to the client's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The header block, for an HMSG (e.g. `NATS/1.0 503\r\n\r\n`).
    pub headers: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Reply {
    /// The payload as JSON; panics naming what came otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "expected a JSON reply, got {e}: headers {:?}, payload {:?}",
                self.headers,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// How a [`NatsClient`] logs in; the default is plain TCP without
/// credentials.
#[derive(Debug, Clone, Default)]
pub struct NatsLogin {
    /// An `auth_token` (for a server started with `--auth TOKEN`).
    pub token: Option<String>,
    /// A `user` and `pass` (`--user U --pass P`).
    pub user_pass: Option<(String, String)>,
    /// A user JWT and the nkey seed that signs the server's nonce
    /// (operator mode).
    pub jwt: Option<(String, String)>,
    /// TLS, trusting only the CA certificate in this file (`--tls`).
    pub ca: Option<PathBuf>,
}

/// The connection under a [`NatsClient`]: TCP, or TLS over it.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A rustls client config trusting only the CA in `ca`.
fn tls_client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("reading the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("adding the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A minimal blocking NATS client for assertions: request/reply (plain and
/// with a `Nats-Msg-Id`) and the JetStream API calls tests need, over TCP
/// or TLS, with a token, a user and password or a JWT. Every read is
/// bounded by [`TIMEOUT`]; server PINGs are answered.
pub struct NatsClient {
    conn: BufReader<Box<dyn Conn>>,
    /// Reply subjects are `_INBOX.harness.<n>`.
    next_reply: u64,
}

impl NatsClient {
    /// Connects, sends CONNECT (headers and no-responders on) and waits for
    /// the PONG that proves the server took it.
    pub fn connect(port: u16) -> NatsClient {
        NatsClient::connect_with(port, &NatsLogin::default())
    }

    /// [`NatsClient::connect`], upgrading to TLS after the server's INFO
    /// and sending the credentials of `login`.
    pub fn connect_with(port: u16, login: &NatsLogin) -> NatsClient {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connecting to nats-server on port {port}: {e}"));
        tcp.set_read_timeout(Some(TIMEOUT)).expect("socket timeout");
        // The INFO line comes in the clear, even when the server wants TLS:
        // read it a byte at a time so that nothing after it is taken.
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            match tcp.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                other => panic!("reading INFO from nats-server: {other:?}"),
            }
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let info: Value = match line.strip_prefix("INFO ") {
            Some(info) => serde_json::from_str(info).expect("INFO is JSON"),
            None => panic!("expected INFO, got {line:?}"),
        };
        let conn: Box<dyn Conn> = match &login.ca {
            None => Box::new(tcp),
            Some(ca) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
                let tls = rustls::ClientConnection::new(tls_client_config(ca), name)
                    .expect("a TLS client");
                Box::new(rustls::StreamOwned::new(tls, tcp))
            }
        };
        let mut c = NatsClient {
            conn: BufReader::new(conn),
            next_reply: 0,
        };
        let mut connect = json!({
            "verbose": false, "pedantic": false, "lang": "rust", "version": "test",
            "name": "fifo-broker test client", "protocol": 1,
            "tls_required": login.ca.is_some(), "headers": true, "no_responders": true,
        });
        if let Some(token) = &login.token {
            connect["auth_token"] = json!(token);
        }
        if let Some((user, pass)) = &login.user_pass {
            connect["user"] = json!(user);
            connect["pass"] = json!(pass);
        }
        if let Some((jwt, seed)) = &login.jwt {
            let nonce = info["nonce"].as_str().expect("a nonce in INFO");
            let key = nkeys::KeyPair::from_seed(seed).expect("a user seed");
            let sig = key.sign(nonce.as_bytes()).expect("signing the nonce");
            connect["jwt"] = json!(jwt);
            connect["sig"] = json!(data_encoding::BASE64URL_NOPAD.encode(&sig));
        }
        c.send(format!("CONNECT {connect}\r\nSUB _INBOX.harness.* 1\r\nPING\r\n").as_bytes());
        loop {
            match c.read_line().as_str() {
                "PONG" => return c,
                "PING" => c.send(b"PONG\r\n"),
                "+OK" => {}
                other => panic!("expected PONG after CONNECT, got {other:?}"),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let conn = self.conn.get_mut();
        conn.write_all(bytes)
            .and_then(|()| conn.flush())
            .unwrap_or_else(|e| panic!("writing to nats-server: {e}"));
    }

    /// One control line, without `\r\n`.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.conn.read_line(&mut line) {
            Ok(0) => panic!("nats-server closed the connection"),
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("reading from nats-server (timeout {TIMEOUT:?}): {e}"),
        }
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n + 2];
        self.conn
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("reading a {n}-byte payload from nats-server: {e}"));
        assert_eq!(&buf[n..], b"\r\n", "payload not followed by CRLF");
        buf.truncate(n);
        buf
    }

    /// Sends `PUB`/`HPUB` `subject` with a fresh reply subject and returns
    /// the reply (answering PINGs meanwhile).
    fn request_raw(&mut self, subject: &str, msg_id: Option<&str>, payload: &[u8]) -> Reply {
        self.next_reply += 1;
        let reply = format!("_INBOX.harness.{}", self.next_reply);
        let mut out = match msg_id {
            None => format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes(),
            Some(id) => {
                let headers = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
                let total = headers.len() + payload.len();
                format!(
                    "HPUB {subject} {reply} {} {total}\r\n{headers}",
                    headers.len()
                )
                .into_bytes()
            }
        };
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.send(&out);
        loop {
            let line = self.read_line();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["PING"] => self.send(b"PONG\r\n"),
                ["PONG"] | ["+OK"] => {}
                ["MSG", subj, _sid, size] | ["MSG", subj, _sid, _, size] => {
                    let size = size.parse().expect("MSG size");
                    let (subj, payload) = (subj.to_string(), self.read_exact(size));
                    if subj == reply {
                        return Reply {
                            headers: None,
                            payload,
                        };
                    }
                }
                ["HMSG", subj, _sid, hdr, total] | ["HMSG", subj, _sid, _, hdr, total] => {
                    let hdr: usize = hdr.parse().expect("HMSG header size");
                    let total: usize = total.parse().expect("HMSG total size");
                    let subj = subj.to_string();
                    let mut body = self.read_exact(total);
                    let payload = body.split_off(hdr.min(total));
                    if subj == reply {
                        return Reply {
                            headers: Some(String::from_utf8_lossy(&body).into_owned()),
                            payload,
                        };
                    }
                }
                _ => panic!("unexpected from nats-server: {line:?}"),
            }
        }
    }

    /// A request whose reply is JSON; panics on a JetStream API error.
    fn api(&mut self, subject: &str, request: &Value) -> Value {
        let reply = self.request_raw(subject, None, request.to_string().as_bytes());
        let v = reply.json();
        assert!(
            v.get("error").is_none(),
            "{subject} {request}: JetStream API error {}",
            v["error"]
        );
        v
    }

    /// Publishes `payload` to `subject` (with a `Nats-Msg-Id` header when
    /// given) as a request; JetStream answers with a PubAck, or a 503
    /// status when no stream captures the subject.
    pub fn publish(&mut self, subject: &str, msg_id: Option<&str>, payload: &[u8]) -> Reply {
        self.request_raw(subject, msg_id, payload)
    }

    /// Creates stream `name` (file storage) capturing `subjects`, with the
    /// given duplicate window.
    pub fn create_stream(&mut self, name: &str, subjects: &[&str], duplicate_window: Duration) {
        let request = json!({
            "name": name, "subjects": subjects, "storage": "file", "num_replicas": 1,
            "duplicate_window": duplicate_window.as_nanos() as u64,
        });
        self.api(&format!("$JS.API.STREAM.CREATE.{name}"), &request);
    }

    /// How many messages stream `name` holds.
    pub fn stream_messages(&mut self, name: &str) -> u64 {
        let v = self.api(&format!("$JS.API.STREAM.INFO.{name}"), &json!({}));
        v["state"]["messages"]
            .as_u64()
            .unwrap_or_else(|| panic!("no state.messages in stream info {v}"))
    }

    /// Waits until stream `name` holds at least `n` messages; returns the
    /// count.
    pub fn wait_stream_messages(&mut self, name: &str, n: u64) -> u64 {
        eventually(TIMEOUT, || match self.stream_messages(name) {
            m if m >= n => Ok(m),
            m => Err(format!(
                "expected at least {n} messages in stream {name}, got {m}"
            )),
        })
    }

    /// Message `seq` of stream `name`.
    pub fn get_message(&mut self, name: &str, seq: u64) -> StoredMsg {
        let v = self.api(
            &format!("$JS.API.STREAM.MSG.GET.{name}"),
            &json!({ "seq": seq }),
        );
        let m = &v["message"];
        let b64 = |field: &str| -> Option<Vec<u8>> {
            let text = m[field].as_str()?;
            Some(
                data_encoding::BASE64
                    .decode(text.as_bytes())
                    .unwrap_or_else(|e| panic!("{field} of {v} is not base64: {e}")),
            )
        };
        StoredMsg {
            subject: m["subject"]
                .as_str()
                .unwrap_or_else(|| panic!("no message.subject in {v}"))
                .to_owned(),
            data: b64("data").unwrap_or_default(),
            headers: b64("hdrs").map(|h| String::from_utf8_lossy(&h).into_owned()),
        }
    }
}
