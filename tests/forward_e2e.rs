//! End-to-end tests of the network forwards (SPEC §7, docs/forwarding.md)
//! against real servers on 127.0.0.1: rsyslog demanding client
//! certificates, nats-server with a token, a user and password, TLS and
//! operator/JWT (`.creds`) authentication, and a plain TCP listener that
//! times the forward's reconnects.
//!
//! Every server listens on a free port, keeps its files in the test's temp
//! dir and is killed by its PID when its guard drops. A test whose server
//! binary is missing prints `SKIP ...` and passes, except under `CI=true`,
//! where it fails (see `util::servers::require_binary`).
//!
//! The NATS client here is this file's own (the harness's one speaks
//! neither TLS nor authentication); like the servers, it judges what the
//! daemon sends without the crate's protocol code.

// The harness is shared with tests/broker.rs; this binary uses part of it.
#[allow(dead_code)]
mod util;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal};
use serde_json::{json, Value};

use util::servers::{find_binary, free_port, port_open, require_binary, Rsyslog, TlsFiles};
use util::{eventually, Daemon, TIMEOUT};

// ---------------------------------------------------------------------------
// Helpers

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fb-e2e-")
        .tempdir()
        .expect("creating temp dir")
}

/// Whether `CI=true`: then a missing server fails the test.
fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True if every binary is installed; otherwise prints `SKIP <test>: why`
/// and returns false (under `CI=true`, [`require_binary`] panics instead).
fn have(test: &str, binaries: &[&str]) -> bool {
    for bin in binaries {
        if find_binary(bin).is_none() {
            require_binary(test, bin);
            println!("SKIP {test}: {bin} is not installed");
            return false;
        }
    }
    true
}

/// Prints `SKIP <test>: why`, or panics under `CI=true`.
fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why}, and CI=true is set");
    }
    println!("SKIP {test}: {why}");
}

/// One forward's fields from a `counters: forward NAME ...` line.
#[derive(Debug, Clone, Default)]
struct Fwd(BTreeMap<String, String>);

impl Fwd {
    fn raw(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in forward counters {:?}", self.0))
    }

    fn get(&self, key: &str) -> u64 {
        let raw = self.raw(key);
        raw.parse()
            .unwrap_or_else(|_| panic!("forward counter {key}={raw:?} is not a number"))
    }
}

/// The complete `counters: forward NAME ...` lines in `log`.
fn forward_lines<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    let tag = format!("counters: forward {name} ");
    log.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.contains(&tag))
        .collect()
}

/// Sends SIGUSR1 and returns, for each of `names`, the forward counters the
/// daemon logged in answer: a line newer than any before the signal (the
/// harness's `Daemon::counters` waits for the input lines only, which come
/// before the forwards').
fn forward_counters(d: &Daemon, names: &[&str]) -> BTreeMap<String, Fwd> {
    let log = d.stderr();
    let before: Vec<usize> = names.iter().map(|n| forward_lines(&log, n).len()).collect();
    d.signal(Signal::USR1);
    eventually(TIMEOUT, || {
        d.assert_running("waiting for SIGUSR1 counters");
        let log = d.stderr();
        let mut out = BTreeMap::new();
        for (name, before) in names.iter().zip(&before) {
            let lines = forward_lines(&log, name);
            if lines.len() <= *before {
                return Err(format!(
                    "expected a new `counters: forward {name}` line after SIGUSR1\n\
                     --- stderr ---\n{log}"
                ));
            }
            let line = lines.last().expect("a line");
            let at = line.find("counters: forward ").expect("tag") + "counters: forward ".len();
            let fields = line[at..]
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            out.insert(name.to_string(), Fwd(fields));
        }
        Ok(out)
    })
}

/// Polls the forward counters until `ok` accepts them.
fn wait_forwards(
    d: &Daemon,
    names: &[&str],
    what: &str,
    ok: impl Fn(&BTreeMap<String, Fwd>) -> bool,
) -> BTreeMap<String, Fwd> {
    eventually(TIMEOUT, || {
        let c = forward_counters(d, names);
        if ok(&c) {
            Ok(c)
        } else {
            Err(format!("expected forward counters where {what}, got {c:?}"))
        }
    })
}

/// Writes lines `"{prefix}{i}"` for `i` in `0..n` into input `input`.
fn write_lines(d: &Daemon, input: &str, prefix: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    d.write(input, text.as_bytes());
    lines
}

