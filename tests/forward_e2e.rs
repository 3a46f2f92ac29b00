//! End-to-end tests of the network forwards (SPEC §7, docs/forwarding.md)
//! against real servers on 127.0.0.1: rsyslog demanding client
//! certificates, nats-server with a token, a user and password, TLS and
//! operator/JWT (`.creds`) authentication, and a plain TCP listener that
//! times the forward's reconnects.
//!
//! The servers and the NATS client are the harness's (tests/util/servers.rs):
//! each listens on a free port, keeps its files in the test's temp dir and
//! is killed by its PID when its guard drops. A test whose server binary is
//! missing says why and passes, except under `CI=true`, where it fails (see
//! `util::servers::skip_test`).

// The harness is shared with tests/broker.rs; this binary uses part of it.
#[allow(dead_code)]
mod util;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use util::servers::{
    free_port, require_binary, rsyslog_tls_driver, skip_test, NatsClient, NatsLogin, NatsServer,
    Rsyslog, RsyslogTls, TlsFiles,
};
use util::{eventually, Counters, Daemon, TIMEOUT};

// ---------------------------------------------------------------------------
// Helpers

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fb-e2e-")
        .tempdir()
        .expect("creating temp dir")
}

/// The value of `key` in the counters of forward `name`.
fn fwd(c: &Counters, name: &str, key: &str) -> u64 {
    c.get("forward", name, key)
}

/// Whether forward `name` is `connected` or `disconnected`.
fn fwd_state<'a>(c: &'a Counters, name: &str) -> &'a str {
    c.raw("forward", name, "state")
}

/// Writes lines `"{prefix}{i}"` for `i` in `0..n` into input `input`.
fn write_lines(d: &Daemon, input: &str, prefix: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    d.write(input, text.as_bytes());
    lines
}