/// A server process on a port of 127.0.0.1, its output in a log file,
/// killed (SIGKILL by PID) and reaped on drop.
struct Proc {
    what: String,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd` (without the test's `NOTIFY_SOCKET`) and waits until
    /// it accepts connections on `port`; panics with its log if it exits
    /// first.
    fn spawn(what: &str, mut cmd: Command, port: u16, log: PathBuf) -> Proc {
        let out = File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        let child = cmd
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let mut p = Proc {
            what: what.to_owned(),
            port,
            log,
            child: Some(child),
        };
        eventually(TIMEOUT, || {
            let child = p.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{what} exited with {status} before listening on port {port}\n--- log ---\n{}",
                    p.log()
                );
            }
            match port_open(port) {
                true => Ok(()),
                false => Err(format!("expected {what} to listen on 127.0.0.1:{port}")),
            }
        });
        p
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("--- {} log ({}) ---\n{}", self.what, self.port, self.log());
        }
    }
}

// ---------------------------------------------------------------------------
// rsyslog that demands a client certificate

/// rsyslog's TLS network stream drivers, in order of preference: the
/// module file and the `streamDriver.name`.
const RSYSLOG_DRIVERS: [(&str, &str); 2] = [("lmnsd_ossl.so", "ossl"), ("lmnsd_gtls.so", "gtls")];

/// The name of an installed rsyslog TLS driver, if any.
fn rsyslog_tls_driver() -> Option<&'static str> {
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

/// An `rsyslogd -n` on a TLS port that only takes clients with a
/// certificate signed by the test CA (`authMode="x509/certvalid"`); it
/// writes `APP-NAME|MSG` per message.
struct MtlsRsyslog {
    server: Proc,
    out: PathBuf,
}

impl MtlsRsyslog {
    fn start(tmp: &Path, tls: &TlsFiles, driver: &str) -> MtlsRsyslog {
        let port = free_port();
        let dir = tmp.join(format!("rsyslog-mtls-{port}"));
        fs::create_dir_all(dir.join("spool")).expect("creating the rsyslog dir");
        let out = dir.join("received.log");
        let conf = format!(
            "global(workDirectory=\"{spool}\" maxMessageSize=\"64k\")\n\
             module(load=\"imtcp\" streamDriver.name=\"{driver}\" streamDriver.mode=\"1\"\n\
             \x20      streamDriver.authMode=\"x509/certvalid\")\n\
             template(name=\"show\" type=\"string\" string=\"%app-name%|%msg%\\n\")\n\
             ruleset(name=\"r\") {{\n\
             \x20 action(type=\"omfile\" file=\"{out}\" template=\"show\")\n\
             }}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\"\n\
             \x20     streamDriver.CAFile=\"{ca}\" streamDriver.CertFile=\"{cert}\"\n\
             \x20     streamDriver.KeyFile=\"{key}\")\n",
            spool = dir.join("spool").display(),
            out = out.display(),
            ca = tls.ca.display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        fs::write(&conf_path, conf).expect("writing rsyslog.conf");
        let mut cmd = Command::new(find_binary("rsyslogd").expect("rsyslogd"));
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"));
        let server = Proc::spawn("rsyslogd", cmd, port, dir.join("rsyslogd.log"));
        MtlsRsyslog { server, out }
    }

    /// `(APP-NAME, MSG)` of every message written so far.
    fn records(&self) -> Vec<(String, String)> {
        let text = fs::read(&self.out).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(|l| match l.split_once('|') {
                Some((app, msg)) => (app.to_owned(), msg.to_owned()),
                None => (String::new(), l.to_owned()),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// nats-server and a NATS client with authentication and TLS

/// A `nats-server` on a free port with JetStream, its store in a new dir
/// under `tmp`, started with `args` after `-js -a 127.0.0.1 -p PORT -sd
/// STORE`.
fn nats_server(tmp: &Path, tag: &str, args: &[&str]) -> Proc {
    let port = free_port();
    let dir = tmp.join(format!("nats-{tag}-{port}"));
    fs::create_dir_all(dir.join("store")).expect("creating the nats dir");
    let mut cmd = Command::new(find_binary("nats-server").expect("nats-server"));
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("store"))
        .args(args);
    Proc::spawn("nats-server", cmd, port, dir.join("nats-server.log"))
}

/// How the test's client authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    UserPass(String, String),
    /// A user JWT and the seed that signs the server's nonce.
    Jwt {
        jwt: String,
        seed: String,
    },
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A blocking NATS client for the JetStream API calls the tests need,
/// over plain TCP or TLS, with any of [`Auth`]. Every read is bounded by
/// [`TIMEOUT`].
struct Js {
    conn: Box<dyn Conn>,
    /// Bytes read and not consumed yet.
    buf: Vec<u8>,
    next_reply: u64,
}

impl Js {
    /// Connects, upgrades to TLS (trusting `ca`) if given, sends CONNECT
    /// and waits for the PONG that proves the server took it.
    fn connect(port: u16, auth: &Auth, ca: Option<&Path>) -> Js {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connecting to nats-server on port {port}: {e}"));
        tcp.set_read_timeout(Some(TIMEOUT)).expect("socket timeout");
        // The INFO line comes in the clear, even when the server wants TLS.
        let mut buf = Vec::new();
        while !buf.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            match tcp.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                other => panic!("reading INFO from nats-server: {other:?}"),
            }
        }
        let info = String::from_utf8_lossy(&buf).trim_end().to_owned();
        let info: Value = match info.strip_prefix("INFO ") {
            Some(json) => serde_json::from_str(json).expect("INFO is JSON"),
            None => panic!("expected INFO, got {info:?}"),
        };
        let conn: Box<dyn Conn> = match ca {
            None => Box::new(tcp),
            Some(ca) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = rustls::ClientConnection::new(tls_client_config(ca), name)
                    .expect("a TLS client");
                Box::new(rustls::StreamOwned::new(tls, tcp))
            }
        };
        let mut c = Js {
            conn,
            buf: Vec::new(),
            next_reply: 0,
        };
        let mut connect = json!({
            "verbose": false, "pedantic": false, "lang": "rust", "version": "test",
            "name": "forward_e2e client", "protocol": 1, "tls_required": ca.is_some(),
            "headers": true, "no_responders": true,
        });
        match auth {
            Auth::None => {}
            Auth::Token(t) => connect["auth_token"] = json!(t),
            Auth::UserPass(u, p) => {
                connect["user"] = json!(u);
                connect["pass"] = json!(p);
            }
            Auth::Jwt { jwt, seed } => {
                let nonce = info["nonce"].as_str().expect("a nonce in INFO");
                let key = nkeys::KeyPair::from_seed(seed).expect("a user seed");
                let sig = key.sign(nonce.as_bytes()).expect("signing the nonce");
                connect["jwt"] = json!(jwt);
                connect["sig"] = json!(data_encoding::BASE64URL_NOPAD.encode(&sig));
            }
        }
        c.send(format!("CONNECT {connect}\r\nSUB _INBOX.e2e.* 1\r\nPING\r\n").as_bytes());
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
        self.conn
            .write_all(bytes)
            .and_then(|()| self.conn.flush())
            .unwrap_or_else(|e| panic!("writing to nats-server: {e}"));
    }

    /// Reads more into `buf`.
    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        match self.conn.read(&mut chunk) {
            Ok(0) => panic!("nats-server closed the connection"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading from nats-server (timeout {TIMEOUT:?}): {e}"),
        }
    }

    /// One control line, without `\r\n`.
    fn read_line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return line;
            }
            self.fill();
        }
    }

    /// A payload of `n` bytes and its `\r\n`.
    fn read_payload(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n + 2 {
            self.fill();
        }
        assert_eq!(&self.buf[n..n + 2], b"\r\n", "payload not followed by CRLF");
        let payload = self.buf[..n].to_vec();
        self.buf.drain(..n + 2);
        payload
    }

    /// Publishes `payload` to `subject` with a fresh reply subject and
    /// returns the reply's payload.
    fn request(&mut self, subject: &str, payload: &[u8]) -> Vec<u8> {
        self.next_reply += 1;
        let reply = format!("_INBOX.e2e.{}", self.next_reply);
        let mut out = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
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
                    let subj = subj.to_string();
                    let payload = self.read_payload(size.parse().expect("MSG size"));
                    if subj == reply {
                        return payload;
                    }
                }
                ["HMSG", subj, _sid, hdr, total] | ["HMSG", subj, _sid, _, hdr, total] => {
                    let subj = subj.to_string();
                    let hdr: usize = hdr.parse().expect("HMSG header size");
                    let mut body = self.read_payload(total.parse().expect("HMSG size"));
                    let payload = body.split_off(hdr.min(body.len()));
                    if subj == reply {
                        return payload;
                    }
                }
                _ => panic!("unexpected from nats-server: {line:?}"),
            }
        }
    }

    /// A JetStream API request; panics on an API error.
    fn api(&mut self, subject: &str, request: &Value) -> Value {
        let reply = self.request(subject, request.to_string().as_bytes());
        let v: Value = serde_json::from_slice(&reply).unwrap_or_else(|e| {
            panic!(
                "{subject}: expected a JSON reply, got {e}: {:?}",
                String::from_utf8_lossy(&reply)
            )
        });
        assert!(
            v.get("error").is_none(),
            "{subject} {request}: JetStream API error {}",
            v["error"]
        );
        v
    }

    /// Creates stream `name` (file storage) capturing `subjects`.
    fn create_stream(&mut self, name: &str, subjects: &[&str]) {
        let request = json!({
            "name": name, "subjects": subjects, "storage": "file", "num_replicas": 1,
            "duplicate_window": 120_000_000_000u64,
        });
        self.api(&format!("$JS.API.STREAM.CREATE.{name}"), &request);
    }

    /// How many messages stream `name` holds.
    fn stream_messages(&mut self, name: &str) -> u64 {
        let v = self.api(&format!("$JS.API.STREAM.INFO.{name}"), &json!({}));
        v["state"]["messages"]
            .as_u64()
            .unwrap_or_else(|| panic!("no state.messages in stream info {v}"))
    }

    /// `(subject, data)` of every message of stream `name`, waiting until
    /// it holds at least `n`.
    fn wait_messages(&mut self, name: &str, n: u64) -> Vec<(String, String)> {
        let have = eventually(TIMEOUT, || match self.stream_messages(name) {
            m if m >= n => Ok(m),
            m => Err(format!(
                "expected at least {n} messages in stream {name}, got {m}"
            )),
        });
        (1..=have).map(|seq| self.get_message(name, seq)).collect()
    }

    /// `(subject, data)` of message `seq` of stream `name`.
    fn get_message(&mut self, name: &str, seq: u64) -> (String, String) {
        let v = self.api(
            &format!("$JS.API.STREAM.MSG.GET.{name}"),
            &json!({ "seq": seq }),
        );
        let m = &v["message"];
        let data = data_encoding::BASE64
            .decode(m["data"].as_str().unwrap_or_default().as_bytes())
            .unwrap_or_else(|e| panic!("data of {v} is not base64: {e}"));
        (
            m["subject"].as_str().expect("message.subject").to_owned(),
            String::from_utf8_lossy(&data).into_owned(),
        )
    }
}

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