/// A client of `server` logging in with `login`, and the stream `LOGS` it
/// made, capturing `logs.>` (duplicate window 120 s).
fn logs_client(server: &NatsServer, login: NatsLogin) -> NatsClient {
    let mut js = NatsClient::connect_with(server.port(), &login);
    js.create_stream("LOGS", &["logs.>"], Duration::from_secs(120));
    js
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
fn assert_stream_holds(js: &mut NatsClient, name: &str, lines: &[String]) {
    let have = js.wait_stream_messages("LOGS", lines.len() as u64);
    let got: Vec<(String, String)> = (1..=have)
        .map(|seq| js.get_message("LOGS", seq))
        .map(|m| (m.subject, String::from_utf8_lossy(&m.data).into_owned()))
        .collect();
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
    if require_binary(TEST, "rsyslogd").is_none() || require_binary(TEST, "openssl").is_none() {
        return;
    }
    let Some(driver) = rsyslog_tls_driver() else {
        skip_test(
            TEST,
            "no rsyslog TLS driver (rsyslog-openssl or rsyslog-gnutls)",
        );
        return;
    };
    let tmp = tmp();
    let tls = TlsFiles::generate(tmp.path());
    // Only clients with a certificate signed by the test CA.
    let rsyslog = Rsyslog::start_with(
        tmp.path(),
        Some(RsyslogTls {
            files: &tls,
            driver,
            auth_mode: "x509/certvalid",
        }),
    );
    // `(APP-NAME, MSG)` of every message written so far.
    let records = || -> Vec<(String, String)> {
        let records = rsyslog.records().into_iter();
        records.map(|r| (r.app_name, r.msg)).collect()
    };
    let url = rsyslog.url();
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
        let got = records();
        match got.iter().filter(|(app, _)| app == "with").count() >= lines.len() {
            true => Ok(()),
            false => Err(format!(
                "expected {} lines from the forward with a certificate, got {got:?}",
                lines.len()
            )),
        }
    });
    // Four refusals: 0.1 + 0.2 + 0.4 s of backoff after the first.
    let c = d.wait_counters("the forward without a certificate failed 4 times", |c| {
        fwd(c, "without_cert", "errors") >= 4
    });
    let with = |key| fwd(&c, "with_cert", key);
    assert_eq!(fwd_state(&c, "with_cert"), "connected", "{c:?}");
    assert_eq!(
        (with("errors"), with("connects")),
        (0, 1),
        "one connection, no error: {c:?}"
    );
    assert_eq!(with("lines_out"), lines.len() as u64, "{c:?}");
    assert_eq!(fwd_state(&c, "without_cert"), "disconnected", "{c:?}");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        records(),
        want,
        "only the lines of the forward with a certificate, each once, in order\n\
         --- rsyslogd log ---\n{}",
        rsyslog.log()
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
    let without = |key| fwd(&c, "without_cert", key);
    println!(
        "without a client certificate: connects={} lines_out={} bytes_out={} errors={} \
         (of {} lines queued)",
        without("connects"),
        without("lines_out"),
        without("bytes_out"),
        without("errors"),
        lines.len()
    );
    assert_eq!(
        (
            without("connects"),
            without("lines_out"),
            without("dropped")
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
    if require_binary(TEST, "nats-server").is_none() {
        return;
    }
    let tmp = tmp();
    let token = "s3cr3t-t0ken";
    let (user, pass) = ("fb", "p@ss:word");
    let tok_server = NatsServer::start_with(tmp.path(), &["--auth", token]);
    let up_server = NatsServer::start_with(tmp.path(), &["--user", user, "--pass", pass]);
    let mut tok_js = logs_client(
        &tok_server,
        NatsLogin {
            token: Some(token.into()),
            ..NatsLogin::default()
        },
    );
    let mut up_js = logs_client(
        &up_server,
        NatsLogin {
            user_pass: Some((user.into(), pass.into())),
            ..NatsLogin::default()
        },
    );

    let (tp, up) = (tok_server.port(), up_server.port());
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

    let c = d.wait_counters("every line acked, the wrong ones failed", |c| {
        fwd(c, "tok", "acked") == 100
            && fwd(c, "up", "acked") == 100
            && fwd(c, "tok_bad", "errors") >= 2
            && fwd(c, "up_bad", "errors") >= 2
    });
    for good in ["tok", "up"] {
        assert_eq!(fwd_state(&c, good), "connected", "{good}: {c:?}");
        assert_eq!(fwd(&c, good, "errors"), 0, "{good}: {c:?}");
    }
    for bad in ["tok_bad", "up_bad"] {
        assert_eq!(fwd_state(&c, bad), "disconnected", "{bad}: {c:?}");
        assert_eq!(fwd(&c, bad, "acked"), 0, "{bad}: {c:?}");
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
    if require_binary(TEST, "nats-server").is_none() || require_binary(TEST, "openssl").is_none() {
        return;
    }
    let tmp = tmp();
    let tls = TlsFiles::generate(tmp.path());
    let (cert, key) = (
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let server =
        NatsServer::start_with(tmp.path(), &["--tls", "--tlscert", &cert, "--tlskey", &key]);
    let mut js = logs_client(
        &server,
        NatsLogin {
            ca: Some(tls.ca.clone()),
            ..NatsLogin::default()
        },
    );
    let url = server.url();
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
    let c = d.wait_counters("acked, plain failed", |c| {
        fwd(c, "secure", "acked") == 100 && fwd(c, "plain", "errors") >= 2
    });
    assert_eq!(fwd_state(&c, "secure"), "connected", "{c:?}");
    assert_eq!(fwd(&c, "secure", "errors"), 0, "{c:?}");
    assert_eq!(fwd(&c, "plain", "acked"), 0, "{c:?}");
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
    if require_binary(TEST, "nats-server").is_none() {
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

    // What has no command-line flag; the server's port and JetStream store
    // come from the flags of `NatsServer::start_with`.
    let conf = format!(
        "operator: \"{op}\"\n\
         system_account: {sys}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n\
         \x20 {acc}: \"{acc_jwt}\"\n\
         \x20 {sys}: \"{sys_jwt}\"\n\
         }}\n",
        op = dir.join("operator.jwt").display(),
        sys = system.public_key(),
        acc = account.public_key(),
        acc_jwt = account_jwt(&operator, &account, true),
        sys_jwt = account_jwt(&operator, &system, false),
    );
    fs::write(dir.join("nats.conf"), conf).unwrap();
    let conf = dir.join("nats.conf").display().to_string();
    let server = NatsServer::start_with(dir, &["-c", &conf]);

    let mut js = logs_client(
        &server,
        NatsLogin {
            jwt: Some((user_jwt(&account, &test_user), test_user.seed().unwrap())),
            ..NatsLogin::default()
        },
    );
    let url = server.url();
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
    let c = d.wait_counters("acked, stranger failed", |c| {
        fwd(c, "creds", "acked") == 100 && fwd(c, "stranger", "errors") >= 2
    });
    assert_eq!(fwd_state(&c, "creds"), "connected", "{c:?}");
    assert_eq!(fwd(&c, "creds", "errors"), 0, "{c:?}");
    assert_eq!(fwd(&c, "stranger", "acked"), 0, "{c:?}");
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
        let errors = fwd(&d.counters(), "central", "errors");
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
    let c = d.counters();
    assert!(fwd(&c, "central", "connects") >= 5, "{c:?}");
    assert!(fwd(&c, "central", "disconnects") >= 4, "{c:?}");
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
    if require_binary(TEST, "rsyslogd").is_none() {
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
    let c = d.counters();
    assert_eq!(fwd_state(&c, "central"), "connected", "{c:?}");
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
    let c = d.counters();
    assert_eq!(fwd_state(&c, "central"), "connected", "{c:?}");
    assert_eq!(fwd(&c, "central", "connects"), 1, "{c:?}");
}