/// A daemon with input `app` and one NATS forward per `(name, url, extra)`,
/// each publishing to `logs.<name>.{input}`.
fn nats_daemon(forwards: &[(&str, String, String)]) -> Daemon {
    let mut config = String::from("[inputs.app]\n");
    for (name, url, extra) in forwards {
        config.push_str(&format!(
            "\n[forwards.{name}]\nurl = \"{url}\"\nsubject = \"logs.{name}.{{input}}\"\n\
             from = [\"app\"]\n{extra}\n"
        ));
    }
    Daemon::start(&config)
}

/// Asserts stream `LOGS` holds exactly `lines`, in order, all published by
/// forward `name` (subject `logs.<name>.app`), and still does a moment
/// later.
fn assert_stream_holds(js: &mut Js, name: &str, lines: &[String]) {
    let got = js.wait_messages("LOGS", lines.len() as u64);
    let subject = format!("logs.{name}.app");
    let want: Vec<(String, String)> = lines.iter().map(|l| (subject.clone(), l.clone())).collect();
    assert_eq!(
        got, want,
        "stream LOGS holds every line of {name}, once, in order"
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        js.stream_messages("LOGS"),
        lines.len() as u64,
        "nothing else reaches the stream"
    );
}

// ---------------------------------------------------------------------------
// NATS operator mode: JWTs made here with nkeys (no `nsc`)

/// Signs `claims` (given `iss` and `sub` are set) as a NATS v2 JWT.
fn encode_jwt(claims: &mut Value, signer: &nkeys::KeyPair) -> String {
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    claims["iat"] = json!(now);
    claims["iss"] = json!(signer.public_key());
    // An id unique enough for a test; the server does not recompute it.
    let sub = claims["sub"].as_str().unwrap_or_default().to_owned();
    claims["jti"] = json!(data_encoding::BASE32_NOPAD.encode(&sub.as_bytes()[..20]));
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64(claims.to_string().as_bytes());
    let signed = format!("{header}.{body}");
    let sig = signer.sign(signed.as_bytes()).expect("signing a JWT");
    format!("{signed}.{}", b64(&sig))
}

/// An account JWT issued by `operator`, with JetStream when `jetstream`.
fn account_jwt(operator: &nkeys::KeyPair, account: &nkeys::KeyPair, jetstream: bool) -> String {
    let js = if jetstream { -1 } else { 0 };
    encode_jwt(
        &mut json!({
            "sub": account.public_key(), "name": "acct",
            "nats": {
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": js, "disk_storage": js, "streams": js, "consumer": js,
                },
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account", "version": 2,
            },
        }),
        operator,
    )
}

/// A user JWT issued by `account`.
fn user_jwt(account: &nkeys::KeyPair, user: &nkeys::KeyPair) -> String {
    encode_jwt(
        &mut json!({
            "sub": user.public_key(), "name": "user",
            "nats": {
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            },
        }),
        account,
    )
}

/// A `.creds` file as `nsc generate creds` writes it.
fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

// ---------------------------------------------------------------------------
// 1. syslog over TLS with a client certificate

#[test]
fn syslog_tls_forward_with_a_client_certificate() {
    const TEST: &str = "syslog_tls_forward_with_a_client_certificate";
    if !have(TEST, &["rsyslogd", "openssl"]) {
        return;
    }
    let Some(driver) = rsyslog_tls_driver() else {
        skip(
            TEST,
            "no rsyslog TLS driver (rsyslog-openssl or rsyslog-gnutls)",
        );
        return;
    };
    let tmp = tmp();
    let tls = TlsFiles::generate(tmp.path());
    let rsyslog = MtlsRsyslog::start(tmp.path(), &tls, driver);
    let url = format!("syslog+tls://127.0.0.1:{}", rsyslog.server.port);
    let d = Daemon::start(&format!(
        r#"
[inputs.app]

[forwards.with_cert]
url = "{url}"
from = ["app"]
app_name = "with"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[forwards.without_cert]
url = "{url}"
from = ["app"]
app_name = "without"
ca_file = "{ca}"
"#,
        ca = tls.ca.display(),
        cert = tls.client_cert.display(),
        key = tls.client_key.display(),
    ));
    let lines = write_lines(&d, "app", "mtls-", 50);
    let want: Vec<(String, String)> = lines.iter().map(|l| ("with".into(), l.clone())).collect();
    eventually(TIMEOUT, || {
        let got = rsyslog.records();
        match got.iter().filter(|(app, _)| app == "with").count() >= lines.len() {
            true => Ok(()),
            false => Err(format!(
                "expected {} lines from the forward with a certificate, got {got:?}",
                lines.len()
            )),
        }
    });
    let names = ["with_cert", "without_cert"];
    // Four refusals: 0.1 + 0.2 + 0.4 s of backoff after the first.
    let c = wait_forwards(
        &d,
        &names,
        "the forward without a certificate failed 4 times",
        |c| c["without_cert"].get("errors") >= 4,
    );
    let with = &c["with_cert"];
    assert_eq!(with.raw("state"), "connected", "{c:?}");
    assert_eq!(
        (with.get("errors"), with.get("connects")),
        (0, 1),
        "one connection, no error: {c:?}"
    );
    assert_eq!(with.get("lines_out"), lines.len() as u64, "{c:?}");
    assert_eq!(c["without_cert"].raw("state"), "disconnected", "{c:?}");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rsyslog.records(),
        want,
        "only the lines of the forward with a certificate, each once, in order\n\
         --- rsyslogd log ---\n{}",
        rsyslog.server.log()
    );
    let log = d.stderr();
    assert!(
        log.contains("forward without_cert: ") && log.contains("CertificateRequired"),
        "the refusal is logged: {log}"
    );
    // With TLS 1.3 the server checks the client's certificate after the
    // client's side of the handshake is done: the forward waits for the
    // server's word (a session ticket) before it sends a line, so a refused
    // connection neither counts as a connection nor takes a line.
    let without = &c["without_cert"];
    println!(
        "without a client certificate: connects={} lines_out={} bytes_out={} errors={} \
         (of {} lines queued)",
        without.get("connects"),
        without.get("lines_out"),
        without.get("bytes_out"),
        without.get("errors"),
        lines.len()
    );
    assert_eq!(
        (
            without.get("connects"),
            without.get("lines_out"),
            without.get("dropped")
        ),
        (0, 0, 0),
        "a refused handshake takes no line: {c:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. NATS with a token and with a user and password in the URL

#[test]
fn nats_forward_with_token_and_user_password_urls() {
    const TEST: &str = "nats_forward_with_token_and_user_password_urls";
    if !have(TEST, &["nats-server"]) {
        return;
    }
    let tmp = tmp();
    let token = "s3cr3t-t0ken";
    let (user, pass) = ("fb", "p@ss:word");
    let tok_server = nats_server(tmp.path(), "token", &["--auth", token]);
    let up_server = nats_server(tmp.path(), "userpass", &["--user", user, "--pass", pass]);
    let mut tok_js = Js::connect(tok_server.port, &Auth::Token(token.into()), None);
    tok_js.create_stream("LOGS", &["logs.>"]);
    let mut up_js = Js::connect(
        up_server.port,
        &Auth::UserPass(user.into(), pass.into()),
        None,
    );
    up_js.create_stream("LOGS", &["logs.>"]);

    let (tp, up) = (tok_server.port, up_server.port);
    let d = nats_daemon(&[
        (
            "tok",
            format!("nats://{token}@127.0.0.1:{tp}"),
            String::new(),
        ),
        (
            "tok_bad",
            format!("nats://wrong-token@127.0.0.1:{tp}"),
            String::new(),
        ),
        // The password is %-encoded in the URL: `@` and `:` are special.
        (
            "up",
            format!("nats://{user}:p%40ss%3Aword@127.0.0.1:{up}"),
            String::new(),
        ),
        (
            "up_bad",
            format!("nats://{user}:nope@127.0.0.1:{up}"),
            String::new(),
        ),
    ]);
    let lines = write_lines(&d, "app", "auth-", 100);
    assert_stream_holds(&mut tok_js, "tok", &lines);
    assert_stream_holds(&mut up_js, "up", &lines);

    let names = ["tok", "tok_bad", "up", "up_bad"];
    let c = wait_forwards(&d, &names, "every line acked, the wrong ones failed", |c| {
        c["tok"].get("acked") == 100
            && c["up"].get("acked") == 100
            && c["tok_bad"].get("errors") >= 2
            && c["up_bad"].get("errors") >= 2
    });
    for good in ["tok", "up"] {
        assert_eq!(c[good].raw("state"), "connected", "{good}: {c:?}");
        assert_eq!(c[good].get("errors"), 0, "{good}: {c:?}");
    }
    for bad in ["tok_bad", "up_bad"] {
        assert_eq!(c[bad].raw("state"), "disconnected", "{bad}: {c:?}");
        assert_eq!(c[bad].get("acked"), 0, "{bad}: {c:?}");
    }
    let log = d.stderr();
    assert!(
        log.contains("forward tok_bad: ") && log.contains("forward up_bad: "),
        "the failures are logged: {log}"
    );
    assert!(
        log.contains("Authorization Violation"),
        "the server's reason is logged: {log}"
    );
    for secret in [token, "p%40ss", "p@ss", "wrong-token", "nope"] {
        assert!(!log.contains(secret), "{secret:?} shows in the log: {log}");
    }
}

// ---------------------------------------------------------------------------
// 3. NATS over TLS

#[test]
fn nats_forward_over_tls() {
    const TEST: &str = "nats_forward_over_tls";
    if !have(TEST, &["nats-server", "openssl"]) {
        return;
    }
    let tmp = tmp();
    let tls = TlsFiles::generate(tmp.path());
    let (cert, key) = (
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let server = nats_server(
        tmp.path(),
        "tls",
        &["--tls", "--tlscert", &cert, "--tlskey", &key],
    );
    let mut js = Js::connect(server.port, &Auth::None, Some(&tls.ca));
    js.create_stream("LOGS", &["logs.>"]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    let d = nats_daemon(&[
        (
            "secure",
            url.clone(),
            format!("tls = true\nca_file = \"{}\"", tls.ca.display()),
        ),
        // Without `tls = true` the server's INFO says TLS is required.
        ("plain", url.clone(), String::new()),
    ]);
    let lines = write_lines(&d, "app", "tls-", 100);
    assert_stream_holds(&mut js, "secure", &lines);
    let c = wait_forwards(&d, &["secure", "plain"], "acked, plain failed", |c| {
        c["secure"].get("acked") == 100 && c["plain"].get("errors") >= 2
    });
    assert_eq!(c["secure"].raw("state"), "connected", "{c:?}");
    assert_eq!(c["secure"].get("errors"), 0, "{c:?}");
    assert_eq!(c["plain"].get("acked"), 0, "{c:?}");
    assert!(
        d.stderr().contains("requires TLS"),
        "the plain forward says why: {}",
        d.stderr()
    );
}

// ---------------------------------------------------------------------------
// 4. NATS with a .creds file (operator mode)

#[test]
fn nats_forward_with_a_creds_file() {
    const TEST: &str = "nats_forward_with_a_creds_file";
    if !have(TEST, &["nats-server"]) {
        return;
    }
    let tmp = tmp();
    let dir = tmp.path();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let stranger = nkeys::KeyPair::new_account(); // unknown to the server
    let (daemon_user, test_user, lost_user) = (
        nkeys::KeyPair::new_user(),
        nkeys::KeyPair::new_user(),
        nkeys::KeyPair::new_user(),
    );
    let operator_jwt = encode_jwt(
        &mut json!({
            "sub": operator.public_key(), "name": "test operator",
            "nats": { "system_account": system.public_key(), "type": "operator", "version": 2 },
        }),
        &operator,
    );
    fs::write(dir.join("operator.jwt"), &operator_jwt).unwrap();
    let creds = |name: &str, account: &nkeys::KeyPair, user: &nkeys::KeyPair| {
        let path = dir.join(name);
        let text = creds_text(&user_jwt(account, user), &user.seed().unwrap());
        fs::write(&path, text).unwrap();
        path
    };
    let good = creds("daemon.creds", &account, &daemon_user);
    let bad = creds("stranger.creds", &stranger, &lost_user);

    let port = free_port();
    let conf = format!(
        "listen: \"127.0.0.1:{port}\"\n\
         jetstream {{ store_dir: \"{store}\" }}\n\
         operator: \"{op}\"\n\
         system_account: {sys}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n\
         \x20 {acc}: \"{acc_jwt}\"\n\
         \x20 {sys}: \"{sys_jwt}\"\n\
         }}\n",
        store = dir.join("store").display(),
        op = dir.join("operator.jwt").display(),
        sys = system.public_key(),
        acc = account.public_key(),
        acc_jwt = account_jwt(&operator, &account, true),
        sys_jwt = account_jwt(&operator, &system, false),
    );
    fs::write(dir.join("nats.conf"), conf).unwrap();
    let mut cmd = Command::new(find_binary("nats-server").unwrap());
    cmd.arg("-c").arg(dir.join("nats.conf"));
    let server = Proc::spawn("nats-server", cmd, port, dir.join("nats-server.log"));

    let mut js = Js::connect(
        port,
        &Auth::Jwt {
            jwt: user_jwt(&account, &test_user),
            seed: test_user.seed().unwrap(),
        },
        None,
    );
    js.create_stream("LOGS", &["logs.>"]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    let d = nats_daemon(&[
        (
            "creds",
            url.clone(),
            format!("credentials = \"{}\"", good.display()),
        ),
        (
            "stranger",
            url.clone(),
            format!("credentials = \"{}\"", bad.display()),
        ),
    ]);
    let lines = write_lines(&d, "app", "jwt-", 100);
    assert_stream_holds(&mut js, "creds", &lines);
    let c = wait_forwards(&d, &["creds", "stranger"], "acked, stranger failed", |c| {
        c["creds"].get("acked") == 100 && c["stranger"].get("errors") >= 2
    });
    assert_eq!(c["creds"].raw("state"), "connected", "{c:?}");
    assert_eq!(c["creds"].get("errors"), 0, "{c:?}");
    assert_eq!(c["stranger"].get("acked"), 0, "{c:?}");
    let log = d.stderr();
    assert!(
        log.contains("forward stranger: ") && log.contains("Authorization Violation"),
        "the refusal is logged: {log}"
    );
    let seed = daemon_user.seed().unwrap();
    assert!(!log.contains(&seed), "the seed shows in the log");
    assert!(
        server.log().contains("Trusted Operators"),
        "nats-server runs in operator mode:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------
// 5. Reconnect backoff

/// Accepts the next connection on `listener` (non-blocking), polling every
/// millisecond until `deadline`; returns it with when it was accepted.
fn accept_by(listener: &TcpListener, deadline: Instant, what: &str) -> (TcpStream, Instant) {
    listener.set_nonblocking(true).unwrap();
    loop {
        match listener.accept() {
            Ok((conn, _)) => return (conn, Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(Instant::now() < deadline, "{what}: no connection in time");
        thread::sleep(Duration::from_millis(1));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn reconnect_backoff_doubles_from_100ms_and_resets_after_a_healthy_connection() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[inputs.app]\n[forwards.central]\nurl = \"syslog+tcp://127.0.0.1:{port}\"\nfrom = [\"app\"]\n"
    ));
    d.write("app", b"queued\n");

    // 1. Nothing listens: every attempt is a refused connect, one error
    // each. Sample the error count every 50 ms.
    let started = Instant::now();
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    while started.elapsed() < Duration::from_millis(2000) {
        let errors = forward_counters(&d, &["central"])["central"].get("errors");
        samples.push((Instant::now(), errors));
        thread::sleep(Duration::from_millis(50));
    }
    // When attempt k (1-based) was first seen.
    let seen = |k: u64| samples.iter().find(|(_, e)| *e >= k).map(|(t, _)| *t);
    let first = seen(1).expect("at least one connection attempt in 2 s");
    let in_window = samples
        .iter()
        .take_while(|(t, _)| *t <= first + Duration::from_millis(1600))
        .last()
        .map_or(0, |(_, e)| *e);
    let attempts: Vec<f64> = (1..=in_window)
        .filter_map(seen)
        .map(|t| secs(t - first))
        .collect();
    println!("refused attempts seen at {attempts:.3?} s after the first (sampled every 50 ms)");
    // Expected at 0, 0.1, 0.3, 0.7 and 1.5 s: five.
    assert!(
        (3..=6).contains(&in_window),
        "{in_window} attempts in the first 1.6 s, expected about 5 (0.1 s doubling): {attempts:?}"
    );
    // The gaps grow: 0.4 s between the 3rd and 4th, 0.8 s to the 5th.
    if let (Some(t3), Some(t4), Some(t5)) = (seen(3), seen(4), seen(5)) {
        let (g34, g45) = (secs(t4 - t3), secs(t5 - t4));
        assert!(
            (0.25..=0.6).contains(&g34) && (0.6..=1.05).contains(&g45),
            "gaps 3-4 {g34:.3} s and 4-5 {g45:.3} s, expected about 0.4 and 0.8"
        );
    }

    // 2. A server appears: the forward finds it at its next attempt (at
    // most 3.2 s on) and keeps the connection; after 1.5 s up, it drops.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the late server");
    let (conn, _) = accept_by(&listener, Instant::now() + TIMEOUT, "the late server");
    thread::sleep(Duration::from_millis(1500));
    drop(conn);
    let closed = Instant::now();
    let (mut conn, at) = accept_by(&listener, closed + TIMEOUT, "after a healthy connection");
    let reset = secs(at - closed);
    println!("after a connection that lived 1.5 s: next attempt {reset:.3} s after it dropped");
    assert!(
        reset < 0.3,
        "the next attempt came {reset:.3} s after a healthy connection dropped, \
         expected 0.1 s (the backoff starts over)"
    );

    // 3. Connections that die at once do not reset it: it doubles from
    // there, 0.2, 0.4, 0.8 s.
    let mut gaps = Vec::new();
    for _ in 0..3 {
        drop(conn);
        let closed = Instant::now();
        let (next, at) = accept_by(&listener, closed + TIMEOUT, "a short-lived connection");
        gaps.push(secs(at - closed));
        conn = next;
    }
    drop(conn);
    println!("after connections that died at once: gaps {gaps:.3?} s");
    for (gap, want) in gaps.iter().zip([0.2, 0.4, 0.8]) {
        assert!(
            (want - 0.02..=want * 1.3 + 0.05).contains(gap),
            "gap {gap:.3} s, expected {want} s: {gaps:.3?}"
        );
    }
    let c = forward_counters(&d, &["central"]);
    assert!(c["central"].get("connects") >= 5, "{c:?}");
    assert!(c["central"].get("disconnects") >= 4, "{c:?}");
}

// ---------------------------------------------------------------------------
// 6. An idle connected forward

/// The voluntary and involuntary context switches of every thread of
/// `pid`.
fn context_switches(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc/PID/task");
    for task in tasks.flatten() {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            let value = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            };
            if line.starts_with("voluntary_ctxt_switches:") {
                total.0 += value(line);
            } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                total.1 += value(line);
            }
        }
    }
    total
}

#[test]
fn an_idle_connected_forward_costs_no_wakeups() {
    const TEST: &str = "an_idle_connected_forward_costs_no_wakeups";
    if !have(TEST, &["rsyslogd"]) {
        return;
    }
    let tmp = tmp();
    let rsyslog = Rsyslog::start(tmp.path(), None);
    let d = Daemon::start(&format!(
        "[inputs.app]\n[forwards.central]\nurl = \"{}\"\nfrom = [\"app\"]\n",
        rsyslog.url()
    ));
    d.write("app", b"wake up\n");
    rsyslog.wait_records(1);
    let c = forward_counters(&d, &["central"]);
    assert_eq!(c["central"].raw("state"), "connected", "{c:?}");
    // Activity (the write, the SIGUSR1) is followed a second later by a
    // `STATUS=` refresh; after that, nothing is due.
    thread::sleep(Duration::from_millis(1500));

    let (ticks, switches) = (d.cpu_ticks(), context_switches(d.pid()));
    thread::sleep(Duration::from_secs(3));
    let (ticks2, switches2) = (d.cpu_ticks(), context_switches(d.pid()));
    let (voluntary, involuntary) = (switches2.0 - switches.0, switches2.1 - switches.1);
    println!(
        "idle for 3 s: {} CPU ticks, {voluntary} voluntary and {involuntary} involuntary \
         context switches",
        ticks2 - ticks
    );
    assert_eq!(ticks2, ticks, "the idle daemon used CPU");
    assert!(
        // A timer of 1 Hz or faster would show as 3 or more.
        voluntary + involuntary <= 1,
        "the idle daemon woke up {voluntary}+{involuntary} times in 3 s"
    );
    let c = forward_counters(&d, &["central"]);
    assert_eq!(c["central"].raw("state"), "connected", "{c:?}");
    assert_eq!(c["central"].get("connects"), 1, "{c:?}");
}
